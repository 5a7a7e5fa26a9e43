"""The integrations under random interruptions and random data: Lightning runs killed at a random step and
resumed from the checkpoint, torchdata's StatefulDataLoader stopped at a random batch and resumed in a new
loader (and the same state resumed by a prebake.Loader), and random Hugging Face datasets baked and exported.

A trial fails when a resumed run differs from the uninterrupted one (its batches, its augmentations, its final
weights bit for bit), when a baked value differs from the dataset's or an exported one from the cache's, or when
anything but a prebake error escapes.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake

from . import Row


def integrations(work_dir: Path, trials: int, seed: int = 0) -> Row:
    row = Row("integrations: Lightning killed mid-epoch, StatefulDataLoader stopped and resumed, HF datasets "
              "baked and exported")
    rng = random.Random(seed)
    kinds: list[Callable[[Row, random.Random, Path, str], None]] = [_stateful, _hf_round_trip, _lightning]
    for t in range(trials):
        kind = kinds[t % len(kinds)]
        where = f"trial {t} ({kind.__name__.strip('_')})"
        try:
            kind(row, rng, work_dir / f"t{t}", where)
        except Exception as e:  # noqa: BLE001 - anything escaping a trial is a failure to report, not to crash on
            row.fail(f"{where}: {type(e).__name__} escaped: {e}")
    return row


def small_cache(path: Path, n: int, seed: int = 0) -> prebake.Cache:
    """``x`` (4 float features), ``y`` (a float target) and ``i`` (the item's number)."""
    r = np.random.default_rng(seed)
    return prebake.write_arrays(path, {"x": r.normal(size=(n, 4)).astype(np.float32),
                                       "y": r.normal(size=(n,)).astype(np.float32), "i": np.arange(n)})


# -- torchdata ---------------------------------------------------------------------------------

def _stateful(row: Row, rng: random.Random, work: Path, where: str) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    from prebake.integrations.torchdata import BatchSampler

    n, world = rng.randint(1, 60), rng.randint(1, 3)
    drop_last = rng.random() < 0.3 or n < world
    kw = {"shuffle": rng.random() < 0.8, "seed": rng.randrange(100), "drop_last": drop_last,
          "rank": rng.randrange(world), "world_size": world}
    batch_size, workers, epochs = rng.randint(1, 8), 2 if rng.random() < 0.15 else 0, 2
    cache = small_cache(work / "c", n)

    def loader() -> Any:
        return StatefulDataLoader(cache, sampler=BatchSampler(cache, batch_size, **kw), batch_size=None,
                                  num_workers=workers)

    full = [b["i"].tolist() for b in loader_passes(loader(), epochs)]
    stop = rng.randint(0, len(full))
    first = loader()
    got = take(first, stop)
    state = roundtrip(first.state_dict())
    second = loader()
    second.load_state_dict(state)
    rest = take(second, len(full) - stop)
    row.check(got + rest == full, f"{where}: n={n} batch={batch_size} {kw} workers={workers}: stopped after {stop} "
                                  f"of {len(full)} batches, resumed {rest[:3]}..., expected {full[stop:stop + 3]}...")
    if workers == 0 and stop < len(full):
        _loader_resumes_the_sampler_state(row, cache, batch_size, kw, state, full, stop, where)


def _loader_resumes_the_sampler_state(row: Row, cache: prebake.Cache, batch_size: int, kw: dict[str, Any],
                                      state: dict[str, Any], full: list[list[int]], stop: int, where: str) -> None:
    sampler_state = state["_index_sampler_state"]
    loader = prebake.Loader(cache, batch_size, **kw)
    loader.load_state_dict(sampler_state)
    steps = len(loader)
    rest = [b["i"].tolist() for b in loader]
    end = stop + len(rest)
    row.check(rest == full[stop:end] and (end % steps == 0 or steps == 0),
              f"{where}: a prebake.Loader given the sampler's state {sampler_state['epoch'], sampler_state['batch']} "
              f"yielded {rest[:2]}..., the sampler's run {full[stop:stop + 2]}...")


def loader_passes(loader: Any, passes: int) -> list[dict[str, Any]]:
    return [b for _ in range(passes) for b in loader]


def take(loader: Any, count: int) -> list[list[int]]:
    """``count`` batches, over as many passes as that takes (a pass may be empty at an epoch's end)."""
    out: list[list[int]] = []
    for _ in range(count + 3):
        if len(out) >= count:
            break
        for b in loader:
            out.append(b["i"].tolist())
            if len(out) == count:
                break
    return out


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through a checkpoint file read with ``weights_only=True``, as Lightning and torch.load do."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# -- Hugging Face datasets ------------------------------------------------------------------------

def _hf_round_trip(row: Row, rng: random.Random, work: Path, where: str) -> None:
    from prebake.integrations.hf import to_hf

    ds, expected = random_dataset(rng)
    cache = prebake.build(ds, work / "c", workers=rng.choice([0, 2]), progress=False)
    kept = [i for i in range(len(ds)) if i not in {s["index"] for s in cache.manifest["skipped"]}]
    nulls = expected.pop("_null_rows")
    row.check(kept == [i for i in range(len(ds)) if i not in nulls],
              f"{where}: kept {kept}, the rows without nulls are {sorted(set(range(len(ds))) - nulls)}")
    back = to_hf(cache).with_format("numpy")
    for name, values in expected.items():
        for j, i in enumerate(kept[:len(cache)]):
            ours, theirs = cache[j][name], values[i]
            if not same(ours, theirs) or not same(back[j][name], ours):
                row.fail(f"{where}: column {name} row {i}: dataset {theirs!r}, cache {ours!r}, to_hf {back[j][name]!r}")
                return
    row.ok()


def same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and (a.tolist() == b.tolist() if a.dtype.kind in "USO" or b.dtype.kind in "USO"
                                   else bool(np.array_equal(a, b)))


def random_dataset(rng: random.Random) -> tuple[Any, dict[str, Any]]:
    """A small ``datasets.Dataset`` of random columns, and the values each row must bake to."""
    import datasets
    from PIL import Image

    n = rng.randint(1, 12)
    r = np.random.default_rng(rng.randrange(10**6))
    dtype = rng.choice(["int8", "uint16", "int32", "int64", "float32", "float64"])
    modes = ["RGB", "L", "RGBA"]
    text = ["".join(rng.choice("ab\u00e9\u4e2dz ") for _ in range(rng.randint(0, 6))) for _ in range(n)]
    cols: dict[str, Any] = {
        "v": r.integers(0, 100, n).astype(dtype).tolist(),
        "t": text,
        "blob": [t.encode() for t in text],
        "seq": [r.integers(-5, 5, rng.randint(0, 4)).tolist() for _ in range(n)],
        "fix": [r.normal(size=3).astype(np.float32).tolist() for _ in range(n)],
        "grid": [r.integers(-9, 9, (2, 2)).tolist() for _ in range(n)],
        "label": [rng.randrange(3) for _ in range(n)],
        "photo": [Image.fromarray(r.integers(0, 255, (3, 4, 3), dtype=np.uint8)).convert(rng.choice(modes))
                  for _ in range(n)],
    }
    nulls = {i for i in range(1, n) if rng.random() < 0.1}  # row 0 always bakes: a build needs one good item
    cols["v"] = [None if i in nulls else v for i, v in enumerate(cols["v"])]
    features = datasets.Features({
        "v": datasets.Value(dtype), "t": datasets.Value("string"), "blob": datasets.Value("binary"),
        "seq": datasets.Sequence(datasets.Value("int32")),
        "fix": datasets.Sequence(datasets.Value("float32"), length=3),
        "grid": datasets.Array2D((2, 2), "int16"), "label": datasets.ClassLabel(names=["a", "b", "c"]),
        "photo": datasets.Image()})
    ds = datasets.Dataset.from_dict(cols, features=features)
    expected = {k: cols[k] for k in ("v", "t", "blob", "seq", "fix", "grid", "label")}
    expected["image"] = [np.asarray(im.convert("RGB")).transpose(2, 0, 1) for im in cols["photo"]]
    expected["_null_rows"] = nulls
    return ds, expected


# -- Lightning -----------------------------------------------------------------------------------

def _lightning(row: Row, rng: random.Random, work: Path, where: str) -> None:
    n, batch_size, seed = rng.randint(6, 30), rng.randint(2, 6), rng.randrange(100)
    cache = small_cache(work / "c", n)
    idx = np.arange(n)
    indices = {"train": idx[: n - 3], "val": idx[n - 3:]} if rng.random() < 0.5 else None
    ref = lightning_run(cache.path, batch_size, seed, indices)
    stop = rng.randint(1, len(ref["seen"]) - 1)
    killed = lightning_run(cache.path, batch_size, seed, indices, kill_at=stop, ckpt=work / "mid.ckpt")
    resumed = lightning_run(cache.path, batch_size, seed, indices, ckpt=work / "mid.ckpt")
    same_batches = killed["seen"] + resumed["seen"] == ref["seen"]
    same_weights = all(torch.equal(a, b) for a, b in zip(ref["weights"], resumed["weights"]))
    row.check(same_batches and same_weights, f"{where}: n={n} batch={batch_size} seed={seed} killed after {stop} "
                                             f"steps: same batches {same_batches}, same weights {same_weights}")


def noise(batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """A random device augmentation, drawn from the generator the DataModule gives each batch."""
    x = batch["x"]
    batch["x"] = x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)
    return batch


def lightning_run(cache: Path, batch_size: int, seed: int, indices: Any = None, kill_at: int | None = None,
                  ckpt: Path | None = None, epochs: int = 2, transform: Any = noise,
                  features: int = 4) -> dict[str, Any]:
    """A 2-epoch fit over ``cache`` (``x`` of ``features`` values, ``y``, ``i``) with ``transform`` as the device
    augmentation: killed after ``kill_at`` steps (saving ``ckpt``), or resumed from ``ckpt``, or whole. Returns
    each batch's items and sum, and the weights."""
    import logging
    import warnings

    from lightning.pytorch import Callback, LightningModule, Trainer

    from prebake.integrations.lightning import CacheDataModule

    class Model(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 1))
            self.seen: list[tuple[list[int], float]] = []

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
            self.seen.append((batch["i"].tolist(), float(batch["x"].sum())))
            return torch.nn.functional.mse_loss(self.lin(batch["x"]).squeeze(1), batch["y"])

        def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
            self.log("val", float(batch["y"].sum()))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    class Killed(Exception):
        pass

    class Kill(Callback):
        def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
            if trainer.global_step == kill_at:
                trainer.save_checkpoint(ckpt)
                raise Killed

    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    trainer = Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                      callbacks=[Kill()] if kill_at is not None else [], num_sanity_val_steps=0)
    model = Model()
    dm = CacheDataModule(cache, batch_size, seed=seed, indices=indices, transform=transform)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=None if kill_at is not None else ckpt)
    except Killed:
        pass
    return {"seen": model.seen, "weights": [p.detach().clone() for p in model.parameters()]}
