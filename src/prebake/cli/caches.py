"""``prebake verify``, ``info``, ``ls`` and ``clear``: commands over caches that already exist (no torch)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cache import inventory
from ..cache.format import MANIFEST, describe_column
from ..errors import PrebakeError
from ._echo import echo, echo_json


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


def _bar(desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(desc=desc, unit="B", unit_scale=True, leave=False, disable=True if quiet else None)


def verify(args: argparse.Namespace) -> int:
    from ..cache.verify import VerifyReport
    from ..cache.verify import verify as verify_cache

    reports: list[VerifyReport] = []
    for target in _targets(args.path):
        bar = _bar(f"verify {target.name}", args.quiet or args.json)
        reports.append(verify_cache(target, _byte_progress(bar)))
        bar.close()
    if args.json:
        echo_json([r.to_json() for r in reports], indent=1)
    else:
        for r in reports:
            status = "ok" if r.ok else f"FAILED ({len(r.problems)} problem{'s' if len(r.problems) != 1 else ''})"
            status = "NOT CHECKED" if r.unchecked and not r.problems else status
            echo(f"{r.path}: {status} — {r.files_checked} files, {r.bytes_checked:,} bytes checked")
            for msg in r.problems:
                echo(f"  problem: {msg}")
            for msg in r.unchecked:
                echo(f"  not checked: {msg}")
            for msg in r.warnings:
                echo(f"  warning: {msg}")
    if any(r.problems for r in reports):
        return 1
    return 2 if any(r.unchecked for r in reports) else 0


def _byte_progress(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def _staleness() -> Callable[[dict[str, Any]], list[str]]:
    from ..bake.freshness import rebuild_reasons

    return rebuild_reasons


def info(args: argparse.Namespace) -> int:
    infos = [inventory.info(t, _staleness()) for t in _targets(args.path)]
    if args.json:
        echo_json(infos if len(infos) > 1 else infos[0], indent=1)
        return 0
    for i in infos:
        _print_info(i)
    return 0


def _print_info(i: dict[str, Any]) -> None:
    echo(f"{i['path']}  ({i['state']})")
    for reason in i.get("reasons", []):
        echo(f"  stale      {reason}")
    echo(f"  items      {i['num_items']:,}   on disk {size(i['bytes'])}   skipped {i['skipped']}")
    for name, c in i["columns"].items():
        echo(f"  column     {name:<12} {describe_column(c)}")  # layout, varying axes, shape range, dtype and why
    classes = i["classes"] or []
    hist = i["stats"].get("label_histogram") or {}
    if classes:
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        echo(f"  classes    {len(classes)}: {shown}")
    if hist:
        def name(k: str) -> str:
            return classes[int(k)] if k.isdigit() and int(k) < len(classes) else k

        counts = ", ".join(f"{name(k)} {v:,}" for k, v in list(hist.items())[:10])
        echo(f"  labels     {counts}{', ...' if len(hist) > 10 else ''}")
    echo(f"  source     {i['source'].get('kind', '?')} {i['source'].get('root', '')}")
    echo(f"  transforms {', '.join(map(_step, i['transforms'])) or 'none'}")
    echo(f"  made       {i['created']} by prebake {i['prebake_version']}, fingerprint {i['fingerprint']}")


def _step(t: dict[str, Any]) -> str:
    """'Resize(size=224)', 'BandPass(low=25.0, high=400.0, order=4)', 'user(mymod:crop)'."""
    if t["name"] == "user":
        return f"user({t.get('function', '?')})"
    if isinstance(t.get("transforms"), list):  # MonaiTransforms: its transforms' classes, not every attribute
        return f"{t['name']}({', '.join(str(x.get('class')).rpartition('.')[2] for x in t['transforms'])})"
    params = ", ".join(f"{k}={v}" for k, v in t.items() if k != "name" and v is not False)
    return f"{t['name']}({params})" if params else t["name"]


def ls(args: argparse.Namespace) -> int:
    entries = inventory.find_caches(args.path, _staleness())
    if args.json:
        echo_json([e.to_json() for e in entries], indent=1)
        return 0
    if not entries:
        echo(f"no caches under {args.path}")
    for e in entries:
        items = f"{e.items:,}" if e.items is not None else "-"
        echo(f"{e.state:<10} {items:>12} items {size(e.bytes):>10}  {e.path}")
        for reason in e.reasons:
            echo(f"{'':<10} {reason}")
        for note in e.notes:
            echo(f"{'':<10} note: {note}")
    return 0


def clear(args: argparse.Namespace) -> int:
    plan = inventory.clear_plan(args.path)
    if not args.json:
        for p, why in plan.skipped:
            echo(f"left alone: {p}\n  {why}")
    if not plan.delete:
        if args.json:
            echo_json({"deleted": [], "skipped": _skipped_json(plan.skipped)})
        else:
            echo(f"nothing to clear under {args.path}")
        return 0
    if not args.yes:
        echo("will delete:\n" + "\n".join(f"  {t}" for t, _ in plan.delete))
        if not sys.stdin.isatty():
            raise PrebakeError("not a terminal, so cannot ask; pass --yes to delete without asking")
        if input("delete these? [y/N] ").strip().lower() not in ("y", "yes"):
            echo("nothing deleted")
            return 1
    deleted, refused = inventory.clear(plan)
    if args.json:
        echo_json({"deleted": [str(t) for t in deleted], "skipped": _skipped_json(plan.skipped + refused)})
    else:
        for p, why in refused:
            echo(f"left alone: {p}\n  {why}")
        echo(f"deleted {len(deleted)} path{'s' if len(deleted) != 1 else ''}")
    return 0


def _skipped_json(skipped: list[tuple[Path, str]]) -> list[dict[str, str]]:
    return [{"path": str(p), "why": why} for p, why in skipped]


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
