"""Peer libraries, each built from the same cached uint8 images and fed to the same device-side
normalisation as the prebake pipelines. They are benchmark-only: imported here lazily, and a peer
that does not import is skipped with the reason (see benchmarks/setup-peers.sh to install them).
"""

from __future__ import annotations

import functools
import multiprocessing
import shutil
import time
from typing import Any, cast

import numpy as np
import torch

from ...cache.reader import Cache, open_cache
from .pipelines import BenchData, DeviceNormalize, Pipeline, make_dataloader, on_device


class PeerUnavailable(Exception):
    """A peer library is not installed or does not import; the message says why."""


def _require(module: str, pip_name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure means "skip this peer", with the reason
        raise PeerUnavailable(f"{pip_name} does not import ({type(e).__name__}: {e}); "
                              "install the peers with benchmarks/setup-peers.sh") from None


def hf_datasets(data: BenchData) -> Pipeline:
    """Hugging Face datasets: an Arrow table on disk, memory-mapped back, torch format."""
    datasets = _require("datasets", "datasets")
    t = time.perf_counter()
    images = np.asarray(cast(np.ndarray, data.cache.column("image"))[: data.n])  # fixed: image_size() checked it
    features = datasets.Features({"image": datasets.Array3D(shape=images.shape[1:], dtype="uint8"),
                                  "label": datasets.Value("int64")})
    out = data.workdir / "hf-datasets"
    shutil.rmtree(out, ignore_errors=True)  # a kept --workdir from an earlier run
    datasets.Dataset.from_dict({"image": images, "label": data.labels}, features=features).save_to_disk(str(out))
    ds = datasets.load_from_disk(str(out)).with_format("torch")
    setup = time.perf_counter() - t
    loader = make_dataloader(ds, data)
    norm = DeviceNormalize(data.size, data.device)
    name = f"HF datasets {datasets.__version__}: Arrow, torch format, DataLoader x{data.workers}"
    # its torch format hands integer arrays over as int64: 8x the bytes, cast back before normalising
    unpack = lambda b: (b["image"].to(torch.uint8), b["label"])  # noqa: E731
    return Pipeline(name, on_device(loader, data, unpack, norm), setup,
                    ["HF datasets' torch format returns uint8 images as int64; cast to uint8 before normalising"])


@functools.lru_cache(maxsize=4)
def _open(path: str) -> Cache:
    return open_cache(path)


def _litdata_item(cache_path: str, i: int) -> dict[str, Any]:
    cache = _open(cache_path)
    return {"image": np.array(cache.column("image")[i]), "label": int(cache.column("label")[i])}


def litdata(data: BenchData) -> Pipeline:
    """LitData: ``optimize`` into chunks, then StreamingDataset + StreamingDataLoader."""
    ld = _require("litdata", "litdata")
    t = time.perf_counter()
    out = data.workdir / "litdata"
    shutil.rmtree(out, ignore_errors=True)  # optimize refuses a directory that holds a dataset
    method = multiprocessing.get_start_method(allow_none=True)
    ld.optimize(fn=functools.partial(_litdata_item, str(data.cache.path)), inputs=list(range(data.n)),
                output_dir=str(out), chunk_bytes="64MB", num_workers=1)
    multiprocessing.set_start_method(method, force=True)  # optimize switches the process to spawn
    dataset = ld.StreamingDataset(input_dir=str(out), shuffle=True)
    setup = time.perf_counter() - t
    loader = ld.StreamingDataLoader(dataset, batch_size=data.batch_size, num_workers=data.workers,
                                    pin_memory=data.device.type == "cuda", persistent_workers=data.workers > 0)
    norm = DeviceNormalize(data.size, data.device)
    name = f"LitData {ld.__version__}: optimize + StreamingDataLoader x{data.workers}"
    return Pipeline(name, on_device(loader, data, lambda b: (b["image"], b["label"]), norm), setup)


PEERS = {"hf-datasets": hf_datasets, "litdata": litdata}
