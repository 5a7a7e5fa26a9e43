"""What Lightning's and Accelerate's loops cost over a plain prebake.Loader loop, on the same data and model.

    python benchmarks/integrations.py              # two workloads, 5 interleaved rounds of 3 epochs each
    python benchmarks/integrations.py --rounds 3 --items 4000
    python benchmarks/integrations.py --save       # also update benchmarks/results/integrations-<device>.json

Five loops train the same model on the same cache with the same device augmentation (random noise
drawn from the per-batch generator), so they see the same batches and end with the same weights
(checked, bit for bit on a CPU):

- plain: ``for batch in prebake.Loader(cache, transform=augment)``: forward, backward, step;
- lightning: ``Trainer.fit`` with ``prebake.lightning.CacheDataModule`` (the augmentation in
  ``on_after_batch_transfer``; progress bar, logger, checkpoints and model summary off);
- accelerate: ``prepare_loader`` + ``accelerator.prepare(model, optimizer)`` + ``accelerator.backward``;
- lightning-own and accelerate-own: the same two frameworks' loops over the plain Loader (``Trainer.fit(module,
  train_dataloaders=loader)``; the Loader in Accelerate's loop without ``prepare_loader``): what each framework's
  loop costs by itself, so that each integration's ratio to its own framework's loop is its share alone.

Two workloads: ``cnn``, CIFAR-sized uint8 images (3x32x32, normalised on the device) through a small
convnet, batch 256, a step heavy enough to be typical; ``mlp``, 32 float features through a 2-layer MLP,
batch 64, so small that the loop's own per-step cost shows (the worst case for a framework). Each
round runs every loop for ``--epochs`` epochs, loops taking turns (the order rotates each round); a loop's figure
in a round is the median samples/s of its epochs after the first (the first pays start-up: reported apart,
with Lightning's whole-fit set-up), its ratio to plain is taken round by round (paired, so drift between
rounds cancels), and the median of those ratios gives the overhead = 1 - ratio, the target being <= 5 %,
also as milliseconds per step (what a loop adds to each step whatever the model). Each figure is
given twice: by the wall clock, and per CPU second of this process (``time.process_time``), which leaves
out the time the process waited for a core while other processes held it. One torch compute thread by default
(``--threads``): the loops' own costs are what is compared, and a second thread on a busy 2-core
machine mostly measures the other processes' load.
Prints a table and writes runs/integrations/integrations-<device>.json; benchmarks/results/ only with --save.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prebake
from prebake.measure.bench import device_tag, machine, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOOPS = ("plain", "lightning", "accelerate", "lightning-own", "accelerate-own")
#: Each integration beside its framework's own loop over the same Loader: the integration's share of the cost.
OWN = {"lightning": "lightning-own", "accelerate": "accelerate-own"}


def make_cache(path: Path, workload: str, items: int) -> prebake.Cache:
    r = np.random.default_rng(0)
    if workload == "cnn":
        x = r.integers(0, 255, (items, 3, 32, 32), dtype=np.uint8)
    else:
        x = r.normal(size=(items, 32)).astype(np.float32)
    return prebake.write_arrays(path, {"x": x, "label": r.integers(0, 10, items)})


def make_model(workload: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if workload == "cnn":
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32 * 8 * 8, 10))
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def augment(batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """To float (images normalised), plus noise drawn from the batch's own generator."""
    x = batch["x"]
    x = x.float() / 255.0 - 0.5 if x.dtype == torch.uint8 else x
    batch["x"] = x + 0.01 * torch.randn(x.shape, generator=generator, device=x.device)
    return batch


def step_loss(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(batch["x"]), batch["label"])


