"""The README: at most 250 lines, its quickstart runs as written on the data ``prebake demo`` writes on a CPU-only
machine, its results table is what docs/gen_results.py makes of benchmarks/results/*.json, and its links lead to
files that exist. The rest of the documentation is docs/ (tests/test_docs.py runs its blocks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def quickstart_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Quickstart"):]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```(bash|python)\n(.*?)```", section, re.S)


def test_the_quickstart_starts_in_the_demo_environment():
    first_lang, first = quickstart_blocks()[0]
    assert first_lang == "bash" and "source .venv/bin/activate" in first and "cd prebake-demo" in first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the quickstart uses fork DataLoader workers")
def test_every_quickstart_block_runs_as_written(tmp_path):
    """As a user would: the demo's data, then each block in order, in the demo's folder."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    demo = subprocess.run([str(bin_dir / "prebake"), "demo", "--workdir", str(tmp_path / "prebake-demo"),
                           "--bench-seconds", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert demo.returncode == 0, demo.stderr
    for lang, code in quickstart_blocks()[1:]:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path / "prebake-demo", capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, f"this {lang} block failed:\n{code}\n--- stderr:\n{proc.stderr[-3000:]}"
    for cache in ("cache/cifar10/train", "cache/cifar10/test", "cache/photos/train"):
        assert (tmp_path / "prebake-demo" / cache / "manifest.json").is_file(), cache


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250, "the README is a summary: move the details into docs/"


def test_the_results_table_is_what_the_json_gives():
    sys.path.insert(0, str(ROOT / "docs"))
    import gen_results

    text = README.read_text()
    files = gen_results.load(gen_results.RESULTS)
    assert gen_results.rewrite_readme(text, files) == text, "run: python docs/gen_results.py --readme"
    table = text.split(gen_results.BEGIN, 1)[1].split(gen_results.END, 1)[0]
    assert table.count("\n| ") >= 6 and "2-core CPU" in table


def test_the_links_lead_somewhere():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
