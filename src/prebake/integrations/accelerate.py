"""A :class:`~prebake.Loader` in a Hugging Face Accelerate loop.

``accelerator.prepare`` shards only ``torch.utils.data.DataLoader`` s (anything else passes
through it unchanged), so a prebake Loader shards itself: :func:`prepare_loader` makes one on
``accelerator.device`` with ``rank=accelerator.process_index`` and
``world_size=accelerator.num_processes`` (each item once per epoch across processes, none
repeated), and registers its position with ``accelerator.register_for_checkpointing``, so
``accelerator.save_state(dir)`` / ``accelerator.load_state(dir)`` resume it mid-epoch::

    accelerator = Accelerator()
    loader = prepare_loader(accelerator, prebake.open("cache/train"), 256, seed=0)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.load_state("ckpt")                  # when resuming: the rest of the saved epoch
    for epoch in range(epochs):
        for batch in loader: ...                    # batches are on accelerator.device already
        accelerator.save_state("ckpt")

Accelerate asks every process for the registered state but writes only the main process's file,
which every process then reads back; :class:`LoaderState` therefore gathers the position of every
rank into it (one collective, in ``save_state``) and each rank takes its own back. Accelerate
itself is not imported here: ``pip install 'prebake[accelerate]'`` installs it for your loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..cache.reader import Cache
from ..errors import OptionError
from ..load.loader import Loader
from ..load.views import View
from .ranks import gathered, own


class LoaderState:
    """A Loader's position on every process, as ``accelerator.register_for_checkpointing`` wants it.

    Args:
        loader: the :class:`~prebake.Loader` whose position ``save_state`` keeps.
    """

    def __init__(self, loader: Loader):
        if not isinstance(loader, Loader):
            raise OptionError(f"loader is a {type(loader).__name__}; LoaderState keeps the position of a "
                              "prebake.Loader (a DataLoader is checkpointed by accelerator.prepare itself)")
        self.loader = loader

    def state_dict(self) -> dict[str, Any]:
        """Every rank's ``Loader.state_dict()`` (a collective: every process calls it, as ``save_state`` does)."""
        return gathered(self.loader.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """This rank's part of ``state_dict``: the next ``iter(loader)`` yields the batches it had not handed out."""
        s = self.loader.sampling
        self.loader.load_state_dict(own(state_dict, s.rank, s.world_size, "accelerate checkpoint"))


def prepare_loader(accelerator: Any, data: Cache | View | str | os.PathLike[str], batch_size: int,
                   **options: Any) -> Loader:
    """A :class:`~prebake.Loader` over ``data`` for this process of ``accelerator``, registered for checkpointing.

    Args:
        accelerator: the ``accelerate.Accelerator`` of the loop (its device, process index and count).
        data: what the Loader reads (a :class:`~prebake.Cache`, a cache path, a view).
        batch_size: samples per batch and process.
        **options: the other :class:`~prebake.Loader` arguments (``shuffle``, ``seed``, ``indices``,
            ``transform``, ``preload``...); ``device``, ``rank`` and ``world_size`` come from ``accelerator``.
    """
    taken = sorted(k for k in options if k in ("device", "rank", "world_size"))
    if taken:
        raise OptionError(f"prepare_loader sets {', '.join(taken)} from the accelerator (accelerator.device, "
                          "process_index, num_processes); leave them out, or build prebake.Loader yourself")
    loader = Loader(data, batch_size, device=accelerator.device, rank=accelerator.process_index,
                    world_size=accelerator.num_processes, **options)
    accelerator.register_for_checkpointing(LoaderState(loader))
    return loader


__all__: Sequence[str] = ("LoaderState", "prepare_loader")
