"""The devices tests run on: CPU always, CUDA when there is one (``NEEDS_CUDA`` skips it cleanly)."""

from __future__ import annotations

import pytest
import torch

#: The skip reason names CUDA: tests/conftest.py counts these skips in the summary line.
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
