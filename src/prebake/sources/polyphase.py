"""Polyphase resampling in numpy alone: ``scipy.signal.resample_poly`` with its defaults, without importing
scipy.signal (0.5-0.8 s of imports per bake worker, more than the whole start-up budget of a build).

The filter is scipy's: a ``firwin`` low-pass of ``2 * half_len + 1`` taps, ``half_len = 10 * max(up, down)``,
cutoff ``1 / max(up, down)`` of Nyquist, Kaiser window (beta 5), scaled to unit DC gain and then by ``up``;
the input is padded with zeros (``padtype='constant'``) and output sample ``o`` is centred on input time
``o * down / up``. Only the products with nonzero samples are formed, never the zero-stuffed upsampled signal:
output ``o`` is the ``width = ceil(taps / up)`` input samples ending at ``(half_len + o * down) // up`` times the
taps of its phase ``(half_len + o * down) % up``. Outputs ``o, o + up, o + 2 * up, ...`` share a phase and read
windows ``down`` samples apart, so with many outputs per phase each phase is one matrix-vector product over a
strided window view; with few (large ``up``), each block of outputs gathers its windows and taps.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import BadItemError, opt
from .notes import note

#: Largest up or down factor (after dividing by the gcd): the filter has 20x as many taps, each in float64.
MAX_FACTOR = 1 << 18
#: Most float64 samples one result may hold (8 GiB): hours of audio fit, a 1 Hz header upsampled to 192 kHz does not.
MAX_OUTPUT = 1 << 30
#: Cap on one block of gathered windows (elements), so long recordings stay in bounded memory.
BLOCK_ELEMENTS = 1 << 20
#: Per-phase matrix products pay off when each phase has this many outputs; below, gather per output.
MIN_PER_PHASE = 32


@functools.lru_cache(maxsize=4)
def kaiser_lowpass(up: int, down: int) -> np.ndarray:
    """scipy's ``resample_poly`` filter: ``firwin(2 * half_len + 1, 1 / max(up, down), window=('kaiser', 5.0))
    * up``, in float64, read-only (kept for the next item: a build resamples every item by the same pair)."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    numtaps = 2 * half_len + 1
    cutoff = 1.0 / max_rate
    m = np.arange(numtaps, dtype=np.float64) - 0.5 * (numtaps - 1)
    h = cutoff * np.sinc(cutoff * m)
    h *= np.kaiser(numtaps, 5.0)
    h /= h.sum()  # unit gain at DC, as firwin's scale=True does for a low-pass
    h *= up
    h.flags.writeable = False
    return h


