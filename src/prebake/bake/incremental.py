"""Incremental rebuilds: copy the rows of unchanged items from the committed cache.

A source that can name each item's input (:meth:`Source.item_identities`: for an
image folder, the path, size, mtime and label of the file) lets a rebuild skip
the work for every item whose identity is already in the old cache. The old
cache's rows are reused only when everything else that shapes a row is equal
(format version, transforms and their code, options, source parameters, column
specs) and its column files still match their checksums.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..cache.files import read_manifest
from ..cache.format import ITEM_IDS, MANIFEST, ColumnSpec, column_specs, committed_files
from ..cache.spans import member_checksum
from ..errors import CacheCorruptError, FormatError

log = logging.getLogger("prebake")


def hash_identities(identities: Sequence[str] | None) -> np.ndarray | None:
    """uint64 xxh3 of each identity string (None when the source has none)."""
    if identities is None:
        return None
    return np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) for s in identities), dtype=np.uint64,
                       count=len(identities))


def reuse_plan(out: Path, fp: dict[str, Any], ids: np.ndarray | None) -> tuple[np.ndarray, list[ColumnSpec]] | None:
    """``(reuse, specs)``: for each new item the row of the old cache at ``out`` that holds it
    already (or -1), and the old cache's column specs, which the rebuild keeps.

    None when nothing can be reused.
    """
    if ids is None or not (out / MANIFEST).is_file():
        return None
    try:
        old = read_manifest(out)
    except (FormatError, ValueError, OSError):
        return None
    if not old.get("item_ids") or not _same_but_files(old["fingerprint"]["inputs"], fp["inputs"]):
        return None
    promoted = sorted(n for n, c in old.get("columns", {}).items() if (c.get("schema") or {}).get("rule") == "promoted")
    if promoted:  # a copied row holds the promoted dtype, not its item's own: the set of items left decides again
        log.info("%s: baking every item again: column %s was promoted from several dtypes", out, ", ".join(promoted))
        return None
    hollow = sorted(n for n, c in old.get("columns", {}).items()
                    if set((c.get("schema") or {}).get("empty") or {}) - {c.get("dtype")})
    if hollow:  # likewise an item with no elements: copied, it has the column's dtype, which a fresh build of the
        # items left without the ones that decided it would not give it (only when every item is empty do they vote)
        log.info("%s: baking every item again: column %s holds items with no elements of another dtype", out,
                 ", ".join(hollow))
        return None
    if not _intact(out, old):
        return None
    rows = {int(h): r for r, h in enumerate(np.load(out / ITEM_IDS, allow_pickle=False))}
    reuse = np.array([rows.get(int(h), -1) for h in ids], dtype=np.int64)
    return (reuse, list(column_specs(old).values())) if (reuse >= 0).any() else None


def _same_but_files(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal inputs apart from the source's file table (which is what changed) and the files the bake
    read (known after it: the build checks them, identity/reads.py)."""
    def strip(inputs: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in inputs.items() if k != "reads"}
        return {**kept, "source": {k: v for k, v in inputs.get("source", {}).items() if k != "files"}}

    return strip(old) == strip(new)


def _checksum(out: Path, manifest: dict[str, Any], name: str, meta: dict[str, Any]) -> str | None:
    """The file's checksum as its manifest entry takes it (cache/spans.py), None when its offsets cannot cut it."""
    try:
        return member_checksum(out, manifest, name, meta)
    except CacheCorruptError:
        return None


def _intact(out: Path, manifest: dict[str, Any]) -> bool:
    """Reused rows must be right: check every file of the old cache against its checksum."""
    for name, meta in committed_files(manifest).items():
        f = out / name
        if not f.is_file() or f.stat().st_size != meta["bytes"] or \
                _checksum(out, manifest, name, meta) != meta["xxh3_64"]:
            log.warning("not reusing rows of %s: %s does not match its checksum", out, f)
            return False
    return True
