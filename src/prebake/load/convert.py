"""``Loader(convert={...})``: elementwise conversions fused into the host gather.

A baked CT volume is int16 in HU and training wants float32 in [0, 1]. Converting after the
gather costs three more passes over the batch (the int16 copy read again, a float32 result
written, a clamp over it) at memory speed, and on a CPU those passes, not the gather, bound
the rate: 8 volumes of 96^3 gathered in 1.4 ms, and windowed to float32 in another 8.5 ms
(one thread, this 2-core machine). Here each item is read from its memory map straight into
the float32 output, in chunks of :data:`CHUNK` elements small enough to stay in the core's
cache while the op runs over them in place: 5.4 ms for the same batch on one torch thread,
3.1 ms on torch's two (the cast is torch's casting copy, split over its threads), bit-identical.
The rows are written to their drawn positions as they are read, so a sorted gather needs no
second pass to restore the drawn order either.

A converter is a ``torch.dtype`` (a plain cast) or an object with two methods:

- ``output_dtype(dtype) -> torch.dtype``: what it makes of a column of ``dtype``;
- ``apply_(x) -> None``: convert ``x`` in place, ``x`` already cast to the output dtype.

``apply_`` must be elementwise (each output element depends only on the same input element),
since it sees a chunk at a time; :class:`prebake.augment.IntensityWindow` is one. Rows that
a view marks invalid (context before a sequence, padding) are zeros after the conversion.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import OptionError
from .gather import Buffers, Pieces, Plan, Take, read_host, values_of

#: Elements converted per step: 512 KiB of float32 stays in a core's L2 while the op runs over it
#: (2^16-2^18 read the same on this machine's 2 MiB L2; 2^15 and 2^20 were 10% slower).
CHUNK = 1 << 17


class Converter(Protocol):
    def output_dtype(self, dtype: torch.dtype) -> torch.dtype: ...

    def apply_(self, x: torch.Tensor) -> Any: ...


class Cast:
    """The converter of a plain ``torch.dtype``: the cast alone."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return self.dtype

    def apply_(self, x: torch.Tensor) -> None:
        return None

    def __repr__(self) -> str:
        return str(self.dtype)


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype.newbyteorder("="))).dtype


def resolve(convert: Mapping[str, Any] | None, columns: list[str], dtypes: Mapping[str, np.dtype]
            ) -> dict[str, tuple[Converter, np.dtype]]:
    """Check ``convert`` against the Loader's columns: ``{column: (converter, output numpy dtype)}``, or an
    OptionError naming the column, the value and the fix."""
    if not convert:
        return {}
    if not isinstance(convert, Mapping):
        raise OptionError(f"convert={convert!r}: expected a dict of column -> converter, e.g. "
                          "convert={'image': torch.float32}")
    out: dict[str, tuple[Converter, np.dtype]] = {}
    for name, value in convert.items():
        if name not in columns:
            raise OptionError(f"convert names column {name!r}, which this Loader does not read; "
                              f"its columns are {columns}")
        dtype = dtypes[name]
        if dtype.kind not in "biuf":
            raise OptionError(f"convert={{{name!r}: ...}}: column {name!r} holds {dtype}, not numbers; "
                              "only numeric columns convert")
        conv = Cast(value) if isinstance(value, torch.dtype) else value
        if not (callable(getattr(conv, "output_dtype", None)) and callable(getattr(conv, "apply_", None))):
            raise OptionError(f"convert={{{name!r}: {value!r}}}: expected a torch dtype (torch.float32) or an "
                              "elementwise op with output_dtype() and apply_(), such as "
                              "prebake.augment.IntensityWindow(-1000, 1000)")
        target = conv.output_dtype(_torch_dtype(dtype))
        try:
            out[name] = (conv, _np_dtype(target))
        except TypeError:
            raise OptionError(f"convert={{{name!r}: {value!r}}} makes {target}, which numpy cannot hold; "
                              "convert to float32 here and cast on the device in transform") from None
    return out


def read_converted(take: Take, values: np.ndarray, conv: Converter, dtype: np.dtype, buffers: Buffers | None,
                   order: np.ndarray | None) -> list[tuple[str, Any]]:
    """What ``take`` gives a batch, each row read from ``values`` into an output of ``dtype`` and converted
    there, chunk by chunk. ``order`` (the sorted position -> drawn position of each sample, or None) puts
    fixed-shape outputs in the drawn order as they are written; whole ragged items stay in the plan's order
    (restoring theirs moves no data)."""
    out: list[tuple[str, Any]] = []
    for part in take.parts:
        rows = part.rows.reshape(-1)
        shape = (len(rows), *values.shape[1:])
        arr = buffers.empty(shape, dtype) if buffers is not None else np.empty(shape, dtype)
        flat = arr.reshape(len(rows), -1)
        dest = np.arange(len(rows)) if order is None or take.lengths is not None else _dest(order, part.rows)
        _convert_rows(values, rows, dest, flat, conv)
        if part.valid is not None:
            flat[dest[~part.valid.reshape(-1)]] = 0
        arr = arr.reshape(*part.rows.shape, *values.shape[1:])
        out.append((part.key, arr if take.lengths is None else Pieces(arr, take.lengths)))
    return out


