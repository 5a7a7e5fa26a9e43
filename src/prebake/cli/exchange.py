"""``prebake export`` (a cache as one HDF5 file, or a Hugging Face dataset directory) and ``prebake split``
(patient-level splits)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ForeignOutputError, OptionError
from ._echo import echo, echo_json


def export(args: argparse.Namespace) -> int:
    if getattr(args, "format", "hdf5") == "hf":
        return _export_hf(args)
    from tqdm import tqdm

    from ..cache.export import export_hdf5
    from .caches import size

    bar = tqdm(desc=f"export {args.out}", unit="B", unit_scale=True, leave=False,
               disable=True if args.quiet or args.json else None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        out = export_hdf5(args.path, args.out, None if args.compression == "none" else args.compression,
                          args.level, overwrite=args.force, progress=progress)
    finally:
        bar.close()
    if args.json:
        echo_json({"cache": args.path, "out": str(out), "bytes": out.stat().st_size})
    else:
        echo(f"exported {args.path} -> {out} ({size(out.stat().st_size)})")
    return 0


def _export_hf(args: argparse.Namespace) -> int:
    """The cache as a ``datasets`` directory (``Dataset.save_to_disk``; ``datasets.load_from_disk`` reads it),
    written beside OUT and renamed into place, so OUT is whole or absent. OUT must not exist: prebake cannot
    prove it wrote a datasets directory, so it never replaces one (--force does not widen that)."""
    if args.compression != "none" or args.level is not None:
        raise OptionError("--compression/--level compress an HDF5 export; --format hf writes Arrow files as datasets "
                          "does: drop the flag, or export with --format hdf5")
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        raise ForeignOutputError(f"{out} exists; 'prebake export --format hf' writes a new directory and never "
                                 "replaces one: give another OUT, or remove it yourself")
    from ..integrations.hf import to_hf

    parent = out.absolute().parent
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{out.name}.export-") as work:
        staged = Path(work) / "dataset"
        to_hf(args.path, path=Path(work) / "rows.arrow").save_to_disk(str(staged))
        if out.exists() or out.is_symlink():  # appeared while we wrote: still never replaced
            raise ForeignOutputError(f"{out} appeared during the export; it was left as it is")
        os.rename(staged, out)
    if args.json:
        n = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        echo_json({"cache": args.path, "out": str(out), "bytes": n, "format": "hf"})
    else:
        echo(f"exported {args.path} -> {out} (a datasets directory: datasets.load_from_disk({str(out)!r}))")
    return 0


def split(args: argparse.Namespace) -> int:
    from ..cache.splits import SPLITS
    from ..cache.splits import split as split_cache

    parts = split_cache(args.path, args.by, parse_fractions(args.fractions), args.seed, args.stratify, save=True)
    if args.json:
        echo_json({name: len(v) for name, v in parts.items()})
        return 0
    total = sum(len(v) for v in parts.values())
    for name, idx in parts.items():
        echo(f"{name:<8} {len(idx):>8,} items  {len(idx) / max(total, 1):6.1%}")
    echo(f"saved to {args.path}/{SPLITS}; no {args.by} is in two splits")
    return 0


def parse_fractions(items: list[str]) -> dict[str, Any]:
    """``["train=0.8", "val=0.2"]`` -> ``{"train": 0.8, "val": 0.2}``."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise OptionError(f"--fractions takes NAME=FRACTION pairs such as train=0.8, got {item!r}")
    return out
