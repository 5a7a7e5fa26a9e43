"""How batches reach the device: :class:`Loader` (one gather per column per batch), its sampling, and the
views that make pieces of ragged columns into items (:class:`Windows`, :class:`Elements`)."""

from .loader import Loader
from .sampling import Sampling
from .views import Elements, View, Windows

__all__ = ["Elements", "Loader", "Sampling", "View", "Windows"]
