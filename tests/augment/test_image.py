"""Image ops against per-sample references (loops, PIL), plus MixUp/CutMix, presets and the Loader hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import prebake
import prebake.augment as A
from prebake.augment.mix import beta, gamma


def _images(n: int = 8, c: int = 3, h: int = 10, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("size", [None, (7, 9)])
def test_random_crop_matches_per_sample_loop(mode: str, size):
    x = _images()
    op = A.RandomCrop(size, padding=(2, 3), padding_mode=mode, fill=(10, 20, 30), p=0.7)
    out, params = op(x, generator=_gen(), return_params=True)
    h, w = size or x.shape[-2:]
    for i, (top, left) in enumerate(params["offset"].tolist()):
        if mode == "constant":
            padded = torch.stack([F.pad(x[i, c], (3, 3, 2, 2), value=v) for c, v in enumerate((10, 20, 30))])
        else:
            padded = F.pad(x[i:i + 1].float(), (3, 3, 2, 2), mode=mode)[0].to(torch.uint8)
        assert torch.equal(out[i], padded[:, top:top + h, left:left + w])
    assert len(set(map(tuple, params["offset"].tolist()))) > 1


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("hw, size, padding", [
    ((10, 12), None, (2, 3)),  # the CIFAR recipe: pad, crop back to the input size
    ((10, 12), (7, 9), (0, 0)),  # no padding: a plain crop
    ((5, 6), (9, 14), (3, 4)),  # a crop larger than the input: padding on both sides of one row
    ((6, 3), (6, 3), (1, 5)),  # padding wider than the image
])
def test_flip_then_crop_fused_equals_the_two_ops_apart(dtype, hw, size, padding):
    x = _images(n=9, h=hw[0], w=hw[1], seed=3).to(dtype)
    flip, crop = A.RandomHorizontalFlip(p=0.5), A.RandomCrop(size, padding=padding, fill=(10, 20, 30), p=0.8)
    fused, params = A.Compose([flip, crop])(x, generator=_gen(4), return_params=True)
    g = _gen(4)  # the same draws, in the same order, one op at a time
    apart, flip_params = flip(x, generator=g, return_params=True)
    apart, crop_params = crop(apart, generator=g, return_params=True)
    assert torch.equal(params["0"]["apply"], flip_params["apply"])
    assert torch.equal(params["1"]["offset"], crop_params["offset"])
    assert fused.dtype == dtype and torch.equal(fused, apart)
    assert torch.equal(A.Compose([flip, crop])(x, params=params), fused)  # replay
    assert 0 < int(params["0"]["apply"].sum()) < len(x)  # both branches of the flip were exercised


def test_fused_crop_reads_strided_input_like_contiguous():
    x = _images(n=6, h=10, w=12, seed=5)
    op = A.Compose([A.RandomHorizontalFlip(), A.RandomCrop(None, padding=(2, 3), fill=(10, 20, 30))])
    expected, params = op(x, generator=_gen(), return_params=True)
    wide = torch.zeros(6, 3, 10, 20, dtype=torch.uint8)
    wide[..., 4:16] = x  # a column slice of a wider batch: rows are not contiguous
    for strided in (x.contiguous(memory_format=torch.channels_last), wide[..., 4:16]):
        assert not strided.is_contiguous()
        assert torch.equal(op(strided, params=params), expected)


def test_fused_crop_keeps_inf_and_nan_out_of_the_padding():
    x = torch.full((4, 1, 3, 3), float("nan"))
    x[:, :, 1, 1] = float("inf")
    op = A.Compose([A.RandomHorizontalFlip(), A.RandomCrop(3, padding=2, fill=-1.0)])
    out, params = op(x, generator=_gen(), return_params=True)
    for i, (top, left) in enumerate(params["1"]["offset"].tolist()):
        padded = F.pad(x[i], (2, 2, 2, 2), value=-1.0)[:, top:top + 3, left:left + 3]
        assert torch.equal(torch.isnan(out[i]), torch.isnan(padded))
        assert torch.equal(out[i].nan_to_num(0.0), padded.nan_to_num(0.0))


def test_fused_flip_and_crop_pass_gradients_back():
    x = torch.rand(3, 2, 5, 5, requires_grad=True)
    out, params = A.Compose([A.RandomHorizontalFlip(p=1.0), A.RandomCrop(5, padding=2)])(
        x, generator=_gen(), return_params=True)
    (out * 2).sum().backward()
    top, left = params["1"]["offset"].unbind(1)
    for i in range(3):  # 2 where a pixel lands inside the crop, 0 where it was cut off
        rows = (torch.arange(5) + 2 >= top[i]) & (torch.arange(5) + 2 < top[i] + 5)
        cols = (torch.arange(5) + 2 >= left[i]) & (torch.arange(5) + 2 < left[i] + 5)
        expected = 2.0 * (rows[:, None] & cols.flip(0)[None, :]).float()
        assert torch.equal(x.grad[i, 0], expected)


def test_flip_and_crop_in_eval_are_not_fused():
    x = _images()
    op = A.Compose([A.RandomHorizontalFlip(p=1.0), A.RandomCrop(8, padding=2)]).eval()
    assert torch.equal(op(x), x[:, :, 1:9, 2:10])  # no flip, the centre crop


def test_random_crop_unapplied_samples_take_the_centre():
    x = _images()
    out, params = A.RandomCrop(6, padding=0, p=0.5)(x, generator=_gen(1), return_params=True)
    skipped = (~params["apply"]).nonzero().flatten().tolist()
    assert skipped
    for i in skipped:
        assert torch.equal(out[i], x[i, :, 2:8, 3:9])


def test_flip_matches_per_sample_loop():
    x = _images(16)
    out, params = A.RandomHorizontalFlip()(x, generator=_gen(), return_params=True)
    flips = params["apply"].tolist()
    assert 0 < sum(flips) < 16
    for i, flip in enumerate(flips):
        assert torch.equal(out[i], x[i].flip(-1) if flip else x[i])


def test_random_erasing_matches_per_sample_loop():
    x = _images(16, h=20, w=20)
    out, params = A.RandomErasing(p=0.8, value=(1, 2, 3))(x, generator=_gen(), return_params=True)
    erased = 0
    for i, (top, left, h, w) in enumerate(params["box"].long().tolist()):
        ref = x[i].clone()
        ref[:, top:top + h, left:left + w] = torch.tensor([1, 2, 3], dtype=torch.uint8)[:, None, None]
        assert torch.equal(out[i], ref)
        erased += h * w > 0
        assert 0.02 * 400 - 1 <= h * w <= 0.33 * 400 + 1 or h * w == 0
    assert erased > 4


def test_random_resized_crop_matches_crop_then_interpolate():
    """Every box, read by one grid_sample, equals crop + F.interpolate (no antialias) of that sample."""
    x = torch.rand(12, 3, 16, 20, generator=_gen())
    op = A.RandomResizedCrop((24, 28), scale=(0.2, 1.0), p=1.0)
    out, params = op(x, generator=_gen(2), return_params=True)
    boxes = params["box"].long().tolist()
    assert len(set(map(tuple, boxes))) == len(boxes)
    for i, (top, left, h, w) in enumerate(boxes):
        assert h * w >= 0.2 * 320 - 20 and 0 <= top <= 16 - h and 0 <= left <= 20 - w
        ref = F.interpolate(x[i:i + 1, :, top:top + h, left:left + w], size=(24, 28), mode="bilinear",
                            align_corners=False)
        torch.testing.assert_close(out[i:i + 1], ref, atol=2e-5, rtol=0)


def test_random_resized_crop_fallback_when_no_box_fits():
    """A ratio range the image cannot hold: torchvision's fallback, the whole image clamped to the ratio."""
    x = _images(4, h=10, w=40)
    _, params = A.RandomResizedCrop(8, scale=(0.99, 1.0), ratio=(1.0, 1.0))(x, generator=_gen(), return_params=True)
    assert params["box"].tolist() == [[0.0, 15.0, 10.0, 10.0]] * 4


