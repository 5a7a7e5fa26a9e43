"""Is the GPU fed? :func:`watch` times a training loop; :mod:`.bench` compares input pipelines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_members

if TYPE_CHECKING:
    from .watch import Watch, WatchReport

__all__ = ["Watch", "WatchReport"]  # watch(): prebake.watch (the name measure.watch is the module)
__getattr__, __dir__ = lazy_members(__name__, {"Watch": ".watch", "WatchReport": ".watch"})
