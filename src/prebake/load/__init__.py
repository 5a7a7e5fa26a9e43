"""How batches reach the device: :class:`Loader` (one gather per column per batch), its sampling, and the
views that make pieces of ragged columns into items (:class:`Windows`, :class:`Elements`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_members

if TYPE_CHECKING:
    from .loader import Loader
    from .sampling import Sampling
    from .views import Elements, View, Windows

__all__ = ["Elements", "Loader", "Sampling", "View", "Windows"]
__getattr__, __dir__ = lazy_members(__name__, {"Loader": ".loader", "Sampling": ".sampling", "Elements": ".views",
                                               "View": ".views", "Windows": ".views"})
