"""Group-aware splits: every patient's items in one split, deterministic for a seed.

>>> import numpy as np
>>> groups = np.array(["p1", "p1", "p2", "p3", "p3", "p3", "p4", "p5"])
>>> parts = split_groups(groups, {"train": 0.75, "test": 0.25}, seed=0)
>>> sorted(parts), sum(len(v) for v in parts.values())
(['test', 'train'], 8)
>>> set(groups[parts["train"]]) & set(groups[parts["test"]])
set()

How: the distinct groups are put in a seeded random order, then sorted by size (largest
first, the random order breaking ties), and each group goes to the split furthest below
its target (``fraction * items``). A split only takes a group while it is below target,
so no split ends more than one group (the largest) away from its target. With
``stratify`` the same runs once per label value, so each split keeps the label mix; a
group's label is its most common one. The assignment depends on the set of groups and
the seed, not on the order of the rows.

:func:`split` reads the columns of a committed cache with numpy (no torch), and
``save=True`` writes the result beside the columns as ``splits.json``, which
:func:`load_splits` reads back: ``prebake.Loader(cache, indices=splits["train"])``.

A rebuild carries ``splits.json`` over by item key (:func:`carry_splits`, through the keys
the cache records in ``_item_keys.json``): the same items stay in the same split at their
new rows. When items it names are gone, the rebuild refuses, unless ``--force`` (which
drops the file with a WARNING): a held-out split is never lost silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheNotFoundError, OptionError, PrebakeError, SplitsError, opt
from .files import file_checksum, read_manifest, write_json
from .format import ITEM_KEYS, MANIFEST, SPLITS, column_specs

log = logging.getLogger("prebake")

_TOLERANCE = 1e-6


def split(cache: Any, by: str, fractions: Mapping[str, float], seed: int = 0, stratify: str | None = None,
          save: bool = False) -> dict[str, np.ndarray]:
    """Split the items of ``cache`` so that no value of column ``by`` is in two splits.

    Parameters:
        cache: a :class:`~prebake.Cache` or the path of one.
        by: the column that names each item's group, such as ``"patient_id"`` (strings or integers).
        fractions: ``{split name: fraction}``, summing to 1, e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``.
        seed: the seed of the group order; equal seeds give equal splits.
        stratify: a column (usually ``"label"``) whose mix each split keeps.
        save: also write the splits to ``splits.json`` in the cache directory (see :func:`load_splits`).

    Returns ``{split name: sorted int64 item indices}``. Each split holds within one group
    (the largest) of ``fraction * items`` (per label value with ``stratify``).
    """
    path = Path(getattr(cache, "path", cache))
    groups = read_column(path, by)
    strata = read_column(path, stratify) if stratify is not None else None
    parts = split_groups(groups, fractions, seed, strata)
    if save:
        save_splits(path, parts, {"by": by, "fractions": dict(fractions), "seed": seed, "stratify": stratify})
    return parts


def split_groups(groups: np.ndarray, fractions: Mapping[str, float], seed: int = 0,
                 strata: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The splitting itself, on a group value per item (and optionally a stratum per item)."""
    names, targets = _check_fractions(fractions)
    groups = np.asarray(groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.random.default_rng(seed).permutation(len(keys))
    sizes = np.bincount(inverse, minlength=len(keys))
    assign = np.full(len(keys), -1, dtype=np.int64)
    if strata is None:
        _assign(order, sizes, targets, assign)
    else:
        group_stratum = _majority(inverse, np.unique(np.asarray(strata), return_inverse=True)[1].reshape(-1), len(keys))
        for s in np.unique(group_stratum):
            _assign(order[group_stratum[order] == s], sizes, targets, assign)
    item_split = assign[inverse]
    return {name: np.flatnonzero(item_split == k).astype(np.int64) for k, name in enumerate(names)}


def _assign(order: np.ndarray, sizes: np.ndarray, targets: np.ndarray, assign: np.ndarray) -> None:
    """Largest groups first, each to the split furthest below its target."""
    ranked = order[np.argsort(-sizes[order], kind="stable")]
    want = targets * sizes[ranked].sum()
    have = np.zeros(len(targets))
    for g in ranked:
        k = int(np.argmax(want - have))
        assign[g] = k
        have[k] += sizes[g]


def _majority(group_of: np.ndarray, stratum_of: np.ndarray, num_groups: int) -> np.ndarray:
    counts = np.zeros((num_groups, int(stratum_of.max(initial=0)) + 1), dtype=np.int64)
    np.add.at(counts, (group_of, stratum_of), 1)
    return counts.argmax(axis=1)


def _check_fractions(fractions: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    if not fractions:
        raise OptionError(f"{opt('fractions')} is empty; give e.g. train=0.8 val=0.1 test=0.1")
    names = list(fractions)
    values = np.array([float(fractions[n]) for n in names])
    if (values < 0).any() or abs(values.sum() - 1) > _TOLERANCE:
        shown = ", ".join(f"{n}={v:g}" for n, v in zip(names, values))
        raise OptionError(f"split fractions {shown} must be >= 0 and sum to 1 (they sum to {values.sum():g}); "
                          "for example train=0.8 val=0.1 test=0.1")
    return names, values


def read_column(path: Path, name: str) -> np.ndarray:
    """A fixed column of the committed cache at ``path`` as an in-memory array (numpy only)."""
    if not (path / MANIFEST).is_file():
        raise CacheNotFoundError(f"no prebake cache at {path} (no {MANIFEST})")
    specs = column_specs(read_manifest(path))
    spec = specs.get(name)
    if spec is None and not specs:  # every item of its build was skipped (allow_empty): nothing to split
        raise OptionError(f"{path} holds no items and no columns (every item of its build was skipped), so there is "
                          f"nothing to split by {name!r}; fix the inputs and build it again")
    if spec is None:
        raise OptionError(f"{path} has no column {name!r} to split by; its columns are {sorted(specs)} "
                          "(keep a CSV column with --keep-column when you build)")
    if spec.ragged or spec.shape != ():
        raise OptionError(f"{path}: column {name!r} holds {'ragged' if spec.ragged else spec.shape} values; "
                          "splits need one value per item")
    return np.array(np.load(path / spec.files[0], mmap_mode="r", allow_pickle=False))


def save_splits(path: str | os.PathLike[str], parts: Mapping[str, np.ndarray], params: dict[str, Any]) -> Path:
    """Write ``parts`` (and how they were made) to ``splits.json`` in the cache at ``path``."""
    path = Path(path)
    digest = read_manifest(path).get("fingerprint", {}).get("digest")
    target = path / SPLITS
    write_json(target, {**params, "cache_digest": digest,
                        "splits": {name: np.asarray(v).tolist() for name, v in parts.items()}})
    return target


def load_splits(cache: Any) -> dict[str, np.ndarray]:
    """The splits saved in the cache at ``cache`` (a Cache or a path) by ``split(..., save=True)``
    or ``prebake split``; an error when there are none, or the cache was rebuilt since."""
    path = Path(getattr(cache, "path", cache))
    target = path / SPLITS
    try:
        saved = json.loads(target.read_text())
    except FileNotFoundError:
        raise CacheNotFoundError(f"{target} does not exist: make the splits with 'prebake split {path} --by COLUMN' "
                                 "or prebake.split(cache, by=..., save=True)") from None
    digest = read_manifest(path).get("fingerprint", {}).get("digest")
    if saved.get("cache_digest") != digest:
        raise CacheNotFoundError(f"{target} was made for another build of {path}; run the split again")
    return {name: np.asarray(v, dtype=np.int64) for name, v in saved["splits"].items()}


# -- carrying splits.json over a rebuild ---------------------------------------------------------

def row_keys(path: Path, manifest: dict[str, Any]) -> list[str] | None:
    """The source key of every row of the cache at ``path`` (``_item_keys.json``, checked against
    its manifest entry), or None when the cache does not record them intact."""
    meta = manifest.get("item_keys")
    target = path / ITEM_KEYS
    try:
        if not meta or target.stat().st_size != meta["bytes"] or file_checksum(target) != meta["xxh3_64"]:
            return None
        keys = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(keys, list) and len(keys) == manifest["num_items"] and all(isinstance(k, str) for k in keys)
    return keys if ok else None


def _saved_keys(cache: Path) -> tuple[dict[str, Any], dict[str, list[str]]] | None:
    """``(splits.json, {split: item keys})`` of the cache at ``cache``; None when it has no splits.json.

    A SplitsError when the keys cannot be recovered (another build's splits, an older cache)."""
    target = cache / SPLITS
    if not target.is_file():
        return None
    try:
        saved = json.loads(target.read_text(encoding="utf-8"))
        manifest = read_manifest(cache)
        parts = {str(n): [int(i) for i in v] for n, v in saved["splits"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, PrebakeError) as e:
        raise SplitsError(f"{target} cannot be read ({type(e).__name__}: {e}), so a rebuild cannot carry it "
                          "over") from None
    if saved.get("cache_digest") != manifest["fingerprint"]["digest"]:
        raise SplitsError(f"{target} was made for an earlier build of {cache}, so its row numbers name no items "
                          "of this one")
    keys = row_keys(cache, manifest)
    if keys is None:
        raise SplitsError(f"{target} names items by row, and {cache} (prebake {manifest['prebake_version']}) "
                          "does not record which item each row holds, so a rebuild cannot carry it over")
    bad = [i for rows in parts.values() for i in rows if not 0 <= i < len(keys)]
    if bad:
        raise SplitsError(f"{target} names rows {bad[:5]} outside 0..{len(keys) - 1}")
    return saved, {name: [keys[i] for i in rows] for name, rows in parts.items()}


def _refuse_or_drop(cache: Path, problem: str, force: bool) -> None:
    keep = f"copy {cache / SPLITS} elsewhere first to keep its index lists"
    if not force:
        raise SplitsError(f"{problem}; a rebuild would lose that split: restore those items, or rebuild with "
                          f"{opt('force')}, which drops {SPLITS} ({keep}), then run 'prebake split' again")
    log.warning("%s; dropping %s of the rebuilt cache (%s given); run 'prebake split' again", problem,
                cache / SPLITS, opt("force"))


def check_splits(cache: Path, source_keys: Sequence[str], force: bool = False) -> None:
    """Before a rebuild of ``cache``: refuse (unless ``force``) when its splits.json names items that
    the source no longer has, or cannot be mapped to keys at all (``force``: the commit drops it)."""
    if force:
        return None
    try:
        found = _saved_keys(cache)
    except SplitsError as e:
        return _refuse_or_drop(cache, str(e), force)
    if found is None:
        return None
    have = set(source_keys)
    gone = sorted({k for keys in found[1].values() for k in keys} - have)
    if gone:
        shown = ", ".join(gone[:5]) + (", ..." if len(gone) > 5 else "")
        _refuse_or_drop(cache, f"{cache / SPLITS} names {len(gone):,} item{'s' if len(gone) > 1 else ''} that "
                        f"the source no longer has ({shown})", force)
    return None


def carry_splits(old: Path, new: Path, force: bool = False) -> None:
    """Write the splits.json of the cache at ``old`` into the sealed cache at ``new``, each item at
    its new row (matched by key). Refuses (unless ``force``: then dropped with a WARNING) when
    items it names are not in ``new``."""
    try:
        found = _saved_keys(old)
    except SplitsError as e:
        return _refuse_or_drop(old, str(e), force)
    if found is None:
        return None
    saved, parts = found
    manifest = read_manifest(new)
    rows = {k: i for i, k in enumerate(row_keys(new, manifest) or [])}
    gone = sorted({k for keys in parts.values() for k in keys if k not in rows})
    if gone:
        shown = ", ".join(gone[:5]) + (", ..." if len(gone) > 5 else "")
        return _refuse_or_drop(old, f"{old / SPLITS} names {len(gone):,} item{'s' if len(gone) > 1 else ''} "
                               f"that the rebuilt cache does not hold (skipped as bad, or gone: {shown})", force)
    carried = {name: sorted(rows[k] for k in keys) for name, keys in parts.items()}
    write_json(new / SPLITS, {**saved, "cache_digest": manifest["fingerprint"]["digest"], "splits": carried})
    log.info("%s: carried %s over to the new rows", old, SPLITS)
    return None
