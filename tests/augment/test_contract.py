"""The contract battery every augmentation passes, on every dtype it accepts, on CPU and (when present) CUDA.

p=0 and eval are the identity (the centre crop / whole-image resize for ops that
change the shape); shape, dtype and device are kept (or the documented dtype);
seeded runs repeat; returned params replay; samples get their own parameters;
the kernel count does not grow with the batch (profiler, CPU); nothing syncs with
the host (``torch.cuda.set_sync_debug_mode("error")`` on CUDA; on CPU, running
on the ``meta`` device, which has no values to read, stands in for it); the
forward traces into one ``torch.compile`` graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import prebake.augment as A
from tests.helpers.devices import NEEDS_CUDA

IMAGE = (16, 3, 12, 12)
SIGNAL = (16, 2, 128)
VOLUME = (16, 2, 8, 10, 10)
IMAGE_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]
VOLUME_DTYPES = [torch.uint8, torch.int16, torch.float16, torch.bfloat16, torch.float32]
SIGNAL_DTYPES = [torch.float16, torch.bfloat16, torch.float32]
DEVICES = ["cpu", "cuda"]
# p=0 vs eval for ops that change the shape: grid_sample vs interpolate, rounded to the dtype
CLOSE = {torch.uint8: 1.0, torch.int16: 1.0, torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[float], A.Op]  # p -> op
    kind: str = "image"  # or "signal", "volume"
    random: bool = True
    keeps_shape: bool = True
    mix: bool = False  # MixUp/CutMix: same-sample batches stay the same, so check params instead
    has_p: bool = True  # False for pipelines whose make() ignores p
    binary: bool = False  # an op with one way to apply (flip, invert): applied samples all match

    def shape(self) -> tuple[int, ...]:
        return {"image": IMAGE, "signal": SIGNAL, "volume": VOLUME}[self.kind]

    def dtypes(self) -> list[torch.dtype]:
        return {"image": IMAGE_DTYPES, "signal": SIGNAL_DTYPES, "volume": VOLUME_DTYPES}[self.kind]


CASES = [
    Case("Resize-up", lambda p: A.Resize(20), random=False, keeps_shape=False),
    Case("Resize-down-bicubic", lambda p: A.Resize((8, 6), "bicubic"), random=False, keeps_shape=False),
    Case("Normalize", lambda p: A.Normalize(), random=False),
    Case("RandomCrop-pad", lambda p: A.RandomCrop(12, padding=3, p=p)),
    Case("RandomCrop-reflect-smaller", lambda p: A.RandomCrop(9, padding=2, padding_mode="reflect", p=p),
         keeps_shape=False),
    Case("RandomResizedCrop-same", lambda p: A.RandomResizedCrop(12, p=p)),
    Case("RandomResizedCrop-up-bicubic", lambda p: A.RandomResizedCrop(20, interpolation="bicubic", p=p),
         keeps_shape=False),
    Case("RandomHorizontalFlip", lambda p: A.RandomHorizontalFlip(p=p), binary=True),
    Case("flip+crop-fused", lambda p: A.Compose([A.RandomHorizontalFlip(p=p), A.RandomCrop(12, padding=3, p=p)])),
    Case("ColorJitter", lambda p: A.ColorJitter(0.4, 0.4, 0.4, p=p)),
    Case("RandomErasing", lambda p: A.RandomErasing(p=p)),
    Case("MixUp", lambda p: A.MixUp(alpha=0.4, num_classes=4, p=p), mix=True),
    Case("CutMix", lambda p: A.CutMix(alpha=1.0, num_classes=4, p=p), mix=True),
    Case("RandomApply-image", lambda p: A.RandomApply([A.ColorJitter(0.5), A.RandomHorizontalFlip()], p=p)),
    Case("OneOf-image", lambda p: A.OneOf([A.RandomErasing(p=1), A.ColorJitter(0.5)], p=p)),
    Case("image_train_preset", lambda p: A.image_train_preset(20), keeps_shape=False, has_p=False),
    Case("image_eval_preset", lambda p: A.image_eval_preset(20), random=False, keeps_shape=False),
    Case("TimeShift-roll", lambda p: A.TimeShift(0.3, "roll", p=p), "signal"),
    Case("TimeShift-zero", lambda p: A.TimeShift(0.3, "zero", p=p), "signal"),
    Case("AmplitudeScale", lambda p: A.AmplitudeScale((0.5, 1.5), p=p), "signal"),
    Case("PolarityInversion", lambda p: A.PolarityInversion(p=p), "signal", binary=True),
    Case("GaussianNoise-std", lambda p: A.GaussianNoise(std=(0.05, 0.2), p=p), "signal"),
    Case("GaussianNoise-snr", lambda p: A.GaussianNoise(snr_db=(5, 20), p=p), "signal"),
    Case("TimeMask", lambda p: A.TimeMask(0.3, num_masks=2, p=p), "signal"),
    Case("FrequencyMask", lambda p: A.FrequencyMask(0.3, num_masks=2, p=p), "signal"),
    Case("TimeStretch", lambda p: A.TimeStretch((0.7, 1.4), p=p), "signal"),
    Case("BandPass", lambda p: A.BandPass(1000, (10, 50), (200, 400), p=p), "signal"),
    Case("BandStop", lambda p: A.BandStop(1000, (100, 300), (20, 80), p=p), "signal"),
    Case("MixUp-signal", lambda p: A.MixUp(alpha=1.0, labels="pair", p=p), "signal", mix=True),
    Case("signal_pretrain_preset", lambda p: A.signal_pretrain_preset(1000, p=p), "signal"),
    Case("SplitSubstructures-equal", lambda p: A.SplitSubstructures(4), "signal", random=False, keeps_shape=False),
    Case("SplitSubstructures-fractions-resample",
         lambda p: A.SplitSubstructures(3, fractions=(1, 2, 5), length=40, fit="resample"), "signal",
         random=False, keeps_shape=False),
    Case("RandomCrop3d", lambda p: A.RandomCrop3d((6, 7, 5), p=p), "volume", keeps_shape=False),
    Case("RandomFlip3d", lambda p: A.RandomFlip3d(p=p), "volume"),
    Case("RandomFlip3d-one-axis", lambda p: A.RandomFlip3d(axes=(2,), p=p), "volume", binary=True),
    Case("RandomRotate90", lambda p: A.RandomRotate90((1, 2), p=p), "volume"),
    Case("RandomIntensity", lambda p: A.RandomIntensity((0.5, 1.5), (-20, 20), p=p), "volume"),
    Case("GaussianNoise3d", lambda p: A.GaussianNoise3d((5.0, 20.0), p=p), "volume"),
    Case("IntensityWindow", lambda p: A.IntensityWindow(-50, 150), "volume", random=False),
    Case("volume-pipeline", lambda p: A.Compose([A.RandomCrop3d(6, p=p), A.RandomFlip3d(p=p),
                                                  A.RandomRotate90((1, 2), p=p), A.IntensityWindow(-50, 150),
                                                  A.RandomIntensity(p=p), A.GaussianNoise3d((0.01, 0.05), p=p)]),
         "volume", keeps_shape=False),
]
# every public op class appears in the battery
COVERED = {type(c.make(0.5)).__name__ for c in CASES} | {
    type(op).__name__ for c in CASES for op in c.make(0.5).modules()}


def _cases(pred: Callable[[Case], bool] = lambda c: True) -> list:
    return [pytest.param(c, dtype, device, id=f"{c.name}-{str(dtype)[6:]}-{device}",
                         marks=[NEEDS_CUDA] if device == "cuda" else [])
            for c in CASES if pred(c) for dtype in c.dtypes() for device in DEVICES]


def _input(case: Case, dtype: torch.dtype, device: str, same: bool = False, n: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    shape = (n or case.shape()[0], *case.shape()[1:])
    first = 1 if same else shape[0]
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (first, *shape[1:]), generator=g, dtype=torch.uint8)
    elif dtype == torch.int16:
        x = torch.randint(-1000, 1000, (first, *shape[1:]), generator=g, dtype=torch.int16)
    elif case.kind == "volume":
        x = (torch.rand((first, *shape[1:]), generator=g) * 200 - 50).to(dtype)
    elif case.kind == "image":
        x = torch.rand((first, *shape[1:]), generator=g).to(dtype)
    else:
        x = torch.randn((first, *shape[1:]), generator=g).to(dtype)
    return x.expand(shape).contiguous().to(device)


def _gen(device: str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _op(case: Case, p: float, device: str) -> A.Op:
    return case.make(p).to(device).train()


def _expected_dtype(case: Case, dtype: torch.dtype) -> torch.dtype:
    normalizes = any(isinstance(m, A.Normalize) for m in case.make(0.5).modules())
    windows = any(isinstance(m, A.IntensityWindow) for m in case.make(0.5).modules())
    if (normalizes and dtype == torch.uint8) or (windows and not dtype.is_floating_point):
        return torch.float32
    return dtype


def test_every_public_op_is_in_the_battery():
    ops = {name for name in A.__all__ if isinstance(getattr(A, name), type) and issubclass(getattr(A, name), A.Op)}
    assert ops - {"Op", "Compose"} <= COVERED, f"not in the battery: {sorted(ops - COVERED)}"


@pytest.mark.parametrize("case, dtype, device", _cases(lambda c: c.random and c.has_p))
def test_p0_is_identity(case: Case, dtype: torch.dtype, device: str):
    x = _input(case, dtype, device)
    out = _op(case, 0.0, device)(x, generator=_gen(device))
    if case.keeps_shape:
        assert torch.equal(out, x)
    else:  # the deterministic version: centre crop / whole-image resize
        ref = _op(case, 0.0, device).eval()(x)
        torch.testing.assert_close(out.float(), ref.float(), atol=CLOSE[dtype], rtol=0)


@pytest.mark.parametrize("case, dtype, device", _cases())
def test_eval(case: Case, dtype: torch.dtype, device: str):
    x = _input(case, dtype, device)
    op = _op(case, 1.0, device)
    train_out = op(x, generator=_gen(device))
    out = op.eval()(x, generator=_gen(device, 5))
    if not case.random:
        assert torch.equal(out, train_out)  # deterministic ops define the input: same in both modes
    elif case.keeps_shape:
        assert torch.equal(out, x)
    else:
        assert torch.equal(out, op(x)) and tuple(out.shape) == op.output_shape(x.shape)


@pytest.mark.parametrize("case, dtype, device", _cases())
def test_shape_dtype_device(case: Case, dtype: torch.dtype, device: str):
    x = _input(case, dtype, device)
    op = _op(case, 1.0, device)
    out = op(x, generator=_gen(device))
    assert tuple(out.shape) == op.output_shape(x.shape)
    assert out.dtype == _expected_dtype(case, dtype)
    assert out.device == x.device
    assert torch.isfinite(out.float()).all()
    if case.keeps_shape:
        assert out.shape == x.shape


@pytest.mark.parametrize("case, dtype, device", _cases(lambda c: c.random))
def test_seeded_runs_repeat_and_seeds_differ(case: Case, dtype: torch.dtype, device: str):
    x = _input(case, dtype, device)
    op = _op(case, 0.5, device)
    a, b = op(x, generator=_gen(device, 7)), op(x, generator=_gen(device, 7))
    assert torch.equal(a, b)
    assert not torch.equal(a, op(x, generator=_gen(device, 8)))


@pytest.mark.parametrize("case, dtype, device", _cases(lambda c: c.random))
def test_replay_with_returned_params(case: Case, dtype: torch.dtype, device: str):
    x = _input(case, dtype, device)
    op = _op(case, 0.5, device)
    out, params = op(x, generator=_gen(device, 3), return_params=True)
    assert torch.equal(op(x, params), out)
    assert torch.equal(op(x, params, generator=_gen(device, 4)), out)  # params win over the generator


@pytest.mark.parametrize("case, dtype, device", _cases(lambda c: c.random))
def test_samples_get_their_own_parameters(case: Case, dtype: torch.dtype, device: str):
    op = _op(case, 0.5, device)
    if case.mix:  # mixing copies of one sample changes nothing; look at λ and the partners
        _, params = op(_input(case, dtype, device), generator=_gen(device), return_params=True)
        assert params["lam"].unique().numel() > 1
        assert not torch.equal(params["partner"], torch.arange(len(params["partner"]), device=device))
        return
    x = _input(case, dtype, device, same=True)  # 16 copies of one sample
    out, params = op(x, generator=_gen(device), return_params=True)
    if "apply" in params:  # the p coin is tossed per sample
        assert 0 < int(params["apply"].sum()) < len(x)
    distinct = out.flatten(1).unique(dim=0).shape[0]
    # about half the samples are applied; each draws its own parameters, so unless the op
    # has only one way to apply (a flip), they differ among themselves as well as from the rest
    assert distinct >= (2 if case.binary else 3), f"{distinct} distinct outputs: parameters are shared"


@pytest.mark.parametrize("case, dtype, device", _cases(lambda c: c.random))
def test_per_sample_ops_on_two_batches_end_to_end_are_two_calls(case: Case, dtype: torch.dtype, device: str):
    """What TwoViews' one pass relies on: params are per-sample rows, and no sample reads another."""
    op = _op(case, 0.5, device)
    assert A.TwoViews(op).one_pass is not case.mix
    if case.mix:
        return
    a, b = _input(case, dtype, device), _input(case, dtype, device).flip(0)
    both, params = op(torch.cat([a, b]), generator=_gen(device, 5), return_params=True)
    first = A.compose._rows(params, slice(0, len(a)))
    second = A.compose._rows(params, slice(len(a), 2 * len(a)))
    # equal, to a reduction's rounding (GaussianNoise's RMS sums 2N rows in another order)
    torch.testing.assert_close(op(a, first), both[:len(a)])
    torch.testing.assert_close(op(b, second), both[len(a):])


