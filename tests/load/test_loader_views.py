"""prebake.Loader over views and ragged columns: the same batches as indexing the view, from the memory maps,
from RAM and from the device, with any thread count; DDP exactly-once; exact resume; every dtype; padding;
a batch's op count does not grow with its size."""

from __future__ import annotations

import gc
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import prebake
from prebake.cache.reader import torch_dtype_ok
from prebake.load.gather import read_device
from prebake.load.loader import _Prefetcher
from prebake.load.views import Items

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
LENGTHS = [0, 2, 9, 30, 5, 17, 1, 40, 12, 26, 3, 8]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = len(LENGTHS)
    return prebake.write_arrays(tmp_path_factory.mktemp("lv") / "c", {
        "frames": [rng.integers(0, 256, (k, 3, 4, 4), dtype=np.uint8) for k in LENGTHS],
        "lat": [rng.standard_normal((k, 8)).astype(np.float32) for k in LENGTHS],
        "words": [np.array([f"w{i}.{j}" for j in range(k)], dtype="<U6") for i, k in enumerate(LENGTHS)],
        "sig": [rng.integers(-2**15, 2**15, 50 + 7 * i, dtype=np.int16) for i in range(n)],
        "label": np.arange(n, dtype=np.int64),
        "patient": np.array([f"patient-{i:03d}" for i in range(n)]),
        "raw": np.array([bytes([65 + i]) * 3 for i in range(n)]),
        "be": np.arange(n, dtype=">i4"),  # big-endian, as numpy writes it on such a machine
    })


def _views(cache):
    return {
        "windows": prebake.Windows(cache, "frames", 4, stride=2, context=3),
        "windows-subset": prebake.Windows(cache, "frames", 5, columns=["frames", "lat", "patient"], indices=[9, 3, 7]),
        "elements": prebake.Elements(cache, "lat"),
    }


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.cpu().numpy()
    return value


def _check_batch(batch, want):
    assert set(batch) == set(want)
    for k, v in want.items():
        got = batch[k]
        if v.dtype.kind in "USV":  # str and bytes stay numpy, on the host
            assert isinstance(got, np.ndarray) and got.dtype == v.dtype, k
        else:
            assert isinstance(got, torch.Tensor), k
        assert np.array_equal(_numpy(got), v), k


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preload", [None, "ram", "device"])
@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("kind", ["windows", "windows-subset", "elements"])
def test_loader_batches_are_the_view_indexed(cache, kind, threads, preload, device):
    view = _views(cache)[kind]
    loader = prebake.Loader(view, 7, seed=3, threads=threads, preload=preload, device=device)
    batches = list(loader)
    plan = loader.sampling.batches(0)
    assert len(batches) == len(plan) > 1
    for batch, idx in zip(batches, plan):
        if device == "cuda":
            assert all(v.device.type == "cuda" for v in batch.values() if isinstance(v, torch.Tensor))
        _check_batch(batch, view[idx])


def test_same_batches_with_and_without_preload_and_threads(cache):
    view = _views(cache)["windows"]
    runs = [list(prebake.Loader(view, 5, seed=8, threads=t, preload=p)) for t, p in
            [(1, None), (4, None), (2, "ram"), (3, "device")]]
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other):
            assert all(np.array_equal(_numpy(a[k]), _numpy(b[k])) for k in a)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_window_once_per_epoch_across_ranks(cache, world):
    view = _views(cache)["windows"]
    for subset in (None, np.arange(1, len(view), 2)):
        seen, steps = [], set()
        for rank in range(world):
            batches = list(prebake.Loader(view, 4, seed=1, rank=rank, world_size=world, indices=subset))
            steps.add(len(batches))
            seen += [(int(i), int(s)) for b in batches for i, s in zip(b["item"], b["start"])]
        everything = list(zip(view.item.tolist(), view.start.tolist()))
        want = everything if subset is None else [everything[j] for j in subset]
        assert sorted(seen) == sorted(want) and len(steps) == 1


@pytest.mark.parametrize("preload", [None, "device"])
@pytest.mark.parametrize("stop_after", [0, 3, 9])
def test_resume_over_a_view_yields_exactly_the_remaining_batches(cache, stop_after, preload):
    view = _views(cache)["elements"]
    key = lambda b: list(zip(b["item"].tolist(), b["element"].tolist()))  # noqa: E731
    full = [key(b) for b in prebake.Loader(view, 6, seed=4)]
    loader = prebake.Loader(view, 6, seed=4, preload=preload)
    it = iter(loader)
    got = [key(next(it)) for _ in range(stop_after)]
    state = loader.state_dict()
    del it
    resumed = prebake.Loader(prebake.Elements(prebake.open(cache.path), "lat"), 6, seed=4, threads=3)
    resumed.load_state_dict(state)
    assert got + [key(b) for b in resumed] == full