# Measured on this suite's fixed random images (torch 2.13 CPU, Pillow 13): max |device - PIL| = 1 uint8
# level; 32 -> 224: 12.9 % of pixels off by 1 (mean 0.13 levels); 224 -> 32: 6.7 % (mean 0.07).
# PIL sums in fixed point and rounds; torch rounds a float32 result. The documented tolerance: 1 level.
PIL_TOLERANCE_LEVELS = 1


def test_resize_32_to_224_matches_pil_bilinear():
    x = _images(4, h=32, w=32)
    out = A.Resize(224)(x)
    diffs = []
    for i in range(len(x)):
        pil = Image.fromarray(x[i].permute(1, 2, 0).numpy()).resize((224, 224), Image.Resampling.BILINEAR)
        ref = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
        diffs.append((out[i].int() - ref.int()).abs())
    diff = torch.stack(diffs)
    assert diff.max().item() <= PIL_TOLERANCE_LEVELS
    assert diff.float().mean().item() < 0.2


def test_resize_shrink_is_antialiased_like_pil():
    x = _images(2, h=224, w=224)
    out = A.Resize(32)(x)
    for i in range(len(x)):
        pil = Image.fromarray(x[i].permute(1, 2, 0).numpy()).resize((32, 32), Image.Resampling.BILINEAR)
        ref = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
        assert (out[i].int() - ref.int()).abs().max().item() <= PIL_TOLERANCE_LEVELS
    plain = F.interpolate(x.float(), size=(32, 32), mode="bilinear", align_corners=False).round()
    assert (plain - out.float()).abs().max() > 10  # without antialias random pixels alias badly


