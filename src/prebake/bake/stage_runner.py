"""Stages inside a build: their output columns planned from a probe item, then run on each finished chunk.

A stage itself (:class:`prebake.Stage`, what it computes and its fingerprint) is :mod:`prebake.steps.stage`;
this is where the build calls it: :func:`plan_stages` before any work, :class:`StageRunner` in the
building process on every chunk the workers finished (or in Ray actors: :mod:`.ray_executor`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import OptionError
from ..identity.reads import merge, recording, take
from ..steps.stage import Columns, Stage
from .placed import load_npy


def plan_stages(stages: Sequence[Stage], item_specs: Sequence[Any], probe_item: Mapping[str, Any]
                ) -> tuple[list[Any], tuple[str, ...], tuple[str, ...]]:
    """``(output specs, staged names, dropped names)``: the stages run once on the probe item give the
    outputs' dtypes and shapes (ragged when an output is split per item)."""
    from ..cache.format import ColumnSpec

    columns: Columns = {s.name: ([probe_item[s.name]] if s.ragged else np.asarray(probe_item[s.name])[None])
                        for s in item_specs}
    specs: list[Any] = []
    for stage in stages:
        taken = [o for o in stage.outputs if o in columns]
        if taken:
            raise OptionError(f"stage {stage.name!r} writes {taken}, which the items or an earlier stage already have; "
                              "give its outputs new names")
        with recording():  # what it reads enters the fingerprint (identity/reads.py)
            out = stage.run(columns)
        for name in stage.outputs:
            value = out[name]
            if isinstance(value, list):
                specs.append(ColumnSpec.of(name, value[0].dtype, value[0].shape[1:], ragged=True))
            else:
                specs.append(ColumnSpec.of(name, value.dtype, value.shape[1:]))
        columns.update(out)
    kept_inputs = {c for s in stages if s.keep for c in s.inputs}
    dropped = tuple(sorted({c for s in stages if not s.keep for c in s.inputs} - kept_inputs))
    return specs, tuple(s.name for s in specs), dropped


class StageRunner:
    """Runs the stages on each chunk the workers finished, in the building process, before it is journaled.

    The workers keep baking the next chunks meanwhile, so the device does not wait for
    decoding. Rows that were skipped as bad get no stage output; rows copied unchanged from
    the previous cache keep their old outputs (the stages do not run for them).
    """

    def __init__(self, stages: Sequence[Stage], partial: Any, progress: Callable[[str, int, int], None] | None,
                 split: str):
        self.stages, self.partial, self.progress = list(stages), partial, progress
        self.plan = partial.plan
        self.key = f"{split}: stages" if split else "stages"
        self._mapped: Any = None
        self._old: Any = None
        self.items, self.seconds = 0, 0.0  # for the closing log line
        self.util: list[float] = []

    def process(self, result: Any, reuse: np.ndarray | None) -> None:
        """Write every staged column of ``result.chunk`` (fixed rows in the maps, ragged ones as shards)."""
        import time

        from ..cache.stats import chunk_stats

        plan, rows = self.plan, self.plan.chunk_range(result.chunk)
        bad = {i for i, _ in result.bad}
        good = np.array([i for i in rows if i not in bad], dtype=np.int64)
        reused = np.zeros(len(good), bool) if reuse is None else reuse[good - rows.start] >= 0
        fresh = good[~reused]
        if self._mapped is None:
            self._mapped = self.partial.open_columns()
        arrays = self._mapped.arrays
        t0 = time.perf_counter()
        columns = self._inputs(result.chunk, good, ~reused) if len(fresh) else {}
        with recording():  # the files a stage reads enter the fingerprint, with the chunk's (identity/reads.py)
            for stage in self.stages if len(fresh) else []:
                columns.update(stage.run(columns))
        result.reads = merge(dict(result.reads), take())
        self.seconds += time.perf_counter() - t0
        self.items += len(fresh)
        for spec in (c for c in plan.columns if c.name in plan.staged):
            if not spec.ragged:
                if len(fresh):
                    arrays[spec.name][fresh] = columns[spec.name]
                stats = chunk_stats(arrays[spec.name][good]) if len(good) else None
            else:
                items = self._ragged_rows(spec, columns.get(spec.name, []), reused, reuse, good - rows.start)
                self.partial.write_shard(spec, result.chunk, items)
                stats = chunk_stats(np.concatenate(items)) if items else None
            if stats is not None:
                result.stats[spec.name] = stats
        self._mapped.flush_rows(rows.start, rows.stop)
        self._sample_utilisation()
        if self.progress:
            self.progress(self.key, self.items, plan.num_keys)

    def _inputs(self, chunk: int, good: np.ndarray, fresh: np.ndarray) -> Columns:
        """The item columns of the chunk's fresh good rows, as the stages take them."""
        wanted = {c for s in self.stages for c in s.inputs}
        out: Columns = {}
        for spec in self.plan.item_columns:
            if spec.name not in wanted:
                continue
            if spec.ragged:
                values_file, lengths_file = self.partial.shard_files(spec.name, chunk)
                values = load_npy(values_file, mmap=True)  # beside the write-ahead thread's reads (load_npy)
                lengths = load_npy(lengths_file)
                items = np.split(np.asarray(values), np.cumsum(lengths)[:-1]) if len(lengths) else []
                out[spec.name] = [a for a, f in zip(items, fresh) if f]
            else:
                out[spec.name] = np.asarray(self._mapped.arrays[spec.name][good[fresh]])
        return out

    def _ragged_rows(self, spec: Any, computed: list[np.ndarray], reused: np.ndarray, reuse: np.ndarray | None,
                     at: np.ndarray) -> list[np.ndarray]:
        """One array per good row, in row order: the stage's output, or the old cache's for a reused row."""
        out, fresh = [], iter(computed)
        for k, was_reused in enumerate(reused):
            if was_reused:
                if self._old is None:
                    from ..cache.reader import Cache

                    self._old = Cache(self.partial.out)
                out.append(np.asarray(self._old.column(spec.name)[int(reuse[at[k]])]))  # type: ignore[index]
            else:
                out.append(next(fresh))
        return out

    def _sample_utilisation(self) -> None:
        torch = sys.modules.get("torch")
        devices = {s.resolved_device() for s in self.stages}
        for d in devices:
            if d.type == "cuda" and torch is not None:
                try:
                    self.util.append(float(torch.cuda.utilization(d)))
                except Exception:  # no NVML: utilisation is simply not reported
                    pass

    def summary(self) -> str:
        rate = f"{self.items / self.seconds:,.0f} items/s" if self.seconds > 0 else "-"
        util = f", GPU utilisation {sum(self.util) / len(self.util):.0f}%" if self.util else ""
        names = ", ".join(s.name for s in self.stages)
        return f"stages {names}: {self.items:,} items in {self.seconds:.1f} s ({rate}{util})"
