"""MONAI PersistentDataset / CacheDataset vs the 3-D medical workload's HDF5 + LRU loader vs prebake, in one run.

Same volumes (synthetic int16 CT-like NIfTI, spacings drawn per axis so that the 1.5 mm grid is about
``--size`` voxels a side), same deterministic transforms (Orientation RAS, Spacing 1.5 mm trilinear,
window [-1000, 1000] HU scaled to [0, 1], centred crop/pad to ``--size``^3), same output: float32
``(B, 1, S, S, S)`` batches with int64 labels. Each pipeline runs in a fresh Python process (so one's
memory or page-cache state is not another's), times its first epoch (including any cache build) and
``--epochs`` more epochs, reports its cache bytes and the memory (PSS) of its processes, and saves the
first items it produced, which are checked against prebake's within ``TOLERANCE``.

    python -m examples.medical3d.bench                   # 200 volumes of 96^3, 3 repeats: about 8 minutes on 2 cores
    python -m examples.medical3d.bench --volumes 24 --size 48 --epochs 1 --repeat 1 --out quick.json

Pipelines:
- ``monai-persistent``: ``PersistentDataset`` (the transform chain cached as ``torch.save`` files on first
  use) + ``DataLoader(num_workers=W, persistent_workers=True)``; ``monai-persistent-2w`` the same with 2
  workers (first epoch only: the comparison of first epochs at 2 workers);
- ``monai-cache``: ``CacheDataset(cache_rate=1, num_workers=W)`` (every item in RAM, built in threads
  before the first epoch) + the same DataLoader;
- ``seed-hdf5``: the original design rebuilt: a process pool preprocesses every volume to float32, one HDF5
  file holds them (one chunk per item), a Dataset reads one item per ``__getitem__`` through an LRU
  dict of ``cache_size`` items, DataLoader with W persistent workers (each worker keeps its own LRU);
- ``prebake``: ``prebake.build`` (2 workers: the bake keeps int16, the window clipped) then
  ``prebake.Loader(convert={"image": IntensityWindow(...)})``: int16 -> float32 [0, 1] as each volume is
  gathered, on the Loader's threads; ``prebake-transform`` the same cache with the window applied to each
  gathered batch instead (``transform=``), to show what fusing it into the gather changes;
  ``prebake-float32`` bakes the scaled float32 volumes instead (``--scale-to 0 1``: MONAI's bytes) and
  loads them as they are, which shows what the int16 cache's conversion costs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

SPACING = 1.5
WINDOW = (-1000.0, 1000.0)
PIPELINES = ("monai-persistent", "monai-persistent-2w", "monai-cache", "seed-hdf5", "prebake", "prebake-transform",
             "prebake-float32")
TOLERANCE = 1e-3  # in [0, 1] units: prebake rounds the resampled HU to int16 (<= 0.5 HU = 2.5e-4)
CHECK_ITEMS = 4
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"  # updated only with --save


# -- data ---------------------------------------------------------------------------------------------

def write_volumes(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` int16 volumes whose 1.5 mm grid is about ``size`` a side, and their CSV."""
    import nibabel as nib

    from prebake.synthetic_volumes import ct_phantom

    csv = root / "volumes.csv"
    if csv.exists() and len(csv.read_text().splitlines()) == n + 1:
        return csv
    (root / "volumes").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        zooms = rng.uniform(1.0, 2.0, 3)
        dims = tuple(int(v) for v in np.round(size * SPACING / zooms * rng.uniform(0.92, 1.08, 3)))
        affine = np.diag([*zooms, 1.0])
        if i % 2:
            affine[0, 0] = -zooms[0]  # LAS: the reorientation has work to do
        label = i % 2
        img = nib.Nifti1Image(ct_phantom(dims, bool(label), rng), affine)
        img.set_sform(affine, 1)
        nib.save(img, root / "volumes" / f"v{i:04d}.nii.gz")
        rows.append(f"volumes/v{i:04d}.nii.gz,P{i // 2:04d},{'lesion' if label else 'healthy'}")
    csv.write_text("\n".join(["image_path,patient_id,diagnosis", *rows]) + "\n")
    return csv