@pytest.mark.parametrize("case, dtype, device", _cases())
def test_the_callers_input_is_never_written(case: Case, dtype: torch.dtype, device: str):
    """Pipelines write their own intermediates in place (``Op.apply_inplace``), never the tensor passed in."""
    x = _input(case, dtype, device)
    before = x.clone()
    op = _op(case, 0.7, device)
    out, params = op(x, generator=_gen(device, 2), return_params=True)
    op(x, params)  # the replay path (Compose.apply) too
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr() or not case.random


def _writes_in_place(case: Case) -> bool:
    return any(getattr(m, "has_inplace", False) for m in case.make(0.5).modules())


@pytest.mark.parametrize("case, dtype, device", _cases(_writes_in_place))
def test_apply_inplace_equals_apply(case: Case, dtype: torch.dtype, device: str):
    """Every override of ``apply_inplace`` gives ``apply``'s output bit for bit, from the same params."""
    for m in _op(case, 0.6, device).modules():
        if not getattr(m, "has_inplace", False):
            continue
        x = _input(case, dtype, device)
        params = m.sample_params(tuple(x.shape), x.device, _gen(device, 4))
        expected = m.apply(x, params)
        assert torch.equal(m.apply_inplace(x.clone(), params), expected), type(m).__name__


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_op_count_does_not_grow_with_batch(case: Case):
    op = _op(case, 0.5, "cpu")
    counts = []
    for n in (2, 24):
        x = _input(case, torch.float32, "cpu", n=n)
        op(x, generator=_gen("cpu"))  # warm up lazy initialisation
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            op(x, generator=_gen("cpu"))
        counts.append(Counter(e.name for e in prof.events() if e.name.startswith("aten::")))
    assert counts[0] and counts[0] == counts[1]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_no_value_is_read_on_the_host_meta(case: Case):
    """Meta tensors have shapes but no values: any .item(), bool(tensor) or mask indexing raises."""
    x = torch.empty(case.shape(), device="meta")
    out = _op(case, 0.5, "meta")(x)
    assert out.device.type == "meta" and tuple(out.shape) == case.make(0.5).output_shape(x.shape)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_forward_traces_as_one_graph(case: Case):
    """``torch.compile(fullgraph=True)`` accepts the whole forward: no graph break, so on CUDA
    ``mode="reduce-overhead"`` can replay a pipeline as one CUDA graph. The eager backend checks
    the tracing without compiling kernels; a replay with the params of the traced call must match."""
    torch._dynamo.reset()
    op = _op(case, 0.5, "cpu")
    x = _input(case, torch.float32, "cpu")
    traced = torch.compile(lambda t: op(t, return_params=True), fullgraph=True, backend="eager")
    out, params = traced(x)
    assert torch.equal(op(x, params), out)


@NEEDS_CUDA
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_no_host_sync_cuda(case: Case):
    x = _input(case, torch.float32, "cuda")
    op = _op(case, 0.5, "cuda")
    op(x, generator=_gen("cuda"))  # warm up: first calls may load kernels
    g = _gen("cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, params = op(x, generator=g, return_params=True)
        op(x, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.is_cuda


def test_module_apply_still_reaches_every_submodule():
    """``apply(x, params)`` shadows ``nn.Module.apply(fn)``; a model holding a pipeline must still init."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), A.image_train_preset(8), A.OneOf([A.ColorJitter(0.2)]))
    seen: list[str] = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert {"Linear", "RandomCrop", "Normalize", "ColorJitter", "OneOf", "Compose"} <= set(seen)
