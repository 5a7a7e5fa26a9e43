"""``prebake.lightning.CacheDataModule``: a prebake cache as a PyTorch Lightning ``LightningDataModule``.

>>> import prebake  # doctest: +SKIP
>>> augment = prebake.augment.batch_transform(image=prebake.augment.image_train_preset(32))  # doctest: +SKIP
>>> dm = prebake.lightning.CacheDataModule("cache/cifar10", 256, source="data/cifar-10-batches-py",  # doctest: +SKIP
...                                        transform=augment)
>>> lightning.Trainer(max_epochs=10).fit(model, datamodule=dm)  # doctest: +SKIP

What each Lightning hook does:

- ``prepare_data`` (once per node, as Lightning calls it) bakes ``source`` into ``cache`` with
  the ``build`` settings of :func:`prebake.build`; an up-to-date cache makes it a no-op;
- ``setup`` opens the cache and finds the splits: ``indices=`` if given, else the split caches a
  source with splits bakes (``cache/train``, ``cache/val`` or ``cache/validation``, ``cache/test``),
  else the cache's ``splits.json`` (:func:`prebake.split` with ``save=True``), else every item trains;
- ``train_dataloader`` / ``val_dataloader`` / ``test_dataloader`` give :class:`~prebake.Loader` s on the
  Trainer's device, sharded by its rank (each item once per epoch across DDP ranks, none repeated);
  validation and test batches come in cache order;
- ``on_after_batch_transfer`` runs ``transform`` on each training batch on the device, with a
  ``generator`` seeded from (seed, rank, epoch, batch number) when it takes one;
- ``state_dict`` / ``load_state_dict`` keep the training Loader's position (every rank's) in the
  Trainer's checkpoint, so ``Trainer.fit(ckpt_path=...)`` from a mid-epoch checkpoint trains on
  exactly the batches the interrupted run had not, with the same augmentations.

The order of an epoch is drawn from ``(seed, trainer.current_epoch)``, so ``limit_train_batches``
and ``max_steps`` still see a new order every epoch. Built on ``lightning.pytorch`` (or
``pytorch_lightning`` when only that is installed): ``pip install 'prebake[lightning]'``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.format import MANIFEST, SPLITS
from ..errors import OptionError
from ..load.loader import _takes_generator
from ..load.params import function, whole
from . import require
from .ranks import gathered, own

log = logging.getLogger("prebake")

#: The names a split may have on disk or in splits.json, for each Lightning stage's loader.
ROLES: dict[str, tuple[str, ...]] = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}


def _lightning_base() -> type:
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name).LightningDataModule
        except ImportError:
            continue
    return _NotInstalled


class _NotInstalled:
    """Stands in for LightningDataModule when Lightning is missing: making one says how to install it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        require("lightning.pytorch", "lightning", "prebake.lightning.CacheDataModule")


