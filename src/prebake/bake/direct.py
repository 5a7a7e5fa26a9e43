"""Files the build writes once and reads once, moved with ``O_DIRECT``: past the page cache.

A build of items of many shapes writes every spilled item twice (its chunk's spill shard, then
the column the commit takes) and reads it once in between; a placed item (bake/placed.py) is
written once and read back once to checksum it. Through the page cache each of those bytes
takes a page the kernel must find, fill and later drop; on the VM the benchmarks run on, a page
not recently used costs about 2.4 CPU-s a GB to touch again, so 1.44 GB of photos cost more in
page faults than in decoding. With ``O_DIRECT`` the bytes go from one reused, aligned buffer to
the disk and back. benchmarks/realdata.py's 2,400 photos, an earlier saved run: 4.17 CPU-s and
3.35 s to build with the write-ahead stream (bake/stream.py) past the page cache, against 5.42
and 4.68 through it. Where the filesystem refuses ``O_DIRECT`` (or the platform has none), the
same classes write and read through the page cache, letting its pages go behind them.

Nothing else changes: the files are the same bytes, fsynced before anything names them.
``PREBAKE_DIRECT_IO=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import OptionError

ALIGN = 4096  # offsets, lengths and buffers: a multiple of every block size O_DIRECT asks for
BLOCK = 4 << 20  # bytes a write or a read moves at once
_WINDOW = 32 << 20  # through the page cache: bytes between write-back requests
_O_DIRECT = getattr(os, "O_DIRECT", 0)

Opener = Callable[[int], int]  # open flags -> a descriptor


_ON, _OFF = ("1", "true", "yes", "on", ""), ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether builds try ``O_DIRECT``: the platform has it, and ``PREBAKE_DIRECT_IO`` is not off."""
    return bool(_O_DIRECT) and os.environ.get("PREBAKE_DIRECT_IO", "1").strip().lower() not in _OFF


def check_setting() -> None:
    """An OptionError for a ``PREBAKE_DIRECT_IO`` that is neither on nor off (a build checks it before any work)."""
    value = os.environ.get("PREBAKE_DIRECT_IO")
    if value is not None and value.strip().lower() not in _ON + _OFF:
        raise OptionError(f"PREBAKE_DIRECT_IO={value!r}: it takes 0 (write through the page cache) or 1 (the "
                          "default: the build's spill shards, placed and rewritten columns past it); set one, or "
                          "unset it")


class _Pool:
    """Page-aligned anonymous buffers, reused: a buffer touched once costs no page faults again."""

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for k, m in enumerate(self._free):
                if len(m) >= size:
                    return self._free.pop(k)
        # private: a shared map (mmap's default) would be one buffer for every process forked after it
        return mmap.mmap(-1, max(size, BLOCK), flags=mmap.MAP_PRIVATE)  # -1: anonymous

    def give(self, m: mmap.mmap) -> None:
        with self._lock:
            self._free.append(m)
            self._free.sort(key=len)
            del self._free[:-4]  # a few: one writer and one reader per thread at a time

    def reset(self) -> None:  # a forked child must not inherit a lock another thread held
        self._lock = threading.Lock()


_pool = _Pool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.reset)


def drop_pages(fd: int, start: int = 0, length: int = 0) -> None:
    """Start writing back, and drop once clean, the page cache of ``fd``'s bytes ``[start, start + length)``
    (``length`` 0: to the end); a no-op where the platform has no ``posix_fadvise``."""
    _advise(fd, start, length, "POSIX_FADV_DONTNEED")


def read_ahead(fd: int) -> None:
    """Ask the kernel to start reading all of ``fd`` into the page cache (the next file the commit reads)."""
    _advise(fd, 0, 0, "POSIX_FADV_WILLNEED")


def _advise(fd: int, start: int, length: int, advice: str) -> None:
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):  # only advice: a filesystem that ignores it loses nothing
            advise(fd, start, length, getattr(os, advice))


def _round_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _open(opener: Opener, flags: int, direct: bool) -> tuple[int, bool]:
    """A descriptor opened with ``flags``, with ``O_DIRECT`` where asked for and the filesystem takes it."""
    if direct:
        try:
            return opener(flags | _O_DIRECT), True
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: this filesystem has no O_DIRECT
                raise
    return opener(flags), False


