"""Real files, as they come: a mixed CSV of medical volumes and a folder of photos of every size, baked by prebake
against the field's own readers in a loop, in one run.

    python benchmarks/realdata.py                         # 2,400 images, 600 volume rows, 3 rounds
    python benchmarks/realdata.py --images 300 --volumes 60 --rounds 1      # a quick look
    python benchmarks/realdata.py --save                  # also benchmarks/results/realdata-<machine>.json
    python benchmarks/realdata.py --only images --baseline runs/before/src   # before/after in one run

``--baseline DIR`` also times the prebake of another source tree (``git archive HEAD~1 src | tar -x -C
runs/before``), both builds in fresh processes, interleaved, after checking that both write the same bytes.

The data (written once under runs/realdata/data): the volumes nibabel and pydicom ship that both read (NIfTI,
MGZ, MINC-1/2, PAR/REC, AFNI, ECAT, DICOM files named with and without .dcm, RLE, big-endian; Analyze and NIfTI
pairs nibabel writes), one CSV row per copy, rows shuffled; and JPEG/PNG photos of 96 to 800 px per side in class
folders. Nothing is resized: every item keeps its shape (mixed shapes and dtypes are the point).

Pipelines, each timed over the whole set, interleaved round by round (median of the rounds):

- ``prebake``: ``prebake.build`` with 2 workers, from an empty output to a committed, checksummed cache;
- ``reference loop``: one process reading every file with the field's reader (nibabel ``np.asanyarray(dataobj)``,
  pydicom ``pixel_array`` with its rescale, Pillow ``convert("RGB")``) into a list of arrays, writing nothing;
- ``reference loop, 2 processes``: the same loop split over as many forked processes as prebake has workers,
  writing nothing: what the field's reader costs a pipeline of that many workers before it stores anything;
- ``reference loop, 2 processes + write``: the split loop, each process writing its arrays' bytes past the page
  cache with prebake's own writer and fsyncing them: the field's reader in a pipeline of that many workers that
  stores the values durably (prebake also lays them out channels first, checks, checksums and commits them, and
  reads them with fewer copies than ``convert("RGB")`` and ``np.asarray`` make, so it can take less time);
- ``reference loop + write + fsync``: the same loop writing each array's bytes to one file, fsynced at the end;
- ``MONAI LoadImage``: ``LoadImage(image_only=True)`` + ``EnsureChannelFirst`` per file in one process, when
  MONAI imports (its readers for each format; files it has no reader for are counted, not timed as failures).

Ratios are the reference's seconds over prebake's (above 1: prebake is faster). Target on a 2-core machine:
prebake >= 1.5x the one-process loop on >= 2,000 images. Every item is checked first: prebake's values equal
the reference reader's for every file (a mismatch stops the run). The volume column is asked for as float64
(``dtypes``): the shipped files mix int16 CT, uint8, float32 and float64 MINC and an int64 ECAT, whose common
type numpy's promotion would not hold exactly for int64, so prebake asks the user to choose.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.cache.format import ITEM_KEYS
from prebake.measure.bench import cpu_seconds, device_tag, machine, write_results

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.trials.shipped import (  # noqa: E402 - the catalogue the fault trial uses, one list
    DICOM_READABLE,
    DICOM_UNNAMED,
    NIBABEL_READABLE,
    copy_as,
    nibabel_data,
    pydicom_file,
    reference,
    written_volumes,
)

TARGET = 1.5
_TREE = Path(prebake.__file__).resolve().parents[1]  # the source tree this prebake was imported from


def volume_table(d: Path, rows: int, seed: int) -> Path:
    """A CSV of ``rows`` copies of the shipped volumes, shuffled, each file its own copy (no page-cache sharing)."""
    originals = [nibabel_data() / n for n in NIBABEL_READABLE] + [pydicom_file(n) for n in DICOM_READABLE
                                                                  + DICOM_UNNAMED]
    originals += [p for p, _ in written_volumes(d / "written")]
    paths = []
    for k in range(rows):
        src = originals[k % len(originals)]
        paths.append(copy_as(src, d / "files" / f"{k:05d}" / src.name))
    random.Random(seed).shuffle(paths)
    table = d / "volumes.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([[p.relative_to(d).as_posix(), k % 3] for k, p in enumerate(paths)])
    return table


def image_folder(d: Path, count: int, seed: int) -> Path:
    """Photos of every size (96 to 800 px a side, as datasets of photos hold them), JPEG and PNG, in 4 class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(count):
        h, w = (int(v) for v in rng.integers(96, 801, 2))
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        pixels = np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w]  # photo-like blocks: JPEG sizes as a photo's
        folder = d / f"class{k % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        image.save(folder / f"{k:05d}.jpg", quality=90) if k % 3 else image.save(folder / f"{k:05d}.png")
    return d


