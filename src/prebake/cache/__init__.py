"""What a cache is: the format, the reader (``prebake.open``), verify, inventory, and file I/O.

Depends on no other stage of prebake: the bake writes what :mod:`.format` declares,
the loader reads what :mod:`.reader` opens.
"""

from .format import ColumnSpec
from .reader import Cache, Ragged, open_cache
from .verify import VerifyReport, verify

__all__ = ["Cache", "ColumnSpec", "Ragged", "VerifyReport", "open_cache", "verify"]
