"""3-D patches from volumes of many extents: prebake.Patches against MONAI and TorchIO, in one run.

    python benchmarks/patches.py                       # 100 volumes of 100-180 a side, 2 interleaved rounds
    python benchmarks/patches.py --volumes 200 --rounds 3
    python benchmarks/patches.py --volumes 12 --lo 70 --hi 90 --sizes 64 --rounds 1     # a quick look
    python benchmarks/patches.py --save                # also update benchmarks/results/patches-<machine>.json

The data (written once under runs/patches/data-<volumes>-<lo>-<hi>/, reused): int16 CT-like NIfTI volumes
(``.nii.gz``) whose sides are drawn from ``--lo``..``--hi`` per axis, each with a uint8 label map of a few
spheres of foreground (class 1), and a CSV data list ``image,label``. Every epoch draws 4 patches per volume
(``--sizes`` 96^3 and 64^3), uniform and label-balanced (half the patches centred on foreground):

- ``prebake``: ``prebake.build(DataList(files), steps=[read the pair with nibabel, FgBgIndices])`` (int16 and
  uint8 kept, the foreground runs baked once), then ``prebake.Patches(cache, "image", size, per_item=4,
  sampler=...)`` and ``prebake.Loader(view, batch, threads="auto")``;
- ``monai``: ``PersistentDataset`` of ``LoadImaged`` + ``EnsureChannelFirstd`` (the cached prefix, MONAI's
  default float32) then ``RandSpatialCropSamplesd`` / ``RandCropByPosNegLabeld(pos=1, neg=1)`` with
  ``num_samples=4``, and ``monai.data.DataLoader(batch_size=batch / 4)`` at its best worker count of 0, 1, 2;
- ``torchio``: ``SubjectsDataset`` of ``ScalarImage`` + ``LabelMap`` and ``Queue(samples_per_volume=4,
  UniformSampler / LabelSampler({0: 1, 1: 1}))`` + ``DataLoader(batch)``, at its best Queue worker count of
  0, 1, 2 (skipped, and said so, when torchio does not import).

Each pipeline lives in its own process (spawned; benchmarks/patch_pipelines.py), so its peak RSS
(``getrusage``, itself and its reaped children) and CPU seconds (the same, both counts) are its own. The
first epoch (from empty caches: prebake's build with 2 workers, MONAI's cache writes with 2 workers) is
timed once on the first size, uniform; the worker counts are tried once each on the last size, uniform; then
``--rounds`` rounds, every (sampler, size) epoch of each pipeline, the pipelines' order rotating round by
round. Before timing, each pipeline's patches are checked: the right shape, from the volume it names, and
equal to a numpy crop of that volume at the box it reports (prebake's ``start``, MONAI's traced crop,
TorchIO's location) on a sample (``--check`` patches per pipeline and setting); and the share of those
patches that hold any foreground is compared with prebake's (a two-proportion z, ``agrees`` when at most 4).
Targets (steady >= 3x MONAI and TorchIO, first epoch >= 1.5x faster than MONAI's, cache bytes <= 0.55x
MONAI's) are stated met or not. Prints a table and writes runs/patches/patches-<machine>.json;
benchmarks/results/patches-<machine>.json only with --save.
"""


from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from patch_pipelines import Remote, crop, reference, write_volumes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = {"steady_vs_monai": 3.0, "steady_vs_torchio": 3.0, "first_epoch_vs_monai": 1.5, "cache_bytes_vs_monai": 0.55}


# -- checks, timing, the table --------------------------------------------------------------------------------


