"""How batches reach the device: :class:`Loader` (one gather per column per batch) and its sampling."""

from .loader import Loader
from .sampling import Sampling

__all__ = ["Loader", "Sampling"]
