"""What a partial directory is building, and what a worker reports for each chunk of it.

A :class:`BuildPlan` is written as ``_plan.json`` when a build starts; a resumed build goes on
only with an identical plan. Each finished chunk is one :class:`ChunkResult`, a line of
``_journal.jsonl`` (:mod:`.partial`). Ragged rows of a chunk go to the shard files that
:func:`shard_files` names, until the commit stitches them (:mod:`.commit`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.format import SHARDS, ColumnSpec


@dataclass(frozen=True)
class BuildPlan:
    """What a partial directory is building; resume requires an identical plan."""

    digest: str
    num_keys: int
    chunk_rows: int
    columns: tuple[ColumnSpec, ...]
    staged: tuple[str, ...] = ()  # columns that stages write (in the building process), not the workers
    dropped: tuple[str, ...] = ()  # columns kept only while building (inputs of stages with keep=False)
    declared: tuple[str, ...] = ()  # columns declared ragged: ragged at commit even when every item agrees
    dtypes: tuple[tuple[str, str], ...] = ()  # (column, dtype) the user gave: every item is cast to it

    @property
    def num_chunks(self) -> int:
        return -(-self.num_keys // self.chunk_rows)

    def chunk_range(self, chunk: int) -> range:
        return range(chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.num_keys))

    @property
    def fixed(self) -> list[ColumnSpec]:
        return [c for c in self.columns if not c.ragged]

    @property
    def ragged(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.ragged]

    @property
    def item_columns(self) -> list[ColumnSpec]:
        """The columns the workers write: every column but the stages' outputs."""
        return [c for c in self.columns if c.name not in self.staged]

    @property
    def kept(self) -> list[ColumnSpec]:
        """The columns of the finished cache."""
        return [c for c in self.columns if c.name not in self.dropped]

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "num_keys": self.num_keys,
            "chunk_rows": self.chunk_rows,
            "columns": {c.name: c.to_json() for c in self.columns},
            "staged": list(self.staged),
            "dropped": list(self.dropped),
            "declared": list(self.declared),
            "dtypes": dict(self.dtypes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BuildPlan:
        cols = tuple(ColumnSpec.from_json(n, c) for n, c in d["columns"].items())
        return cls(d["digest"], int(d["num_keys"]), int(d["chunk_rows"]), cols, tuple(d.get("staged", ())),
                   tuple(d.get("dropped", ())), tuple(d.get("declared", ())),
                   tuple((str(k), str(v)) for k, v in dict(d.get("dtypes") or {}).items()))

    @property
    def given(self) -> dict[str, str]:
        """The dtype the user gave each column (``--dtype COL=DTYPE``)."""
        return dict(self.dtypes)


@dataclass
class ChunkResult:
    """What a worker reports for one chunk: skipped rows, column statistics, and the files its
    transforms and stages read (``{path: identity}``, identity/reads.py).

    ``seen``: per column, the dtypes of the chunk's good items that have elements, ``{dtype: [count, first row]}``;
    ``empty``: the same of those with none, which any dtype of their family holds (they vote only when every item
    of the column is empty). ``ranges``: per column, ``{integer dtype (native byte order): [min, max]}`` of the
    values of its items of that dtype (those written into the provisional rows counted under the provisional
    dtype): what lets a float promotion hold them (bake/schema.py); a chunk journaled without them holds values unknown.
    ``spills``: per column, the items that did not fit the column's provisional spec (another
    shape or dtype), ``[[row, dtype, shape], ...]`` in row order, whose bytes are in the chunk's
    spill shard (:func:`spill_shard`), or, for the rows in ``placed``, at their row's offset in the column's
    placed file (:func:`placed_files`, bake/placed.py). The commit decides every column from these (bake/schema.py).
    ``spans``: per column whose every row of the chunk was placed, the xxh3-64 (16 hex digits) of the chunk's bytes
    in the placed file, hashed by the worker as it wrote them: the span checksum's digest (cache/spans.py).
    """

    chunk: int
    bad: list[tuple[int, str]] = field(default_factory=list)
    stats: dict[str, list[Any]] = field(default_factory=dict)
    reads: dict[str, list[Any]] = field(default_factory=dict)
    seen: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    spills: dict[str, list[list[Any]]] = field(default_factory=dict)
    notes: dict[str, list[int]] = field(default_factory=dict)  # what the readers kept only part of (sources/notes.py)
    placed: dict[str, list[int]] = field(default_factory=dict)  # per column, the spilled rows in its placed file
    empty: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    ranges: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    spans: dict[str, str] = field(default_factory=dict)  # per column, the xxh3-64 of its placed bytes (cache/spans.py)

    def to_json(self) -> str:
        extra = {k: v for k, v in (("reads", self.reads), ("seen", self.seen), ("spills", self.spills),
                                   ("notes", self.notes), ("placed", self.placed), ("empty", self.empty),
                                   ("ranges", self.ranges), ("spans", self.spans)) if v}
        return json.dumps({"chunk": self.chunk, "bad": self.bad, "stats": self.stats, **extra})

    @classmethod
    def from_json(cls, line: str) -> ChunkResult:
        d = json.loads(line)
        return cls(int(d["chunk"]), [(int(i), str(r)) for i, r in d["bad"]], d["stats"], dict(d.get("reads") or {}),
                   dict(d.get("seen") or {}), dict(d.get("spills") or {}), dict(d.get("notes") or {}),
                   {str(k): [int(x) for x in v] for k, v in dict(d.get("placed") or {}).items()},
                   dict(d.get("empty") or {}), dict(d.get("ranges") or {}),
                   {str(k): str(v) for k, v in dict(d.get("spans") or {}).items()})


def shard_files(path: Path, name: str, chunk: int) -> tuple[Path, Path]:
    """The values and lengths files of ragged column ``name`` for ``chunk`` in the partial directory ``path``."""
    base = path / SHARDS / f"{name}.{chunk:06d}"
    return base.with_name(base.name + ".values.npy"), base.with_name(base.name + ".lengths.npy")


def shapes_shard(path: Path, name: str, chunk: int) -> Path:
    """The item shapes of ragged N-D column ``name`` for ``chunk``, ``(items, ndim)`` int64."""
    return path / SHARDS / f"{name}.{chunk:06d}.shapes.npy"


def spill_shard(path: Path, name: str, chunk: int) -> Path:
    """The raw bytes (C order, back to back) of the items of ``chunk`` that did not fit column ``name``'s provisional
    spec; their dtypes and shapes are in the journal (:attr:`ChunkResult.spills`)."""
    return path / SHARDS / f"{name}.{chunk:06d}.spill.bin"


def placed_files(path: Path, name: str) -> tuple[Path, Path]:
    """Column ``name``'s placed file (a values file the workers fill at each row's offset) and its offsets
    (int64, rows + 1) in the partial directory ``path`` (bake/placed.py)."""
    return path / SHARDS / f"{name}.placed.bin", path / SHARDS / f"{name}.placed.npy"


def chunk_shards(path: Path, spec: ColumnSpec, result: ChunkResult) -> list[Path]:
    """Every shard file that ``result``'s chunk wrote for column ``spec`` (what must be durable before the journal)."""
    files = list(shard_files(path, spec.name, result.chunk)) if spec.ragged else []
    if spec.shaped:
        files.append(shapes_shard(path, spec.name, result.chunk))
    placed = result.placed.get(spec.name, ())
    if len(result.spills.get(spec.name, ())) > len(placed):
        files.append(spill_shard(path, spec.name, result.chunk))
    if placed:
        files.append(placed_files(path, spec.name)[0])
    return files


def tiles(plan: BuildPlan) -> bool:
    """Whether the plan's chunks cover rows 0..num_keys-1 in order, each once, none empty."""
    if plan.chunk_rows <= 0 or plan.num_keys < 0:
        return False
    ranges = [plan.chunk_range(c) for c in range(plan.num_chunks)]
    edges = [0] + [r.stop for r in ranges]
    return all(len(r) > 0 and r.start == edges[k] for k, r in enumerate(ranges)) and edges[-1] == plan.num_keys
