"""One build per job when every rank of a ``torch.distributed`` job calls ``prebake.build``.

Under ``torchrun`` each rank runs the same script. :func:`once_per_job` lets one rank build
and the others wait, then every rank opens the committed cache:

1. Rank 0 draws a token and broadcasts it (one small collective).
2. Is the output on storage every rank sees? Rank 0 writes a probe file beside ``out``;
   after a barrier every rank looks for it, and the answers are gathered. If all ranks
   see it, the storage is shared and global rank 0 builds; otherwise each node builds
   its own copy, on the rank with ``LOCAL_RANK`` 0 (every rank, when torchrun's
   ``LOCAL_RANK`` is not set; the build lock then keeps one builder per output).
3. The builder writes a status file ``<out>.build-<token>.json`` beside ``out``:
   ``running`` (refreshed every few seconds), then ``ok`` or the error. The other ranks
   sleep between reads of it, so they take no CPU while they wait, which no collective
   timeout limits; a builder that dies stops refreshing it, and they fail after
   ``stale_s`` seconds instead of hanging.
4. When it says ``ok``, the other ranks run the same build, which finds the cache up to
   date and opens it; an error on the builder is raised on every rank.

Nothing here runs unless a process group is initialised and has more than one rank;
torch is never imported for it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import PrebakeError

log = logging.getLogger("prebake")
T = TypeVar("T")

HEARTBEAT_S = 2.0
STALE_S = 60.0  # a "running" status older than this: the builder is gone


def process_group() -> Any | None:
    """``torch.distributed`` when a process group of several ranks is initialised, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return dist


def once_per_job(build: Callable[[], T], out: str | os.PathLike[str], stale_s: float = STALE_S) -> T:
    """Run ``build`` on one rank per storage, wait for it on the others, then run it there (a no-op).

    Without a process group of several ranks this is just ``build()``.
    """
    dist = process_group()
    if dist is None:
        return build()
    out = Path(os.path.abspath(out))
    token = _broadcast_token(dist)
    shared = _shared_storage(dist, out, token)
    local = os.environ.get("LOCAL_RANK")
    builds = dist.get_rank() == 0 if shared else (local is None or int(local) == 0)
    status = out.with_name(f"{out.name}.build-{token}.json")
    log.debug("rank %d: storage %s, %s", dist.get_rank(), "shared" if shared else "per node",
              "building" if builds else "waiting for the build")
    if builds:
        return _build_and_report(build, status)
    _wait_for(status, dist.get_rank(), stale_s)
    return build()


def _broadcast_token(dist: Any) -> str:
    box = [uuid.uuid4().hex[:16] if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def _shared_storage(dist: Any, out: Path, token: str) -> bool:
    probe = out.with_name(f".{out.name}.probe-{token}")
    if dist.get_rank() == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
    dist.barrier()
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, probe.is_file())
    if dist.get_rank() == 0:
        probe.unlink(missing_ok=True)
    return all(seen)


def _write(status: Path, state: dict[str, Any]) -> None:
    tmp = status.with_name(status.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**state, "pid": os.getpid(), "time": time.time()}))
    os.replace(tmp, status)


def _build_and_report(build: Callable[[], T], status: Path) -> T:
    status.parent.mkdir(parents=True, exist_ok=True)
    for old in status.parent.glob(status.name.split(".build-")[0] + ".build-*.json"):
        old.unlink(missing_ok=True)  # statuses of earlier jobs
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            _write(status, {"state": "running"})

    _write(status, {"state": "running"})
    beat = threading.Thread(target=heartbeat, name="prebake-build-heartbeat", daemon=True)
    beat.start()
    try:
        result = build()
    except BaseException as e:
        stop.set()
        beat.join()
        _write(status, {"state": "failed", "error": f"{type(e).__name__}: {e}"})
        raise
    stop.set()
    beat.join()
    _write(status, {"state": "ok"})
    return result


def _wait_for(status: Path, rank: int, stale_s: float) -> None:
    delay, started = 0.05, time.monotonic()
    while True:
        state = _read(status)
        if state is not None and state["state"] == "ok":
            return
        if state is not None and state["state"] == "failed":
            raise PrebakeError(f"rank {rank}: the build of {status.name.split('.build-')[0]} on the building rank "
                               f"failed: {state['error']}")
        age = time.time() - state["time"] if state is not None else time.monotonic() - started
        if age > stale_s:
            what = f"stopped refreshing {status} {age:.0f} s ago" if state else f"never wrote {status}"
            raise PrebakeError(f"rank {rank}: the building rank {what}: it died, or cannot write beside the cache; "
                               "look at its log, then run the job again (the build resumes)")
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def _read(status: Path) -> dict[str, Any] | None:
    try:
        return json.loads(status.read_text())
    except (OSError, ValueError):
        return None
