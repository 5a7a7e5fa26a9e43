"""``OUT/build.log``: what a build did and why, in words (as the 3-D medical workload's ``preprocessing.log`` was).

Written beside the columns when a build commits (built, rebuilt or resumed): when and by
which prebake, the source, every transform with its parameters, why it was (re)built,
how many items were baked, copied from the old cache and skipped (each skipped item
with its reason), and the time it took. A build that finds the cache up to date
changes nothing. The numbers are also in ``manifest.json`` and ``prebake info --json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .._version import __version__
from ..cache.format import BUILD_LOG


def write_build_log(report: Any, fingerprint: dict[str, Any]) -> Path:
    """Write ``report`` (a :class:`~prebake.bake.build.BuildReport`) to ``report.out / build.log``."""
    inputs = fingerprint.get("inputs", {})
    source = {k: v for k, v in inputs.get("source", {}).items() if k != "files"}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    lines = [f"{stamp}  prebake {__version__}: {report.action} {report.out}",
             f"source: {source.get('kind', '?')} {source.get('root', '')} "
             f"({len(inputs.get('source', {}).get('files', {})):,} files) {source.get('params', '')}"]
    lines += [f"transform: {_step(t)}" for t in inputs.get("transforms", [])]
    if report.reasons:
        lines.append(f"because: {'; '.join(report.reasons)}")
    baked = report.num_items - report.reused
    lines.append(f"items: {report.num_items:,} committed ({baked:,} baked, {report.reused:,} copied from the "
                 f"previous cache), {len(report.skipped):,} skipped, in {report.seconds:.2f} s")
    lines += [f"skipped: {s['key']}: {s['reason']}" for s in report.skipped]
    lines += [f"warning: {w}" for w in report.warnings]  # what was not checked, what was kept only in part
    lines.append(f"fingerprint: {fingerprint.get('digest', '')}")
    path = Path(report.out) / BUILD_LOG
    path.write_text("\n".join(lines) + "\n")
    return path


def _step(t: dict[str, Any]) -> str:
    if t.get("name") == "user":
        return f"user function {t.get('function', '?')}"
    return f"{t.get('name')}(" + ", ".join(f"{k}={v}" for k, v in t.items() if k != "name") + ")"