def data(root: Path, images: int, volumes: int, seed: int) -> tuple[Path, Path]:
    """The two sources, written once per size under ``root``."""
    made = root / f"v{volumes}-i{images}-s{seed}"
    if not (made / "done").exists():
        shutil.rmtree(made, ignore_errors=True)
        table = volume_table(made / "volumes", volumes, seed)
        image_folder(made / "images", images, seed)
        (made / "done").write_text(f"{table}\n")
    return made / "volumes" / "volumes.csv", made / "images"


def files_of(source: Path) -> list[tuple[Path, str]]:
    if source.suffix == ".csv":
        with open(source, newline="") as f:
            return [(source.parent / r["path"], "volume") for r in csv.DictReader(f)]
    return [(p, "image") for p in sorted(source.rglob("*")) if p.is_file()]


def reference_loop(files: list[tuple[Path, str]]) -> int:
    """Every file read by the field's reader, in one process; returns the bytes read into arrays."""
    total = 0
    for path, kind in files:
        total += np.asarray(reference(path, kind)["image"]).nbytes
    return total


def parallel_loop(files: list[tuple[Path, str]], processes: int) -> None:
    """The reference loop split over ``processes`` forked processes, writing nothing: the most a pipeline of as many
    workers can get from the CPUs here, before it stores, checks or checksums anything."""
    _forked(processes, lambda k: reference_loop(files[k::processes]))


def parallel_written_loop(files: list[tuple[Path, str]], processes: int, out: Path) -> None:
    """The split loop, each process writing its arrays' bytes to a file of its own past the page cache (prebake's
    own writer, bake/direct.py: a reused aligned buffer, a write-behind thread) and fsyncing it: the field's reader
    in a pipeline of as many workers that stores the values durably, before it checks or checksums them."""
    from prebake.bake.direct import DirectWriter

    def part(k: int) -> Path:
        return out.with_name(f"{out.name}.{k}")

    def write(k: int) -> None:
        w = DirectWriter(lambda flags: os.open(part(k), flags, 0o644))
        for path, kind in files[k::processes]:
            w.write(np.ascontiguousarray(reference(path, kind)["image"]).reshape(-1).view(np.uint8).data)
        w.sync()
        w.close()

    _forked(processes, write)


def remove_parts(out: Path, processes: int) -> None:
    """The files :func:`parallel_written_loop` wrote, removed after its clock stopped."""
    for k in range(processes):
        out.with_name(f"{out.name}.{k}").unlink()


