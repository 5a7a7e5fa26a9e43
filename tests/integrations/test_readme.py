"""The README's integration blocks run as written, each in a fresh directory, with the extras installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## In Lightning, torchdata, Hugging Face datasets and Accelerate"
NEEDS = {"lightning": "lightning", "torchdata": "torchdata", "datasets": "datasets", "accelerate": "accelerate"}


def blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_section_has_a_block_per_integration():
    found = blocks()
    assert len(found) == 4
    for package in NEEDS:
        assert any(f"import {package}" in b or f"from {package}" in b for b in found), package


@pytest.mark.parametrize("index", range(4))
def test_each_block_runs(tmp_path, index):
    code = blocks()[index]
    for package in NEEDS:
        if f"import {package}" in code or f"from {package}" in code:
            pytest.importorskip(package)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False,
                          timeout=300, env=env)
    assert proc.returncode == 0, f"this block failed:\n{code}\n--- stderr:\n{proc.stderr[-3000:]}"
