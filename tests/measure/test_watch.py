"""prebake.watch tells an input-bound loop from a compute-bound one (deliberate sleeps)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch

import prebake
from prebake.measure.watch import WatchReport, count_samples, watch


def _slow_batches(n: int, delay: float, batch: int = 8):
    for _ in range(n):
        time.sleep(delay)
        yield {"image": torch.zeros(batch, 3, 4, 4), "label": torch.zeros(batch, dtype=torch.long)}


def _run(w, body_delay: float) -> WatchReport:
    for _ in w:
        time.sleep(body_delay)
    assert w.report is not None
    return w.report


def test_input_bound_loop_is_reported_input_bound():
    got: list[WatchReport] = []
    r = _run(watch(_slow_batches(10, 0.03), report=got.append), body_delay=0.002)
    assert r.final and r.steps == 10 and r.samples == 80
    assert r.input_bound_fraction > 0.7
    assert r.verdict == "input-bound"
    assert r.wait_seconds >= 10 * 0.03 * 0.9
    assert got == [r]
    assert r.gpu_util is None  # CPU tensors: no NVML sampling


def test_compute_bound_loop_is_reported_compute_bound():
    r = _run(watch(_slow_batches(10, 0.0), report=lambda _: None), body_delay=0.03)
    assert r.input_bound_fraction < 0.05
    assert r.verdict == "compute-bound"
    assert r.compute_seconds >= 10 * 0.03 * 0.9
    assert r.samples_per_s == pytest.approx(80 / r.seconds)


def test_every_reports_windows_and_a_total():
    got: list[WatchReport] = []
    w = watch(_slow_batches(10, 0.0), every=4, report=got.append)
    _run(w, body_delay=0.0)
    assert [r.steps for r in w.reports] == [4, 4]  # the last 2 steps are only in the total
    assert got[-1] is w.report and w.report.steps == 10
    assert [g.final for g in got] == [False, False, True]
    assert sum(r.samples for r in w.reports) == 64


def test_early_break_still_reports_and_closes_the_source():
    closed = []

    def source():
        try:
            yield from _slow_batches(100, 0.0)
        finally:
            closed.append(True)

    w = watch(source(), report=lambda _: None)
    for k, _ in enumerate(w):
        if k == 2:
            break
    del _
    w_iter_report = w.report
    assert w_iter_report is not None and w_iter_report.steps == 2  # the step broken out of is not counted
    assert closed == [True]


def test_watch_wraps_a_prebake_loader(tmp_path):
    prebake.write_arrays(tmp_path / "c", {"image": np.zeros((50, 3, 8, 8), np.uint8), "label": np.arange(50)})
    loader = prebake.Loader(tmp_path / "c", batch_size=16, shuffle=False)
    w = prebake.watch(loader, report=lambda _: None)
    assert len(w) == len(loader) == 4
    assert sum(len(b["label"]) for b in w) == 50
    assert w.report.samples == 50
    assert w.report.as_dict()["verdict"] in ("input-bound", "partly input-bound", "compute-bound")


def test_default_report_goes_to_the_log(caplog):
    with caplog.at_level(logging.INFO, logger="prebake.watch"):
        _run(watch(_slow_batches(3, 0.0)), body_delay=0.0)
    assert "prebake.watch total: 3 steps" in caplog.text
    assert "GPU util not sampled" in caplog.text


@pytest.mark.parametrize("batch, n", [
    (torch.zeros(5, 2), 5),
    ((torch.zeros(7, 2), torch.zeros(7)), 7),
    ([np.zeros((3, 2)), np.zeros(3)], 3),
    ({"x": torch.zeros(9)}, 9),
    ([1, 2, 3], 1),
])
def test_count_samples(batch, n):
    assert count_samples(batch) == n


def test_every_must_be_positive():
    with pytest.raises(ValueError, match="every must be a positive"):
        watch([], every=0)


def _slow_transform(delay: float):
    def transform(batch):
        time.sleep(delay)
        return {**batch, "image": batch["image"].float()}
    return transform


@pytest.mark.parametrize("in_threads", [False, True])
def test_a_loaders_transform_is_counted_apart_from_waiting(tmp_path, in_threads: bool):
    """Work the Loader's transform does inside next() is the training device's, not a wait for input;
    on the gather threads it is the input pipeline's, and a loop that outruns it waits for it."""
    prebake.write_arrays(tmp_path / "c", {"image": np.zeros((64, 3, 8, 8), np.uint8), "label": np.arange(64)})
    loader = prebake.Loader(tmp_path / "c", batch_size=8, shuffle=False, transform=_slow_transform(0.02),
                            transform_in_threads=in_threads, threads=1, prefetch=1)
    r = _run(watch(loader, report=lambda _: None), body_delay=0.002)
    assert r.steps == 8 and r.seconds == pytest.approx(r.wait_seconds + r.transform_seconds + r.compute_seconds)
    if in_threads:
        assert r.transform_seconds == 0.0 and r.input_bound_fraction > 0.6
    else:
        assert r.transform_seconds >= 8 * 0.02 * 0.9
        assert r.transform_fraction > 0.6 and r.input_bound_fraction < 0.3
        assert "in the Loader's transform" in str(r) and r.as_dict()["transform_fraction"] == r.transform_fraction


def test_a_loader_without_a_transform_reports_none(tmp_path):
    prebake.write_arrays(tmp_path / "c", {"image": np.zeros((32, 3, 8, 8), np.uint8), "label": np.arange(32)})
    it = iter(prebake.Loader(tmp_path / "c", batch_size=8))
    next(it)
    assert it.last_transform_seconds == 0.0
    r = _run(watch(prebake.Loader(tmp_path / "c", batch_size=8), report=lambda _: None), body_delay=0.0)
    assert r.transform_seconds == 0.0 and "transform" not in str(r)
