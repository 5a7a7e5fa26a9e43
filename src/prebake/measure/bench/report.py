"""The ``prebake bench`` table and bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import PrebakeError

from . import BenchResult


def table(res: BenchResult) -> list[str]:
    lines = [f"prebake bench: {res.cache}, {res.items:,} items, cached at {res.cache_image_size} px -> "
             f"float32 3x{res.image_size}x{res.image_size} normalised, batch {res.batch_size}, device {res.device}",
             f"{'pipeline':<72} {'samples/s':>12} {'prebake.Loader is':>18}"]
    for r in res.rows:
        if r.skipped:
            lines.append(f"{r.name:<72} {'skipped':>12}   {r.skipped}")
            continue
        ratio = res.ratio(r)
        lines.append(f"{r.name:<72} {r.samples_per_s:>12,.0f} {f'{ratio:.2f}x' if ratio else '-':>18}")
    for r in res.rows:
        lines += [f"  {note}" for note in r.notes]
    ref = res.reference
    if ref is not None:
        out = res.output_gbps(ref) or 0.0
        lines.append(f"memcpy bandwidth {res.memcpy_gbps:.1f} GB/s (the host's physical limit); prebake.Loader "
                     f"writes {out:.2f} GB/s of float32 output = {100 * out / res.memcpy_gbps:.0f}% of it")
    lines.append("seed online/offline: the two pipelines of seeds 000/001 (federated ViT), rebuilt: online "
                 "decodes and resizes every sample in __getitem__; offline reads the float32 file its "
                 f"preprocess script writes. seed online starts from {res.raw_source}")
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


def plot(res: BenchResult, out: Path) -> None:
    """A horizontal bar chart of samples/s (needs matplotlib)."""
    plt = pyplot()
    rows = [r for r in res.rows if r.samples_per_s]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    ax.barh([r.name for r in rows][::-1], [r.samples_per_s for r in rows][::-1],  # type: ignore[misc]
            color=["#d9822b" if r.key.startswith("prebake") else "#888888" for r in rows][::-1])
    ax.set_xlabel("samples/s (higher is better)")
    ax.set_title(f"{res.image_size} px float32 batches of {res.batch_size} on {res.device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