def read_csv(csv: Path) -> tuple[list[str], list[int]]:
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    return [str(csv.parent / r[0]) for r in rows], [int(r[2] == "lesion") for r in rows]


# -- one pipeline, in its own process -------------------------------------------------------------------

def monai_transform(size: int) -> Any:
    import monai.transforms as mt

    return mt.Compose([
        mt.LoadImaged("image", image_only=True), mt.EnsureChannelFirstd("image"),
        mt.Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        mt.Spacingd("image", pixdim=(SPACING,) * 3, mode="bilinear", padding_mode="border"),
        mt.ScaleIntensityRanged("image", *WINDOW, 0.0, 1.0, clip=True),
        mt.ResizeWithPadOrCropd("image", (size,) * 3),
        mt.EnsureTyped(["image", "label"], track_meta=False),
    ])


def seed_preprocess(path: str, size: int) -> np.ndarray:
    """The seed's preprocessing step for one file: float32 [0, 1], the same transforms (prebake's code,
    in float32: no int16 rounding)."""
    from prebake.sources.volume_readers import read_volume
    from prebake.steps import CropOrPad, Orient, Spacing, Window

    item = read_volume(path)
    item["image"] = item["image"].astype(np.float32)  # float, no int16 rounding (float32 holds int16 exactly)
    for step in (Orient("RAS"), Spacing((SPACING,) * 3), Window(*WINDOW, (0.0, 1.0)),
                 CropOrPad((size,) * 3, 0.0)):
        item = step(item)
    return item["image"].astype(np.float32)


