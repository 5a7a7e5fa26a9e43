"""How the items of a mixed column reach the disk: once to a spill shard, once to the committed file.

Each trial bakes random mixed items (an image-like column of several sizes and two dtypes, a
fixed-shape column of two dtypes, strings of growing width) in random chunk sizes, with planted
bad items and ``max_skipped=0`` so the build stops with its chunks journaled. Then:

- the journal is read: in a build in one process, every chunk after the first that spilled a
  column spills every good item of it (such a column is rewritten at commit, so a row written
  into its provisional file would be written twice);
- sometimes a spill shard is cut short, as a damaged disk or a hand edit would: the resumed
  commit must refuse it with a CacheCorruptError naming the shard, never numpy's reshape error
  or a cache of wrong values;
- otherwise the build resumes and commits: every value equals the item cast to the column's
  dtype, each rewritten values file holds exactly the bytes ``np.save`` writes for the items
  concatenated in row order, and every checksum in the manifest is that of the file's bytes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

import prebake
from prebake.cache.format import JOURNAL, partial_path
from prebake.errors import CacheCorruptError, TooManySkippedError

from . import Row
from .schema import Items


def _make(rng: np.random.Generator) -> tuple[list[Any], set[int]]:
    """Random mixed items and the planted bad ones (at least one: the build stops before its commit)."""
    n = int(rng.integers(6, 30))
    sizes = [(int(rng.integers(1, 5)), int(rng.integers(1, 5))) for _ in range(int(rng.integers(1, 4)))]
    items: list[Any] = []
    for k in range(n):
        h, w = sizes[int(rng.integers(len(sizes)))]
        x = rng.integers(0, 200, (2, h, w)).astype(rng.choice(["u1", "u1", "u2"]))
        y = rng.integers(0, 100, (3,)).astype(rng.choice(["i2", "i2", "u1"]))
        items.append({"x": x, "y": y, "s": "s" * int(rng.integers(0, k + 2)), "label": k % 3, "id": k})
    bad = {int(k) for k in rng.choice(n, size=int(rng.integers(1, 3)), replace=False)}
    return [None if k in bad else it for k, it in enumerate(items)], bad


def _want(items: list[Any], column: str) -> np.ndarray:
    """Column ``column`` of the good items as the commit must store it: cast to their common dtype, in row order."""
    good = [it[column] for it in items if it is not None]
    dtype = np.result_type(*[v.dtype for v in good]) if len({v.dtype for v in good}) > 1 else good[0].dtype
    return np.concatenate([np.asarray(v, dtype).reshape(-1) for v in good])


def _npy_bytes(values: np.ndarray, shape: tuple[int, ...]) -> bytes:
    from io import BytesIO

    f = BytesIO()
    np.save(f, values.reshape(shape), allow_pickle=False)
    return f.getvalue()


def _journal_spills_every_later_item(row: Row, out: Path, items: list[Any], rows: int, tag: str) -> None:
    chunks = sorted((json.loads(line) for line in (partial_path(out) / JOURNAL).read_text().splitlines()),
                    key=lambda r: r["chunk"])
    for column in ("x", "y", "s"):
        seen = False
        for r in chunks:
            good = [i for i in range(r["chunk"] * rows, min((r["chunk"] + 1) * rows, len(items)))
                    if items[i] is not None]
            spilled = [s[0] for s in r.get("spills", {}).get(column, [])]
            if seen:
                row.check(spilled == good, f"{tag}: chunk {r['chunk']} came after {column!r} spilled, but spilled "
                          f"rows {spilled} of its good rows {good}: the others were written twice")
            seen = seen or bool(spilled)


def _cut_a_spill_shard(row: Row, out: Path, items: list[Any], rows: int, rng: np.random.Generator, tag: str
                       ) -> bool:
    """Cut one spill shard short and check the commit refuses it by name; False when no shard holds bytes."""
    shards = sorted(p for p in (partial_path(out) / "_shards").glob("*.spill.bin") if p.stat().st_size > 1)
    if not shards:
        return False
    shard = shards[int(rng.integers(len(shards)))]
    with open(shard, "r+b") as f:
        f.truncate(int(rng.integers(0, shard.stat().st_size)))
    try:
        prebake.build(Items(items, np.arange(len(items)), tag), out, workers=0, chunk_rows=rows, progress=False)
        row.fail(f"{tag}: a spill shard cut short was committed")
    except CacheCorruptError as e:
        row.check(shard.name in str(e) and "prebake clear" in str(e), f"{tag}: the refusal names no shard or fix: {e}")
    except Exception as e:  # noqa: BLE001 - anything but the named refusal is a failure to report
        row.fail(f"{tag}: a spill shard cut short gave {type(e).__name__}: {e}")
    return True


def _check_commit(row: Row, cache: Any, items: list[Any], tag: str) -> None:
    good = {it["id"]: it for it in items if it is not None}
    row.check(len(cache) == len(good), f"{tag}: {len(cache)} items kept of {len(good)} good ones")
    for i in range(len(cache)):
        got = cache[i]
        ref = good[int(got["id"])]
        same = all(np.array_equal(got[c], ref[c]) for c in ("x", "y")) and str(got["s"]) == ref["s"]
        row.check(bool(same), f"{tag}: item {int(got['id'])} differs from what was read")
    path = Path(cache.path)
    for column in ("x", "y"):
        spec = cache.manifest["columns"][column]
        values = next(iter(spec["files"]))  # the values file comes first (cache/format.py)
        want = _want(items, column)
        shape = (want.size,) if None in spec["shape"] else (len(good), *spec["shape"])
        row.check((path / values).read_bytes() == _npy_bytes(want, shape),
                  f"{tag}: {values} is not the bytes np.save writes for the items in row order")
    for column in cache.manifest["columns"].values():
        for name, f in column["files"].items():
            row.check(f["xxh3_64"] == stored_checksum(path, column, name), f"{tag}: the manifest's checksum of "
                      f"{name} is not that of its bytes")


def stored_checksum(path: Path, column: dict[str, Any], name: str) -> str:
    """The checksum of file ``name`` of the manifest entry ``column``, from its bytes on disk, as
    docs/concepts/cache-format.md defines it (written here apart from prebake's own code): the xxh3-64 of the
    file; for one with ``span_rows`` R (a values file the workers wrote in place), the xxh3-64 of the xxh3-64 of
    its .npy header and of every R rows' bytes, cut by the column's offsets file, 8 bytes little-endian each."""
    data = (path / name).read_bytes()
    rows = column["files"][name].get("span_rows")
    if rows is None:
        return xxhash.xxh3_64_hexdigest(data)
    offsets = np.load(path / list(column["files"])[1])  # values, then offsets (cache/format.py)
    size = np.dtype(column["dtype"]).itemsize
    head = len(data) - int(offsets[-1]) * size
    cuts = [0, *(head + int(offsets[r]) * size for r in range(0, len(offsets) - 1, rows)), len(data)]
    digests = [xxhash.xxh3_64_intdigest(data[a:b]) for a, b in zip(cuts, cuts[1:])]
    return xxhash.xxh3_64_hexdigest(b"".join(d.to_bytes(8, "little") for d in digests))


def mixed_writes(work_dir: Path, trials: int, seed: Any = 0) -> Row:
    """``trials`` random mixed builds, stopped before the commit and resumed (see the module docstring)."""
    row = Row("mixed items: written once per place, shards checked, committed bytes exact")
    rng = np.random.default_rng(seed)
    log = logging.getLogger("prebake")
    level = log.level
    log.setLevel(logging.CRITICAL)  # every trial skips items and stops builds on purpose
    try:
        for t in range(trials):
            _trial(row, Path(work_dir) / f"t{t}", rng, f"mixed-writes-{seed}-{t}")
    finally:
        log.setLevel(level)
    return row


def _trial(row: Row, work: Path, rng: np.random.Generator, tag: str) -> None:
    items, _ = _make(rng)
    out, rows = work / "c", int(rng.integers(1, 6))
    try:
        prebake.build(Items(items, np.arange(len(items)), tag), out, workers=0, chunk_rows=rows, max_skipped=0,
                      progress=False)
        row.fail(f"{tag}: a build with a planted bad item and max_skipped=0 was committed")
        return
    except TooManySkippedError:
        pass
    _journal_spills_every_later_item(row, out, items, rows, tag)
    if rng.random() < 0.3 and _cut_a_spill_shard(row, out, items, rows, rng, tag):
        shutil.rmtree(work, ignore_errors=True)
        return
    cache = prebake.build(Items(items, np.arange(len(items)), tag), out, workers=int(rng.choice([0, 2])),
                          chunk_rows=rows, progress=False)
    _check_commit(row, cache, items, tag)
    shutil.rmtree(work, ignore_errors=True)
