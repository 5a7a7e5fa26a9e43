"""A prebake Loader in an Accelerate loop on 2 CPU processes (torchrun, gloo): each item once per epoch across
the processes, and accelerator.save_state / load_state resuming it mid-epoch in a new job (same batches, same
weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

import prebake
from benchmarks.trials.integrations import small_cache
from prebake.errors import OptionError, ResumeError
from prebake.integrations.accelerate import LoaderState, prepare_loader

HERE = Path(__file__).parent


def _torchrun(cache: Path, out: Path, *extra: str) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "accelerate_loop.py"), str(cache), str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    phase = "resumed" if "--resume" in extra else "full"
    return [json.loads((out / f"{phase}-rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_processes_see_each_item_once_and_resume_from_save_state(tmp_path):
    small_cache(tmp_path / "c", 23)
    full = _torchrun(tmp_path / "c", tmp_path, "--save-at", "2")
    resumed = _torchrun(tmp_path / "c", tmp_path, "--resume")
    for epoch in (0, 1):
        items = [i for r in full for step in r["seen"] if step[0] == epoch for i in step[1:]]
        assert sorted(items) == list(range(23)), epoch
    for r in (0, 1):
        saved_at = full[r]["seen"].index(["saved"])
        assert resumed[r]["seen"] == full[r]["seen"][saved_at + 1:]  # the rest of epoch 1, batch for batch
        assert resumed[r]["weights"] == full[r]["weights"]
    assert full[0]["world_size"] == 2


def test_prepare_loader_registers_the_loaders_position(tmp_path):
    from accelerate import Accelerator

    cache = small_cache(tmp_path / "c", 10)
    first = Accelerator(cpu=True)
    it = iter(prepare_loader(first, cache, 3, seed=1))
    next(it)
    first.save_state(str(tmp_path / "ckpt"))
    rest = [b["i"].tolist() for b in it]
    second = Accelerator(cpu=True)  # a new loop: load_state puts the new loader where the first one was
    again = prepare_loader(second, cache, 3, seed=1)
    second.load_state(str(tmp_path / "ckpt"))
    assert [b["i"].tolist() for b in again] == rest
    one_rank = LoaderState(again).state_dict()
    with pytest.raises(ResumeError, match="2 rank"):
        LoaderState(again).load_state_dict({"ranks": one_rank["ranks"] * 2})
    with pytest.raises(OptionError, match="from the accelerator"):
        prepare_loader(second, cache, 3, device="cpu")
    with pytest.raises(OptionError, match="prebake.Loader"):
        LoaderState(prebake.open(cache.path))