def test_resume_refuses_the_state_of_another_view(cache):
    state = prebake.Loader(prebake.Windows(cache, "frames", 4), 4, seed=0).state_dict()
    same_length = prebake.Windows(cache, "lat", 4)  # as many windows, cut from another column
    assert len(same_length) == len(prebake.Windows(cache, "frames", 4))
    with pytest.raises(prebake.ResumeError, match="saved over .*'column': 'frames'.* this loader reads .*'lat'"):
        prebake.Loader(same_length, 4, seed=0).load_state_dict(state)
    a, b = (prebake.Loader(prebake.Windows(cache, "frames", 4, indices=ix), 4) for ix in ([3, 7], [7, 3]))
    assert len(a) == len(b)
    with pytest.raises(prebake.ResumeError):
        b.load_state_dict(a.state_dict())


def _padded_reference(col, idx):
    items = [np.asarray(col[i]) for i in idx]
    width = max(len(x) for x in items)
    out = np.zeros((len(idx), width, *items[0].shape[1:]), items[0].dtype)
    for k, x in enumerate(items):
        out[k, :len(x)] = x
    return out, np.array([len(x) for x in items])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preload", [None, "ram", "device"])
def test_pad_gives_a_padded_tensor_and_lengths(cache, preload, device):
    loader = prebake.Loader(cache, 5, seed=2, pad=True, preload=preload, device=device,
                            columns=["frames", "sig", "words", "label"])
    for batch, idx in zip(loader, loader.sampling.batches(0)):
        for name in ("frames", "sig", "words"):
            want, lengths = _padded_reference(cache.column(name), idx)
            assert np.array_equal(_numpy(batch[name]), want) and batch[f"{name}_lengths"].tolist() == lengths.tolist()
        assert batch["label"].tolist() == idx.tolist()
        assert isinstance(batch["words"], np.ndarray) and batch["words"].dtype.kind == "U"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preload", [None, "ram", "device"])
def test_without_pad_a_ragged_column_is_a_list_of_items(cache, preload, device):
    loader = prebake.Loader(cache, 5, seed=2, preload=preload, device=device)
    for batch, idx in zip(loader, loader.sampling.batches(0)):
        for name in ("frames", "lat", "sig", "words"):
            got = batch[name]
            assert isinstance(got, list) and len(got) == len(idx)
            for piece, i in zip(got, idx):
                assert np.array_equal(_numpy(piece), np.asarray(cache.column(name)[i]))
        _check_batch({k: batch[k] for k in ("label", "patient", "raw", "be")},
                     {k: np.asarray(cache.column(k)[idx]) for k in ("label", "patient", "raw", "be")})
        assert batch["be"].dtype == torch.int32


@pytest.mark.parametrize("preload", [None, "ram", "device"])
def test_str_and_bytes_columns_arrive_as_numpy_arrays(cache, preload):
    """Fixed and ragged non-numeric columns, in a cache and in views, never crash the Loader."""
    for data in (cache, prebake.Windows(cache, "frames", 3), prebake.Elements(cache, "words")):
        batch = next(iter(prebake.Loader(data, 4, seed=0, preload=preload)))
        assert batch["patient"].dtype.kind == "U" and batch["raw"].dtype.kind == "S"
        assert all(p.startswith("patient-") for p in batch["patient"])
    words = next(iter(prebake.Loader(prebake.Windows(cache, "words", 3), 4, seed=0, preload=preload)))["words"]
    assert words.shape == (4, 3) and all(w.startswith("w") for w in words.ravel())


def test_pad_and_columns_are_checked_when_the_loader_is_made(cache):
    with pytest.raises(prebake.ViewError, match="already have one length"):
        prebake.Loader(prebake.Windows(cache, "frames", 3), 4, pad=True)
    with pytest.raises(prebake.ViewError, match=r"columns \['sig'\] are not columns of Windows"):
        prebake.Loader(prebake.Windows(cache, "frames", 3), 4, columns=["frames", "sig"])
    batch = next(iter(prebake.Loader(prebake.Windows(cache, "frames", 3, context=1), 4, columns=["lat"])))
    assert set(batch) == {"lat", "lat_context", "item", "start", "context_mask"}


