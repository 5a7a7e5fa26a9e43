"""Loader(convert=...): conversions fused into the gather give exactly what converting the plain batch gives,
in the drawn order, for volumes larger than a chunk, small rows, views with invalid rows and ragged items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prebake
from prebake.augment import IntensityWindow
from prebake.errors import OptionError
from prebake.load import convert as convert_module
from tests.helpers.devices import DEVICES

LENGTHS = [0, 3, 9, 1, 14, 6, 2, 11, 5, 8]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = len(LENGTHS)
    return prebake.write_arrays(tmp_path_factory.mktemp("cv") / "c", {
        # 1 x 64 x 64 x 40 = 163,840 voxels: more than one chunk (131,072), the last one partial
        "ct": rng.integers(-2000, 2000, (n, 1, 64, 64, 40), dtype=np.int16),
        # the same sizes in dtypes torch cannot view: numpy's casting copy reads them
        "ct_be": rng.integers(-2000, 2000, (n, 1, 64, 64, 40), dtype=np.int16).astype(">i2"),
        "ct_u16": rng.integers(0, 4000, (n, 1, 64, 64, 40), dtype=np.uint16),
        "image": rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8),
        "lat": [rng.standard_normal((k, 5)).astype(np.float32) for k in LENGTHS],
        "be": np.arange(n * 3, dtype=">i4").reshape(n, 3),
        "label": np.arange(n, dtype=np.int64),
        "name": np.array([f"item-{i}" for i in range(n)]),
    })


def _pairs(plain, converted):
    return list(zip(plain, converted, strict=True))


@pytest.mark.parametrize("threads, preload", [(1, None), (3, None), (2, "ram")])
def test_window_in_the_gather_equals_the_window_after_it(cache, threads, preload):
    window = IntensityWindow(-1000, 1000)
    plain = prebake.Loader(cache, 3, seed=4, threads=threads, columns=["ct", "label"])
    fused = prebake.Loader(cache, 3, seed=4, threads=threads, columns=["ct", "label"], convert={"ct": window},
                           preload=preload)
    for a, b in _pairs(plain, fused):
        assert b["ct"].dtype == torch.float32 and torch.equal(a["label"], b["label"])
        assert torch.equal(window(a["ct"]), b["ct"])  # bit for bit, in the drawn order
        assert float(b["ct"].min()) == 0.0 and float(b["ct"].max()) == 1.0


@pytest.fixture(params=[1, 2], ids=["torch-1-thread", "torch-2-threads"])
def torch_threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("column", ["ct", "ct_be", "ct_u16"])
def test_volumes_convert_alike_through_torch_or_numpy_on_one_or_two_threads(cache, column, torch_threads):
    window = IntensityWindow(-1000, 1000)
    plain = prebake.Loader(cache, 4, seed=3, threads=2, columns=[column])
    fused = prebake.Loader(cache, 4, seed=3, threads=2, columns=[column], convert={column: window})
    for a, b in _pairs(plain, fused):
        assert torch.equal(window(a[column].float()), b[column])  # float32 holds both exactly


def test_one_gather_thread_when_volumes_convert_on_torchs_threads(cache, torch_threads):
    def one(columns):
        loader = prebake.Loader(cache, 4, columns=list(columns), convert=dict(columns))
        return convert_module.one_gather_thread(loader.convert, loader._data)

    window = IntensityWindow(-1000, 1000)
    assert one({"ct": window, "label": torch.float32}) is (torch_threads > 1)  # torch's casting copy, in parallel
    assert not one({"ct_be": window})  # numpy's copy: one thread each, so the Loader's threads share the work
    assert not one({"image": torch.float32})  # small rows: below torch's grain, no parallel region


def test_read_only_memory_maps_reach_torch_without_a_copy_or_a_warning(cache, monkeypatch):
    values = np.asarray(cache.column("ct"))
    assert not values.flags.writeable
    try:
        torch.from_dlpack(values.reshape(len(values), -1))
    except (BufferError, TypeError, RuntimeError) as e:  # then _tensor takes from_numpy under catch_warnings
        pytest.skip(f"this torch {torch.__version__} / numpy {np.__version__} cannot take a read-only array "
                    f"through DLPack ({e})")
    # torch.from_numpy warns on a read-only array (an error under -W error, in a gather thread)
    monkeypatch.setattr(convert_module.torch, "from_numpy", lambda *a: pytest.fail("from_numpy was called"))
    view = convert_module._tensor(values)
    assert view.data_ptr() == values.ctypes.data and torch.equal(view[3], torch.tensor(values[3].reshape(-1)))


def test_small_rows_and_a_plain_cast(cache):
    plain = prebake.Loader(cache, 4, seed=1, columns=["image", "be", "label"])
    fused = prebake.Loader(cache, 4, seed=1, columns=["image", "be", "label"],
                           convert={"image": torch.float32, "be": torch.float64})
    for a, b in _pairs(plain, fused):
        assert torch.equal(a["image"].float(), b["image"])
        assert b["be"].dtype == torch.float64 and torch.equal(a["be"].double(), b["be"])


def test_small_rows_cross_several_chunks(cache, monkeypatch):
    monkeypatch.setattr(convert_module, "CHUNK", 64)  # 3 x 8 x 8 = 192 elements: each row is its own block
    plain = prebake.Loader(cache, 4, seed=2, columns=["image"])
    fused = prebake.Loader(cache, 4, seed=2, columns=["image"], convert={"image": IntensityWindow(0, 255)})
    for a, b in _pairs(plain, fused):
        assert torch.equal(IntensityWindow(0, 255).apply(a["image"], {}), b["image"])  # any shape: elementwise


def test_windows_with_context_keep_zeros_where_rows_do_not_exist(cache):
    view = prebake.Windows(cache, "lat", 3, context=2, columns=["lat", "label"])
    plain = list(prebake.Loader(view, 4, seed=3))
    fused = list(prebake.Loader(view, 4, seed=3, convert={"lat": torch.float64}))
    assert any((a["lat_context"] == 0).all(dim=-1).any() for a in plain)  # some context rows are missing
    for a, b in _pairs(plain, fused):
        for key in ("lat", "lat_context"):
            assert b[key].dtype == torch.float64 and torch.equal(a[key].double(), b[key])


class _PlusOne:
    def output_dtype(self, dtype):
        return torch.float32

    def apply_(self, x):
        x.add_(1)


def test_padding_is_zero_after_the_op(cache):
    plain = list(prebake.Loader(cache, 5, seed=0, columns=["lat"], pad=True))
    fused = list(prebake.Loader(cache, 5, seed=0, columns=["lat"], pad=True, convert={"lat": _PlusOne()}))
    for a, b in _pairs(plain, fused):
        lengths = a["lat_lengths"]
        assert torch.equal(lengths, b["lat_lengths"])
        for row, n in enumerate(lengths.tolist()):
            assert torch.equal(b["lat"][row, :n], a["lat"][row, :n] + 1)
            assert not b["lat"][row, n:].any()


def test_whole_ragged_items_convert_in_the_drawn_order(cache):
    plain = list(prebake.Loader(cache, 4, seed=5, columns=["lat", "label"]))
    fused = list(prebake.Loader(cache, 4, seed=5, columns=["lat", "label"], convert={"lat": _PlusOne()}))
    for a, b in _pairs(plain, fused):
        assert torch.equal(a["label"], b["label"])
        assert [len(x) for x in a["lat"]] == [len(x) for x in b["lat"]]
        assert all(torch.equal(x + 1, y) for x, y in zip(a["lat"], b["lat"], strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_converted_batches_reach_the_device(cache, device):
    window = IntensityWindow(-1000, 1000)
    for a, b in _pairs(prebake.Loader(cache, 4, seed=0, columns=["ct"], convert={"ct": window}),
                       prebake.Loader(cache, 4, seed=0, columns=["ct"], device=device, convert={"ct": window})):
        assert b["ct"].device.type == device and torch.equal(a["ct"], b["ct"].cpu())


@pytest.mark.parametrize("convert, words", [
    ({"nope": torch.float32}, "does not read"),
    ({"name": torch.float32}, "not numbers"),
    ({"ct": "float32"}, "expected a torch dtype"),
    ({"ct": torch.bfloat16}, "numpy cannot hold"),
    (["ct"], "expected a dict"),
])
def test_bad_convert_names_the_column_and_the_fix(cache, convert, words):
    with pytest.raises(OptionError, match=words):
        prebake.Loader(cache, 4, convert=convert)


def test_convert_refuses_a_device_preload(cache):
    with pytest.raises(OptionError, match="preload='device'"):
        prebake.Loader(cache, 4, columns=["ct"], preload="device", device="cpu", convert={"ct": torch.float32})