class DirectWriter:
    """A new file written front to back: :meth:`write` appends bytes, :meth:`sync` makes it durable.

    The bytes gather in an aligned buffer and go out in whole blocks, each written by a thread of its own while
    the caller fills the next buffer (with O_DIRECT a write waits for the disk; in a worker that wait was 0.5 s
    of decoding lost per 0.7 GB of photos). The last block is padded to the alignment and the file cut back to
    its length. OSErrors (a full disk) reach the caller, at the next write or at :meth:`sync`."""

    def __init__(self, opener: Opener, direct: bool | None = None):
        self.fd, self.direct = _open(opener, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0),
                                     enabled() if direct is None else direct)
        self._buf: mmap.mmap = _pool.take(BLOCK)
        self._spare: mmap.mmap | None = None
        self._view = memoryview(self._buf)
        self._fill = 0  # bytes in the buffer
        self._skip = 0  # bytes at its front that are not this writer's (PlacedWriter: a span's unaligned start)
        self._at = 0  # the file offset of the buffer's first byte
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[tuple[memoryview, int, int, int] | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._error: BaseException | None = None

    def write(self, data: memoryview | bytes) -> None:
        src = memoryview(data).cast("B")
        while len(src):
            n = min(len(src), BLOCK - self._fill)
            self._view[self._fill:self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == BLOCK:
                self._submit()

    def _submit(self) -> None:
        """Hand the full buffer to the writing thread and go on in the other one."""
        self._wait()
        spare = self._spare if self._spare is not None else _pool.take(BLOCK)
        full, at, skip = self._view, self._at, self._skip
        self._buf, self._spare = spare, self._buf
        self._view = memoryview(self._buf)
        self._at += BLOCK
        self._fill = self._skip = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="prebake-write-behind")
            self._thread.start()
        self._idle.clear()
        self._jobs.put((full, BLOCK, at, skip))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._write_at(*job)
            except BaseException as e:  # noqa: BLE001 - raised to the caller by _wait
                self._error = e
            finally:
                job[0].release()
                self._idle.set()

    def _wait(self) -> None:
        self._idle.wait()
        if self._error is not None:
            raise self._error

    def _write_at(self, view: memoryview, length: int, at: int, skip: int = 0) -> None:
        """Write ``view[:length]`` (whole blocks, or the padded end) at offset ``at`` (``skip``: always 0 here)."""
        done = 0
        while done < length:
            try:
                n = os.pwrite(self.fd, view[done:length], at + done)
            except OSError as e:
                if not (self.direct and e.errno == errno.EINVAL):
                    raise
                self._buffered()  # a filesystem that opened with O_DIRECT but refuses its writes
                continue
            if n <= 0:
                raise OSError(errno.EIO, f"write returned {n}")
            done += n
            if self.direct and done % ALIGN:
                self._buffered()  # a short write (a limit reached mid-block): the rest goes unaligned
        if not self.direct:
            self._let_go(at + length)

    def _buffered(self) -> None:
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~_O_DIRECT)
        self.direct = False

    def _let_go(self, written: int) -> None:
        if written - self._dropped >= 2 * _WINDOW:
            drop_pages(self.fd, self._dropped, _WINDOW)  # written back by now: dropped
            drop_pages(self.fd, self._dropped + _WINDOW, _WINDOW)  # its write-back starts
            self._dropped += _WINDOW

    def tell(self) -> int:
        return self._at + self._fill

    def sync(self) -> int:
        """Write what is buffered, cut the file to its length, fsync; returns the length."""
        self._wait()
        size = self.tell()
        if self._fill:
            pad = _round_up(self._fill) if self.direct else self._fill
            self._view[self._fill:pad] = bytes(pad - self._fill)
            self._write_at(self._view, pad, self._at)
            self._at = size
            self._fill = 0
            os.ftruncate(self.fd, size)
        os.fsync(self.fd)
        return size

    def close(self) -> None:
        """End the writing thread, close the descriptor and give the buffers back (after :meth:`sync`, or to
        abandon the file)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._view.release()
            for m in (self._buf, self._spare):
                if m is not None:
                    _pool.give(m)


class DirectReader:
    """Byte ranges of a file read into arrays, past the page cache where the filesystem allows."""

    def __init__(self, opener: Opener, direct: bool | None = None):
        self.fd, self.direct = _open(opener, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0),
                                     enabled() if direct is None else direct)
        self._buf: mmap.mmap | None = None

    def read_into(self, out: np.ndarray, pos: int) -> int:
        """Fill the C-contiguous ``out`` from the file's bytes at ``pos``; returns the bytes read (fewer at its end).

        Each range is read on its own (aligned around it): reading a shard in windows of 16 MB instead made the
        commit of benchmarks/realdata.py's photos slower (2.1 s against 1.6)."""
        dest = out.reshape(-1).view(np.uint8)
        if not self.direct:
            return os.preadv(self.fd, [dest.data], pos)
        got = 0
        while got < dest.size:
            start = (pos + got) // ALIGN * ALIGN
            skip = pos + got - start
            want = min(_round_up(skip + dest.size - got), BLOCK)
            buf = self._buffer(want)
            n = os.preadv(self.fd, [memoryview(buf)[:want]], start) - skip
            if n <= 0:
                break
            n = min(n, dest.size - got)
            dest[got:got + n] = np.frombuffer(buf, np.uint8, n, skip)
            got += n
        return got

    def blocks(self) -> Iterator[memoryview]:
        """The whole file front to back, a block at a time (each view good until the next)."""
        buf, pos = self._buffer(BLOCK), 0
        while True:
            n = os.preadv(self.fd, [memoryview(buf)[:BLOCK]], pos)
            if n <= 0:
                return
            yield memoryview(buf)[:n]
            pos += n

    def span(self, start: int, end: int) -> Iterator[memoryview]:
        """The file's bytes ``[start, end)`` front to back, a block at a time (each view good until the next; fewer
        bytes in all where the file ends first)."""
        buf = self._buffer(BLOCK + ALIGN)
        while start < end:
            base = start // ALIGN * ALIGN if self.direct else start
            want = min(_round_up(end - base) if self.direct else end - base, BLOCK)
            n = os.preadv(self.fd, [memoryview(buf)[:want]], base) - (start - base)
            if n <= 0:
                return
            n = min(n, end - start)
            yield memoryview(buf)[start - base:start - base + n]
            start += n

    def _buffer(self, size: int) -> mmap.mmap:
        if self._buf is None or len(self._buf) < size:
            if self._buf is not None:
                _pool.give(self._buf)
            self._buf = _pool.take(size)
        return self._buf

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._buf is not None:
            _pool.give(self._buf)
            self._buf = None
