"""``prebake build``: settings from the flags (over a config file), then one build per split."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import BUILD_KEYS, check_settings, read_config
from ..errors import OptionError, opt
from ._echo import echo, echo_json

#: The sources that read each source option (sources.detect gives it to no other): with another it would be
#: dropped without a word, so the build refuses it, as a step refuses a source without the columns it needs. A
#: table is ``csv`` with what its rows hold (``csv:image``: images among them; a table of recordings is kind audio
#: to the sources, ``csv:audio`` here), so --channels on a table of recordings, or --path-column on a folder, is
#: refused. max_pixels and max_voxels are absent: they bound the steps' output sizes whatever the kind.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "hdf5_group": ("hdf5",), "fps": ("video",), "frame_size": ("video",), "nan_fill": ("volumes", "csv:volume"),
    "channels": ("imagefolder", "csv:image"), "channel": ("audio", "video", "csv:audio"),
    "audio_dtype": ("audio", "video", "csv:audio"),
    **dict.fromkeys(("path_column", "label_columns", "base_dir", "delimiter", "keep_columns"), ("csv",)),
}
_SAID = {"csv": "a CSV table", "csv:image": "a table of images", "csv:volume": "a table of volumes",
         "csv:audio": "a table of recordings"}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The effective settings: the config file's, then every flag or argument given on the command line."""
    merged = read_config(args.config) if args.config else {}
    given = {k.name: getattr(args, k.name) for k in BUILD_KEYS if getattr(args, k.name, None) is not None}
    if (given.get("dataset") or merged.get("dataset")) and "source" in given and "out" not in given:
        given["out"] = given.pop("source")  # prebake build --dataset m:f OUT: the one argument is OUT
    merged.update(given)
    return check_settings(merged, "prebake build")


def run(args: argparse.Namespace) -> int:
    from ..bake.api import prepare
    from ..bake.build import build_all
    from ..progress import ProgressBars
    from ..settings import build_kwargs, dump

    s = settings(args)
    if args.print_config:
        sys.stdout.write(dump(s))
        return 0
    sources, out, options = prepare(**build_kwargs(s))
    check_kind_options(s, {_reads(src) for src in sources.values()})
    bars = ProgressBars(quiet=args.quiet or args.json)
    try:
        reports = build_all(sources, out, options, bars)
    finally:
        bars.close()
    if args.json:
        echo_json([_report_json(r) for r in reports], indent=1)
    else:
        for r in reports:
            _print_report(r)
    return 0


def _reads(src: Any) -> str:
    """What a source reads, as :data:`ONLY_FOR` names it: its kind; a table is ``csv`` plus what its rows hold
    (``csv:image``, ``csv:volume+image``, ``csv:audio``), so an image option on a table of recordings is seen."""
    from ..sources.csvtable import CsvSource

    if isinstance(src, CsvSource):
        rows = {"audio"} if src.reads == "audio" else set(src.families) - {"audio"}
        return "csv:" + "+".join(sorted(rows))
    return str(src.origin["kind"] if src.origin else src.kind)


def check_kind_options(s: dict[str, Any], kinds: set[str]) -> None:
    """An OptionError for a setting of :data:`ONLY_FOR` given for a source that never reads it (``kinds``: what the
    sources to build read, :func:`_reads`)."""
    for name, readers in ONLY_FOR.items():
        other = sorted(k for k in kinds if not _applies(k, readers))
        if name in s and other:
            what = s.get("dataset") or s.get("source")
            said = [_SAID.get(r, f"a source of kind {r}") for r in readers]
            where = said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}"
            kind = other[0]
            shown = f"a table of {kind[4:].replace('+', ' and ')} rows" if kind.startswith("csv:") and kind[4:] else \
                _SAID.get(kind, f"of kind {kind}")
            raise OptionError(f"{opt(name, s[name])} applies only to {where}, and {what} is {shown}, which never "
                              f"reads it: drop {opt(name)}, or give {said[0]}")


def _applies(read: str, readers: tuple[str, ...]) -> bool:
    """Whether a source that reads ``read`` uses an option of ``readers`` (``csv``: any table; ``csv:image``: a
    table with image rows)."""
    if read in readers:
        return True
    if not read.startswith("csv:"):
        return False
    rows = set(read[4:].split("+"))
    return "csv" in readers or any(r.startswith("csv:") and r[4:] in rows for r in readers)


def _report_json(r: Any) -> dict[str, Any]:
    return {"split": r.split, "out": str(r.out), "action": r.action, "reasons": r.reasons,
            "num_items": r.num_items, "kept": r.kept, "total": r.total,
            "reused": r.reused, "skipped": r.skipped, "seconds": round(r.seconds, 3)}


def _print_report(r: Any) -> None:
    from ..bake.build import kept_line, skipped_summary

    name = f"{r.split}: " if r.split else ""
    rate = f" ({r.num_items / r.seconds:,.0f} items/s)" if r.action != "up to date" and r.seconds > 0 else ""
    echo(f"{name}{r.action}: {r.num_items:,} items in {r.seconds:.1f} s{rate} -> {r.out}")
    if r.reasons and r.action != "built":
        echo(f"  because: {'; '.join(r.reasons)}")
    if r.reused:
        echo(f"  {r.reused:,} unchanged items copied from the previous cache, {r.num_items - r.reused:,} baked")
    manifest = f"{r.out}/manifest.json"
    if r.skipped and r.action == "up to date":
        echo(f"  {len(r.skipped)} bad items were skipped when it was built (see 'skipped' in {manifest})")
    elif r.skipped:
        echo(f"  skipped {len(r.skipped)} bad item{'s' if len(r.skipped) != 1 else ''}:")
        echo("\n".join("  " + line for line in skipped_summary(r, manifest)[1:]))
    echo(kept_line(r))  # the last line of every build