def test_normalize_is_fused_uint8_to_float():
    x = _images()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = A.Normalize(mean, std)(x)
    ref = (x.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert A.Normalize(mean, std, dtype=torch.bfloat16)(x).dtype == torch.bfloat16
    torch.testing.assert_close(A.Normalize(mean, std)(x.float() / 255), ref, atol=1e-5, rtol=1e-5)


def _jitter_reference(img: torch.Tensor, b: float, c: float, s: float) -> torch.Tensor:
    """torchvision's adjust_brightness, adjust_contrast, adjust_saturation on one float [0, 255] image."""
    gray = lambda t: (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2])[None]  # noqa: E731
    img = (img * b).clamp(0, 255)
    img = (c * img + (1 - c) * gray(img).mean()).clamp(0, 255)
    return (s * img + (1 - s) * gray(img)).clamp(0, 255)


def test_color_jitter_matches_torchvision_formulas():
    x = _images(6)
    out, params = A.ColorJitter(0.5, 0.5, 0.5)(x, generator=_gen(), return_params=True)
    for i, (b, c, s) in enumerate(params["factors"].tolist()):
        ref = _jitter_reference(x[i].float(), b, c, s).round()
        assert (out[i].float() - ref).abs().max() <= 1
    assert params["factors"].unique().numel() == 18


def test_mixup_per_sample_lambda_and_labels():
    x = torch.rand(16, 3, 4, 4, generator=_gen())
    y = torch.arange(16) % 5
    mix = A.MixUp(alpha=0.4, num_classes=5)
    out, soft, params = mix(x, generator=_gen(), target=y, return_params=True)
    lam, partner = params["lam"], params["partner"]
    for i in range(16):
        torch.testing.assert_close(out[i], lam[i] * x[i] + (1 - lam[i]) * x[partner[i]])
        expected = lam[i] * F.one_hot(y[i], 5) + (1 - lam[i]) * F.one_hot(y[partner[i]], 5)
        torch.testing.assert_close(soft[i], expected.float())
    torch.testing.assert_close(soft.sum(1), torch.ones(16))
    _, (y_a, y_b, lam2) = A.MixUp(alpha=0.4, labels="pair")(x, params, target=y)
    assert torch.equal(y_a, y) and torch.equal(y_b, y[partner]) and torch.equal(lam2, lam)


