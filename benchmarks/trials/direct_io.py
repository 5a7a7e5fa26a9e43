"""Files written and read past the page cache (bake/direct.py) hold exactly the bytes given, whatever the sizes.

Each trial writes a random sequence of pieces (empty, one byte, a block's size and one either side, several
blocks) with ``O_DIRECT`` or through the page cache, then checks the file's bytes and length, then reads random
ranges back (inside the file, across its end, past it) both ways. Some trials write from two forked processes
at once, after the parent has used the buffers: each file must hold its own process's bytes. Some set a file size
limit that falls inside a block: the write must fail with EFBIG, never leave a longer file or hang.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import numpy as np

from prebake.bake.direct import ALIGN, BLOCK, DirectReader, DirectWriter

from . import Row

_EDGES = (0, 1, ALIGN - 1, ALIGN, ALIGN + 1, BLOCK - 1, BLOCK, BLOCK + 1)


def pieces(rng: np.random.Generator) -> list[bytes]:
    """A random sequence of byte strings whose sizes hit the alignment's and the block's edges."""
    out = []
    for _ in range(int(rng.integers(1, 8))):
        n = int(rng.choice(_EDGES)) if rng.random() < 0.5 else int(rng.integers(0, 3 * BLOCK))
        out.append(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return out


def write_file(path: Path, parts: list[bytes], direct: bool) -> int:
    w = DirectWriter(lambda flags: os.open(path, flags, 0o644), direct=direct)
    try:
        for p in parts:
            w.write(p)
        return w.sync()
    finally:
        w.close()


def _check_reads(row: Row, path: Path, data: bytes, rng: np.random.Generator, direct: bool) -> None:
    r = DirectReader(lambda flags: os.open(path, flags), direct=direct)
    try:
        for _ in range(4):
            pos = int(rng.integers(0, len(data) + ALIGN + 1))
            n = int(rng.integers(0, min(3 * BLOCK, len(data) + ALIGN) + 1))
            out = np.zeros(n, np.uint8)
            got = r.read_into(out, pos)
            want = data[pos:pos + n]
            row.check(got == len(want) and out[:got].tobytes() == want,
                      f"direct={direct}: read of {n} bytes at {pos} of a {len(data)}-byte file gave {got} bytes"
                      f"{' (values differ)' if got == len(want) else ''}")
    finally:
        r.close()


def _forked(path: Path, parts: list[bytes], direct: bool) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            write_file(path, parts, direct)
            code = 0
        finally:
            os._exit(code)
    return pid


def _limited(path: Path, parts: list[bytes], limit: int) -> int:
    """In a child with a file size limit of ``limit`` bytes: 0 when the write failed with EFBIG, 1 when it did not
    fail, 2 for any other error."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            write_file(path, parts, True)
            code = 1
        except OSError as e:
            code = 0 if e.errno == errno.EFBIG else 2
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def trial_direct_io(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    row = Row("files written and read past the page cache hold exactly their bytes (sizes, two processes, limits)")
    rng = np.random.default_rng(seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    for k in range(trials):
        direct = bool(k % 2 == 0)
        parts = pieces(rng)
        data = b"".join(parts)
        path = work_dir / f"f{k}.bin"
        size = write_file(path, parts, direct)
        row.check(size == len(data) and path.read_bytes() == data,
                  f"direct={direct}: wrote {len(data)} bytes in pieces {[len(p) for p in parts]}, the file has "
                  f"{path.stat().st_size} (sync said {size}){'' if path.stat().st_size != len(data) else ', others'}")
        _check_reads(row, path, data, rng, direct)
        path.unlink()
        if hasattr(os, "fork") and k % 4 == 1:
            _two_processes(row, work_dir, rng, k)
        if hasattr(os, "fork") and k % 4 == 3 and len(data) > 1:
            limit = int(rng.integers(1, len(data)))
            status = _limited(path, parts, limit)
            held = path.stat().st_size if path.exists() else 0
            row.check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and held <= limit,
                      f"a file size limit of {limit} under {len(data)} bytes: exit status {status}, file {held} bytes")
            path.unlink(missing_ok=True)
    return row


def _two_processes(row: Row, work_dir: Path, rng: np.random.Generator, k: int) -> None:
    mine = [rng.integers(0, 256, int(rng.integers(BLOCK, 3 * BLOCK)), dtype=np.uint8).tobytes() for _ in range(2)]
    write_file(work_dir / f"warm{k}.bin", [b"x" * (BLOCK + 1)], True)  # the parent's buffers, now in its pool
    (work_dir / f"warm{k}.bin").unlink()
    paths = [work_dir / f"p{k}-{j}.bin" for j in range(2)]
    pids = [_forked(p, [m[:len(m) // 2], m[len(m) // 2:]], True) for p, m in zip(paths, mine)]
    for pid, p, m in zip(pids, paths, mine):
        status = os.waitpid(pid, 0)[1]
        row.check(status == 0 and p.read_bytes() == m,
                  f"two processes writing at once: exit status {status}, file {p.name} "
                  f"{'differs from' if status == 0 else 'vs'} its {len(m)} bytes")
        p.unlink(missing_ok=True)
