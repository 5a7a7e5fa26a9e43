"""A Loader's resume state: what ``state_dict()`` records, and every check ``load_state_dict`` makes.

A state names where the loader is (``epoch``, and ``batch``: the batches of that epoch already
handed out), what it walks (the sampling, the view, an xxh3 of ``indices``) and which build of
the cache it walked (``cache``: the manifest's fingerprint digest and self-checksum, and an xxh3
of the column checksums). A state from another build is refused, since item ``i`` of a rebuilt
cache need not be the item it was: a resume over it would repeat some items and skip others. A
rebuild that wrote the same bytes (the same fingerprint and column checksums; only the
manifest's creation time differs) resumes.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import xxhash

from ..cache.format import CHECKSUM_KEY
from ..cache.indices import shown
from ..cache.reader import Cache
from ..errors import ResumeError

#: The sampling fields a state must match, with their types.
SAMPLING_KEYS: dict[str, type] = {"num_items": int, "batch_size": int, "shuffle": bool, "seed": int, "drop_last": bool,
                                  "rank": int, "world_size": int}
_FIX = "take the state with loader.state_dict() of the run you resume, and load it into a loader made the same way"


def cache_identity(cache: Cache) -> dict[str, Any]:
    """Which build of the cache a loader reads: fingerprint digest, manifest checksum, column contents."""
    columns = {name: spec.get("files") for name, spec in sorted((cache.manifest.get("columns") or {}).items())}
    content = json.dumps([cache.manifest.get("num_items"), columns], sort_keys=True, separators=(",", ":"))
    return {"fingerprint": (cache.manifest.get("fingerprint") or {}).get("digest"),
            "manifest": cache.manifest.get(CHECKSUM_KEY), "columns": xxhash.xxh3_64_hexdigest(content.encode())}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _typed(value: Any, kind: type) -> bool:
    return isinstance(value, (bool, np.bool_)) if kind is bool else _is_int(value)


def check_shape(state: Any, own: Mapping[str, Any]) -> None:
    """A ResumeError unless ``state`` is a mapping with every key of ``own``, each of the right type."""
    if not isinstance(state, Mapping):
        raise ResumeError(f"cannot resume from {shown(state)} ({type(state).__name__}): load_state_dict takes the "
                          f"dict that Loader.state_dict() returned; {_FIX}")
    missing = [k for k in own if k not in state]
    if missing:
        raise ResumeError(f"cannot resume: the state does not record {', '.join(missing)} (not recorded; a state "
                          f"saved by another version of prebake, or edited); {_FIX}")
    for key, kind in {"epoch": int, "batch": int, **SAMPLING_KEYS}.items():
        if not _typed(state[key], kind):
            raise ResumeError(f"cannot resume: the state's {key}={shown(state[key])} is a {type(state[key]).__name__},"
                              f" {key} must be {'True or False' if kind is bool else 'a whole number (int)'}; "
                              f"the state is corrupt: {_FIX}")


def check_sampling(state: Mapping[str, Any], own: Mapping[str, Any]) -> None:
    """A ResumeError when the state walks other items, in another order, or over another build of the cache."""
    mismatch = [k for k in SAMPLING_KEYS if state[k] != own[k]]
    if mismatch:
        raise ResumeError(f"cannot resume: the state was saved with different {', '.join(mismatch)} "
                          f"({', '.join(f'{k}={state[k]!r}' for k in mismatch)}, this loader has "
                          f"{', '.join(f'{k}={own[k]!r}' for k in mismatch)})")
    if state["indices"] != own["indices"]:
        raise ResumeError(f"cannot resume: the state was saved over another subset of items (indices "
                          f"{_subset_text(state['indices'])}, this loader's {_subset_text(own['indices'])}); build "
                          "the loader with the indices= of the run that saved the state (one state per federated "
                          "client)")
    if state["dataset"] != own["dataset"]:
        raise ResumeError(f"cannot resume: the state was saved over {shown(state['dataset'])}, this loader reads "
                          f"{own['dataset']}; build the loader over the same view")
    _check_build(state["cache"], own["cache"])


def _check_build(saved: Any, now: Mapping[str, Any]) -> None:
    if not isinstance(saved, Mapping) or any(not isinstance(saved.get(k), (str, type(None))) for k in now):
        raise ResumeError(f"cannot resume: the state's cache={shown(saved)} is not what state_dict() records "
                          f"(fingerprint, manifest and columns checksums); the state is corrupt: {_FIX}")
    if saved.get("fingerprint") != now["fingerprint"]:
        raise ResumeError(f"cannot resume: the cache was rebuilt from other inputs since the state was saved "
                          f"(fingerprint {saved.get('fingerprint')} then, {now['fingerprint']} now), so item i is "
                          "no longer the item it was and the rest of the epoch would repeat some items and skip "
                          "others; resume over the cache the state was saved with, or start a new epoch with "
                          "loader.set_epoch(epoch) instead of load_state_dict")
    if saved.get("columns") != now["columns"]:
        raise ResumeError(f"cannot resume: the cache was rebuilt with other contents since the state was saved "
                          f"(column checksums xxh3 {saved.get('columns')} then, {now['columns']} now; manifest "
                          f"{saved.get('manifest')} then, {now['manifest']} now); resume over the cache the state "
                          "was saved with, or start a new epoch with loader.set_epoch(epoch)")


def check_position(state: Mapping[str, Any], steps: int) -> tuple[int, int]:
    """``(epoch, batch)`` of the state, range-checked: ``batch == steps`` (the epoch was finished) is the next
    epoch's start."""
    epoch, batch = int(state["epoch"]), int(state["batch"])
    if epoch < 0:
        raise ResumeError(f"cannot resume: the state's epoch={epoch} is negative; epochs count from 0; "
                          f"the state is corrupt: {_FIX}")
    if not 0 <= batch <= steps:
        raise ResumeError(f"cannot resume: the state's batch={batch}, but an epoch of this loader has {steps} "
                          f"batches (batch must lie in 0..{steps}); the state is corrupt: {_FIX}")
    return (epoch + 1, 0) if batch == steps and steps > 0 else (epoch, batch)


def _subset_text(digest: Any) -> str:
    return "all items" if digest is None else f"xxh3 {digest}"
