"""A Loader's resume state across DDP ranks, for checkpoints that only rank 0 writes.

Lightning and Accelerate ask every rank for its state but write rank 0's file, which every rank
then reads back. A Loader's state names its rank (its shard of the order), so each rank's state
is gathered into that one file (``{"ranks": [state of rank 0, state of rank 1, ...]}``) and each
rank takes its own back out.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ..cache.indices import shown
from ..errors import ResumeError


def gathered(state: dict[str, Any]) -> dict[str, Any]:
    """``{"ranks": [...]}``: ``state`` of every rank of the process group (one collective; every rank must call it)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return {"ranks": [state]}
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return {"ranks": states}


def own(saved: Any, rank: int, world_size: int, where: str) -> dict[str, Any]:
    """The state of ``rank`` in what :func:`gathered` returned, or a ResumeError naming ``where`` it came from."""
    ranks = saved.get("ranks") if isinstance(saved, Mapping) else None
    if not isinstance(ranks, list) or not all(isinstance(s, Mapping) for s in ranks):
        raise ResumeError(f"{where}: cannot resume from {shown(saved)}: expected {{'ranks': [one Loader.state_dict() "
                          "per rank]}, as state_dict() saved it; resume from a checkpoint this integration wrote")
    if len(ranks) != world_size:
        raise ResumeError(f"{where}: the checkpoint holds the loader states of {len(ranks)} rank(s), this job has "
                          f"world_size={world_size}: each rank's position is its own shard of the order, so resume "
                          f"with {len(ranks)} rank(s), or start a new epoch instead of resuming")
    return dict(ranks[rank])
