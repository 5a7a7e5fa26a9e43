"""How a figure from benchmarks/results/*.json is written in the docs: numbers, ratios, tables, machines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# workloads are named by what they are; some committed labels still call the original pipelines "seed"
_WORKLOADS = [
    (r"\bseed-hdf5\b", "cardiac-imaging HDF5 + LRU loader"),
    (r"\bseed (offline|online)\b", r"federated ViT \1"),
    (r"\bseed loop\b", "original loop"),
]


def named(text: str) -> str:
    """A label from a results file, with the workload named by what it is."""
    for pattern, name in _WORKLOADS:
        text = re.sub(pattern, name, text)
    return text


def cell(text: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(x: float | None) -> str:
    """1.23x, 12.3x, 396x: about three significant figures."""
    if x is None:
        return "-"
    digits = 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
    return f"{x:,.{digits}f}x"


def spread(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f" ({ratio(lo)[:-1]}-{ratio(hi)})"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.{2 if unit == 'GiB' else 0}f} {unit}"
    return f"{n:,.0f} B"


def target(value: float | None, goal: float, at_least: bool = True, fmt: Any = None) -> str:
    """``>= 5x: met`` or ``>= 5x: **not met**`` for a figure against its goal."""
    shown = (fmt or ratio)(goal)
    if value is None:
        return f"{'>=' if at_least else '<'} {shown}: not measured"
    met = value >= goal if at_least else value < goal
    return f"{'>=' if at_least else '<'} {shown}: {'met' if met else '**not met**'}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A Markdown table; the columns numbered in ``right`` are right-aligned (figures)."""
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(info: dict[str, Any] | None, device: str | None = None) -> str:
    """One line naming what a table was measured on, from a results file's ``machine`` record."""
    info = info if isinstance(info, dict) else {}
    cpus = info.get("cpu_count") or info.get("cpus")
    parts = [f"{cpus}-core CPU" if cpus else "a CPU"]
    if info.get("processor"):
        parts[0] += f" ({info['processor']})"
    for key, label in (("platform", ""), ("python", "Python "), ("torch", "torch "), ("numpy", "numpy "),
                       ("prebake", "prebake ")):
        if info.get(key):
            parts.append(f"{label}{info[key]}")
    if info.get("torch_threads"):
        parts.append(f"{info['torch_threads']} torch thread{'s' if info['torch_threads'] != 1 else ''}")
    load = info.get("load_average")
    if isinstance(load, (list, tuple)) and load and isinstance(load[0], (int, float)):
        parts.append(f"load average {load[0]:.1f} at the start")
    gpu = info.get("gpu") if info.get("gpu") not in (None, "not measured") else None
    if gpu is None and device and "cuda" in device:
        gpu = device
    tail = f"GPU: {gpu}." if gpu else "no GPU: GPU figures not measured."
    return f"*Measured on:* {', '.join(parts)}; {tail}"


def short_machine(info: dict[str, Any] | None) -> str:
    """``2-core CPU``, or the GPU's name: a table column for figures from several files."""
    info = info if isinstance(info, dict) else {}
    if info.get("gpu") not in (None, "not measured"):
        return str(info["gpu"])
    cpus = info.get("cpu_count") or info.get("cpus")
    return f"{cpus}-core CPU, no GPU" if cpus else "CPU, no GPU"
