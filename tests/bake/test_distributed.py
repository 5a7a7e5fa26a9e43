"""Under torch.distributed: one rank builds, the others wait and open it; DDP training sees every item
once per epoch and resumes exactly. Two real processes with the gloo backend on the CPU."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as tmp_mp

DATASET = '''
import os
import numpy as np

N = int(os.environ.get("PREBAKE_TEST_N", "25"))


class Items:
    def __len__(self):
        return N

    def __getitem__(self, i):
        with open(os.environ["PREBAKE_TEST_READS"] + f".{os.getpid()}", "a") as f:
            f.write(f"{i}\\n")
        if os.environ.get("PREBAKE_TEST_ALL_BAD"):
            raise ValueError(f"item {i} is bad on purpose")
        rng = np.random.default_rng(i)
        return {"x": rng.standard_normal(4).astype(np.float32), "y": np.float32(i % 3), "idx": i}


def make():
    return Items()
'''

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


def _init(rank: int, world: int, tmp: Path) -> None:
    os.environ.setdefault("PREBAKE_TEST_READS", str(tmp / "reads"))
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp / 'pg'}", rank=rank, world_size=world)


def _finish() -> None:
    """Leave the process group, then the process without the interpreter's teardown.

    The gloo group holds C++ threads; torn down during interpreter finalization they
    can abort the process ("terminate called without an active exception", SIGABRT:
    seen once in a full run of the suite). Every result is on disk by now.
    """
    torch.distributed.barrier()  # no rank tears its connections down while another still uses them
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _build_worker(rank: int, world: int, tmp: str, per_rank_out: bool, env: dict) -> None:
    import prebake

    tmp_path = Path(tmp)
    os.environ.update(env)
    _init(rank, world, tmp_path)
    out = tmp_path / (f"rank{rank}" if per_rank_out else "shared") / "cache"
    result: dict = {"rank": rank}
    try:
        cache = prebake.build(dataset=f"{tmp_path / 'ds.py'}:make", out=out, workers=0)
        result["items"] = len(cache)
    except prebake.PrebakeError as e:
        result["error"] = str(e)
    (tmp_path / f"result{rank}.json").write_text(json.dumps(result))
    _finish()


def _spawn(fn, tmp_path: Path, *args) -> list[dict]:
    (tmp_path / "ds.py").write_text(DATASET)
    tmp_mp.start_processes(fn, args=(2, str(tmp_path), *args), nprocs=2, start_method="spawn", join=True)
    return [json.loads((tmp_path / f"result{r}.json").read_text()) for r in range(2)]


def _readers(tmp_path: Path) -> dict[int, int]:
    """pid -> items read, from the files the dataset appends to."""
    return {int(f.suffix[1:]): len(f.read_text().split()) for f in tmp_path.glob("reads.*")}


def test_one_rank_builds_the_other_waits_and_opens_it(tmp_path):
    results = _spawn(_build_worker, tmp_path, False, {"LOCAL_RANK": "0"})
    assert [r.get("items") for r in results] == [25, 25], results
    readers = _readers(tmp_path)
    assert len(readers) == 1 and list(readers.values()) == [25 + 1]  # the probe read item 0 once more
    [status] = tmp_path.glob("shared/cache.build-*.json")  # rank 0 built and said so; rank 1 waited for it
    state = json.loads(status.read_text())
    assert state["state"] == "ok" and state["pid"] == next(iter(readers))
    assert not list(tmp_path.glob("shared/.cache.probe-*"))


def test_a_failed_build_reaches_every_rank_as_an_error(tmp_path):
    results = _spawn(_build_worker, tmp_path, False, {"PREBAKE_TEST_ALL_BAD": "1"})
    assert "no item of the source could be baked" in results[0]["error"]
    assert "rank 1: the build of cache on the building rank failed: SourceError: no item" in results[1]["error"]


def test_storage_each_node_sees_alone_is_built_once_per_node(tmp_path):
    """Outputs the other rank cannot see, as on two nodes' local disks: each node's LOCAL_RANK 0 builds."""
    results = _spawn(_build_worker, tmp_path, True, {"LOCAL_RANK": "0"})
    assert [r.get("items") for r in results] == [25, 25]
    assert sorted(_readers(tmp_path).values()) == [26, 26]
    for rank in range(2):
        [status] = tmp_path.glob(f"rank{rank}/cache.build-*.json")
        assert json.loads(status.read_text())["state"] == "ok"


# -- DDP training over the Loader: exactly once per epoch, equal steps, exact resume -----------------


def _train_worker(rank: int, world: int, tmp: str, mode: str) -> None:
    import prebake

    tmp_path = Path(tmp)
    _init(rank, world, tmp_path / mode)
    cache = prebake.build(dataset=f"{tmp_path / 'ds.py'}:make", out=tmp_path / "cache", workers=0)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = prebake.Loader(cache, 4, seed=0)  # rank and world size from torch.distributed
    ckpt = tmp_path / f"ckpt{rank}.pt"
    seen: list[list[int]] = [[], []]
    if mode == "resume":
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        loader.load_state_dict(state["loader"])
        seen = state["seen"]
    stopped = False
    while loader.epoch < 2 and not stopped:
        epoch = loader.epoch
        batches = iter(loader)
        for step, batch in enumerate(batches):
            seen[epoch] += batch["idx"].tolist()
            loss = torch.nn.functional.mse_loss(model(batch["x"]).squeeze(1), batch["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if mode == "stop" and epoch == 1 and step == 1:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "loader": loader.state_dict(),
                            "seen": seen}, ckpt)
                stopped = True
                break
        batches.close()  # stops the Loader's gather threads before the process group goes
    if not stopped:
        weights = [p.detach().numpy().tolist() for p in model.parameters()]
        (tmp_path / f"{mode}{rank}.json").write_text(json.dumps({"weights": weights, "seen": seen,
                                                                "steps": len(loader)}))
    del model, opt, loader  # the DDP model's reference to the group goes before the group does
    _finish()


@pytest.mark.slow
def test_ddp_training_sees_each_item_once_per_epoch_and_resumes_exactly(tmp_path):
    (tmp_path / "ds.py").write_text(DATASET)
    for mode in ("full", "stop", "resume"):
        (tmp_path / mode).mkdir()
        tmp_mp.start_processes(_train_worker, args=(2, str(tmp_path), mode), nprocs=2, start_method="spawn", join=True)
    full = [json.loads((tmp_path / f"full{r}.json").read_text()) for r in range(2)]
    resumed = [json.loads((tmp_path / f"resume{r}.json").read_text()) for r in range(2)]
    for epoch in range(2):
        every = sorted(i for r in full for i in r["seen"][epoch])
        assert every == list(range(25)), f"epoch {epoch}: {every}"
    assert full[0]["steps"] == full[1]["steps"] == 3  # 13 and 12 items: the same number of steps
    assert [r["seen"] for r in resumed] == [r["seen"] for r in full]
    assert [r["weights"] for r in resumed] == [r["weights"] for r in full]
    assert full[0]["weights"] == full[1]["weights"]  # DDP kept the ranks in step
    assert np.isfinite(np.array(full[0]["weights"][0])).all()


def test_a_builder_that_stops_reporting_is_an_error_not_a_hang(tmp_path):
    import time

    from prebake.bake.distributed import _wait_for
    from prebake.errors import PrebakeError

    status = tmp_path / "cache.build-abc.json"
    status.write_text(json.dumps({"state": "running", "pid": 1, "time": time.time() - 100}))
    with pytest.raises(PrebakeError, match=r"rank 1: the building rank stopped refreshing .* 10\d s ago"):
        _wait_for(status, 1, stale_s=60)
    with pytest.raises(PrebakeError, match="never wrote"):
        _wait_for(tmp_path / "cache.build-none.json", 1, stale_s=0.2)
