"""prebake inside the training frameworks people already use, each an optional extra.

- :mod:`prebake.integrations.lightning` (``prebake.lightning``): ``CacheDataModule``, a
  ``LightningDataModule`` that bakes in ``prepare_data``, hands out :class:`~prebake.Loader` s,
  augments on the device in ``on_after_batch_transfer`` and resumes mid-epoch from a Trainer
  checkpoint (``pip install 'prebake[lightning]'``);
- :mod:`prebake.integrations.torchdata`: ``BatchSampler``, prebake's batch order as a stateful
  sampler, so a :class:`~prebake.Cache` or a view inside torchdata's ``StatefulDataLoader``
  resumes exactly (``pip install 'prebake[torchdata]'``);
- :mod:`prebake.integrations.hf`: Hugging Face ``datasets`` both ways, ``prebake.build(dataset,
  out)`` and :func:`~prebake.integrations.hf.to_hf` (``pip install 'prebake[hf]'``);
- :mod:`prebake.integrations.accelerate`: a Loader sharded over Accelerate's processes whose
  position ``accelerator.save_state`` / ``load_state`` keep (``pip install 'prebake[accelerate]'``).

Each module imports its framework only when used, and says how to install it when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingExtraError


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or a MissingExtraError that says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtraError(f"{what} needs {top}, which is not installed ({e}): pip install 'prebake[{extra}]' "
                                f"(or pip install {top})") from None
