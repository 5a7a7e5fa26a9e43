"""Item 9: a file that a transform or stage read while baking changed -> a rebuild that names it."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from benchmarks.trials.reads import changed_while_killed_case, one_case, reads, resume_case, setup
from benchmarks.trials.staleness import in_child
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.cache.files import read_manifest
from prebake.cli import main
from prebake.steps import compile_steps


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", ["checkpoint", "json", "npy"])
def test_a_changed_file_that_the_transform_read_rebuilds_naming_it(tmp_path, kind, workers):
    ok, detail = one_case(tmp_path, kind, "content", workers, content_hash=False)
    assert ok, detail


@pytest.mark.parametrize("how", ["size", "touch", "delete"])
def test_a_stage_that_reads_a_file(tmp_path, how):
    ok, detail = one_case(tmp_path, "stage", how, workers=2, content_hash=False)
    assert ok, detail


def test_a_touch_rebuilds_by_metadata_and_a_content_hash_sees_only_other_bytes(tmp_path):
    for k, (how, content_hash) in enumerate([("touch", False), ("touch", True), ("content", True)]):
        ok, detail = one_case(tmp_path / str(k), "json", how, workers=0, content_hash=content_hash)
        assert ok, f"{how}, content_hash={content_hash}: {detail}"


def test_a_resumed_build_keeps_what_the_chunks_before_the_kill_read(tmp_path):
    ok, detail = resume_case(tmp_path)
    assert ok, detail


@pytest.mark.parametrize("kill", ["progress:0.5", "publish:entry"])
def test_a_file_changed_after_a_kill_means_starting_over_not_resuming(tmp_path, kill):
    ok, detail = changed_while_killed_case(tmp_path, kill)
    assert ok, detail


def test_the_trial_finds_no_failure(tmp_path):
    row = reads(tmp_path, trials=8, seed=1)
    assert row.failures == 0, row.examples


def test_ls_and_info_say_stale_naming_the_file(tmp_path, capsys):
    src, lut, spec = setup(tmp_path, "json")
    out = tmp_path / "cache"
    in_child(_build_json, str(src), str(out), spec)
    lut.write_text(json.dumps({"scale": 12345}))
    assert main(["ls", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "stale" in listed and "lut.json" in listed and "read while baking" in listed, listed
    main(["info", str(out)])
    shown = capsys.readouterr().out
    assert "stale" in shown and f"{lut} that a transform or stage read while baking changed (size" in shown, shown


def _build_json(src: str, out: str, spec: str) -> str:
    from prebake.identity.plugins import load_object

    [report] = build_all(resolve_sources(src), out, BuildOptions(compile_steps([load_object(spec)]), workers=0))
    return report.action


def test_python_modules_the_system_temporary_files_and_the_source_are_not_recorded(tmp_path):
    """What the import system, /proc, a temporary file and the source itself open stays out of the manifest."""
    src, lut, _ = setup(tmp_path, "json")
    (tmp_path / "late_import.py").write_text("VALUE = 1\n")
    lut_path, src_path, scratch = str(lut), str(src), str(tmp_path / "scratch.txt")
    sys.path.insert(0, str(tmp_path))
    try:
        def transform(item):
            import late_import  # noqa: F401  imported (opened) while the transform runs

            with open("/proc/self/status") as f:
                f.read()
            with open(scratch, "w") as f:  # written, read back, deleted: a temporary file
                f.write("x")
            with open(scratch) as f:
                f.read()
            os.unlink(scratch)
            item["value"] = np.float32(json.loads(open(lut_path).read())["scale"])
            item["first"] = np.float32(np.load(src_path)["labels"][0])  # the source's own file
            return item

        out = tmp_path / "cache"
        build_all(resolve_sources(src_path), out, BuildOptions(compile_steps([transform]), workers=0, chunk_rows=2))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("late_import", None)
    recorded = read_manifest(out)["fingerprint"]["inputs"]["reads"]
    assert list(recorded) == [lut_path], recorded


RAY_MODULE = '''
import json

import numpy as np
import torch

BASE = {base!r}


def transform(item):  # each label's own table: item 0's is the only one the building process reads
    with open(f"{{BASE}}/label{{int(item['label'])}}.json") as f:
        item["value"] = np.float32(json.load(f)["scale"])
    return item


def stage_fn(batch):  # a table named by the batch's last label, read in the stage actor
    with open(f"{{BASE}}/stage{{int(batch['label'][-1])}}.json") as f:
        return {{"y": batch["value"] * 0 + json.load(f)["scale"]}}
'''


def test_ray_tasks_and_stage_actors_send_what_they_read_back(tmp_path):
    """What a changed recorded file does is tested above; here only that Ray's processes record and return them."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'prebake[ray]'")
    import prebake
    from prebake.identity.plugins import load_object
    from prebake.synthetic import write_npz

    src = write_npz(tmp_path / "src", n=16, size=(4, 4))
    labels = np.load(src)["labels"].tolist()
    for k in set(labels):
        for kind in ("label", "stage"):
            (tmp_path / f"{kind}{k}.json").write_text(json.dumps({"scale": k}))
    (tmp_path / "m.py").write_text(RAY_MODULE.format(base=str(tmp_path)))
    stage = prebake.Stage(load_object(f"{tmp_path / 'm.py'}:stage_fn"), inputs=("value", "label"), outputs=("y",),
                          batch_size=4, device="cpu")
    opts = BuildOptions(compile_steps([load_object(f"{tmp_path / 'm.py'}:transform"), stage]), workers=2,
                        chunk_rows=4, executor="ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    try:
        out = tmp_path / "cache"
        build_all(resolve_sources(str(src)), out, opts)
        recorded = set(read_manifest(out)["fingerprint"]["inputs"]["reads"])
        by_tasks = {str(tmp_path / f"label{k}.json") for k in labels}
        by_actor = {str(tmp_path / f"stage{labels[e - 1]}.json") for e in range(4, 17, 4)}
        assert by_tasks | by_actor <= recorded, sorted((by_tasks | by_actor) - recorded)
    finally:
        if started:
            ray.shutdown()
