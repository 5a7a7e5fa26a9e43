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

from ..errors import OptionError, SchemaError, TooManySkippedError, opt


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
    counts = (total - len(bad), total, len(bad))
    if partial is None:
        raise TooManySkippedError(f"{head}; the cache there was built so and is up to date: fix those items and "
                                  f"build again, or raise {opt('max_skipped')}").counted(*counts)
    raise TooManySkippedError(f"{head}; nothing was committed, the baked items are kept in {partial}: fix those "
                              f"items and build again, or re-run with a higher {opt('max_skipped')} to commit them "
                              "(that resumes: nothing is baked again)").counted(*counts)


OTHER_COLUMNS = "other columns than the items':"  # the reason of an item whose keys are not the columns'
FIRST_HAD = " (the first item that baked has "  # then the columns: what a strict build stops on, named


def check_column_sets(bad: Sequence[tuple[int, str]], columns: Sequence[str], total: int,
                      key: Callable[[int], str]) -> None:
    """A SchemaError when some items have other keys than the columns (their reason starts with
    :data:`OTHER_COLUMNS`): the build is refused whatever the order of the items, rather than keeping those that
    happen to agree with the first."""
    other = [(i, reason[len(OTHER_COLUMNS):].split(FIRST_HAD)[0].strip()) for i, reason in bad
             if reason.startswith(OTHER_COLUMNS)]
    if not other:
        return
    sets: dict[str, list[int]] = {}
    for i, names in sorted(other):
        sets.setdefault(names, []).append(i)
    plain = total - len(bad)
    found = [(len(rows), names, f", e.g. {key(rows[0])}") for names, rows in sets.items()]
    if plain:  # the first item with the columns' keys: one that is not bad
        skipped = {i for i, _ in bad}
        found.append((plain, repr(sorted(columns)), f", e.g. {key(next(i for i in range(total) if i not in skipped))}"))
    shown = [f"{names} ({n:,} item{'s' if n != 1 else ''}{example})"
             for n, names, example in sorted(found, key=lambda f: (-f[0], f[1]))]  # the same in any item order
    raise SchemaError(f"the items have different keys: {'; '.join(shown)}; every item needs a value for every column, "
                      "so nothing was committed — return the same keys from every item (for a value only some items "
                      "have, an empty array in the others with the column declared ragged, or a flag column)")


def check_dtypes(dtypes: Sequence[tuple[str, str]], specs: Sequence[Any], out: Path) -> None:
    """Every column named by ``dtypes`` must be a column of the items."""
    names = [c.name for c in specs]
    missing = [c for c, _ in dtypes if c not in names]
    if missing:
        raise OptionError(f"{opt('dtypes')} names {missing}, which the items of the build of {out} do not have; "
                          f"their columns are {names}")
