"""What a reader kept of an item but not all of: counted, so no loss is silent.

A reader that keeps an item but drops part of it (a float recording's samples above full
scale clipped to int16, a 48-bit image reduced to 8 bits per channel, the other pages of a
multi-page TIFF, NaN voxels filled by ``nan_fill``) calls :func:`note` with one sentence
that says what and how to keep it, and a count. The bake's workers hand their notes back
with each chunk (:func:`take_notes`); the build sums them into the manifest's ``notes``
(``[{"what", "count", "items"}]``), ``build.log`` and a WARNING (:func:`note_lines`).
Rows copied unchanged from a previous cache are not read again, so they add no notes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_pending: dict[str, list[int]] = {}


def note(what: str, count: int) -> None:
    """Record that one item lost ``count`` of something, said by ``what`` (a whole sentence with the fix)."""
    entry = _pending.setdefault(what, [0, 0])
    entry[0] += int(count)
    entry[1] += 1


def take_notes() -> dict[str, list[int]]:
    """The notes recorded in this process since the last call (``{what: [count, items]}``), and forget them."""
    taken = {k: list(v) for k, v in _pending.items()}
    _pending.clear()
    return taken


def merge_notes(chunks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The notes of every chunk, summed, in the manifest's form (largest count first)."""
    total: dict[str, list[int]] = {}
    for notes in chunks:
        for what, (count, items) in notes.items():
            entry = total.setdefault(what, [0, 0])
            entry[0] += int(count)
            entry[1] += int(items)
    rows = [{"what": w, "count": c, "items": n} for w, (c, n) in total.items()]
    return sorted(rows, key=lambda r: (-r["count"], r["what"]))


def note_lines(notes: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per note, for ``build.log`` and the build's WARNING."""
    return [f"{n['count']:,} {n['what']} (in {n['items']:,} item{'s' if n['items'] != 1 else ''})" for n in notes]
