"""``python -m prebake`` is the ``prebake`` command."""

import sys

from .cli import main

sys.exit(main())