def check(name: str, got: list[dict[str, Any]], files: list[dict[str, str]], size: int,
          volumes: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every patch of ``got``: its size, a volume of the list with its own label map, and equal to the numpy crop
    of that volume at the box the pipeline reports; returns the foreground share per patch."""
    pairs = {f["image"]: f["label"] for f in files}
    for k, p in enumerate(got):
        where = f"{name}: patch {k} of {p['path']} at {p['start']}"
        if p["image"].shape != (size,) * 3 or p["label"].shape != (size,) * 3:
            raise SystemExit(f"{where}: shape {p['image'].shape}, {p['label'].shape}, expected {(size,) * 3}")
        if pairs.get(p["path"]) != p["label_path"]:
            raise SystemExit(f"{where}: label map {p['label_path']} is not the volume's own")
        for key, path in (("image", p["path"]), ("label", p["label_path"])):
            if path not in volumes:
                volumes[path] = reference(path)
            if not np.array_equal(p[key], crop(volumes[path], p["start"], size)):
                raise SystemExit(f"{where}: its {key} is not the numpy crop of {path} there")
    fg = [float((p["label"] > 0).mean()) for p in got]
    return {"patches": len(got), "equal": len(got), "foreground_share": fg}


def checks(remotes: dict[str, Remote], files: list[dict[str, str]], configs: list[tuple[str, int]],
           count: int) -> dict[str, Any]:
    """Each pipeline's patches against numpy crops; balanced foreground shares compared with prebake's."""
    out: dict[str, Any] = {}
    volumes: dict[str, np.ndarray] = {}
    for sampler, size in configs:
        for name, r in remotes.items():
            out[f"{name} {sampler} {size}"] = check(name, r("check", sampler=sampler, size=size, count=count),
                                                    files, size, volumes)
    for (sampler, size) in configs:
        mine = out[f"prebake {sampler} {size}"]["foreground_share"]
        for name in remotes:
            row = out[f"{name} {sampler} {size}"]
            row["mean_foreground"] = statistics.fmean(row["foreground_share"])
            row["with_foreground"] = statistics.fmean(f > 0 for f in row["foreground_share"])
            row["vs_prebake_z"] = _z(mine, row["foreground_share"])
            row["agrees"] = row["vs_prebake_z"] <= 4  # the share of patches with foreground, as prebake's
    for row in out.values():
        del row["foreground_share"]
    return out


def _z(a: list[float], b: list[float]) -> float:
    """Two-proportion z of the shares of patches with any foreground in ``a`` and ``b`` (pooled)."""
    pa, pb = statistics.fmean(x > 0 for x in a), statistics.fmean(x > 0 for x in b)
    p = (pa * len(a) + pb * len(b)) / (len(a) + len(b))
    se = (p * (1 - p) * (1 / len(a) + 1 / len(b))) ** 0.5
    return 0.0 if se == 0 else abs(pa - pb) / se


def steady(remotes: dict[str, Remote], workers: dict[str, int], configs: list[tuple[str, int]],
           rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of one epoch per (pipeline, sampler, size), the pipelines' order rotating."""
    names = list(remotes)
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        for c, (sampler, size) in enumerate(configs):
            order = names[(r + c) % len(names):] + names[:(r + c) % len(names)]
            for name in order:
                got = remotes[name]("epoch", sampler=sampler, size=size, workers=workers[name])
                runs.setdefault(f"{name} {sampler} {size}", []).append(got)
    out: dict[str, Any] = {}
    for sampler, size in configs:
        row: dict[str, Any] = {}
        for name in names:
            got = runs[f"{name} {sampler} {size}"]
            rates = [g["patches"] / g["seconds"] for g in got]
            row[name] = {"patches_per_s": statistics.median(rates), "range": [min(rates), max(rates)],
                         "patches_per_cpu_s": statistics.median(g["patches"] / g["cpu_s"] for g in got),
                         "rounds_s": [g["seconds"] for g in got], "rounds_cpu_s": [g["cpu_s"] for g in got]}
            if name != "prebake":  # paired round by round
                pre = [g["patches"] / g["seconds"] for g in runs[f"prebake {sampler} {size}"]]
                row[f"prebake/{name}"] = statistics.median(a / b for a, b in zip(pre, rates))
        out[f"{sampler} {size}"] = row
    return out


def timed_once(remotes: dict[str, Remote], cmd: str, sampler: str, size: int, workers: dict[str, int]) -> dict:
    return {name: r(cmd, sampler=sampler, size=size, workers=workers[name]) for name, r in remotes.items()}


def sweep(remotes: dict[str, Remote], sampler: str, size: int) -> tuple[dict[str, int], dict[str, Any]]:
    """One epoch at 0, 1 and 2 workers of each peer; the best is the one the steady rounds use."""
    best, tried = {"prebake": 0}, {}
    for name in remotes:
        if name == "prebake":
            continue
        tried[name] = {w: remotes[name]("epoch", sampler=sampler, size=size, workers=w) for w in (0, 1, 2)}
        best[name] = max(tried[name], key=lambda w: tried[name][w]["patches"] / tried[name][w]["seconds"])
    return best, tried


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured figure (the worst over samplers and sizes for the steady ones)."""
    out: dict[str, Any] = {}
    for peer in ("monai", "torchio"):
        ratios = [row[f"prebake/{peer}"] for row in result["steady"].values() if f"prebake/{peer}" in row]
        out[f"steady_vs_{peer}"] = min(ratios) if ratios else None
    first = result["first_epoch"]
    out["first_epoch_vs_monai"] = first["monai"]["seconds"] / first["prebake"]["seconds"]
    cache = result["cache_bytes"]
    out["cache_bytes_vs_monai"] = cache["prebake"] / cache["monai"]
    met = {k: None if v is None else (v <= TARGETS[k] if k.startswith("cache") else v >= TARGETS[k])
           for k, v in out.items()}
    return {k: {"measured": out[k], "target": TARGETS[k], "met": met[k]} for k in out}


def table(result: dict[str, Any], names: list[str]) -> str:
    lines = [f"{'':<14}" + "".join(f"{n + ' patches/s':>20}" for n in names)
             + "".join(f"{'prebake/' + n:>16}" for n in names[1:])]
    for key, row in result["steady"].items():
        lines.append(f"{key:<14}" + "".join(f"{row[n]['patches_per_s']:>11,.1f} ({row[n]['patches_per_cpu_s']:>5,.1f}/"
                                            f"cpu)" for n in names) + "".join(f"{row['prebake/' + n]:>15.2f}x"
                                                                          for n in names[1:]))
    first, cache, peak = result["first_epoch"], result["cache_bytes"], result["peak_rss_mib"]
    lines.append("first epoch s " + "".join(f"{first[n]['seconds']:>20.2f}" for n in names))
    lines.append("cache MB      " + "".join(f"{(cache.get(n) or 0) / 1e6:>20,.1f}" for n in names))
    lines.append("peak RSS MiB  " + "".join(f"{peak[n]:>20,.0f}" for n in names))
    lines.append("workers       " + "".join(f"{result['workers'][n]:>20}" for n in names))
    checked = result["checks"]
    lines.append(f"checked: {sum(c['equal'] for c in checked.values())} patches equal to numpy crops of their "
                 f"volumes; share with foreground as prebake's (z <= 4): "
                 f"{'yes' if all(c['agrees'] for c in checked.values()) else 'NO'} (" + ", ".join(
                     f"{k} {c['with_foreground']:.2f}" for k, c in checked.items() if "balanced" in k) + ")")
    for k, t in result["targets"].items():
        v = "not measured" if t["measured"] is None else f"{t['measured']:.2f}"
        state = "skipped" if t["met"] is None else ("met" if t["met"] else "NOT met")
        lines.append(f"target {k}: {v} (target {'<=' if k.startswith('cache') else '>='} {t['target']}): {state}")
    if result.get("skipped"):
        lines.append(f"skipped: {result['skipped']}")
    lines.append(f"load average {result['load_average']['start']} at the start, {result['load_average']['end']} "
                 "at the end")
    return "\n".join(lines)


def say(what: str, _t0: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - _t0:6.1f} s] {what}", file=sys.stderr, flush=True)


def _peers() -> tuple[list[str], str | None]:
    try:
        import torchio  # noqa: F401
    except ImportError as e:
        return ["prebake", "monai"], f"torchio: not installed here ({e}); its rows are not measured"
    return ["prebake", "monai", "torchio"], None


def run(args: argparse.Namespace, files: list[dict[str, str]], work: Path) -> dict[str, Any]:
    names, skipped = _peers()
    configs = [(s, z) for z in args.sizes for s in ("uniform", "balanced")]
    load_start = os.getloadavg()
    for f in files:  # the page cache holds every file for every pipeline
        Path(f["image"]).read_bytes(), Path(f["label"]).read_bytes()
    remotes = {n: Remote(n, files, work, args.batch) for n in names}
    try:
        say("first epochs, from empty caches")
        first = timed_once(remotes, "first", "uniform", args.sizes[0], {n: 2 for n in names})
        say("checking patches against numpy crops")
        checked = checks(remotes, files, configs, args.check)
        say("worker counts 0, 1, 2")
        workers, tried = sweep(remotes, "uniform", args.sizes[-1])
        say(f"steady rounds at workers {workers}")
        result: dict[str, Any] = {"first_epoch": first, "checks": checked, "workers": workers,
                                  "workers_tried": tried, "steady": steady(remotes, workers, configs, args.rounds)}
    finally:
        ends = {n: r.stop() for n, r in remotes.items()}
    result["cache_bytes"] = {n: e["cache_bytes"] for n, e in ends.items()}
    result["peak_rss_mib"] = {n: e["peak_rss_mib"] for n, e in ends.items()}
    result["targets"] = targets(result)
    result["skipped"] = skipped
    result["load_average"] = {"start": [round(x, 2) for x in load_start],
                              "end": [round(x, 2) for x in os.getloadavg()]}
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--volumes", type=int, default=100)
    p.add_argument("--lo", type=int, default=100, help="the smallest side of a volume, in voxels")
    p.add_argument("--hi", type=int, default=180, help="the largest side of a volume, in voxels")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 64], help="patch sides (the first: first epoch)")
    p.add_argument("--batch", type=int, default=8, help="patches per batch (MONAI: batch / 4 volumes)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of one epoch per pipeline and setting")
    p.add_argument("--check", type=int, default=24, help="patches per pipeline and setting checked against numpy")
    p.add_argument("--data", type=Path, help="where the volumes are (default runs/patches/data-<volumes>-<lo>-<hi>)")
    p.add_argument("--out", type=Path, help="JSON path (default: runs/patches/patches-<machine>.json)")
    p.add_argument("--save", action="store_true", help="also update benchmarks/results/patches-<machine>.json")
    args = p.parse_args()
    if args.lo < max(args.sizes):
        raise SystemExit(f"--lo {args.lo}: every side must hold the largest patch ({max(args.sizes)}); raise --lo")
    data = args.data or ROOT / "runs" / "patches" / f"data-{args.volumes}-{args.lo}-{args.hi}"
    files = write_volumes(data, args.volumes, args.lo, args.hi)
    work = ROOT / "runs" / "patches" / "work"
    shutil.rmtree(work, ignore_errors=True)  # first epochs from empty caches
    work.mkdir(parents=True)
    try:
        result = run(args, files, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["settings"] = {k: str(v) for k, v in vars(args).items()}
    names = list(result["peak_rss_mib"])
    print(table(result, names))
    from prebake.measure.bench import device_tag, machine, write_results

    record = {"machine": machine("cpu"), "versions": {n: _version(n) for n in ("monai", "torchio", "nibabel")},
              "results": result}
    name = f"patches-{device_tag('cpu')}.json"
    out = args.out or ROOT / "runs" / "patches" / name
    for path in write_results(record, out, HERE / "results" / name if args.save else None, root=ROOT):
        print(f"wrote {path}")
    return 0


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