def test_cutmix_lambda_is_the_area_kept():
    x = torch.arange(16.0)[:, None, None, None].expand(16, 1, 12, 12).contiguous()
    out, soft, params = A.CutMix(alpha=1.0, num_classes=16)(x, generator=_gen(), target=torch.arange(16),
                                                             return_params=True)
    kept = (out == x).float().mean(dim=(1, 2, 3))  # each image is one constant value
    same = params["partner"] == torch.arange(16)
    torch.testing.assert_close(kept[~same], params["lam"][~same])
    torch.testing.assert_close(soft[torch.arange(16), torch.arange(16)][~same], params["lam"][~same])
    assert params["lam"].min() < 0.9


def test_mix_in_eval_is_identity_with_one_hot_labels():
    x, y = _images(4), torch.tensor([0, 1, 2, 1])
    out, soft = A.CutMix(num_classes=3).eval()(x, target=y)
    assert torch.equal(out, x) and torch.equal(soft, F.one_hot(y, 3).float())


@pytest.mark.parametrize("op", [A.MixUp, A.CutMix])
def test_soft_labels_need_num_classes_at_construction(op):
    with pytest.raises(ValueError, match=rf"{op.__name__}\(num_classes=10\), or {op.__name__}\(labels='pair'\)"):
        op()
    op(labels="pair")  # (y_a, y_b, lam) needs no class count


@pytest.mark.parametrize("op", [A.MixUp, A.CutMix])
def test_labels_as_the_second_argument_mix_and_replay(op):
    """mix(x, y) is what a user writes; it equals target=y, and mix(x, y, params) replays the call."""
    x, y = _images(8), torch.arange(8) % 3
    mix = op(num_classes=3)
    out, soft, params = mix(x, y, generator=_gen(), return_params=True)
    out2, soft2 = mix(x, target=y, generator=_gen())
    assert torch.equal(out, out2) and torch.equal(soft, soft2) and soft.shape == (8, 3)
    out3, soft3 = mix(x, y, params)
    assert torch.equal(out3, out) and torch.equal(soft3, soft)
    with pytest.raises(TypeError, match="labels twice"):
        mix(x, y, target=y)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_beta_draws_have_the_right_moments(alpha: float):
    """Beta(α, α) built from Marsaglia-Tsang Gamma draws: mean 1/2, variance 1 / (4 (2α + 1))."""
    lam = beta(alpha, 20000, "cpu", _gen())
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 1 / (4 * (2 * alpha + 1))) < 0.01
    assert 0 <= lam.min() and lam.max() <= 1
    g = gamma(alpha, 20000, "cpu", _gen(1))
    assert abs(g.mean().item() - alpha) < 0.05 * max(alpha, 1)


def test_train_preset_order_matches_the_literal_pipeline():
    """Normalize at 32 px, then resize, equals resize (float), then normalize: the reorder is exact up to float."""
    x = _images(4, h=32, w=32)
    mean, std = A.IMAGENET_MEAN, A.IMAGENET_STD
    ours = A.image_eval_preset(64)(x)
    literal = A.Normalize(mean, std)(A.Resize(64)(x.float()) / 255, )
    torch.testing.assert_close(ours, literal, atol=1e-5, rtol=1e-5)
    out, params = A.image_train_preset(64)(x, generator=_gen(), return_params=True)
    assert out.shape == (4, 3, 64, 64) and out.dtype == torch.float32
    assert set(params) == {"0", "1", "2", "3"}


