"""Dirichlet label partition with the semantics of Flower's ``DirichletPartitioner``.

For each class, the class's shuffled indices are cut among the clients in proportions
drawn from Dir(alpha). The whole draw is repeated (at most ``max_attempts`` times)
until every client holds at least ``min_partition_size`` samples; then each client's
indices are shuffled. One seeded ``np.random.default_rng`` drives everything, so a
seed gives the same partition on every machine.
https://flower.ai/docs/datasets/ref-api/flwr_datasets.partitioner.DirichletPartitioner.html
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class PartitionError(ValueError):
    """No draw met ``min_partition_size`` within the allowed attempts."""


def _draw(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(proportions) * len(idx)).astype(np.int64)[:-1]
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].append(chunk)
    return [np.concatenate(p) for p in parts]


def dirichlet_partition(labels: np.ndarray, num_clients: int, alpha: float, min_partition_size: int = 10,
                        seed: int = 0, max_attempts: int = 10) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``num_clients`` disjoint int64 index arrays."""
    labels = np.asarray(labels)
    if alpha <= 0 or num_clients < 1:
        raise ValueError(f"need alpha > 0 and num_clients >= 1, got alpha={alpha}, num_clients={num_clients}")
    if num_clients * min_partition_size > len(labels):
        raise PartitionError(f"{num_clients} clients x min_partition_size {min_partition_size} > {len(labels)} "
                             "samples; lower --num_users or --min_partition_size")
    rng = np.random.default_rng(seed)
    for _ in range(max_attempts):
        parts = _draw(labels, num_clients, alpha, rng)
        if min(len(p) for p in parts) >= min_partition_size:
            for p in parts:
                rng.shuffle(p)
            return parts
    raise PartitionError(
        f"Dirichlet(alpha={alpha}) over {len(labels)} samples and {num_clients} clients left a client with "
        f"{min(len(p) for p in parts)} < min_partition_size={min_partition_size} samples in all {max_attempts} "
        "draws; raise --dirichlet_alpha, or lower --min_partition_size or --num_users")


def label_counts(parts: list[np.ndarray], labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 (clients, classes): how many samples of each class each client holds."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


def save_partition(parts: list[np.ndarray], labels: np.ndarray, out: Path, **settings: object) -> None:
    """``out/partition.npz`` (indices + offsets, for reloading) and ``out/partition.json`` (readable)."""
    out.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(p) for p in parts])
    np.savez(out / "partition.npz", indices=np.concatenate(parts), offsets=offsets)
    counts = label_counts(parts, labels, int(labels.max()) + 1)
    summary = {**settings, "sizes": [len(p) for p in parts], "label_counts": counts.tolist()}
    (out / "partition.json").write_text(json.dumps(summary, indent=1))


def load_partition(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        indices, offsets = f["indices"], f["offsets"]
    return [indices[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
