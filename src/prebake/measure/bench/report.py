"""The ``prebake bench`` table and bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import PrebakeError
from .anycache import AnyResult
from .common import spread_text
from .images import BenchResult


def _rows(res: BenchResult | AnyResult, width: int) -> list[str]:
    """One line per pipeline: the median of the rounds, the slowest-fastest round, the Loader's ratio (its range
    round by round)."""
    lines = [f"{'pipeline':<{width}} {'samples/s':>10} {'(slowest-fastest round)':>24} {'prebake.Loader is':>24}"]
    for r in res.rows:
        if r.skipped:
            lines.append(f"{r.name:<{width}} {'skipped':>10}   {r.skipped}")
            continue
        ratio, spread = res.ratio(r), res.ratio_spread(r)
        span = f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread and r is not res.reference else ""
        lines.append(f"{r.name:<{width}} {r.samples_per_s or 0:>10,.0f} {spread_text(r):>24} "
                     f"{(f'{ratio:.2f}x' if ratio else '-') + span:>24}")
    return lines


def table(res: BenchResult) -> list[str]:
    lines = [(f"prebake bench: {res.cache}, {res.items:,} items, cached at {res.cache_image_size} px -> float32 "
              f"3x{res.image_size}x{res.image_size} normalised, batch {res.batch_size}, device {res.device}; "
              f"whole epochs, median of {res.rounds} interleaved rounds")]
    lines += _rows(res, 72)
    for r in res.rows:
        lines += [f"  {note}" for note in r.notes]
    ref = res.reference
    if ref is not None:
        out = res.output_gbps(ref) or 0.0
        lines.append(f"memcpy bandwidth {res.memcpy_gbps:.1f} GB/s (the host's physical limit); prebake.Loader "
                     f"writes {out:.2f} GB/s of float32 output = {100 * out / res.memcpy_gbps:.0f}% of it")
    lines.append("seed online/offline: the federated ViT workload's two original pipelines, rebuilt: online "
                 "decodes and resizes every sample in __getitem__; offline reads the float32 file its "
                 f"preprocess script writes. seed online starts from {res.raw_source}")
    return lines


def table_any(res: AnyResult) -> list[str]:
    """The any-cache bench: pipelines, then one line per column of a batch."""
    lines = [(f"prebake bench: {res.cache}, {res.view}, {res.items:,} items, batch {res.batch_size}, device "
              f"{res.device}; the same values from every pipeline; whole epochs, median of {res.rounds} "
              "interleaved rounds")]
    lines += _rows(res, 64)
    lines.append(f"{'column':<24} {'dtype':<10} {'per sample':<32} {'bytes/sample':>13} {'Loader GB/s':>12}")
    for c in res.columns:
        lines.append(f"{c['column']:<24} {c['dtype']:<10} {c['shape']:<32} {c['bytes_per_sample']:>13,.0f} "
                     f"{c['loader_gb_per_s']:>12.3f}")
    lines.append(f"memcpy bandwidth {res.memcpy_gbps:.1f} GB/s (the host's physical limit)")
    return lines


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or an error with the install command."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PrebakeError("--plot needs matplotlib: pip install 'prebake[plot]' (or pip install matplotlib)") from None
    return plt


def plot(res: BenchResult | AnyResult, out: Path) -> None:
    """A horizontal bar chart of samples/s (needs matplotlib)."""
    plt = pyplot()
    rows = [r for r in res.rows if r.samples_per_s]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    ax.barh([r.name for r in rows][::-1], [r.samples_per_s for r in rows][::-1],
            color=["#d9822b" if r.key.startswith("prebake") else "#888888" for r in rows][::-1])
    ax.set_xlabel("samples/s (higher is better)")
    what = f"{res.image_size} px float32 batches" if isinstance(res, BenchResult) else f"batches of {res.view}"
    ax.set_title(f"{what}, {res.batch_size} per batch, on {res.device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