class SeedHdf5Dataset:
    """The 3-D medical workload's fast loader: one HDF5 read per item, an LRU of ``cache_size`` items per worker."""

    def __init__(self, path: Path, cache_size: int):
        self.path, self.cache_size = path, cache_size
        self.file: Any = None
        self.cache: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
        import h5py

        with h5py.File(path, "r") as f:
            self.n = len(f["labels"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        import h5py
        import torch

        if i in self.cache:
            self.cache.move_to_end(i)
            image, label = self.cache[i]
        else:
            if self.file is None:  # opened in each worker
                self.file = h5py.File(self.path, "r")
            image, label = torch.from_numpy(self.file["images"][i]), int(self.file["labels"][i])
            self.cache[i] = (image, label)
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return {"image": image, "label": label}


def _seed_build(paths: list[str], labels: list[int], size: int, out: Path, workers: int) -> None:
    import multiprocessing as mp
    from functools import partial

    import h5py

    with h5py.File(out, "w") as f:
        images = f.create_dataset("images", (len(paths), 1, size, size, size), np.float32,
                                  chunks=(1, 1, size, size, size))
        f["labels"] = np.array(labels, np.int64)
        with mp.get_context("fork").Pool(workers) as pool:
            for i, arr in enumerate(pool.imap(partial(seed_preprocess, size=size), paths)):
                images[i] = arr


def _dataloader(ds: Any, args: argparse.Namespace, workers: int) -> Any:
    import torch

    return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, prefetch_factor=2 if workers else None,
                                       generator=torch.Generator().manual_seed(0))


def _epoch(loader: Any) -> int:
    n = 0
    for batch in loader:
        image = batch["image"]
        assert image.dtype.is_floating_point and image.dim() == 5
        n += len(image)
    return n


def _pss_mb() -> float:
    """PSS of this process and its children (the DataLoader workers), MiB: what they cost together."""
    pids = [os.getpid()]
    try:
        pids += [int(p) for p in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()]
    except OSError:
        pass
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time one pipeline: its first epoch (cache build included), then ``args.epochs`` epochs."""
    import torch

    torch.set_num_threads(2)
    work = Path(args.workdir)
    paths, labels = read_csv(work / "volumes.csv")
    data = [{"image": p, "label": y} for p, y in zip(paths, labels)]
    workers = 2 if name.endswith("-2w") or name.startswith("prebake") else args.workers  # prebake: 2 bake processes
    _import_libraries(name)  # import time is not the pipeline's
    t0 = time.perf_counter()
    loader, first_items, cache_bytes, where = _make(name, args, work, data, paths, labels, workers)
    setup = time.perf_counter() - t0
    n = _epoch(loader)
    first = time.perf_counter() - t0
    result: dict[str, Any] = {"pipeline": name, "workers": workers, "setup_seconds": setup,
                              "first_epoch_seconds": first, "items": n}
    if not name.endswith("-2w"):
        t1 = time.perf_counter()
        steady = sum(_epoch(loader) for _ in range(args.epochs))
        result["steady_samples_per_s"] = steady / (time.perf_counter() - t1)
        result["pss_mib"] = _pss_mb()
    result["cache_bytes"] = cache_bytes() if callable(cache_bytes) else cache_bytes
    result["cache_where"] = where
    np.save(work / f"items-{name}.npy", first_items())
    del loader
    return result


def _import_libraries(name: str) -> None:
    import importlib

    modules = {"monai": ["monai.data", "monai.transforms", "nibabel"], "seed": ["h5py", "nibabel", "scipy.ndimage"],
               "prebake": ["prebake", "prebake.bake.build", "prebake.augment", "nibabel", "scipy.ndimage"]}
    for module in modules[name.split("-")[0]]:
        importlib.import_module(module)


def _make(name: str, args: argparse.Namespace, work: Path, data: list[dict[str, Any]], paths: list[str],
          labels: list[int], workers: int) -> tuple[Any, Any, Any, str]:
    size = args.size
    if name.startswith("monai-persistent"):
        from monai.data import PersistentDataset

        cache_dir = work / f"monai-{name}"
        shutil.rmtree(cache_dir, ignore_errors=True)  # a first epoch builds the cache
        ds = PersistentDataset(data, monai_transform(size), cache_dir=cache_dir)
        return (_dataloader(ds, args, workers), lambda: np.stack([ds[i]["image"].numpy() for i in range(CHECK_ITEMS)]),
                lambda: _dir_bytes(cache_dir), "disk (torch.save per item)")
    if name == "monai-cache":
        from monai.data import CacheDataset

        ds = CacheDataset(data, monai_transform(size), cache_rate=1.0, num_workers=workers, progress=False)
        nbytes = sum(item["image"].numel() * item["image"].element_size() for item in ds._cache)
        return (_dataloader(ds, args, workers), lambda: np.stack([ds[i]["image"].numpy() for i in range(CHECK_ITEMS)]),
                nbytes, "RAM, in the main process")
    if name == "seed-hdf5":
        h5 = work / "preprocessed_data.h5"
        h5.unlink(missing_ok=True)
        _seed_build(paths, labels, size, h5, 2)
        ds = SeedHdf5Dataset(h5, cache_size=1000)
        return (_dataloader(ds, args, workers), lambda: np.stack([ds[i]["image"].numpy() for i in range(CHECK_ITEMS)]),
                h5.stat().st_size, "disk (HDF5, float32) + an LRU per worker")
    return _make_prebake(args, work, name == "prebake-float32", name == "prebake-transform")


def _make_prebake(args: argparse.Namespace, work: Path, as_float: bool, in_transform: bool = False
                  ) -> tuple[Any, Any, Any, str]:
    import torch

    import prebake
    from prebake.augment import IntensityWindow
    from prebake.steps import CropOrPad, Orient, Spacing, Window

    out = work / ("prebake-float32-cache" if as_float else "prebake-cache")
    scale_to = (0.0, 1.0) if as_float else None
    steps = [Orient("RAS"), Spacing((SPACING,) * 3), Window(*WINDOW, scale_to=scale_to),
             CropOrPad((args.size,) * 3, scale_to[0] if scale_to else WINDOW[0])]  # padding: the window's low end
    options = prebake.SourceOptions(label_columns=("diagnosis",), keep_columns=("patient_id",))
    cache = prebake.build(work / "volumes.csv", out, steps, source_options=options, workers=2, force=True,
                          progress=False)
    if as_float:
        loader = prebake.Loader(cache, args.batch_size, seed=0, columns=["image", "label"])
        return (loader, lambda: np.array(cache.column("image")[:CHECK_ITEMS]), _dir_bytes(out),
                "disk (float32 .npy, memory-mapped)")
    window = IntensityWindow(*WINDOW)
    if in_transform:
        loader = prebake.Loader(cache, args.batch_size, seed=0, columns=["image", "label"], transform=lambda b: {
            "image": window(b["image"]), "label": b["label"]})
    else:
        loader = prebake.Loader(cache, args.batch_size, seed=0, columns=["image", "label"], convert={"image": window})
    items = lambda: window(torch.from_numpy(np.array(cache.column("image")[:CHECK_ITEMS]))).numpy()  # noqa: E731
    return loader, items, _dir_bytes(out), "disk (int16 .npy, memory-mapped)"


# -- the run --------------------------------------------------------------------------------------------

def _child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "examples.medical3d.bench", "--one", name, "--workdir", str(args.workdir.resolve()),
           "--size", str(args.size), "--epochs", str(args.epochs), "--workers", str(args.workers),
           "--batch-size", str(args.batch_size), "--volumes", str(args.volumes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if proc.returncode != 0:
        return {"pipeline": name, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(results: list[dict[str, Any]], work: Path) -> None:
    """Each pipeline's first items against prebake's: max abs difference, in [0, 1] units."""
    ref = np.load(work / "items-prebake.npy")
    for r in results:
        f = work / f"items-{r['pipeline']}.npy"
        if "error" in r or not f.exists():
            continue
        got = np.load(f)
        r["max_abs_diff_vs_prebake"] = float(np.abs(got - ref).max()) if got.shape == ref.shape else None
        r["equal_outputs"] = got.shape == ref.shape and r["max_abs_diff_vs_prebake"] <= TOLERANCE


def medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per pipeline, the median of each figure over the repeats (the other fields from the first run)."""
    out = []
    for k, first in enumerate(runs[0]):
        same = [run[k] for run in runs if "error" not in run[k]]
        if "error" in first or not same:
            out.append(first)
            continue
        merged = dict(first)
        for key, value in first.items():
            if isinstance(value, float) and key != "max_abs_diff_vs_prebake":
                merged[key] = float(np.median([r[key] for r in same if key in r]))
        merged["max_abs_diff_vs_prebake"] = max(r.get("max_abs_diff_vs_prebake") or 0.0 for r in same)
        merged["equal_outputs"] = all(r.get("equal_outputs", True) for r in same)
        out.append(merged)
    return out


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["pipeline"]: r for r in results if "error" not in r}
    p = by.get("prebake")
    if p is None:
        return {}
    out: dict[str, Any] = {}

    def ratio(key: str, a: dict[str, Any], b: dict[str, Any], invert: bool = False) -> float | None:
        if key not in a or key not in b or not a[key] or not b[key]:
            return None
        return (b[key] / a[key]) if invert else (a[key] / b[key])

    for name, r in by.items():
        if name == "prebake":
            continue
        out[name] = {"steady_samples_per_s": ratio("steady_samples_per_s", p, r),
                     "first_epoch_speedup": ratio("first_epoch_seconds", p, r, invert=True),
                     "cache_bytes": ratio("cache_bytes", p, r), "pss": ratio("pss_mib", p, r)}
    return out


