"""The Ray executor against a local Ray (2 CPUs): the same bytes as a local build, a killed worker's task
retried, a killed driver resumed, stages in Ray actors. Skipped, with the reason, when ray is not installed.

Local builds here bake in the test process (workers=0): forking a process that holds a Ray session is
not safe, and workers never change a byte (tests/bake/test_build.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials import crash
from prebake.bake.build import build_all
from prebake.sources import DatasetSource
from prebake.steps import CropOrPad, Resize
from prebake.synthetic import write_audio_folder, write_cifar10_python, write_csv_table, write_image_folder, write_npz

SKIP = "ray is not installed: pip install 'prebake[ray]' (the dev extra has it)"
pytestmark = pytest.mark.slow  # a local Ray starts for the module: make test-slow


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason=SKIP)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    if started:
        ray.shutdown()


def checksums(cache_dir: Path) -> dict[str, str]:
    """``{file: xxh3_64}`` of every column file, from the manifest."""
    m = json.loads((Path(cache_dir) / "manifest.json").read_text())
    return {f: e["xxh3_64"] for c in m["columns"].values() for f, e in c["files"].items()}


def _dataset_build(spec: str, out: Path, progress=None, **kw) -> prebake.BuildReport:
    [report] = build_all({"": DatasetSource.from_spec(spec)}, out, crash.build_options(**kw), progress)
    return report


# -- the same bytes ----------------------------------------------------------------------------------


def test_a_ray_build_equals_a_local_build_and_reports_progress(ray_session, tmp_path):
    """Ragged column, bad items (compaction), a user transform from a file: every file equal, checksums too."""
    spec, tf = crash.write_dataset(tmp_path), crash.write_transform(tmp_path)
    _dataset_build(spec, tmp_path / "local", transform=tf)
    seen: list[tuple[str, int, int]] = []
    report = _dataset_build(spec, tmp_path / "ray", lambda *a: seen.append(a), transform=tf, executor="ray")
    assert report.action == "built" and report.num_items == crash.NUM_ITEMS - len(report.skipped)
    crash.assert_same_cache(tmp_path / "ray", tmp_path / "local")
    assert checksums(tmp_path / "ray") == checksums(tmp_path / "local")
    done = [d for split, d, total in seen if split == "" and total == crash.NUM_ITEMS]
    assert done[0] == 0 and done[-1] == crash.NUM_ITEMS and done == sorted(done) and len(done) > 10


def test_cifar_splits_and_the_cli(ray_session, tmp_path, capsys):
    from prebake.cli import main

    write_cifar10_python(tmp_path / "data", n_train=300, n_test=100, seed=0)
    source = tmp_path / "data" / "cifar-10-batches-py"
    prebake.build(source, tmp_path / "local", [Resize(48)], workers=0, progress=False)
    assert main(["build", str(source), str(tmp_path / "ray"), "--image-size", "48", "--executor", "ray",
                 "--chunk-rows", "32", "--json"]) == 0
    assert [r["action"] for r in json.loads(capsys.readouterr().out)] == ["built", "built"]
    for split in ("train", "test"):
        assert checksums(tmp_path / "ray" / split) == checksums(tmp_path / "local" / split)
    assert main(["build", str(source), str(tmp_path / "ray"), "--image-size", "48", "--json"]) == 0
    assert [r["action"] for r in json.loads(capsys.readouterr().out)] == ["up to date"] * 2  # same fingerprint


def _volume_folder(d: Path) -> Path:
    nib = pytest.importorskip("nibabel", reason="volumes need nibabel (the dev extra has it)")
    rng = np.random.default_rng(0)
    for k, label in enumerate(("healthy", "lesion") * 3):
        (d / "scans" / label).mkdir(parents=True, exist_ok=True)
        data = rng.integers(-1000, 2000, (12, 10, 8)).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.9, 1.5, 1.0])), d / "scans" / label / f"s{k}.nii.gz")
    return d / "scans"


def _volume_table(d: Path) -> Path:
    pytest.importorskip("nibabel", reason="volumes need nibabel (the dev extra has it)")
    from prebake.synthetic_volumes import write_volume_table

    return write_volume_table(d / "table", patients=4)


def _hdf5(d: Path) -> Path:
    pytest.importorskip("h5py", reason="HDF5 needs h5py (the dev extra has it)")
    cache = prebake.build(write_npz(d / "arr", n=12, fmt="npz"), d / "exported", workers=0, progress=False)
    prebake.export_hdf5(cache.path, d / "data.h5")
    return d / "data.h5"


#: source kind -> (writes the data and returns its path, the build() keywords it needs)
SOURCES = {
    "image folder": (lambda d: write_image_folder(d / "photos", per_class=5, size=(20, 16)), {"steps": [Resize(16)]}),
    "csv": (lambda d: write_csv_table(d / "table", n=10, bad_rows=True), {"steps": [Resize(16)]}),
    "npz": (lambda d: write_npz(d / "arr", n=12, fmt="npz"), {}),
    "npy": (lambda d: write_npz(d / "arr", n=12, fmt="npy"), {}),
    "split folder": (lambda d: write_npz(d / "arr", n=12, fmt="split"), {}),
    "audio": (lambda d: write_audio_folder(d / "wav", per_class=2), {}),
    "volume folder": (_volume_folder, {}),
    "volume table": (_volume_table, {"steps": [CropOrPad((16, 16, 16))], "source_options": prebake.SourceOptions(
        label_columns=("diagnosis",), keep_columns=("patient_id",))}),
    "hdf5": (_hdf5, {}),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_every_source_kind_reaches_ray_workers(ray_session, tmp_path, kind):
    """Each source pickles (Ray's cloudpickle, no fork) and bakes the same bytes in the Ray workers."""
    if kind == "audio":
        pytest.importorskip("soundfile", reason="audio needs soundfile: pip install 'prebake[audio]'")
    write, settings = SOURCES[kind]
    path = write(tmp_path)
    local = prebake.build(path, tmp_path / "local", workers=0, chunk_rows=4, progress=False, **settings)
    ray_built = prebake.build(path, tmp_path / "ray", executor="ray", chunk_rows=4, progress=False, **settings)
    pairs = [(local, ray_built)] if isinstance(local, prebake.Cache) else [(local[s], ray_built[s]) for s in local]
    for a, b in pairs:
        assert checksums(b.path) == checksums(a.path) and len(a) > 0


def test_memory_mapped_arrays_are_mapped_again_not_copied_into_the_pickle(tmp_path):
    import pickle

    from prebake.sources.arrays import from_npy

    path = write_npz(tmp_path, n=64, size=(32, 32), fmt="npy")
    source = from_npy(path)
    blob = pickle.dumps(source)
    assert len(blob) < 4096 < path.stat().st_size
    again = pickle.loads(blob)
    assert isinstance(again.columns["image"], np.memmap)
    assert np.array_equal(again.read(63)["image"], source.read(63)["image"])


def test_an_hdf5_source_that_has_read_pickles_without_its_open_file(tmp_path):
    import pickle

    path = _hdf5(tmp_path)
    source = prebake.sources.detect(path)[""]
    first = source.read(3)  # opens the file in this process
    again = pickle.loads(pickle.dumps(source))
    assert sorted(again.read(3)) == sorted(first)
    assert all(np.array_equal(again.read(3)[k], v) for k, v in first.items())


JOB_COUNTER = '''
import os

import numpy as np

LOG = {log!r}


class Items:
    def __init__(self):
        self.n = 96  # some state, so that unpickling calls __setstate__

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {{"x": np.full(4, i, dtype=np.int32), "label": i % 3}}

    def fingerprint(self):
        return "96 index-derived items"

    def __setstate__(self, state):  # counts the unpickles of the job, with the process that made them
        self.__dict__.update(state)
        with open(LOG, "a") as f:
            f.write(f"{{os.getpid()}}\\n")


def make():
    return Items()
'''


def test_the_job_is_unpickled_once_per_worker_process_not_per_chunk(ray_session, tmp_path):
    """The source (CIFAR's arrays, say) goes into the object store once; a worker fetches it once per build."""
    log = tmp_path / "unpickled.txt"
    (tmp_path / "items.py").write_text(JOB_COUNTER.format(log=str(log)))
    prebake.build(dataset=f"{tmp_path / 'items.py'}:make", out=tmp_path / "c", executor="ray", chunk_rows=8,
                  progress=False)
    pids = log.read_text().split()
    assert str(os.getpid()) not in pids  # the driver put it once and never unpickled it
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # 12 chunks, at most one unpickle per worker


# -- failures ----------------------------------------------------------------------------------------

DIE_ONCE = '''
        if i == 150 and not os.path.exists({flag!r}):  # the first worker to reach item 150 dies mid-chunk
            with open({flag!r}, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
'''


def test_a_killed_ray_worker_is_retried_and_the_build_is_the_same(ray_session, tmp_path):
    flag = tmp_path / "died.pid"
    text = crash.DATASET_SRC.replace("        if self.delay:\n", DIE_ONCE.format(flag=str(flag)).lstrip("\n") +
                                    "        if self.delay:\n")
    (tmp_path / "ds.py").write_text(text)
    spec = f"{tmp_path / 'ds.py'}:make"
    flag.write_text("0")  # the local reference build must not die
    _dataset_build(spec, tmp_path / "local")
    flag.unlink()
    report = _dataset_build(spec, tmp_path / "ray", executor="ray")
    assert report.action == "built"
    assert flag.exists() and int(flag.read_text()) not in (0, os.getpid())  # a Ray worker died, in the middle
    crash.assert_same_cache(tmp_path / "ray", tmp_path / "local")


def test_a_killed_ray_driver_resumes_to_the_same_bytes(ray_session, tmp_path):
    """SIGKILL of the driver half way (a second driver on the same Ray); the same build resumes, on Ray."""
    spec = crash.write_dataset(tmp_path)
    _dataset_build(spec, tmp_path / "local")
    address = ray_session.get_runtime_context().gcs_address
    cfg = {"spec": spec, "out": str(tmp_path / "ray"), "kill": "progress:0.5",
           "options": {"executor": "ray", "ray_address": address}}
    proc = subprocess.run(crash.script_cmd(cfg), capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (tmp_path / "ray.partial").is_dir() and not (tmp_path / "ray").exists()
    report = _dataset_build(spec, tmp_path / "ray", executor="ray")
    assert report.action == "resumed", report
    crash.assert_same_cache(tmp_path / "ray", tmp_path / "local")


def test_a_strict_failure_in_a_ray_task_is_raised_as_itself_and_keeps_the_finished_chunks(ray_session, tmp_path):
    spec = crash.write_dataset(tmp_path)
    reason = r"^\d+ \(in .*ds.py:make\): ValueError: item \d+ is broken on purpose"
    with pytest.raises(prebake.StrictModeError, match=reason):
        _dataset_build(spec, tmp_path / "c", executor="ray", strict=True)
    assert not (tmp_path / "c").exists() and (tmp_path / "c.partial").is_dir()


# -- stages in Ray actors ------------------------------------------------------------------------------


WHERE = '''
import os

import torch

LOG, DRIVER, DIE_ONCE = {log!r}, {driver}, {flag!r}


class Where(torch.nn.Module):
    """Doubles its input and says which process ran it; with DIE_ONCE, the first actor call dies."""

    def forward(self, batch):
        if DIE_ONCE and os.getpid() != DRIVER and not os.path.exists(DIE_ONCE):
            with open(DIE_ONCE, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        with open(LOG, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        return {{"twice": batch["clip"] * 2}}
'''


def _staged_builds(tmp_path: Path, die_once: str = "") -> tuple[prebake.Cache, prebake.Cache, list, list[str]]:
    """The clips of tests/bake/test_stages.py through its two stages and a third that logs its process:
    ``(local cache, Ray cache, the Ray build's progress calls, the pids that ran the third stage there)``."""
    from prebake.identity.plugins import load_object
    from tests.bake.test_stages import CLIPS, ENCODERS

    (tmp_path / "clips.py").write_text(CLIPS)
    (tmp_path / "encoders.py").write_text(ENCODERS)
    log = tmp_path / "pids"
    (tmp_path / "where.py").write_text(WHERE.format(log=str(log), driver=os.getpid(), flag=die_once))
    where = prebake.Stage(load_object(f"{tmp_path / 'where.py'}:Where")(), ("clip",), ("twice",), device="cpu")
    stages = [*load_object(f"{tmp_path / 'encoders.py'}:stages")(keep=False), where]
    seen: list[tuple[str, int, int]] = []

    def build(out: Path, **kw) -> prebake.Cache:
        return prebake.build(dataset=f"{tmp_path / 'clips.py'}:make", out=out, steps=stages, ragged=("frames",),
                             chunk_rows=8, progress=lambda *a: seen.append(a), **kw)

    local = build(tmp_path / "local", workers=0)
    log.unlink()
    seen.clear()
    ray_built = build(tmp_path / "ray", executor="ray")
    return local, ray_built, seen, log.read_text().split()


def test_stages_run_in_a_ray_actor_and_equal_a_local_build(ray_session, tmp_path):
    local, ray_built, seen, pids = _staged_builds(tmp_path)
    assert pids.count(str(os.getpid())) == 1 and len(pids) > 1  # here only the probe item; the chunks in the actor
    assert sorted(ray_built.columns) == sorted(local.columns) == ["clip", "label", "latent", "twice"]
    assert checksums(ray_built.path) == checksums(local.path)
    crash.assert_same_cache(ray_built.path, local.path)
    staged = [d for split, d, total in seen if split == "stages"]
    assert staged and staged[-1] == len(ray_built) and staged == sorted(staged)


def test_a_killed_stage_actor_is_replaced_and_the_build_is_the_same(ray_session, tmp_path):
    flag = tmp_path / "actor-died.pid"
    local, ray_built, _, pids = _staged_builds(tmp_path, die_once=str(flag))
    dead = int(flag.read_text())
    assert dead != os.getpid() and str(dead) not in pids  # the first actor died; another one finished
    crash.assert_same_cache(ray_built.path, local.path)


NICENESS = '''
import os


def note(item):  # records the niceness of the process that bakes each item
    with open({log!r}, "a") as f:
        f.write(f"{{os.getpid()}} {{os.nice(0)}}\\n")
    return item
'''


def test_the_cli_starts_its_own_local_ray_with_workers_at_the_builders_priority(ray_session, tmp_path):
    """No Ray session and no RAY_ADDRESS: prebake starts a local Ray with --workers CPUs, at nice 0."""
    spec, log = crash.write_dataset(tmp_path), tmp_path / "nice.txt"
    (tmp_path / "note.py").write_text(NICENESS.format(log=str(log)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "prebake", "build", "--dataset", spec, str(tmp_path / "c"),
                           "--ragged", "sig", "--transform", f"{tmp_path / 'note.py'}:note", "--executor", "ray",
                           "--workers", "2", "--json"], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)[0]["action"] == "built"
    pids = {line.split()[0]: line.split()[1] for line in log.read_text().splitlines()}
    assert len(pids) >= 2 and set(pids.values()) == {str(os.nice(0))}  # the driver's probe and the Ray workers


# -- options ---------------------------------------------------------------------------------------------


def test_executor_options_are_checked(tmp_path, capsys):
    from prebake.cli import main

    spec = crash.write_dataset(tmp_path)
    with pytest.raises(prebake.OptionError, match=r"^`executor` is 'dask': use local \(forked workers\) or ray"):
        prebake.build(dataset=spec, out=tmp_path / "c", executor="dask")
    assert main(["build", "--dataset", spec, str(tmp_path / "c"), "--ray-address", "auto"]) == 2
    assert "error: --ray-address is the cluster of --executor ray: add that, or drop --ray-address" in \
        capsys.readouterr().err


def test_without_ray_the_error_says_how_to_install_it(tmp_path):
    spec = crash.write_dataset(tmp_path)
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if it were not installed\n"
        "import prebake\n"
        "from prebake.cli import main\n"
        "try:\n"
        f"    prebake.build(dataset={spec!r}, out={str(tmp_path / 'c')!r}, executor='ray')\n"
        "except prebake.OptionError as e:\n"
        "    print(e)\n"
        f"sys.exit(main(['build', '--dataset', {spec!r}, {str(tmp_path / 'c')!r}, '--executor', 'ray']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.strip() == "`executor='ray'` needs Ray: pip install 'prebake[ray]' (or pip install 'ray>=2.9')"
    assert proc.stderr.strip().endswith("error: --executor ray needs Ray: pip install 'prebake[ray]' "
                                        "(or pip install 'ray>=2.9')")