class CacheDataModule(_lightning_base()):  # type: ignore[misc]
    """A ``LightningDataModule`` over the prebake cache at ``cache`` (see the module docstring for each hook).

    Args:
        cache: the cache directory; for a source with splits, the directory holding one cache per split.
        batch_size: samples per batch and rank, for every loader.
        source: what ``prepare_data`` bakes into ``cache`` (anything :func:`prebake.build` takes); None: the
            cache is there already.
        build: the other arguments of :func:`prebake.build` for that bake (``{"steps": [Resize(64)],
            "workers": 4}``).
        indices: ``{"train": ..., "val": ..., "test": ...}``, subsets of the one cache at ``cache`` (item
            indices or boolean masks), instead of the splits found on disk.
        transform: the device augmentation of training batches, run in ``on_after_batch_transfer``: a
            function with a ``generator`` parameter gets a generator seeded per batch, and so does a
            :func:`prebake.augment.batch_transform` (through its ``generator``), so a resumed run draws the
            same augmentations; a transform without either draws from torch's global generator.
        seed: the seed of the training order and of the transform's generators.
        loader: more keyword arguments of every :class:`~prebake.Loader` (``columns``, ``preload``,
            ``prefetch``, ``threads``, ``pad``, ``convert``, ``drop_last`` for training).
    """

    def __init__(self, cache: str | os.PathLike[str], batch_size: int, *, source: Any = None,
                 build: Mapping[str, Any] | None = None, indices: Mapping[str, Any] | None = None,
                 transform: Callable[..., Any] | None = None, seed: int = 0,
                 loader: Mapping[str, Any] | None = None):
        super().__init__()
        self.cache_path = Path(cache)
        self.batch_size, self.seed = whole(batch_size, "batch_size", 1), whole(seed, "seed", 0)
        if build is not None and not isinstance(build, Mapping):
            raise OptionError(f"build is a {type(build).__name__}; pass the arguments of prebake.build as a dict, "
                              "e.g. build={'steps': [prebake.steps.Resize(64)], 'workers': 4}")
        self.source, self.build_settings = source, dict(build or {})
        self.indices, self.transform = _check_indices(indices), function(transform, "transform")
        self.loader_options = _check_loader_options(loader)
        self._takes_generator = _takes_generator(transform)
        self._parts: dict[str, tuple[Any, Any]] | None = None
        self._train: TrainBatches | None = None
        self._resume: dict[str, Any] | None = None

    # -- Lightning hooks -------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Bake ``source`` into ``cache`` (Lightning calls this on one process per node)."""
        if self.source is not None:
            bake_here(self.source, self.cache_path, self.build_settings)

    def setup(self, stage: str | None = None) -> None:
        """Open the cache and find its splits (on every process)."""
        if self._parts is None:
            self._parts = open_parts(self.cache_path, self.indices)

    def train_dataloader(self) -> TrainBatches:
        if self._train is None:
            self._train = TrainBatches(self._loader("train"), self)
        if self._resume is not None:
            self._train.resume(self._resume)
            self._resume = None
        return self._train

    def val_dataloader(self) -> Any:
        return self._loader("val") if self._has("val") else []

    def test_dataloader(self) -> Any:
        return self._loader("test") if self._has("test") else []

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``transform`` on a training batch, now on the device, with that batch's generator."""
        trainer = getattr(self, "trainer", None)
        if self.transform is None or self._train is None or trainer is None or not trainer.training:
            return batch
        generator = self._train.next_generator()
        if self._takes_generator:
            return self.transform(batch, generator=generator)
        if hasattr(self.transform, "generator"):  # prebake.augment.batch_transform draws from its .generator
            self.transform.generator = generator
        return self.transform(batch)

    def state_dict(self) -> dict[str, Any]:
        """The training Loader's position on every rank (a collective under DDP: Lightning calls it on all)."""
        return {} if self._train is None else {"train": gathered(self._train.loader.state_dict())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training Loader where ``state_dict`` left it, at the next ``train_dataloader()``."""
        if state_dict.get("train") is None:
            return
        self._resume = state_dict["train"]
        if self._train is not None:
            self._train.resume(self._resume)
            self._resume = None

    # -- loaders ---------------------------------------------------------------------------

    def _has(self, role: str) -> bool:
        self.setup()
        assert self._parts is not None
        return role in self._parts

    def _loader(self, role: str) -> Any:
        from ..load.loader import Loader

        if not self._has(role):
            raise OptionError(f"{self.cache_path} has no {role} split (found: {', '.join(self._parts or {}) or 'none'}"
                              f"); name it {' or '.join(ROLES[role])} in the split caches or splits.json, or pass "
                              f"indices={{{role!r}: ...}}")
        assert self._parts is not None
        cache, indices = self._parts[role]
        trainer = getattr(self, "trainer", None)
        where = {} if trainer is None else {"rank": trainer.global_rank, "world_size": trainer.world_size,
                                            "device": trainer.strategy.root_device}
        options = dict(self.loader_options)
        if role != "train":
            options.pop("drop_last", None)  # every validation and test item counts
        return Loader(cache, self.batch_size, shuffle=role == "train", seed=self.seed, indices=indices,
                      **where, **options)


class TrainBatches:
    """The training Loader as Lightning iterates it: ``len``, and each ``iter`` starts the Trainer's
    epoch (from ``(seed, trainer.current_epoch)``), or the rest of a resumed one."""

    def __init__(self, loader: Any, module: CacheDataModule):
        self.loader, self._module = loader, module
        self._resumed = False
        self._pending: deque[tuple[int, int]] = deque()  # (epoch, batch) of batches handed out, not yet augmented

    def __len__(self) -> int:
        return len(self.loader)

    def resume(self, saved: Any) -> None:
        sampling = self.loader.sampling
        self.loader.load_state_dict(own(saved, sampling.rank, sampling.world_size, "CacheDataModule checkpoint"))
        self._resumed = True

    def __iter__(self) -> Iterator[Any]:
        return self._batches()  # decides the epoch at the first next(): Lightning also calls iter() just to check

    def _batches(self) -> Iterator[Any]:
        self._start()
        position = self.loader.state_dict()
        epoch, step = position["epoch"], position["batch"]
        for batch in self.loader:
            self._pending.append((epoch, step))
            step += 1
            yield batch

    def _start(self) -> None:
        """Put the Loader at the Trainer's epoch: its first batch, or where a resumed checkpoint left it."""
        trainer = getattr(self._module, "trainer", None)
        epoch = None if trainer is None else int(trainer.current_epoch)
        self._pending.clear()
        if self._resumed:
            self._resumed = False
            at = self.loader.state_dict()["epoch"]
            if epoch is not None and at != epoch:
                log.warning("the checkpoint's loader is in epoch %d, the Trainer resumes epoch %d: starting epoch %d "
                            "from its first batch", at, epoch, epoch)
                self.loader.set_epoch(epoch)
        elif epoch is not None:
            self.loader.set_epoch(epoch)

    def next_generator(self) -> Any:
        """The generator of the oldest training batch not yet augmented (Lightning transfers them in order)."""
        from ..load.loader import batch_generator

        epoch, step = self._pending.popleft()
        return batch_generator(self.loader.sampling, epoch, step, self.loader.device)


def bake_here(source: Any, out: Path, settings: Mapping[str, Any]) -> None:
    """:func:`prebake.build` in this process alone: Lightning runs ``prepare_data`` on one rank per node while
    the others wait at its barrier, so the build must not start a collective of its own (``build`` would)."""
    from ..bake.api import prepare
    from ..bake.build import build_all

    for report in build_all(*prepare(source, out, **settings), None):
        log.info("%s: %s (%d items)", report.out, report.action, report.num_items)


def open_parts(path: Path, indices: Mapping[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """``{role: (Cache, indices or None)}`` for the roles the cache at ``path`` has (see the module docstring)."""
    from ..cache.reader import open_cache
    from ..cache.splits import load_splits

    if indices is not None:
        cache = open_cache(path)
        return {role: (cache, value) for role, value in indices.items()}
    if (path / MANIFEST).is_file():
        cache = open_cache(path)
        if not (path / SPLITS).is_file():
            return {"train": (cache, None)}
        return {role: (cache, idx) for role, idx in _by_role(load_splits(cache), f"{path / SPLITS}").items()}
    found = {d.name: d for d in sorted(path.iterdir()) if (d / MANIFEST).is_file()} if path.is_dir() else {}
    if not found:
        return {"train": (open_cache(path), None)}  # raises CacheNotFoundError, saying what is there
    return {role: (open_cache(d), None) for role, d in _by_role(found, str(path)).items()}


def _by_role(named: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for role, names in ROLES.items():
        hits = [n for n in names if n in named]
        if len(hits) > 1:
            raise OptionError(f"{where} has the splits {' and '.join(hits)}, both of them {role} splits; keep one, or "
                              f"pass indices={{'{role}': ...}}")
        if hits:
            out[role] = named[hits[0]]
    if "train" not in out:
        raise OptionError(f"{where} has no train split (splits: {', '.join(named)}); name one 'train', or pass "
                          "indices={'train': ..., 'val': ...}")
    return out


def _check_indices(indices: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if indices is None:
        return None
    if not isinstance(indices, Mapping) or not indices or any(k not in ROLES for k in indices):
        raise OptionError(f"indices={indices!r}: pass a dict with the keys train, val and test (train required), "
                          "each the item indices or boolean mask of that split, e.g. indices={'train': tr, 'val': va}")
    if "train" not in indices:
        raise OptionError(f"indices has the keys {sorted(indices)} but no 'train': add indices['train']")
    return {k: np.asarray(v) for k, v in indices.items()}


_OWN = ("data", "batch_size", "shuffle", "seed", "indices", "rank", "world_size", "device", "transform")


def _check_loader_options(loader: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(loader or {})
    taken = sorted(k for k in options if k in _OWN)
    if taken:
        raise OptionError(f"loader={{{', '.join(repr(k) for k in taken)}: ...}}: CacheDataModule sets these itself; "
                          "pass batch_size=, seed=, indices= and transform= to CacheDataModule (the rank, world size "
                          "and device come from the Trainer)")
    return options


__all__: Sequence[str] = ("CacheDataModule", "TrainBatches")