def _factors(up: int, down: int) -> tuple[int, int]:
    for name, value in (("up", up), ("down", down)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise BadItemError(f"resampling factor {name}={value!r} is not a positive integer; "
                               "pass the two sample rates (or their ratio) as integers >= 1")
    g = math.gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    if max(up, down) > MAX_FACTOR:
        raise BadItemError(
            f"resampling by {up}/{down} (after dividing by the common factor {g}) needs a filter of "
            f"{20 * max(up, down) + 1:,} taps; prebake allows factors up to {MAX_FACTOR:,}: choose a target rate "
            "that shares a larger common divisor with the source rate (e.g. 16000 for 44100 Hz is 160/441)")
    return up, down


def _as_float(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise BadItemError(f"cannot resample a signal of dtype {x.dtype} ({x.shape}); expected integer or "
                           "floating-point samples: convert the signal to int16 or float32 before resampling")
    return x.astype(np.float64)


def _phase_taps(h: np.ndarray, up: int) -> tuple[np.ndarray, int]:
    """Row ``p`` holds phase ``p``'s taps reversed (zeros fill short phases), so an output is window @ row."""
    width = -(-len(h) // up)
    padded = np.zeros(width * up)
    padded[: len(h)] = h
    return np.ascontiguousarray(padded.reshape(width, up).T[:, ::-1]), width


def _per_phase(xp: np.ndarray, taps: np.ndarray, half_len: int, up: int, down: int, y: np.ndarray) -> None:
    """Outputs ``o0, o0 + up, ...`` share a phase and read windows ``down`` samples apart: one product per block."""
    channels, width = xp.shape[0], taps.shape[1]
    windows = sliding_window_view(xp, width, axis=1)  # (C, positions, width), a view
    block = max(1, BLOCK_ELEMENTS // (width * channels))
    # BLAS takes windows that do not overlap (down >= width); overlapping ones go to numpy's non-BLAS matmul loop,
    # which einsum's contiguous inner sum beats (48 kHz -> 16 kHz: 4.8 ms against 6.6 ms for 10 s of stereo)
    product = np.matmul if down >= width else lambda w, r: np.einsum("cnw,w->cn", w, r)
    for o0 in range(min(up, y.shape[1])):
        t0 = half_len + o0 * down
        row, start = taps[t0 % up], t0 // up
        outputs = range(o0, y.shape[1], up)
        for b in range(0, len(outputs), block):
            n = len(outputs[b: b + block])
            s = start + b * down
            here = windows[:, s: s + (n - 1) * down + 1: down]
            y[:, outputs[b]: outputs[b] + (n - 1) * up + 1: up] = product(here, row)


def _per_output(xp: np.ndarray, taps: np.ndarray, half_len: int, up: int, down: int, y: np.ndarray) -> None:
    """Few outputs per phase (large ``up``): gather each output's window and its phase's taps, in blocks."""
    channels, width = xp.shape[0], taps.shape[1]
    block = max(1, BLOCK_ELEMENTS // (width * (channels + 1)))
    span = np.arange(width)
    for a in range(0, y.shape[1], block):
        t = half_len + np.arange(a, min(a + block, y.shape[1]), dtype=np.int64) * down
        windows = xp[:, (t // up)[:, None] + span]  # (C, B, width)
        y[:, a: a + len(t)] = np.einsum("cbw,bw->cb", windows, taps[t % up])


def resample_poly(x: np.ndarray, up: int, down: int, axis: int = 0) -> np.ndarray:
    """``x`` resampled by ``up / down`` along ``axis``, in float64: equal to ``scipy.signal.resample_poly(
    x.astype(np.float64), up, down, axis=axis)`` (scipy's default Kaiser window and zero padding) to rounding.

    ``x`` holds integer or floating-point samples (float32 is resampled in float64, where scipy would stay in
    float32). Raises :class:`BadItemError` for factors that are not positive integers, factors above
    :data:`MAX_FACTOR` after dividing by their gcd, and non-numeric samples.
    """
    x = np.asarray(x)
    up, down = _factors(up, down)
    y = _as_float(x)
    if x.ndim == 0:
        raise BadItemError("cannot resample a 0-d signal (a single number); expected samples along an axis")
    if up == down == 1:
        return y
    axis = _axis(axis, x.ndim)
    moved = np.moveaxis(y, axis, -1)
    n_in = moved.shape[-1]
    n_out = -(-n_in * up // down)
    flat = moved.reshape(math.prod(moved.shape[:-1]), n_in)
    out = _resample_rows(flat, up, down, n_out)
    return np.moveaxis(out.reshape(*moved.shape[:-1], n_out), -1, axis)


def _axis(axis: int, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise BadItemError(f"axis={axis!r} is not an axis of a {ndim}-d signal; pass an integer in [{-ndim}, {ndim})")
    return int(axis) % ndim


def _resample_rows(flat: np.ndarray, up: int, down: int, n_out: int) -> np.ndarray:
    """Resample each row of ``flat`` (C, T) to ``n_out`` samples."""
    channels, n_in = flat.shape
    too_big = BadItemError(f"resampling {channels} x {n_in:,} samples by {up}/{down} gives {channels} x {n_out:,} "
                           f"float64 samples ({channels * n_out * 8:,} bytes), more than {MAX_OUTPUT:,} samples or "
                           "more than this machine can allocate; split the recording or choose a lower target rate")
    if channels * n_out > MAX_OUTPUT:
        raise too_big
    try:
        y = np.empty((channels, n_out))
    except MemoryError:
        raise too_big from None
    if n_out == 0 or channels == 0:
        return y
    h = kaiser_lowpass(up, down)
    half_len = (len(h) - 1) // 2
    taps, width = _phase_taps(h, up)
    last = (half_len + (n_out - 1) * down) // up + width  # one past the last padded sample any window reads
    xp = np.zeros((channels, max(width - 1 + n_in, last)))
    xp[:, width - 1: width - 1 + n_in] = flat
    per_phase = n_out >= MIN_PER_PHASE * up
    with np.errstate(over="ignore", invalid="ignore"):  # huge samples overflow to inf: samples_as refuses those
        (_per_phase if per_phase else _per_output)(xp, taps, half_len, up, down, y)
    return y


def samples_as(y: np.ndarray, x: np.ndarray, what: str = "resampling") -> np.ndarray:
    """Float64 result ``y`` back in the dtype of the signal ``x``: integers rounded and clipped (a filter's
    overshoot saturates, never wraps), the clipped samples counted in the build's notes (:mod:`.notes`), as the
    decode counts its own; floats cast. A finite float signal whose result leaves its dtype (the filter overshoots
    a step by ~10%, so a signal near the dtype's largest value can) is a BadItemError."""
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        y = np.rint(y)
        over = int(np.count_nonzero((y < info.min) | (y > info.max)))
        if over:
            note(f"audio samples beyond {x.dtype} full scale after {what} clipped (the filter overshoots steep "
                 f"edges); keep them with {opt('audio_dtype', 'float32')}, or scale the recordings down", over)
        return np.clip(y, info.min, info.max).astype(x.dtype)
    top = np.finfo(x.dtype).max if x.dtype.kind == "f" else np.inf
    if np.isfinite(x).all() and not (np.isfinite(y).all() and np.abs(y).max(initial=0) <= top):
        peak = float(np.abs(x.astype(np.float64)).max())
        raise BadItemError(f"{what} a {x.dtype} signal whose largest |sample| is {peak:.4g} overflows {x.dtype} "
                           f"(largest {top:.4g}); scale the recording down first")
    return y.astype(x.dtype)