def test_batch_transform_plugs_into_the_loader(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    cache = prebake.write_arrays(tmp_path / "c", {"image": images, "label": np.arange(20) % 4})
    train = A.batch_transform(image=[A.RandomCrop(8, padding=2), A.Normalize()], mix=A.MixUp(num_classes=4),
                              generator=_gen())
    batches = list(prebake.Loader(cache, 8, shuffle=False, transform=train))
    assert [b["image"].shape for b in batches] == [(8, 3, 8, 8), (8, 3, 8, 8), (4, 3, 8, 8)]
    assert all(b["label"].shape[1] == 4 and b["image"].dtype == torch.float32 for b in batches)
    train.eval()
    first = next(iter(prebake.Loader(cache, 8, shuffle=False, transform=train)))
    torch.testing.assert_close(first["image"], A.Normalize()(torch.from_numpy(images[:8])))


def test_a_loader_resumed_mid_epoch_augments_its_remaining_batches_as_the_uninterrupted_run(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    cache = prebake.write_arrays(tmp_path / "c", {"image": images, "label": np.arange(40) % 4})

    def transform():  # no generator of its own: the Loader hands each batch one
        return A.batch_transform(image=[A.RandomCrop(8, padding=2), A.RandomHorizontalFlip()],
                                 mix=A.CutMix(num_classes=4))

    whole = [b["image"] for b in prebake.Loader(cache, 8, seed=3, transform=transform())]
    first = prebake.Loader(cache, 8, seed=3, transform=transform())
    it = iter(first)
    next(it), next(it)
    resumed = prebake.Loader(cache, 8, seed=3, transform=transform())
    resumed.load_state_dict(first.state_dict())
    rest = [b["image"] for b in resumed]
    assert len(rest) == 3 and all(torch.equal(a, b) for a, b in zip(rest, whole[2:]))  # before: other draws
    assert not torch.equal(whole[0], whole[1])


def test_batch_transform_views_pairs_and_missing_columns():
    batch = {"image": _images(4), "label": torch.arange(4), "id": torch.arange(4)}
    out = A.batch_transform(image=A.TwoViews([A.RandomHorizontalFlip()]))(batch)
    assert set(out) == {"image_view1", "image_view2", "label", "id"}
    out = A.batch_transform(mix=A.CutMix(labels="pair"))(batch)
    assert set(out) == {"image", "label_a", "label_b", "lam", "id"}
    with pytest.raises(KeyError, match="signal"):
        A.batch_transform(signal=A.TimeMask())(batch)


def test_generator_on_another_device_is_used_there():
    """A CPU generator with data elsewhere ('meta' here, CUDA in practice): params drawn on CPU, then moved."""
    x = torch.empty(4, 3, 8, 8, device="meta")
    out, params = A.RandomCrop(6)(x, generator=_gen(), return_params=True)
    assert out.device.type == "meta" and params["offset"].device.type == "meta"


@pytest.mark.parametrize("make, match", [
    (lambda: A.RandomHorizontalFlip(p=1.5), r"p=1\.5 is not a probability"),
    (lambda: A.Resize(0), r"size=0 must be a positive int"),
    (lambda: A.Resize(8, interpolation="area"), r"interpolation='area'"),
    (lambda: A.RandomCrop(8, padding_mode="wrap"), r"padding_mode='wrap'"),
    (lambda: A.RandomResizedCrop(8, scale=(0.9, 0.1)), r"scale=\(0\.9, 0\.1\)"),
    (lambda: A.Normalize((0.5,), (0.0,)), r"std > 0"),
    (lambda: A.ColorJitter(brightness=-1), r"brightness=-1"),
    (lambda: A.MixUp(alpha=0), r"alpha=0"),
    (lambda: A.OneOf([]), r"at least one op"),
])
def test_bad_arguments_say_what_and_how(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_say_what_and_how():
    with pytest.raises(ValueError, match=r"larger than the padded image .* increase padding"):
        A.RandomCrop(40, padding=2)(_images())
    with pytest.raises(ValueError, match=r"shape \(3, 10, 12\).*unsqueeze"):
        A.RandomHorizontalFlip()(_images()[0])
    with pytest.raises(TypeError, match=r"torch.int32.*x.float\(\)"):
        A.RandomHorizontalFlip()(_images().int())
    with pytest.raises(ValueError, match="3 means/stds for 1 channels"):
        A.Normalize()(_images(c=1))
    with pytest.raises(ValueError, match="saturation needs RGB"):
        A.ColorJitter(saturation=0.5)(_images(c=1))
    with pytest.raises(TypeError, match="Compose expects a prebake.augment op"):
        A.Compose([lambda x: x])