def _dest(order: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where each flat row of a part goes: sample ``s`` of the sorted plan is sample ``order[s]`` drawn."""
    per = int(np.prod(rows.shape[1:], dtype=np.int64))
    return (order[:, None] * per + np.arange(per)).reshape(-1)


def _convert_rows(values: np.ndarray, rows: np.ndarray, dest: np.ndarray, flat: np.ndarray, conv: Converter) -> None:
    width = flat.shape[1]
    if width >= CHUNK:  # large rows (a volume): each straight into its destination, a chunk at a time
        source, out = _tensor(values), torch.from_numpy(flat)
        for r, d in zip(rows.tolist(), dest.tolist()):
            src, dst = (values[r].reshape(-1) if source is None else source[r]), out[d]
            for s in range(0, width, CHUNK):
                piece = dst[s:s + CHUNK]
                if source is None:  # a dtype torch cannot view: numpy's casting copy, one thread
                    np.copyto(piece.numpy(), src[s:s + CHUNK], casting="unsafe")
                else:
                    piece.copy_(src[s:s + CHUNK])  # torch's casting copy: vectorised, and split over its threads
                conv.apply_(piece)
        return
    per = max(1, CHUNK // max(1, width))  # small rows: a block of them through a scratch chunk
    scratch = np.empty((min(per, len(rows)), width), flat.dtype)
    for s in range(0, len(rows), per):
        block = scratch[:len(rows[s:s + per])]
        np.copyto(block, np.take(values, rows[s:s + per], axis=0).reshape(len(block), width), casting="unsafe")
        conv.apply_(torch.from_numpy(block))
        flat[dest[s:s + per]] = block


#: Source dtypes read through torch's casting copy (numpy's ``copyto`` for the others: it is one thread).
_TORCH_READS = frozenset(np.dtype(t) for t in ("u1", "i1", "i2", "i4", "i8", "f2", "f4", "f8"))


def one_gather_thread(convert: Mapping[str, tuple[Converter, np.dtype]], data: Mapping[str, Any]) -> bool:
    """Whether the Loader should gather on one thread: a converted column has rows of at least
    :data:`CHUNK` elements, which convert on torch's own threads (``torch.get_num_threads() > 1``).

    Each thread that enters torch's parallel region brings a team of ``torch.get_num_threads()``
    threads of its own, and once the process has more such threads than cores, GNU OpenMP stops
    letting them spin between regions, so every region (three per chunk) waits for its threads to
    wake. In the medical bench (8 int16 volumes of 96^3 per batch, this 2-core machine) two Loader
    threads converting read 1,100-1,300 samples/s; one, its team spinning, 2,500-3,000; one thread
    that converts for the others (a hand-off per batch) 2,000-2,300.
    """
    if torch.get_num_threads() < 2:
        return False
    for name in convert:
        values = values_of(data[name])
        if values.ndim and int(np.prod(values.shape[1:], dtype=np.int64)) >= CHUNK and _tensor(values) is not None:
            return True
    return False


def _tensor(values: np.ndarray) -> torch.Tensor | None:
    """``values`` as a torch tensor over the same memory (no copy), or None where torch cannot view it.

    The cache's memory maps are read-only. ``torch.from_numpy`` warns about that (nothing here
    writes to them), and a user's ``-W error`` would make the warning an error in a gather
    thread; DLPack 1.0 hands the array over with its read-only flag instead, silently.

    ``Tensor.copy_`` casts about 1.9x as fast as ``np.copyto`` on this machine with torch's two
    threads (8 int16 volumes of 96^3 into float32: 3.1 against 5.7 ms), and 1.1x on one."""
    if (values.dtype not in _TORCH_READS or not values.dtype.isnative or values.ndim == 0
            or not values.flags.c_contiguous):  # a reshape would copy the whole column
        return None
    flat = values.reshape(len(values), -1)
    try:
        return torch.from_dlpack(flat)  # DLPack 1.0 carries the read-only flag: no copy and no warning
    except (BufferError, TypeError, RuntimeError):  # a torch or numpy without it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(flat)


def read_plan(plan: Plan, data: Mapping[str, Any], buffers: Buffers | None,
              convert: Mapping[str, tuple[Converter, np.dtype]],
              order: np.ndarray | None) -> tuple[dict[str, Any], set[str]]:
    """Execute ``plan`` as :func:`~prebake.load.gather.read_host` does, the columns in ``convert`` through
    :func:`read_converted`; also returns the outputs already in the drawn order."""
    plain = Plan(tuple(t for t in plan.takes if t.column not in convert), plan.extra)
    got = read_host(plain, data, buffers)
    drawn: set[str] = set()
    for take in plan.takes:
        if take.column in convert and take.boxes is not None:
            got[take.parts[0].key] = take.boxes.converted(values_of(data[take.column]), *convert[take.column], buffers)
        elif take.column in convert:
            got.update(read_converted(take, values_of(data[take.column]), *convert[take.column], buffers, order))
            if take.lengths is None and order is not None:
                drawn.update(p.key for p in take.parts)
    return got, drawn


__all__ = ["CHUNK", "Cast", "Converter", "one_gather_thread", "read_converted", "read_plan", "resolve"]
