"""How ``prebake bench`` and the benchmarks time a pipeline: whole epochs, in interleaved rounds, with the spread.

A pipeline is timed over *whole epochs*: an epoch's start-up (a DataLoader resetting its workers, a
Loader drawing its order), its short last batch and the wait for its first batch are all counted,
as a training loop pays them. Pipelines take turns, round after round, so the drift of a shared
machine hits them alike; since each turn ends with its epoch, nothing is left queued to run in
the background while the next pipeline is timed. A round lasts at least ``seconds`` and
``min_batches`` batches (whole epochs, so at least one). The warm-up is one round that is not
counted: worker start-up, first page faults, lazy initialisation. A pipeline's figure is the
median of its rounds' samples/s, reported with their minimum and maximum.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import OptionError


@dataclass
class Timed:
    """A pipeline to time: ``epoch()`` iterates one epoch of batches, ``count(batch)`` its samples."""

    name: str
    epoch: Callable[[], Iterable[Any]]
    count: Callable[[Any], int]
    check: Callable[[Any], None] = lambda batch: None  # called on every batch of its first epoch
    checked: bool = False
    per_round: list[float] = field(default_factory=list)  # samples/s of each timed round
    samples: int = 0
    seconds: float = 0.0
    batches: int = 0

    @property
    def samples_per_s(self) -> float | None:
        return statistics.median(self.per_round) if self.per_round else None

    def spread(self) -> tuple[float, float] | None:
        """(slowest, fastest) round, in samples/s."""
        return (min(self.per_round), max(self.per_round)) if self.per_round else None


def round_of(pipe: Timed, seconds: float, min_batches: int, sync: Callable[[], None], counted: bool = True) -> None:
    """Whole epochs of ``pipe`` until ``seconds`` and ``min_batches`` are both reached (its first epoch ever
    goes through ``pipe.check``); recorded unless ``counted`` is False (a warm-up)."""
    sync()
    samples = batches = 0
    t0 = time.perf_counter()
    while True:
        before, check = batches, not pipe.checked
        for batch in pipe.epoch():
            if check:
                pipe.check(batch)
            samples += pipe.count(batch)
            batches += 1
            del batch  # a pipeline may reuse a batch's memory once it is dropped
        if batches == before:
            raise OptionError(f"{pipe.name}: an epoch gave no batch (fewer items than one batch with drop_last?); "
                              "use a smaller batch size or more items")
        pipe.checked = True
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and batches >= min_batches:
            break
    if counted:
        pipe.per_round.append(samples / elapsed)
        pipe.samples += samples
        pipe.seconds += elapsed
        pipe.batches += batches


def time_rounds(pipes: Sequence[Timed], seconds: float, rounds: int = 5, min_batches: int = 20, warmup: int = 1,
                sync: Callable[[], None] = lambda: None, progress: Callable[[str], None] | None = None) -> None:
    """Time ``pipes`` in turn: ``warmup`` rounds each (one epoch, not counted),
    then ``rounds`` rounds of at least ``seconds / rounds`` and ``min_batches`` each."""
    if rounds < 1 or seconds <= 0 or warmup < 0 or min_batches < 1:
        raise OptionError(f"rounds={rounds}, seconds={seconds}, warmup={warmup}, min_batches={min_batches}: timing "
                          "needs rounds >= 1, seconds > 0, warmup >= 0 and min_batches >= 1; pass rounds=5, "
                          "seconds=3 for example")
    for pipe in pipes:
        if progress:
            progress(f"timing {pipe.name}: {rounds} rounds of >= {seconds / rounds:.2g} s after {warmup} warm-up")
        for k in range(warmup):
            round_of(pipe, 0.0, 1, sync, counted=False)
    for _ in range(rounds):
        for pipe in pipes:
            round_of(pipe, seconds / rounds, min_batches, sync)


def ratio_spread(mine: Timed, other: Timed) -> tuple[float, float] | None:
    """(lowest, highest) of ``mine``'s samples/s over ``other``'s, round by round (the same rounds' machine)."""
    pairs = [a / b for a, b in zip(mine.per_round, other.per_round) if b > 0]
    return (min(pairs), max(pairs)) if pairs else None
