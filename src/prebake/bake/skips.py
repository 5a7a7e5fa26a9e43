"""How many items a build may skip (``max_skipped``), and the ``dtypes`` it was given, checked.

"Skipped" means unreadable or invalid (bake/schema.py: never "unlike the first item"), and
every build says how many it kept: ``kept K of N, skipped S``. ``max_skipped`` makes too many
an error before anything is committed: a count of items (0, 1, 2, ...) or a fraction of the
source below 1 (0.05). The baked chunks stay in the partial build, so re-running with a higher
limit commits them without baking anything again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import OptionError, TooManySkippedError, opt


def allowed(limit: float, total: int) -> float:
    """The most items ``limit`` lets a build of ``total`` items skip."""
    return limit * total if 0 < limit < 1 else limit


def check_skipped(out: Path, bad: Sequence[tuple[int, str]], total: int, limit: float | None,
                  key: Callable[[int], str], partial: Path | None) -> None:
    """A TooManySkippedError when more than ``limit`` of ``total`` items are ``bad`` (``partial``: the partial
    build that keeps the baked chunks; None: ``out`` is a committed cache that was up to date)."""
    if limit is None or len(bad) <= allowed(limit, total):
        return
    kinds = Counter(reason.split(":", 1)[0].strip() for _, reason in bad)
    shown = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(3))
    first = "; ".join(f"{key(i)}: {reason}" for i, reason in sorted(bad)[:3])
    shown_limit = limit if 0 < limit < 1 else int(limit)
    share = f" ({limit:.1%} of {total:,} items)" if 0 < limit < 1 else ""
    head = (f"{out}: {len(bad):,} of {total:,} items were skipped as bad, more than "
            f"{opt('max_skipped', shown_limit)} allows{share} — {shown} (first: {first})")
    if partial is None:
        raise TooManySkippedError(f"{head}; the cache there was built so and is up to date: fix those items and "
                                  f"build again, or raise {opt('max_skipped')}")
    raise TooManySkippedError(f"{head}; nothing was committed, the baked items are kept in {partial}: fix those "
                              f"items and build again, or re-run with a higher {opt('max_skipped')} to commit them "
                              "(that resumes: nothing is baked again)")


def check_dtypes(dtypes: Sequence[tuple[str, str]], specs: Sequence[Any], out: Path) -> None:
    """Every column named by ``dtypes`` must be a column of the items."""
    names = [c.name for c in specs]
    missing = [c for c, _ in dtypes if c not in names]
    if missing:
        raise OptionError(f"{opt('dtypes')} names {missing}, which the items of the build of {out} do not have; "
                          f"their columns are {names}")
