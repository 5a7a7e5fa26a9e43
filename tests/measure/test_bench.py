"""prebake bench: every pipeline gives the same normalised batches, and the CLI prints the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import prebake
from prebake.cli import main
from prebake.measure.bench import BenchOptions, run_bench
from prebake.measure.bench.pipelines import (
    BenchData,
    DeviceNormalize,
    SeedOffline,
    SeedOnline,
    write_seed_offline,
)
from prebake.measure.bench.report import table
from prebake.synthetic import write_cifar10_python


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    write_cifar10_python(root / "data", n_train=300, n_test=60, seed=0)
    prebake.build(root / "data" / "cifar-10-batches-py", root / "cache", workers=1)
    return root / "cache" / "train"


def _data(cache_path: Path, size: int, workdir: Path) -> BenchData:
    cache = prebake.open(cache_path)
    images = np.asarray(cache.column("image"))
    return BenchData(cache, np.ascontiguousarray(images.transpose(0, 2, 3, 1)), np.asarray(cache.targets),
                     size, 32, torch.device("cpu"), 0, workdir)


def test_the_seed_pipelines_and_prebake_give_the_same_values(cifar, tmp_path):
    data = _data(cifar, 32, tmp_path)
    idx = [5, 0, 299, 17]
    mine = DeviceNormalize(32, data.device)(torch.from_numpy(data.cache[idx]["image"]))
    shape = write_seed_offline(data, tmp_path / "f32")
    offline = torch.stack([SeedOffline(tmp_path / "f32", shape, data.labels)[i][0] for i in idx])
    online = torch.stack([SeedOnline(data.raw_hwc, data.labels, 32)[i][0] for i in idx])
    assert mine.dtype == offline.dtype == online.dtype == torch.float32
    torch.testing.assert_close(mine, offline, rtol=0, atol=1e-5)
    torch.testing.assert_close(mine, online, rtol=0, atol=1e-5)
    assert [SeedOnline(data.raw_hwc, data.labels, 32)[i][1] for i in idx] == data.labels[idx].tolist()


def test_resizing_pipelines_agree_within_interpolation_differences(cifar, tmp_path):
    data = _data(cifar, 64, tmp_path)
    mine = DeviceNormalize(64, data.device)(torch.from_numpy(data.cache[[3]]["image"]))
    online = SeedOnline(data.raw_hwc, data.labels, 64)[3][0]
    assert mine.shape == (1, 3, 64, 64) and online.shape == (3, 64, 64)
    # PIL bilinear vs torch bilinear upsampling: same filter, different rounding (PIL works in uint8)
    assert (mine[0] - online).abs().max() < 3 / 255 / 0.24


def test_run_bench_times_every_local_pipeline(cifar, tmp_path):
    opts = BenchOptions(batch_size=64, seconds=0.2, warmup=1, workers=1, workdir=tmp_path / "w")
    lines: list[str] = []
    res = run_bench(cifar, opts, progress=lines.append)
    keys = {r.key: r for r in res.rows}
    for key in ("prebake", "prebake-ram", "dataloader", "seed-offline", "seed-online"):
        assert keys[key].samples_per_s and keys[key].samples > 0, key
    assert "prebake-device" not in keys  # CUDA only
    assert res.ratio(keys["prebake"]) == pytest.approx(1.0)
    for key in ("hf-datasets", "litdata"):
        row = keys[key]
        assert row.samples_per_s or (row.skipped and "setup-peers.sh" in row.skipped)
    d = res.as_dict()
    assert d["memcpy_gbps"] > 0 and d["machine"]["cpu_count"] >= 1 and d["items"] == 300
    assert "CIFAR source" in res.raw_source  # the online pipeline starts from the real 32 px source
    assert any(line.startswith("timing prebake.Loader") for line in lines)


def test_cli_bench_prints_the_table_and_writes_json(cifar, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["bench", str(cifar), "--batch-size", "50", "--image-size", "40", "--seconds", "0.1",
               "--workers", "0", "--only", "prebake", "--only", "seed-online", "--out", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "float32 3x40x40" in text and "prebake.Loader" in text and "seed online" in text
    assert "memcpy bandwidth" in text
    saved = json.loads(out.read_text())
    assert [r["key"] for r in saved["rows"]] == ["prebake", "seed-online"]
    assert saved["image_size"] == 40 and saved["cache_image_size"] == 32


def test_a_cache_without_images_gets_the_any_cache_bench(tmp_path, capsys):
    prebake.write_arrays(tmp_path / "c", {"x": np.arange(12, dtype=np.float32).reshape(4, 3)})
    assert main(["bench", str(tmp_path / "c"), "--seconds", "0.05", "--rounds", "1", "--workers", "0",
                 "--batch-size", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "the cache's items, 4 items" in out and "DataLoader x0, whole batches" in out
    assert "x                        float32    (3,)" in out  # the per-column summary


def test_the_image_bench_reports_rounds_and_their_spread(cifar, tmp_path):
    opts = BenchOptions(batch_size=64, seconds=0.1, rounds=3, min_batches=2, workers=0, only=["prebake", "dataloader"],
                        peers=False)
    res = run_bench(cifar, opts)
    rows = {r.key: r for r in res.rows}
    assert all(len(r.per_round) == 3 and r.spread[0] <= r.samples_per_s <= r.spread[1] for r in rows.values())
    low, high = res.ratio_spread(rows["dataloader"])
    assert low <= high and res.as_dict()["rows"][1]["speedup_min_max"] == (low, high)
    assert "slowest-fastest round" in "\n".join(table(res))
