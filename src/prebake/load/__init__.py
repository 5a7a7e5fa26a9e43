"""How batches reach the device: :class:`Loader` (one gather per column per batch) and its sampling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_members

if TYPE_CHECKING:
    from .loader import Loader
    from .sampling import Sampling

__all__ = ["Loader", "Sampling"]
__getattr__, __dir__ = lazy_members(__name__, {"Loader": ".loader", "Sampling": ".sampling"})