def _forked(processes: int, fn: Any) -> None:
    """``fn(k)`` in forked process ``k`` of ``processes``, all at once; a SystemExit when one fails."""
    pids = []
    for k in range(processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                fn(k)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    if any(os.waitpid(pid, 0)[1] != 0 for pid in pids):
        raise SystemExit("a process of the split reference loop failed")


def written_loop(files: list[tuple[Path, str]], out: Path) -> int:
    """The reference loop, each array's bytes written to one file as it is read, then fsynced: what writing the
    values durably costs on this disk (prebake also checks, checksums and commits them); returns the bytes."""
    total = 0
    with open(out, "wb") as f:
        for path, kind in files:
            total += f.write(np.ascontiguousarray(reference(path, kind)["image"]).data)
        f.flush()
        os.fsync(f.fileno())
    return total


def monai_loop(files: list[tuple[Path, str]]) -> tuple[int, int]:
    """Every file through MONAI's LoadImage + EnsureChannelFirst; (files read, files MONAI has no reader for)."""
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage

    chain = Compose([LoadImage(image_only=True), EnsureChannelFirst()])
    read = failed = 0
    for path, _ in files:
        try:
            chain(str(path))
            read += 1
        except Exception:  # noqa: BLE001 - MONAI raises RuntimeError/OptionalImportError for formats it lacks
            failed += 1
    return read, failed


#: One build in a fresh process (``--baseline``): its wall and CPU seconds (the process and the workers it reaped).
_BUILD_CHILD = """
import json, resource, shutil, sys, time, warnings
warnings.simplefilter("ignore")
import prebake
try:  # imported before the clock, as the in-process rounds have it from their warm-up (the Cache build returns)
    import torch  # noqa: F401
except ImportError:
    pass
source, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
dtypes = {"image": "float64"} if source.endswith(".csv") else None
shutil.rmtree(out, ignore_errors=True)
def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
c, t = cpu(), time.perf_counter()
prebake.build(source, out, workers=workers, progress=False, dtypes=dtypes)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": cpu() - c}))
"""


def bake_in(tree: Path, source: Path, out: Path, workers: int, cpu: list[float]) -> float:
    """A build by the prebake of source tree ``tree`` in a fresh process; its wall seconds (CPU appended to ``cpu``)."""
    proc = subprocess.run([sys.executable, "-c", _BUILD_CHILD, str(source), str(out), str(workers)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if proc.returncode != 0:
        raise SystemExit(f"the build of {source} by {tree} failed: {proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu.append(got["cpu"])
    return float(got["wall"])


def same_files(a: Path, b: Path) -> None:
    """The two caches hold the same bytes in every data file (the manifests differ only in their creation time)."""
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".npy", ".json") and p.name != "manifest.json")
    for name in names:
        if (a / name).read_bytes() != (b / name).read_bytes():
            raise SystemExit(f"{a / name} differs from {b / name}: the two trees do not build the same cache")


def bake(source: Path, out: Path, workers: int) -> prebake.Cache:
    """A build of ``source`` into ``out``, which the caller emptied (deleting the last round's 1.47 GB of photos
    took 0.19 s on this disk: no part of a build from an empty output, as no pipeline here is timed deleting)."""
    # int16 CT beside float64 MINC and an int64 ECAT: float64 holds every value these files have
    dtypes = {"image": "float64"} if source.suffix == ".csv" else None
    return prebake.build(source, out, workers=workers, progress=False, dtypes=dtypes)


def check(cache: prebake.Cache, out: Path, files: list[tuple[Path, str]], source: Path) -> None:
    """prebake's items equal the reference reader's, file for file (by key)."""
    by_key = {p.relative_to(source.parent if source.suffix == ".csv" else source).as_posix(): (p, k)
              for p, k in files}
    keys = cache.manifest.get("skipped", [])
    assert not keys, f"{source}: prebake skipped {len(keys)} items, e.g. {keys[0]}"
    for i, key in enumerate(_item_keys(cache, out)):
        path, kind = by_key[key.split(": ", 1)[-1]]
        want = reference(path, kind)["image"]
        got = np.asarray(cache[i]["image"])
        got = got.transpose(1, 2, 0) if kind == "image" and got.ndim == 3 else got
        if not np.array_equal(got, want):
            raise SystemExit(f"{path}: prebake's values differ from the reference reader's")


def _item_keys(cache: prebake.Cache, out: Path) -> list[str]:
    """The source key of every row (the cache's own record of them)."""
    return json.loads((out / ITEM_KEYS).read_text())


def timed(fn: Any, cpu: list[float]) -> float:
    """Wall seconds of ``fn()``; its CPU seconds (this process and the workers it reaped) appended to ``cpu``."""
    before = cpu_seconds()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    cpu.append(cpu_seconds() - before)
    return wall


def run(source: Path, name: str, rounds: int, workers: int, out: Path, baseline: Path | None = None
        ) -> dict[str, Any]:
    files = files_of(source)
    shutil.rmtree(out / name, ignore_errors=True)
    cache = bake(source, out / name, workers)
    check(cache, out / name, files, source)
    if baseline is not None:  # both trees build in fresh processes, timed alike; their bytes must agree first
        bake_in(baseline, source, out / f"{name}-baseline", workers, [])
        same_files(out / name, out / f"{name}-baseline")
    has_monai = _imports("monai")
    monai_counts = monai_loop(files) if has_monai else None  # also its warm-up
    reference_loop(files)  # warm-up: the page cache holds every file for every pipeline
    times: dict[str, list[float]] = {"prebake": [], **({"prebake (baseline)": []} if baseline else {}),
                                     "reference loop": [], f"reference loop, {workers} processes": [],
                                     f"reference loop, {workers} processes + write": [],
                                     "reference loop + write + fsync": [],
                                     **({"MONAI LoadImage": []} if has_monai else {})}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    loads = []
    for _ in range(rounds):
        if baseline is not None:
            times["prebake"].append(bake_in(_TREE, source, out / name, workers, cpu["prebake"]))
            times["prebake (baseline)"].append(bake_in(baseline, source, out / f"{name}-baseline", workers,
                                                       cpu["prebake (baseline)"]))
        else:
            shutil.rmtree(out / name, ignore_errors=True)
            times["prebake"].append(timed(lambda: bake(source, out / name, workers), cpu["prebake"]))
        times["reference loop"].append(timed(lambda: reference_loop(files), cpu["reference loop"]))
        split = f"reference loop, {workers} processes"
        times[split].append(timed(lambda: parallel_loop(files, workers), cpu[split]))
        stored = f"reference loop, {workers} processes + write"
        times[stored].append(timed(lambda: parallel_written_loop(files, workers, out / "split.bin"), cpu[stored]))
        remove_parts(out / "split.bin", workers)
        times["reference loop + write + fsync"].append(timed(lambda: written_loop(files, out / "written.bin"),
                                                             cpu["reference loop + write + fsync"]))
        (out / "written.bin").unlink()
        if has_monai:
            times["MONAI LoadImage"].append(timed(lambda: monai_loop(files), cpu["MONAI LoadImage"]))
        loads.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"source": name, "items": len(files), "workers": workers, "seconds": times, "median_s": med,
            "cpu_seconds": cpu, "median_cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
            "load_average_1min": loads,
            "items_per_s": {k: len(files) / v for k, v in med.items()},
            "ratio_vs_prebake": {k: v / med["prebake"] for k, v in med.items() if k != "prebake"},
            "monai_read_unreadable": monai_counts, "baseline": str(baseline.resolve()) if baseline else None,
            "target": TARGET if name == "images" else None,
            "met": med["reference loop"] / med["prebake"] >= TARGET if name == "images" else None}


def _imports(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2400)
    p.add_argument("--volumes", type=int, default=600, help="CSV rows of volumes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="JSON path (default: runs/realdata/realdata-<machine>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/realdata-<machine>.json")
    p.add_argument("--baseline", type=Path, help="also time the prebake of this source tree (a 'git archive' of an "
                   "earlier commit's src/); both builds then run in fresh processes")
    p.add_argument("--only", choices=("volumes", "images"), help="just one of the two sources")
    args = p.parse_args()
    if args.only and args.save:
        p.error("--save keeps both sources' rows: leave out --only")
    warnings.simplefilter("ignore")
    runs = HERE.parent / "runs" / "realdata"
    table, images = data(runs / "data", args.images, args.volumes, args.seed)
    rows = []
    with tempfile.TemporaryDirectory(dir=runs) as d:
        for name, source in (("volumes (mixed CSV)", table), ("images", images)):
            if args.only and not name.startswith(args.only):
                continue
            rows.append(run(source, name, args.rounds, args.workers, Path(d), args.baseline))
            print_row(rows[-1])
    name = f"realdata-{device_tag('cpu')}.json"
    record = {"machine": machine("cpu"), "rounds": args.rounds, "rows": rows,
              "baseline": str(args.baseline.resolve()) if args.baseline else None,
              "sizes": {"images": args.images, "volume_rows": args.volumes}}
    for path in write_results(record, args.out or runs / name, HERE / "results" / name if args.save else None,
                              root=HERE.parent):
        print(f"wrote {path}")


def print_row(row: dict[str, Any]) -> None:
    print(f"\n{row['source']}: {row['items']:,} items, prebake with {row['workers']} workers")
    for k, v in row["median_s"].items():
        ratio = row["ratio_vs_prebake"].get(k)
        shown = f"{ratio:.2f}x prebake's time" if ratio else ""
        print(f"  {k:<37} {v:8.2f} s  {row['median_cpu_s'][k]:6.2f} CPU-s  {row['items_per_s'][k]:7.0f} items/s  "
              f"{shown}")
    if row["monai_read_unreadable"]:
        read, failed = row["monai_read_unreadable"]
        print(f"  MONAI read {read} files, had no reader for {failed}")
    print(f"  load average (1 min) after each round: {', '.join(f'{x:.1f}' for x in row['load_average_1min'])}")
    if row["target"]:
        print(f"  target: prebake >= {row['target']}x the reference loop: {'met' if row['met'] else 'NOT met'}")
        stored = row["median_s"].get(f"reference loop, {row['workers']} processes + write")
        if stored:
            print(f"  the split loop that stores the reference reader's values: "
                  f"{row['median_s']['reference loop'] / stored:.2f}x the reference loop; prebake takes "
                  f"{row['median_s']['prebake'] / stored:.2f}x its time")
        bound = row["median_s"]["reference loop"] / (row["median_cpu_s"]["prebake"] / row["workers"])
        print(f"  prebake's CPU seconds over {row['workers']} cores with no idle moment: {bound:.2f}x the reference "
              "loop (the most its present work allows)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