def table(results: list[dict[str, Any]], rat: dict[str, Any], input_bytes: int,
          spread: list[dict[str, Any]]) -> list[str]:
    lines = ["| pipeline | workers | first epoch (s) | steady samples/s | cache | cache bytes | PSS of all processes "
             "(MiB) | max diff vs prebake |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['pipeline']} | error: {r['error']} |")
            continue
        steady = f"{r['steady_samples_per_s']:.1f}" if "steady_samples_per_s" in r else "-"
        pss = f"{r['pss_mib']:.0f}" if "pss_mib" in r else "-"
        diff = f"{r.get('max_abs_diff_vs_prebake', float('nan')):.2e}"
        lines.append(f"| {r['pipeline']} | {r['workers']} | {r['first_epoch_seconds']:.1f} | {steady} | "
                     f"{r['cache_where']} | {r['cache_bytes'] / 2**20:.0f} MiB | {pss} | {diff} |")
    lines.append(f"\ninput: {input_bytes / 2**20:.0f} MiB of .nii.gz")
    lines.append("\nratios: medians over the repeats (min-max of the per-repeat ratios)")
    lines.append("\n| prebake vs | steady samples/s | first epoch | cache bytes (prebake / theirs) "
                 "| PSS (prebake / theirs) |")
    lines.append("|---|---:|---:|---:|---:|")
    def fmt(name: str, key: str) -> str:
        v = rat[name][key]
        if v is None:
            return "-"
        each = [s[name][key] for s in spread if name in s and s[name][key] is not None]
        return f"{v:.2f}x" + (f" ({min(each):.2f}-{max(each):.2f})" if len(each) > 1 else "")

    for name in rat:
        lines.append(f"| {name} | {fmt(name, 'steady_samples_per_s')} | {fmt(name, 'first_epoch_speedup')} | "
                     f"{fmt(name, 'cache_bytes')} | {fmt(name, 'pss')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.medical3d.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--volumes", type=int, default=200, help="how many volumes (default 200)")
    p.add_argument("--size", type=int, default=96, help="side of the output volumes (default 96)")
    p.add_argument("--epochs", type=int, default=2, help="epochs timed after the first (default 2)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4, the seed's)")
    p.add_argument("--repeat", type=int, default=3, help="run the whole set N times; figures are medians (default 3)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8, the seed's)")
    p.add_argument("--workdir", type=Path, default=Path("runs/medical3d-bench/work"),
                   help="volumes and caches go here (default runs/medical3d-bench/work)")
    p.add_argument("--only", action="append", choices=PIPELINES, help="run only these pipelines (repeatable)")
    p.add_argument("--out", type=Path,
                   help="where the JSON goes (default runs/medical3d-bench/medical3d-<device>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/medical3d-<device>.json")
    p.add_argument("--one", choices=PIPELINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_volumes(args.workdir, args.volumes, args.size)
    gen = time.perf_counter() - t0
    names = [n for n in PIPELINES if not args.only or n in args.only]
    if "prebake" not in names:
        names.append("prebake")
    order = ["prebake", *[n for n in names if n != "prebake"]]
    runs = []
    for _ in range(args.repeat):  # each repeat runs every pipeline once, each in a fresh process
        run = [_child(n, args) for n in order]
        compare(run, args.workdir)
        runs.append(run)
    results = medians(runs)
    rat = ratios(results)
    spread = [ratios(run) for run in runs]
    input_bytes = _dir_bytes(args.workdir / "volumes")
    lines = table(results, rat, input_bytes, spread)
    print("\n".join(lines))
    doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "gpu": "not measured"},
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "one"},
           "data_generation_seconds": gen, "input_bytes": input_bytes, "results": results, "ratios": rat,
           "ratios_per_repeat": spread, "runs": runs, "load_average": os.getloadavg(),
           "tolerance": TOLERANCE, "versions": _versions()}
    from prebake.measure.bench import device_tag, write_results

    name = f"medical3d-{device_tag('cpu')}.json"
    out = args.out or Path("runs/medical3d-bench") / name
    for path in write_results(doc, out, RESULTS / name if args.save else None):
        print(f"wrote {path}")
    return 0 if all("error" not in r and r.get("equal_outputs", True) for r in results) else 1


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("prebake", "monai", "torch", "nibabel", "h5py", "numpy", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


if __name__ == "__main__":
    sys.exit(main())