def _op_views(cache):
    return {"windows": prebake.Windows(cache, "frames", 4, context=3), "elements": prebake.Elements(cache, "lat")}


def _batches(view):
    """A batch of 4 and one of 64, both holding windows at the start of a clip (so both mask context rows)."""
    assert len(view) > 64
    return [np.arange(4, dtype=np.int64)[::-1].copy(), np.random.default_rng(0).permutation(len(view))[:64]]


@pytest.mark.parametrize("kind", ["windows", "elements"])
def test_device_gather_op_count_does_not_grow_with_the_batch(cache, kind):
    """preload="device" (here on the CPU): a batch is a fixed handful of ATen ops for any batch size."""
    view = _op_views(cache)[kind]
    loader = prebake.Loader(view, 4, preload="device")
    counts = []
    for idx in _batches(view):
        read_device(view.plan(idx), loader._data, loader.device)  # warm up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            batch = read_device(view.plan(idx), loader._data, loader.device)
        assert len(batch["item"]) == len(idx)
        counts.append(Counter(e.name for e in prof.events() if e.name.startswith("aten::")))
    numeric = [c for c in view.columns if torch_dtype_ok(np.dtype(cache.specs[c].dtype))]  # str, bytes: on the host
    assert counts[0]["aten::index_select"] == len(numeric) == 4
    assert counts[0] == counts[1]


@pytest.mark.parametrize("kind", ["windows", "elements"])
def test_host_gather_makes_the_same_calls_for_any_batch_size(cache, kind):
    """The memory-map path: the Python and C calls that read one batch (numpy's gathers included, which the
    torch profiler does not see) are the same for 4 samples and for 64: no loop over the samples."""
    view = _op_views(cache)[kind]
    loader = prebake.Loader(view, 4)
    prefetcher = _Prefetcher(loader, [])
    counts, kept = [], []
    for idx in _batches(view):
        prefetcher._load(idx)  # warm up
        calls: Counter[str] = Counter()

        def count(frame, event, arg):
            if event in ("call", "c_call"):
                calls[f"{event}:{getattr(arg, '__qualname__', None) or frame.f_code.co_name}"] += 1

        gc.collect()
        gc.disable()  # a collection inside the counted call would count finalisers of unrelated objects
        sys.setprofile(count)
        try:
            kept.append(prefetcher._load(idx))  # kept: dropping the last batch here would count its buffers' return
        finally:
            sys.setprofile(None)
            gc.enable()
        assert len(kept[-1]["item"]) == len(idx)
        counts.append(calls)
    assert counts[0]["c_call:ndarray.take"] >= len(view.columns) and counts[0] == counts[1]  # one np.take per column


@pytest.mark.parametrize("kind", ["windows", "elements", "cache"])
def test_a_held_batch_is_never_overwritten_by_reused_buffers(cache, kind, tmp_path):
    """Output memory is reused only once nothing refers to it: batches, and views of them, stay intact."""
    if kind == "cache":  # sorted gathers, then the drawn order restored into a second buffer
        rng = np.random.default_rng(5)
        view = Items(prebake.write_arrays(tmp_path / "c", {"x": rng.standard_normal((60, 7)).astype(np.float32),
                                                           "name": np.array([f"n{i}" for i in range(60)])}))
    else:
        view = _views(cache)[kind]
    loader = prebake.Loader(view.cache if kind == "cache" else view, 3, seed=0, threads=2, prefetch=2)
    held, parts = [], []
    for k, (batch, idx) in enumerate(zip(loader, loader.sampling.batches(0))):
        if k % 3 == 0:
            held.append((batch, idx))
        elif k % 3 == 1:
            parts.append(({key: v[1:] for key, v in batch.items()}, idx))  # only a view of each output is kept
    assert len(held) > 3
    for batch, idx in held:
        _check_batch(batch, view[idx])
    for part, idx in parts:
        _check_batch(part, {key: v[1:] for key, v in view[idx].items()})


def test_dropped_batches_give_their_memory_back(cache):
    loader = prebake.Loader(_views(cache)["elements"], 4, seed=0, drop_last=True)
    pointers = [batch["lat"].data_ptr() for batch in loader]  # each batch is dropped at the next step
    assert len(pointers) > 20 and len(set(pointers)) <= loader.prefetch + loader.threads + 2
