"""The ``prebake`` command line. Arguments are parsed here, once, and passed down as values."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ._version import __version__
from .bake.build import BuildOptions, BuildReport, build_all, resolve_sources, select_split
from .bake.freshness import source_changes
from .bake.plugins import load_object
from .bake.sources import KINDS, DatasetSource, Source, SourceOptions
from .cache import inventory
from .cache.files import remove_paths
from .cache.format import MANIFEST
from .cache.verify import VerifyReport, verify
from .errors import PrebakeError, StrictModeError

_SHOW_SKIPPED = 10


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prebake", description="Bake preprocessing into a verified, memory-mapped cache.")
    p.add_argument("--version", action="version", version=f"prebake {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="bake a source into a cache", description="Bake SOURCE into OUT "
                       "(OUT/<split> for sources with splits). With --dataset, give only OUT.")
    b.add_argument("paths", nargs="+", metavar="SOURCE OUT")
    b.add_argument("--image-size", type=int, metavar="S", help="resize images to S x S (antialiased)")
    b.add_argument("--shorter-side", type=int, metavar="S", help="resize the shorter image side to S")
    b.add_argument("--crop", type=int, metavar="S", help="center crop S x S after the resize")
    b.add_argument("--sample-rate", type=int, metavar="HZ", help="resample audio signals to HZ (needs scipy)")
    b.add_argument("--bandpass", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="band-pass audio signals between LOW and HIGH Hz (needs scipy)")
    b.add_argument("--workers", type=int, metavar="N", help="worker processes (default: all cores)")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    b.add_argument("--strict", action="store_true", help="fail on the first bad item instead of skipping it")
    b.add_argument("--content-hash", action="store_true", help="identify source files by their bytes (one read "
                   "of every file per build), not by size, mtime and ctime")
    b.add_argument("--kind", choices=KINDS, help="source kind (default: detected from the path)")
    b.add_argument("--split", help="build only this split (for example train)")
    b.add_argument("--transform", metavar="MODULE:FUNC", help="per-item function item -> item, runs last")
    b.add_argument("--dataset", metavar="MODULE:FUNC", help="function returning a map-style dataset to bake")
    b.add_argument("--ragged", action="append", default=[], metavar="COLUMN", help="column whose length varies")
    b.add_argument("--path-column", help="CSV: column holding the file paths")
    b.add_argument("--label-column", action="append", default=[], metavar="COLUMN", help="CSV: label column(s)")
    b.add_argument("--base-dir", help="CSV: directory the paths are relative to (default: the CSV's)")
    b.add_argument("--lock-timeout", type=float, metavar="SEC", help="give up waiting for another build after SEC")
    _common(b)

    for name, help_ in (("verify", "check every byte of a cache (or every cache under a directory)"),
                        ("info", "describe a cache (or every cache under a directory)")):
        c = sub.add_parser(name, help=help_, epilog=_VERIFY_EXIT if name == "verify" else None)
        c.add_argument("path", metavar="OUT")
        _common(c)
    c = sub.add_parser("ls", help="list caches under ROOT with their state")
    c.add_argument("path", metavar="ROOT", nargs="?", default=".")
    _common(c)
    c = sub.add_parser("clear", help="delete a cache, or every cache under ROOT")
    c.add_argument("path", metavar="OUT|ROOT")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask")
    _common(c)
    _bench_parser(sub)
    d = sub.add_parser("demo", help="bake a small synthetic CIFAR-10 (or --source) at 32 and 224 px and verify it")
    d.add_argument("--source", metavar="DIR", help="a real CIFAR-10 python-version download to use instead")
    d.add_argument("--workdir", default="prebake-demo", help="where data and caches go (default: ./prebake-demo)")
    d.add_argument("--workers", type=int, metavar="N")
    d.add_argument("--bench-seconds", type=float, default=1.0, metavar="T",
                   help="seconds per pipeline in the closing loader comparison (0 skips it)")
    _common(d)
    return p


_VERIFY_EXIT = ("exit status: 0 every file was checked and is intact; 1 problems found (a file or the "
                "manifest does not match, the cache must be rebuilt); 2 could not check (no cache at OUT, a "
                "file that cannot be read, bad arguments)")


def _bench_parser(sub: Any) -> None:
    c = sub.add_parser("bench", help="samples/s of prebake.Loader vs the seed pipelines and peer libraries",
                       description="Time every pipeline on the same cache, in one run, all producing "
                       "normalised float32 N x 3 x S x S batches with labels on the device.")
    c.add_argument("path", metavar="CACHE", help="a cache with uint8 'image' (3 x H x W) and 'label' columns")
    c.add_argument("--batch-size", type=int, default=256, metavar="B")
    c.add_argument("--image-size", type=int, metavar="S", help="output size (default: the cache's); "
                   "a different size is resized on the device")
    c.add_argument("--device", metavar="D", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    c.add_argument("--seconds", type=float, default=3.0, metavar="T", help="timed seconds per pipeline (default 3)")
    c.add_argument("--limit", type=int, metavar="N", help="use the first N items (default: all, or fewer to "
                   "keep the seed's float32 file under 4 GiB)")
    c.add_argument("--workers", type=int, default=4, metavar="W", help="DataLoader workers (default 4, the seed's)")
    c.add_argument("--only", action="append", metavar="KEY", help="run only these pipelines (repeatable): "
                   "prebake, prebake-ram, prebake-device, dataloader, seed-offline, seed-online, hf-datasets, litdata")
    c.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    c.add_argument("--workdir", metavar="DIR", help="keep the seed file and peer formats here (default: a temp dir)")
    c.add_argument("--out", metavar="FILE.json", help="also write the JSON result to FILE.json")
    c.add_argument("--plot", metavar="OUT.png", help="write a bar chart (needs matplotlib)")
    _common(c)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors on stderr")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet or args.json else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "build": _cmd_build, "verify": _cmd_verify, "info": _cmd_info, "ls": _cmd_ls,
        "clear": _cmd_clear, "demo": _cmd_demo, "bench": _cmd_bench,
    }
    try:
        return commands[args.command](args)
    except StrictModeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (PrebakeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


# -- build --------------------------------------------------------------------------------------


class _Bars:
    """One tqdm bar per split, on stderr; silent when stderr is not a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars: dict[str, tqdm] = {}

    def __call__(self, split: str, done: int, total: int) -> None:
        bar = self.bars.get(split)
        if bar is None:
            bar = self.bars[split] = tqdm(total=total, desc=split or "build", unit="item", unit_scale=True,
                                          disable=True if self.quiet else None, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _cmd_build(args: argparse.Namespace) -> int:
    if args.dataset:
        if len(args.paths) != 1:
            raise PrebakeError("with --dataset give only OUT: prebake build --dataset MODULE:FUNC OUT")
        sources: dict[str, Source] = {"": DatasetSource.from_spec(args.dataset)}
    else:
        if len(args.paths) != 2:
            raise PrebakeError("give SOURCE and OUT: prebake build SOURCE OUT")
        opts = SourceOptions(args.path_column, tuple(args.label_column), args.base_dir)
        sources = resolve_sources(args.paths[0], kind=args.kind, options=opts)
    sources = select_split(sources, args.split)
    options = BuildOptions(
        image_size=args.image_size, shorter_side=args.shorter_side, crop=args.crop,
        sample_rate=args.sample_rate, bandpass=tuple(args.bandpass) if args.bandpass else None,
        transform=load_object(args.transform) if args.transform else None, workers=args.workers,
        force=args.force, strict=args.strict, ragged=tuple(args.ragged), lock_timeout=args.lock_timeout,
        content_hash=args.content_hash,
    )
    bars = _Bars(args.quiet or args.json)
    try:
        reports = build_all(sources, args.paths[-1], options, bars)
    finally:
        bars.close()
    if args.json:
        print(json.dumps([_report_json(r) for r in reports], indent=1))
    else:
        for r in reports:
            _print_report(r)
    return 0


def _report_json(r: BuildReport) -> dict[str, Any]:
    return {"split": r.split, "out": str(r.out), "action": r.action, "reasons": r.reasons,
            "num_items": r.num_items, "reused": r.reused, "skipped": r.skipped, "seconds": round(r.seconds, 3)}


def _print_report(r: BuildReport) -> None:
    name = f"{r.split}: " if r.split else ""
    rate = f" ({r.num_items / r.seconds:,.0f} items/s)" if r.action != "up to date" and r.seconds > 0 else ""
    print(f"{name}{r.action}: {r.num_items:,} items in {r.seconds:.1f} s{rate} -> {r.out}")
    if r.reasons and r.action != "built":
        print(f"  because: {'; '.join(r.reasons)}")
    if r.reused:
        print(f"  {r.reused:,} unchanged items copied from the previous cache, {r.num_items - r.reused:,} baked")
    if r.skipped and r.action == "up to date":
        print(f"  {len(r.skipped)} bad items were skipped when it was built (see 'skipped' in {r.out / MANIFEST})")
    elif r.skipped:
        print(f"  skipped {len(r.skipped)} bad item{'s' if len(r.skipped) != 1 else ''}:")
        for reason, n in Counter(_reason_kind(s["reason"]) for s in r.skipped).most_common():
            print(f"    {n:>6} x {reason}")
        for s in r.skipped[:_SHOW_SKIPPED]:
            print(f"    {s['key']}: {s['reason']}")
        if len(r.skipped) > _SHOW_SKIPPED:
            print(f"    ... and {len(r.skipped) - _SHOW_SKIPPED} more (see 'skipped' in {r.out / MANIFEST})")


def _reason_kind(reason: str) -> str:
    """'truncated image: image file is truncated (...)' -> 'truncated image', for the summary."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()


# -- verify / info / ls / clear -------------------------------------------------------------------


def _targets(path: str) -> list[Path]:
    p = Path(path)
    if (p / MANIFEST).is_file():
        return [p]
    if not p.exists():
        raise PrebakeError(f"{p} does not exist; give a cache directory, or a directory that holds caches")
    found = [Path(e.path) for e in inventory.find_caches(p) if e.state != "partial"]
    if not found:
        raise PrebakeError(f"no prebake cache at or under {p}; build one with 'prebake build SOURCE {p}'")
    return found


def _cmd_verify(args: argparse.Namespace) -> int:
    reports: list[VerifyReport] = []
    for target in _targets(args.path):
        bar = tqdm(desc=f"verify {target.name}", unit="B", unit_scale=True, leave=False,
                   disable=True if args.quiet or args.json else None)
        reports.append(verify(target, _byte_progress(bar)))
        bar.close()
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=1))
    else:
        for r in reports:
            status = "ok" if r.ok else f"FAILED ({len(r.problems)} problem{'s' if len(r.problems) != 1 else ''})"
            status = "NOT CHECKED" if r.unchecked and not r.problems else status
            print(f"{r.path}: {status} — {r.files_checked} files, {r.bytes_checked:,} bytes checked")
            for msg in r.problems:
                print(f"  problem: {msg}")
            for msg in r.unchecked:
                print(f"  not checked: {msg}")
            for msg in r.warnings:
                print(f"  warning: {msg}")
    if any(r.problems for r in reports):
        return 1
    return 2 if any(r.unchecked for r in reports) else 0


def _byte_progress(bar: tqdm) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def _cmd_info(args: argparse.Namespace) -> int:
    infos = [inventory.info(t, source_changes) for t in _targets(args.path)]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=1))
        return 0
    for i in infos:
        print(f"{i['path']}  ({i['state']})")
        print(f"  items      {i['num_items']:,}   on disk {_size(i['bytes'])}   skipped {i['skipped']}")
        for name, c in i["columns"].items():
            print(f"  column     {name:<12} {c['dtype']:<5} {c['shape']}{'  ragged' if c['ragged'] else ''}")
        if i["classes"]:
            shown = ", ".join(i["classes"][:10]) + (", ..." if len(i["classes"]) > 10 else "")
            print(f"  classes    {len(i['classes'])}: {shown}")
        print(f"  source     {i['source'].get('kind', '?')} {i['source'].get('root', '')}")
        steps = ", ".join(t["name"] + ("(" + str(t.get("size")) + ")" if "size" in t else "") for t in i["transforms"])
        print(f"  transforms {steps or 'none'}")
        print(f"  made       {i['created']} by prebake {i['prebake_version']}, fingerprint {i['fingerprint']}")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    entries = inventory.find_caches(args.path, source_changes)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return 0
    if not entries:
        print(f"no caches under {args.path}")
    for e in entries:
        items = f"{e.items:,}" if e.items is not None else "-"
        print(f"{e.state:<10} {items:>12} items {_size(e.bytes):>10}  {e.path}")
        for reason in e.reasons:
            print(f"{'':<10} {reason}")
        for note in e.notes:
            print(f"{'':<10} note: {note}")
    return 0


def _cmd_clear(args: argparse.Namespace) -> int:
    targets = inventory.clear_targets(args.path)
    if not targets:
        print(f"nothing to clear under {args.path}")
        return 0
    if not args.yes:
        print("will delete:\n" + "\n".join(f"  {t}" for t in targets))
        if not sys.stdin.isatty():
            raise PrebakeError("not a terminal, so cannot ask; pass --yes to delete without asking")
        if input("delete these? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    remove_paths(targets)
    if args.json:
        print(json.dumps({"deleted": [str(t) for t in targets]}))
    else:
        print(f"deleted {len(targets)} path{'s' if len(targets) != 1 else ''}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(Path(args.workdir), source=Path(args.source) if args.source else None,
                      workers=args.workers, progress=_Bars(args.quiet or args.json),
                      bench_seconds=args.bench_seconds)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print("\n".join(result["lines"]))
    return 0 if result["ok"] else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from .measure.bench import BenchOptions, run_bench
    from .measure.bench.report import plot, pyplot, table

    if args.plot:
        pyplot()  # fail before the run, not after it
    opts = BenchOptions(batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                        seconds=args.seconds, limit=args.limit, workers=args.workers, only=args.only,
                        peers=not args.no_peers, workdir=Path(args.workdir) if args.workdir else None)
    quiet = args.quiet or args.json
    result = run_bench(args.path, opts, progress=None if quiet else lambda line: print(line, file=sys.stderr))
    if args.out:
        Path(args.out).write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    if args.plot:
        plot(result, Path(args.plot))
    print(json.dumps(result.as_dict(), indent=1) if args.json else "\n".join(table(result)))
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


if __name__ == "__main__":
    sys.exit(main())
