"""Progress bars for long work: one tqdm bar per split, on stderr, only when stderr is a terminal."""

from __future__ import annotations

from typing import Any


class ProgressBars:
    """A ``progress(split, done, total)`` callable that draws one bar per split; :meth:`close` ends them."""

    def __init__(self, quiet: bool = False, unit: str = "item"):
        self.quiet, self.unit = quiet, unit
        self.bars: dict[str, Any] = {}

    def __call__(self, split: str, done: int, total: int) -> None:
        bar = self.bars.get(split)
        if bar is None:
            from tqdm import tqdm

            # disable=None: tqdm shows the bar only on a terminal
            bar = self.bars[split] = tqdm(total=total, desc=split or "build", unit=self.unit, unit_scale=True,
                                          disable=True if self.quiet else None, leave=False)
        bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
