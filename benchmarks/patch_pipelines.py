"""The data and the three pipelines of benchmarks/patches.py, each run in a process of its own.

``write_volumes`` writes the NIfTI volumes and label maps once; ``Prebake``, ``Monai`` and ``Torchio``
each draw the same kind of patches (``first``: caches from empty and one epoch; ``epoch``; ``check``:
patches with the volume and box they came from); ``Remote`` starts one in a spawned process and
``serve`` runs there the commands it is sent, timing each in wall and CPU seconds (``getrusage`` of the
process and its reaped children, which is also where its peak RSS comes from).
"""

from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

PER_ITEM = 4

# -- the data ------------------------------------------------------------------------------------------------


def spheres(dims: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A uint8 label map of ``dims`` with 2-4 spheres of class 1 (radius 6-16) inside it."""
    label = np.zeros(dims, np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        r = int(rng.integers(6, 17))
        c = [int(rng.integers(r, d - r)) for d in dims]
        box = tuple(slice(x - r, x + r + 1) for x in c)
        z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
        label[box][z * z + y * y + x * x <= r * r] = 1
    return label


def write_volumes(root: Path, n: int, lo: int, hi: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` int16 CT-like NIfTI volumes of ``lo``..``hi`` voxels a side and their label maps, once; a CSV list."""
    import nibabel as nib

    from prebake.synthetic_volumes import ct_phantom

    listing = root / "data.csv"
    if listing.exists():
        with listing.open() as f:
            return [dict(row) for row in csv.DictReader(f)]
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        dims = tuple(int(d) for d in rng.integers(lo, hi + 1, 3))
        image, label = root / f"v{i:04d}.nii.gz", root / f"v{i:04d}_seg.nii.gz"
        nib.save(nib.Nifti1Image(ct_phantom(dims, bool(i % 2), rng), np.eye(4)), image)
        nib.save(nib.Nifti1Image(spheres(dims, rng), np.eye(4)), label)
        files.append({"image": str(image), "label": str(label)})
    with (root / "data.csv.partial").open("w", newline="") as f:
        w = csv.DictWriter(f, ["image", "label"])
        w.writeheader()
        w.writerows(files)
    (root / "data.csv.partial").rename(listing)  # the list last: a killed run writes the data again
    return files


def read_pair(item: dict[str, Any]) -> dict[str, Any]:
    """The bake's reader: a volume and its label map at their own bit depth, channel first."""
    import nibabel as nib

    return {"image": np.asanyarray(nib.load(item["image"]).dataobj)[None],
            "label_map": np.asanyarray(nib.load(item["label_map"]).dataobj).astype(np.uint8)[None]}


def reference(path: str) -> np.ndarray:
    import nibabel as nib

    return np.asanyarray(nib.load(path).dataobj)


def crop(volume: np.ndarray, start: Any, size: int) -> np.ndarray:
    return volume[tuple(slice(int(s), int(s) + size) for s in start)]


# -- the pipelines, one process each ------------------------------------------------------------------------


class Pipeline:
    """One way to draw patches: ``first`` (caches from empty + one epoch), ``epoch``, ``check``."""

    def __init__(self, files: list[dict[str, str]], work: Path, batch: int):
        self.files, self.work, self.batch = files, work, batch

    def loader(self, sampler: str, size: int, workers: int) -> Any:
        raise NotImplementedError

    def epoch(self, sampler: str, size: int, workers: int) -> int:
        return sum(int(b["image"].shape[0]) for b in self.loader(sampler, size, workers))

    def first(self, sampler: str, size: int, workers: int) -> int:
        return self.epoch(sampler, size, workers)

    def cache_bytes(self) -> int | None:
        return None


class Prebake(Pipeline):
    def first(self, sampler: str, size: int, workers: int) -> int:
        import prebake
        from prebake.integrations.monai import DataList
        from prebake.steps import FgBgIndices

        pairs = DataList([{"image": f["image"], "label_map": f["label"]} for f in self.files])
        self.cache = prebake.build(pairs, self.work / "prebake", steps=[read_pair, FgBgIndices("label_map", (0, 1))],
                                   workers=2, progress=False)
        return self.epoch(sampler, size, workers)

    def loader(self, sampler: str, size: int, workers: int) -> Any:
        import prebake

        balanced = {"label": "label_map", "pos_fraction": 0.5} if sampler == "balanced" else {}
        view = prebake.Patches(self.cache, "image", (size,) * 3, PER_ITEM, sampler=sampler,
                               columns=["image", "label_map"], **balanced)
        return prebake.Loader(view, self.batch, shuffle=True, seed=size)

    def check(self, sampler: str, size: int, count: int) -> list[dict[str, Any]]:
        got = []
        for b in self.loader(sampler, size, 0):
            for j in range(len(b["item"])):
                i = int(b["item"][j])
                got.append({"path": self.files[i]["image"], "label_path": self.files[i]["label"],
                            "start": np.asarray(b["start"][j]).tolist(), "image": np.asarray(b["image"][j, 0]),
                            "label": np.asarray(b["label_map"][j, 0])})
            if len(got) >= count:
                return got[:count]
        return got

    def cache_bytes(self) -> int:
        return _bytes(self.work / "prebake")


class Monai(Pipeline):
    def compose(self, sampler: str, size: int) -> Any:
        import monai.transforms as mt

        keys = ["image", "label"]
        if sampler == "uniform":
            rand = mt.RandSpatialCropSamplesd(keys, (size,) * 3, num_samples=PER_ITEM, random_size=False)
        else:
            rand = mt.RandCropByPosNegLabeld(keys, "label", (size,) * 3, pos=1, neg=1, num_samples=PER_ITEM)
        return mt.Compose([mt.LoadImaged(keys), mt.EnsureChannelFirstd(keys), rand])

    def dataset(self, sampler: str, size: int) -> Any:
        from monai.data import PersistentDataset

        # one cache for every sampler: PersistentDataset keys items by their data dict, the prefix is the same
        return PersistentDataset(self.files, self.compose(sampler, size), cache_dir=self.work / "persistent")

    def loader(self, sampler: str, size: int, workers: int) -> Any:
        from monai.data import DataLoader

        return DataLoader(self.dataset(sampler, size), batch_size=max(1, self.batch // PER_ITEM), shuffle=True,
                          num_workers=workers)

    def check(self, sampler: str, size: int, count: int) -> list[dict[str, Any]]:
        ds, got = self.dataset(sampler, size), []
        for i in range(len(self.files)):
            for p in ds[i]:
                # the item's own files: the patch must equal their crop (the cached prefix keeps no file name)
                got.append({"path": self.files[i]["image"], "start": _cropped(p["image"]),
                            "label_path": self.files[i]["label"],
                            "image": p["image"][0].numpy(), "label": p["label"][0].numpy()})
            if len(got) >= count:
                return got[:count]
        return got

    def cache_bytes(self) -> int:
        return _bytes(self.work / "persistent")


class Torchio(Pipeline):
    def queue(self, sampler: str, size: int, workers: int) -> Any:
        import torchio as tio

        subjects = tio.SubjectsDataset([tio.Subject(image=tio.ScalarImage(f["image"]), label=tio.LabelMap(f["label"]))
                                        for f in self.files])
        draw = tio.UniformSampler(size) if sampler == "uniform" else tio.LabelSampler(size, "label", {0: 1, 1: 1})
        return tio.Queue(subjects, max_length=16 * PER_ITEM, samples_per_volume=PER_ITEM, sampler=draw,
                         num_workers=workers, shuffle_subjects=True, shuffle_patches=True, verbose=False)

    def loader(self, sampler: str, size: int, workers: int) -> Any:
        import torch
        import torchio as tio

        batches = torch.utils.data.DataLoader(self.queue(sampler, size, workers), batch_size=self.batch,
                                              num_workers=0)
        return ({"image": b["image"][tio.DATA]} for b in batches)

    def check(self, sampler: str, size: int, count: int) -> list[dict[str, Any]]:
        import torchio as tio

        got = []
        for p in self.queue(sampler, size, 0):
            got.append({"path": str(p["image"].path), "label_path": str(p["label"].path),
                        "start": p[tio.LOCATION][:3].tolist(), "image": p["image"][tio.DATA][0].numpy(),
                        "label": p["label"][tio.DATA][0].numpy()})
            if len(got) >= count:
                break
        return got


PIPELINES = {"prebake": Prebake, "monai": Monai, "torchio": Torchio}


def _cropped(t: Any) -> list[int]:
    """The first voxel of MONAI's crop, from its trace (``cropped``: voxels cut before and after, per axis)."""
    info = t.applied_operations[-1]
    while "cropped" not in info.get("extra_info", {}):
        info = info["extra_info"]
    return [int(x) for x in info["extra_info"]["cropped"][0::2]]


def _usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MiB) of this process and its reaped children (DataLoader and bake workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, (me.ru_maxrss + kids.ru_maxrss) / 1024


def serve(conn: Any, name: str, files: list[dict[str, str]], work: str, batch: int) -> None:
    """A pipeline's process: runs the commands it is sent, each timed in wall and CPU seconds."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    mp.set_start_method("fork", force=True)  # DataLoader workers fork, as in a script (spawn is inherited here)
    import torch

    torch.set_num_threads(1)  # DataLoader workers have one each; the Loader's threads share this process
    pipe = PIPELINES[name](files, Path(work), batch)
    while True:
        cmd, kw = conn.recv()
        if cmd == "stop":
            conn.send({"peak_rss_mib": _usage()[1], "cache_bytes": pipe.cache_bytes()})
            return
        if cmd == "check":
            conn.send(pipe.check(**kw))
            continue
        cpu, t0 = _usage()[0], time.perf_counter()
        n = getattr(pipe, cmd)(**kw)
        conn.send({"seconds": time.perf_counter() - t0, "cpu_s": _usage()[0] - cpu, "patches": n})


class Remote:
    def __init__(self, name: str, files: list[dict[str, str]], work: Path, batch: int):
        self.conn, child = mp.get_context("spawn").Pipe()
        self.proc = mp.get_context("spawn").Process(target=serve, args=(child, name, files, str(work), batch))
        self.proc.start()
        child.close()  # a child that dies ends recv() with EOFError, never a hang

    def __call__(self, cmd: str, **kw: Any) -> Any:
        self.conn.send((cmd, kw))
        return self.conn.recv()

    def stop(self) -> dict[str, Any]:
        try:
            out = self("stop")
        except (EOFError, OSError):  # it died (its traceback is above): nothing to report
            out = {"peak_rss_mib": None, "cache_bytes": None}
        self.proc.join(timeout=60)
        if self.proc.is_alive():
            self.proc.kill()
        return out


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
