"""Is the GPU fed? :func:`watch` times a training loop; :mod:`.bench` compares input pipelines."""

from .watch import Watch, WatchReport, watch

__all__ = ["Watch", "WatchReport", "watch"]
