"""The training run, written once for every data path: NT-Xent pretraining, then a linear probe per epoch."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import prebake

from . import data as D
from . import seed as S
from .config import Config
from .model import Contrastive, embed, linear_probe, pretrain_loss

log = logging.getLogger("examples.pcg")
DATA_PATHS = ("original", "viewcache", "prebake")


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    loss: float
    samples: int
    seconds: float
    samples_per_s: float
    data_wait_fraction: float
    probe_accuracy: float
    transform_fraction: float = 0.0  # prebake: the six ops x2 views inside the Loader's next(), on the device
    input_cores: float = float("nan")  # cores the input pipeline kept busy (prebake.watch; nan: not sampled)
    verdict: str = ""  # prebake.watch's: input-bound also when the input pipeline's CPU competes with the step


def prepare(cfg: Config, work: Path, data_dir: Path | None = None) -> tuple[Path, prebake.Cache]:
    """The recordings (``data_dir``, or synthetic ones written under ``work``) and their cycle cache."""
    root = data_dir if data_dir is not None else work / "recordings"
    if data_dir is None and not root.exists():
        D.write_synthetic(root, cfg)
    return root, D.bake(root, work / "cache", cfg)


def make_batches(data_path: str, cfg: Config, root: Path, cache: prebake.Cache, device: str) -> Any:
    """Something with ``.epoch(e)`` -> batches on ``device``: the seed's two pipelines or prebake's."""
    if data_path == "prebake":
        return D.PrebakeBatches(cache, cfg, device)
    if data_path not in DATA_PATHS:
        raise ValueError(f"--data_path {data_path!r}: choose one of {', '.join(DATA_PATHS)}")
    rec = S.Recordings(*D.recordings(root, cache), cfg)
    kind = S.OriginalDataset if data_path == "original" else S.ViewCacheDataset
    dataset = kind(rec, cfg.train.seed)
    return S.SeedBatches(dataset, cfg, device)


def run(cfg: Config, data_path: str, work: Path, data_dir: Path | None = None, csv_path: Path | None = None,
        progress: Callable[[Iterable[int]], Iterable[int]] = lambda r: r) -> list[EpochResult]:
    """Pretrain for ``cfg.train.epochs`` epochs fed by ``data_path``; one CSV row per epoch."""
    torch.manual_seed(cfg.train.seed)
    device = cfg.device
    root, cache = prepare(cfg, work, data_dir)
    batches = make_batches(data_path, cfg, root, cache, device)
    probe_x, probe_y, probe_groups = D.eval_cycles(cache, cfg, device)
    m = cfg.model
    model = Contrastive(m.channels, m.embedding_dim, m.projection_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    results = []
    for epoch in progress(range(cfg.train.epochs)):
        results.append(train_epoch(model, opt, batches, epoch, cfg))
        acc = linear_probe(embed(model.encoder, probe_x), probe_y, probe_groups, cfg.train.probe_epochs, cfg.train.seed)
        results[-1] = EpochResult(**{**asdict(results[-1]), "probe_accuracy": acc})
        log.info("%s epoch %d: loss %.3f, %.0f samples/s, %.0f%% waiting for data, %.0f%% in the device ops, "
                 "probe %.3f", data_path, epoch, results[-1].loss, results[-1].samples_per_s,
                 100 * results[-1].data_wait_fraction, 100 * results[-1].transform_fraction, acc)
        if csv_path is not None:
            write_csv(csv_path, results)
    return results


def train_epoch(model: Contrastive, opt: torch.optim.Optimizer, batches: Any, epoch: int, cfg: Config) -> EpochResult:
    model.train()
    total, steps = 0.0, 0
    t0 = time.perf_counter()
    watched = prebake.watch(batches.epoch(epoch), count=lambda b: len(b["label"]), report=lambda r: None)
    for batch in watched:
        loss = pretrain_loss(model, batch, cfg.train.temperature, cfg.train.substructure_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
    r = watched.report
    assert r is not None
    return EpochResult(epoch, total / max(1, steps), r.samples, time.perf_counter() - t0, r.samples_per_s,
                       r.input_bound_fraction, float("nan"), r.transform_fraction,
                       float("nan") if r.input_cores is None else r.input_cores, r.verdict)


def write_csv(path: Path, results: list[EpochResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in results)
