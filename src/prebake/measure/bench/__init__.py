"""``prebake bench``: samples/s of the prebake Loader against other pipelines over the same cache, in one run.

- An image cache (uint8 ``3 x H x W`` images and labels, such as a CIFAR-10 build): against the
  federated ViT workload's original pipelines and peer libraries, every one producing the same
  normalised float32 batches (:mod:`.images`, :mod:`.pipelines`, :mod:`.peers`).
- Any cache or view (audio, volumes, ragged columns, :class:`~prebake.Windows`,
  :class:`~prebake.Elements`): against a DataLoader over the same items, the same tensors checked,
  with a per-column summary (:mod:`.anycache`).

Every pipeline is timed over whole epochs in interleaved rounds, with the spread (:mod:`.timing`).
"""

from __future__ import annotations

from .anycache import AnyResult, run_any
from .common import (
           BenchOptions,
           Row,
           cpu_seconds,
           device_tag,
           machine,
           memcpy_gbps,
           ratios_to,
           warm_page_cache,
           write_results,
)
from .images import BenchResult, image_size, run_bench

__all__ = ["AnyResult", "BenchOptions", "BenchResult", "Row", "cpu_seconds", "device_tag", "image_size", "machine",
           "memcpy_gbps", "ratios_to", "run_any", "run_bench", "warm_page_cache", "write_results"]