def optimizer_of(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


# -- the three loops: each returns (seconds of each epoch, seconds before the first, final weights) --

def plain(cache: prebake.Cache, workload: str, batch: int, epochs: int, device: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = make_model(workload).to(device)
    optimizer = optimizer_of(model)
    loader = prebake.Loader(cache, batch, seed=0, device=device, transform=augment)
    setup = time.perf_counter() - t0
    times = []
    for _ in range(epochs):
        t = _now()
        for b in loader:
            optimizer.zero_grad()
            step_loss(model, b).backward()
            optimizer.step()
        times.append(_since(t))
    return {"epochs": times, "setup": setup, "weights": _weights(model)}


def lightning(cache: prebake.Cache, workload: str, batch: int, epochs: int, device: str) -> dict[str, Any]:
    from prebake.integrations.lightning import CacheDataModule

    return _fit(workload, epochs, device, datamodule=CacheDataModule(cache.path, batch, seed=0, transform=augment))


def lightning_own(cache: prebake.Cache, workload: str, batch: int, epochs: int, device: str) -> dict[str, Any]:
    """Lightning's loop over the plain Loader (``train_dataloaders=``): what Lightning costs without the module."""
    loader = prebake.Loader(cache, batch, seed=0, device=device, transform=augment)
    return _fit(workload, epochs, device, train_dataloaders=loader)


def _fit(workload: str, epochs: int, device: str, **data: Any) -> dict[str, Any]:
    import lightning.pytorch as L

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_model(workload)

        def training_step(self, b: dict[str, Any], k: int) -> torch.Tensor:
            return step_loss(self.model, b)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return optimizer_of(self.model)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.starts: list[tuple[float, float]] = []
            self.ends: list[tuple[float, float]] = []

        def on_train_epoch_start(self, *args: Any) -> None:
            self.starts.append(_now())

        def on_train_epoch_end(self, *args: Any) -> None:
            self.ends.append(_since(self.starts[-1]))

    t0, clock = time.perf_counter(), Clock()
    trainer = L.Trainer(max_epochs=epochs, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    module = Module()
    trainer.fit(module, **data)
    return {"epochs": clock.ends, "setup": clock.starts[0][0] - t0, "weights": _weights(module.model)}


def accelerate(cache: prebake.Cache, workload: str, batch: int, epochs: int, device: str) -> dict[str, Any]:
    from prebake.integrations.accelerate import prepare_loader

    return _accelerated(workload, epochs, device, lambda acc: prepare_loader(acc, cache, batch, seed=0,
                                                                             transform=augment))


def accelerate_own(cache: prebake.Cache, workload: str, batch: int, epochs: int, device: str) -> dict[str, Any]:
    """Accelerate's loop over the plain Loader: what Accelerate costs without ``prepare_loader``."""
    return _accelerated(workload, epochs, device, lambda acc: prebake.Loader(cache, batch, seed=0, device=device,
                                                                             transform=augment))


def _accelerated(workload: str, epochs: int, device: str, make_loader: Callable[[Any], Any]) -> dict[str, Any]:
    from accelerate import Accelerator

    t0 = time.perf_counter()
    accelerator = Accelerator(cpu=device == "cpu")
    loader = make_loader(accelerator)
    model = make_model(workload)
    model, optimizer = accelerator.prepare(model, optimizer_of(model))
    setup = time.perf_counter() - t0
    times = []
    for _ in range(epochs):
        t = _now()
        for b in loader:
            optimizer.zero_grad()
            accelerator.backward(step_loss(model, b))
            optimizer.step()
        times.append(_since(t))
    return {"epochs": times, "setup": setup, "weights": _weights(accelerator.unwrap_model(model))}


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) since ``start``."""
    wall, cpu = _now()
    return wall - start[0], cpu - start[1]


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in model.parameters()]


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {"plain": plain, "lightning": lightning, "accelerate": accelerate,
                                                    "lightning-own": lightning_own, "accelerate-own": accelerate_own}


# -- rounds, figures, table --------------------------------------------------------------------------

def measure(cache: prebake.Cache, workload: str, batch: int, epochs: int, rounds: int,
            device: str) -> dict[str, Any]:
    n = len(cache)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LOOPS}
    for k in range(rounds):
        for name in LOOPS[k % len(LOOPS):] + LOOPS[:k % len(LOOPS)]:  # rotating turns: drift hits every loop alike
            runs[name].append(RUNNERS[name](cache, workload, batch, epochs, device))
    out: dict[str, Any] = {"items": n, "batch_size": batch, "epochs_per_round": epochs, "rounds": rounds}
    for name, rs in runs.items():
        wall = [statistics.median(n / w for w, _ in r["epochs"][1:]) for r in rs]  # each round's samples/s
        cpu = [statistics.median(n / c for _, c in r["epochs"][1:]) for r in rs]
        out[name] = {"samples_per_s": statistics.median(wall), "spread": [min(wall), max(wall)],
                     "samples_per_cpu_s": statistics.median(cpu), "per_round": wall, "per_round_cpu": cpu,
                     "first_epoch_s": statistics.median(r["epochs"][0][0] for r in rs),
                     "setup_s": statistics.median(r["setup"] for r in rs),
                     "same_weights_as_plain": all(all(torch.equal(a, b) for a, b in zip(r["weights"], p["weights"]))
                                                  for r, p in zip(rs, runs["plain"]))}
    for name in LOOPS[1:]:
        for clock, key in (("", "per_round"), ("cpu_", "per_round_cpu")):
            ratios = [a / b for a, b in zip(out[name][key], out["plain"][key])]  # the same round: paired
            ratio = statistics.median(ratios)
            out[name][f"{clock}ratio_to_plain"], out[name][f"{clock}ratio_range"] = ratio, [min(ratios), max(ratios)]
            out[name][f"{clock}overhead_pct"] = 100.0 * (1.0 - ratio)
            plain_step = batch / out["plain"]["samples_per_" + ("cpu_s" if clock else "s")]
            out[name][f"{clock}ms_per_step"] = 1000.0 * plain_step * (1.0 / ratio - 1.0)
    for name, own in OWN.items():  # the integration against its framework's own loop over the plain Loader
        for clock, key in (("", "per_round"), ("cpu_", "per_round_cpu")):
            ratios = [a / b for a, b in zip(out[name][key], out[own][key])]
            out[name][f"{clock}ratio_to_own_loop"] = statistics.median(ratios)
            out[name][f"{clock}ratio_to_own_loop_range"] = [min(ratios), max(ratios)]
    return out


def table(results: dict[str, Any]) -> str:
    """Wall clock (median samples/s, its range, overhead) and this process's CPU time (the same per CPU second);
    for an integration, its ratio to its framework's own loop over the plain Loader (per CPU second)."""
    lines = [(f"{'workload':<9} {'loop':<15} {'samples/s':>10} {'range':>19} {'overhead':>9} {'ms/step':>8} "
              f"{'per CPU-s':>10} {'overhead':>9} {'ms/step':>8} {'vs own loop':>11} {'1st epoch':>9} "
              f"{'same weights':>12}")]
    for workload, r in results.items():
        for name in LOOPS:
            x = r[name]
            wall = f"{x['overhead_pct']:+.1f} %" if name != "plain" else ""
            wall_ms = f"{x['ms_per_step']:+.3f}" if name != "plain" else ""
            cpu = f"{x['cpu_overhead_pct']:+.1f} %" if name != "plain" else ""
            cpu_ms = f"{x['cpu_ms_per_step']:+.3f}" if name != "plain" else ""
            own = f"{x['cpu_ratio_to_own_loop']:.3f}x" if name in OWN else ""
            lines.append(f"{workload:<9} {name:<15} {x['samples_per_s']:>10,.0f} "
                         f"{x['spread'][0]:>9,.0f}-{x['spread'][1]:<9,.0f} {wall:>9} {wall_ms:>8} "
                         f"{x['samples_per_cpu_s']:>10,.0f} {cpu:>9} {cpu_ms:>8} {own:>11} {x['first_epoch_s']:>8.2f}s "
                         f"{x['same_weights_as_plain']!s:>12}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--items", type=int, default=10_000, help="items of each workload's cache")
    p.add_argument("--epochs", type=int, default=3, help="epochs per loop and round (the first is not counted)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--workloads", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    p.add_argument("--threads", type=int, default=1, help="torch compute threads (default 1: see the docstring)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/integrations/integrations-<device>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/integrations-<device>.json")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    batches = {"cnn": 256, "mlp": 64}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads:
            cache = make_cache(Path(tmp) / workload, workload, args.items)
            results[workload] = measure(cache, workload, batches[workload], args.epochs, args.rounds, args.device)
    print(table(results))
    record = {"machine": machine(args.device), "results": results}
    name = f"integrations-{device_tag(args.device)}.json"
    out = args.out or ROOT / "runs" / "integrations" / name
    for path in write_results(record, out, HERE / "results" / name if args.save else None, root=ROOT):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
