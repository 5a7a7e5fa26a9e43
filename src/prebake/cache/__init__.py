"""What a cache is: the format, the reader (``prebake.open``), verify, inventory, and file I/O.

Depends on no other stage of prebake: the bake writes what :mod:`.format` declares,
the loader reads what :mod:`.reader` opens. Members import on first use, so
``prebake.cache.verify`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_members

if TYPE_CHECKING:
    from .format import ColumnSpec
    from .reader import Cache, Ragged, open_cache
    from .verify import VerifyReport

__all__ = ["Cache", "ColumnSpec", "Ragged", "VerifyReport", "open_cache"]  # verify(): prebake.verify
__getattr__, __dir__ = lazy_members(__name__, {
    "Cache": ".reader", "Ragged": ".reader", "open_cache": ".reader",
    "ColumnSpec": ".format", "VerifyReport": ".verify",
})
