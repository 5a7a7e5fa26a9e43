"""prebake.Stage on its own: batched outputs equal the model applied item by item; the identity follows
the weights by value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prebake.errors import OptionError, PrebakeError
from prebake.identity.weights import tensor_digests
from prebake.steps.stage import Stage
from tests.helpers.devices import DEVICES


def _clips(n: int = 7, dim: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 9)), dim)).astype(np.float32) for _ in range(n)]


class FrameEncoder(torch.nn.Module):
    """Per frame: the same Linear on every row (concat mode)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, 5)

    def forward(self, batch):
        return {"latent": self.proj(batch["frames"])}


class ClipEncoder(torch.nn.Module):
    """Per clip: a masked mean over frames (pad mode, one row per item) and a per-frame conv (ragged)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv1d(3, 4, 3, padding=1)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, batch):
        x, lengths = batch["frames"], batch["frames_lengths"]
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).float()[..., None]
        mean = (x * mask).sum(1) / lengths[:, None].clamp_min(1)
        per_frame = self.conv((x * mask).transpose(1, 2)).transpose(1, 2) * self.scale
        return {"clip": mean * self.scale, "conv": per_frame, "conv_lengths": lengths}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_concat_mode_equals_the_model_per_item(device, batch_size):
    enc, clips = FrameEncoder(), _clips()
    out = Stage(enc, ("frames",), ("latent",), batch_size=batch_size, device=device).run({"frames": clips})
    assert [o.shape for o in out["latent"]] == [(len(c), 5) for c in clips]
    for o, c in zip(out["latent"], clips):
        ref = enc.to(device)({"frames": torch.from_numpy(c).to(device)})["latent"].detach().cpu().numpy()
        np.testing.assert_allclose(o, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_pad_mode_gives_per_item_and_ragged_outputs(device, batch_size):
    enc, clips = ClipEncoder(), _clips(seed=3)
    out = Stage(enc, ("frames",), ("clip", "conv"), batch_size=batch_size, device=device, ragged="pad").run(
        {"frames": clips})
    assert out["clip"].shape == (len(clips), 3) and [o.shape for o in out["conv"]] == [(len(c), 4) for c in clips]
    for k, c in enumerate(clips):
        one = enc.to(device)({"frames": torch.from_numpy(c)[None].to(device),
                              "frames_lengths": torch.tensor([len(c)], device=device)})
        np.testing.assert_allclose(out["clip"][k], one["clip"][0].detach().cpu().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["conv"][k], one["conv"][0].detach().cpu().numpy(), rtol=1e-5, atol=1e-5)


def test_pad_mode_batches_items_of_similar_length_and_returns_them_in_item_order():
    lengths = [5, 1, 8, 2, 7, 3]
    clips = [np.full((n, 1), k, np.float32) for k, n in enumerate(lengths)]
    padded_to = []

    def fn(batch):
        padded_to.append(int(batch["x"].shape[1]))
        return {"k": batch["x"][:, 0, 0], "n": batch["x_lengths"]}

    out = Stage(fn, ("x",), ("k", "n"), batch_size=2, device="cpu", ragged="pad").run({"x": clips})
    assert out["k"].tolist() == list(range(6)) and out["n"].tolist() == lengths
    assert padded_to == [2, 5, 8]  # by length: (1, 2), (3, 5), (7, 8); in item order it would pad to 5, 8, 7


@pytest.mark.parametrize("ragged, max_rows, calls", [
    ("concat", 8, [[5, 1], [8], [2], [7], [3]]),     # rows summed: 5+1, then 8 alone, ...
    ("concat", 10, [[5, 1], [8, 2], [7, 3]]),        # batch_size 2 still bounds the items
    ("concat", 3, [[5], [1], [8], [2], [7], [3]]),   # an item longer than max_rows runs alone
    ("pad", 10, [[1, 2, 3], [5], [7], [8]]),         # by length, batch x longest: 3 x 3, then 2 x 7 > 10
    ("pad", None, [[1, 2, 3, 5]]),                   # the chunk as far as batch_size allows
])
def test_max_rows_bounds_each_call_and_changes_no_output(ragged, max_rows, calls):
    lengths = [5, 1, 8, 2, 7, 3]
    clips = [np.full((n, 1), k, np.float32) for k, n in enumerate(lengths)]
    seen = []

    def fn(batch):
        seen.append(batch["x_lengths"].tolist())
        if ragged == "concat":
            return {"y": batch["x"] * 2}
        return {"y": batch["x"] * 2, "y_lengths": batch["x_lengths"]}

    batch_size = 2 if ragged == "concat" else 4
    out = Stage(fn, ("x",), ("y",), batch_size=batch_size, device="cpu", ragged=ragged, max_rows=max_rows).run(
        {"x": clips})
    assert seen[: len(calls)] == calls
    assert all(np.array_equal(o, c * 2) for o, c in zip(out["y"], clips, strict=True))
    plain = Stage(fn, ("x",), ("y",), batch_size=batch_size, device="cpu", ragged=ragged)
    assert plain.describe() == Stage(fn, ("x",), ("y",), batch_size=1, device="cpu", ragged=ragged,
                                     max_rows=max_rows).describe()  # neither is in the fingerprint


def test_fixed_inputs_and_several_columns():
    stage = Stage(lambda b: {"s": b["a"] + b["b"], "p": b["a"] * b["b"]}, ("a", "b"), ("s", "p"), batch_size=2,
                  device="cpu")
    a, b = np.arange(5.0), np.arange(5.0) * 10
    out = stage.run({"a": a, "b": b, "unused": np.zeros(5)})
    assert out["s"].tolist() == (a + b).tolist() and out["p"].tolist() == (a * b).tolist()


def test_bfloat16_autocast_runs_and_arrives_as_float32():
    enc = FrameEncoder()
    out = Stage(enc, ("frames",), ("latent",), device="cpu", dtype=torch.bfloat16).run({"frames": _clips(3)})
    assert out["latent"][0].dtype == np.float32
    ref = Stage(enc, ("frames",), ("latent",), device="cpu").run({"frames": _clips(3)})
    np.testing.assert_allclose(out["latent"][0], ref["latent"][0], rtol=0.05, atol=0.05)


ENCODER = torch.nn.Linear(3, 2)  # a module held at module level, as the talking-head workload's scripts do


def _uses_module_level_encoder(batch):
    return {"y": ENCODER(batch["x"])}


def test_identity_follows_weights_and_buffers_by_value():
    enc = ClipEncoder()
    before = Stage(enc, ("frames",), ("clip",), ragged="pad").describe()
    assert before == Stage(ClipEncoder(), ("frames",), ("clip",), ragged="pad", batch_size=7).describe()
    with torch.no_grad():
        enc.conv.weight[0, 0, 0] += 1
    after = Stage(enc, ("frames",), ("clip",), ragged="pad").describe()
    changed = [k for k in before["weights"] if before["weights"][k] != after["weights"][k]]
    assert changed == ["ClipEncoder.conv.weight"]
    enc.scale.fill_(3.0)
    assert Stage(enc, ("frames",), ("clip",), ragged="pad").describe()["weights"]["ClipEncoder.scale"] != \
        after["weights"]["ClipEncoder.scale"]
    digests = tensor_digests(_uses_module_level_encoder)
    assert set(digests) == {"Linear.weight", "Linear.bias"}
    with torch.no_grad():
        ENCODER.bias.zero_()
    assert tensor_digests(_uses_module_level_encoder)["Linear.bias"] != digests["Linear.bias"]


def test_bad_stages_say_what_and_how():
    with pytest.raises(OptionError, match="ragged='sum'"):
        Stage(lambda b: b, ("x",), ("y",), ragged="sum")
    with pytest.raises(OptionError, match="also its inputs"):
        Stage(lambda b: b, ("x",), ("x",))
    with pytest.raises(OptionError, match="batch_size must be a positive integer"):
        Stage(lambda b: b, ("x",), ("y",), batch_size=0)
    with pytest.raises(OptionError, match="max_rows must be a positive integer or None"):
        Stage(lambda b: b, ("x",), ("y",), max_rows=0)
    with pytest.raises(PrebakeError, match=r"must return a dict with \['y'\], returned \['z'\]"):
        Stage(lambda b: {"z": b["x"]}, ("x",), ("y",), device="cpu").run({"x": np.zeros(2)})
    with pytest.raises(PrebakeError, match="one row per input row"):
        Stage(lambda b: {"y": b["f"][:1]}, ("f",), ("y",), device="cpu").run({"f": _clips(2)})
    with pytest.raises(PrebakeError, match=r"reads \['x'\], which no item or earlier stage has"):
        Stage(lambda b: b, ("x",), ("y",), device="cpu").run({"a": np.zeros(2)})


# -- stages in the build -------------------------------------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import prebake  # noqa: E402
from prebake.bake.build import BuildOptions  # noqa: E402
from prebake.steps import compile_steps  # noqa: E402

CLIPS = '''
import os
import numpy as np


class Clips:
    """Clips of 3 to 12 frames of 3 features, and a label; PREBAKE_TEST_N sets how many."""

    def __init__(self):
        self.n = int(os.environ.get("PREBAKE_TEST_N", "40"))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == 7:
            raise ValueError("item 7 is broken on purpose")
        rng = np.random.default_rng(i)
        return {"frames": rng.standard_normal((3 + i % 10, 3)).astype(np.float32), "label": i % 4}

    def fingerprint(self):
        return str(self.n)


def make():
    return Clips()
'''

ENCODERS = '''
import os

import torch
from prebake import Stage


class Frames(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, 5)

    def forward(self, batch):
        if os.environ.get("PREBAKE_TEST_CALLS"):  # items per call, to count what the stage ran on
            with open(os.environ["PREBAKE_TEST_CALLS"], "a") as f:
                f.write(f"{len(batch['frames_lengths'])}\\n")
        return {"latent": self.proj(batch["frames"])}


class Clip(torch.nn.Module):
    def forward(self, batch):
        lengths = batch["latent_lengths"]
        mask = torch.arange(batch["latent"].shape[1])[None] < lengths[:, None]
        return {"clip": (batch["latent"] * mask[..., None]).sum(1) / lengths[:, None]}


FRAMES = Frames()


def stages(batch_size=4, keep=True):
    return [Stage(FRAMES, ("frames",), ("latent",), batch_size=batch_size, device="cpu", keep=keep),
            Stage(Clip(), ("latent",), ("clip",), batch_size=batch_size, device="cpu", ragged="pad")]


def make_stages():
    return stages()
'''


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "clips.py").write_text(CLIPS)
    (tmp_path / "encoders.py").write_text(ENCODERS)
    return tmp_path


def _stages(files, **kw):
    from prebake.identity.plugins import load_object

    return load_object(f"{files / 'encoders.py'}:stages")(**kw)


def _build(files, out, stages, **kw):
    return prebake.build(dataset=f"{files / 'clips.py'}:make", out=out, steps=stages, ragged=("frames",),
                         chunk_rows=8, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_stage_outputs_in_the_cache_equal_the_models_per_item(files, workers):
    stages = _stages(files)
    cache = _build(files, files / "c", stages, workers=workers)
    assert len(cache) == 39 and cache.manifest["skipped"][0]["index"] == 7
    frames, model = stages[0].fn, stages[0].fn
    for i in (0, 5, 20, 38):
        x = torch.from_numpy(np.array(cache.column("frames")[i]))
        with torch.no_grad():
            latent = model({"frames": x, "frames_lengths": torch.tensor([len(x)])})["latent"].numpy()
        np.testing.assert_allclose(cache.column("latent")[i], latent, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(cache.column("clip")[i], latent.mean(0), rtol=1e-5, atol=1e-6)
    assert cache.specs["latent"].ragged and not cache.specs["clip"].ragged
    assert prebake.verify(cache.path).ok
    del frames


def test_batch_size_is_not_in_the_fingerprint_and_weights_are(files):
    stages = _stages(files)
    _build(files, files / "c", stages, workers=0)
    out = files / "c"
    again = prebake.bake.build.build_all(
        prebake.bake.build.resolve_sources(prebake.sources.DatasetSource.from_spec(f"{files / 'clips.py'}:make")),
        out, BuildOptions(compile_steps(_stages(files, batch_size=16)), workers=0, ragged=("frames",),
                          chunk_rows=8))[0]
    assert again.action == "up to date", again.reasons
    with torch.no_grad():
        stages[0].fn.proj.weight[0, 0] += 1
    report = prebake.bake.build.build_all(
        prebake.bake.build.resolve_sources(prebake.sources.DatasetSource.from_spec(f"{files / 'clips.py'}:make")),
        out, BuildOptions(compile_steps(stages), workers=0, ragged=("frames",), chunk_rows=8))[0]
    assert report.action == "rebuilt"
    assert report.reasons == ["stage 'Frames': 1 weight tensor changed (Frames.proj.weight)"], report.reasons


def test_keep_false_drops_the_inputs_and_the_cli_takes_stages(files, capsys):
    cache = _build(files, files / "c", _stages(files, keep=False), workers=0)
    assert sorted(cache.columns) == ["clip", "label", "latent"]  # frames fed only the first stage (keep=False)
    assert not list(cache.path.glob("frames*")) and prebake.verify(cache.path).ok
    from prebake.cli import main

    assert main(["build", "--dataset", f"{files / 'clips.py'}:make", str(files / "cli"), "--ragged", "frames",
                 "--stage", f"{files / 'encoders.py'}:make_stages", "--workers", "0", "--json"]) == 0
    assert sorted(prebake.open(files / "cli").columns) == ["clip", "frames", "label", "latent"]


def test_added_items_run_the_stages_for_the_new_ones_only(tmp_path, files, monkeypatch):
    """An image folder names each item's input: a rebuild after adding files runs the stages on those alone."""
    from prebake.synthetic import write_image_folder

    photos = write_image_folder(tmp_path / "photos", per_class=6, size=(8, 8))
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("PREBAKE_TEST_CALLS", str(calls))
    encode = prebake.Stage(_Mean(), ("image",), ("mean",), batch_size=4, device="cpu")
    first = prebake.build(photos, tmp_path / "c", [encode], workers=0)
    assert sum(map(int, calls.read_text().split())) == 12 + 1  # + the probe item
    calls.unlink()
    write_image_folder(tmp_path / "more", per_class=1, size=(8, 8), seed=5)
    (tmp_path / "more" / "cat" / "cat_000.png").rename(photos / "cat" / "new.png")
    again = prebake.build(photos, tmp_path / "c", [encode], workers=0)
    assert sum(map(int, calls.read_text().split())) == 1 + 1 and len(again) == 13
    assert np.array_equal(again.column("mean")[:6], first.column("mean")[:6])  # copied, not run again
    new_row = 6  # cat/new.png sorts after cat/cat_000.png ... cat/cat_005.png
    image = torch.from_numpy(np.array(again.column("image")[new_row])).float()
    np.testing.assert_allclose(again.column("mean")[new_row], image.mean(dim=(1, 2)).numpy(), rtol=1e-6)


class _Mean(torch.nn.Module):
    def forward(self, batch):
        if os.environ.get("PREBAKE_TEST_CALLS"):
            with open(os.environ["PREBAKE_TEST_CALLS"], "a") as f:
                f.write(f"{len(batch['image'])}\n")
        return {"mean": batch["image"].float().mean(dim=(2, 3))}


def test_a_killed_build_resumes_inside_the_stages_to_the_same_bytes(files):
    """SIGKILL after some chunks went through the stages; the same command resumes; the bytes equal."""
    script = files / "run.py"
    script.write_text(
        "import os, signal, sys\n"
        "import prebake\n"
        "from prebake.bake import build as B\n"
        "from prebake.identity.plugins import load_object\n"
        "B._CHECKPOINT_S = 0.0\n"
        "kill = int(sys.argv[2])\n"
        "if kill:\n"
        "    real = B.StageRunner.process\n"
        "    seen = []\n"
        "    def process(self, result, reuse):\n"
        "        real(self, result, reuse)\n"
        "        seen.append(result.chunk)\n"
        "        if len(seen) == kill:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "    B.StageRunner.process = process\n"
        f"stages = load_object({str(files / 'encoders.py')!r} + ':stages')()\n"
        f"prebake.build(dataset={str(files / 'clips.py')!r} + ':make', out=sys.argv[1], steps=stages,\n"
        "              ragged=('frames',), chunk_rows=8, workers=0)\n")
    run = lambda out, kill: subprocess.run([sys.executable, str(script), str(out), str(kill)],  # noqa: E731
                                           capture_output=True, text=True, timeout=120, env=os.environ)
    assert run(files / "ref", 0).returncode == 0
    assert run(files / "killed", 3).returncode == -9
    assert (files / "killed.partial").exists() and not (files / "killed").exists()
    resumed = run(files / "killed", 0)
    assert resumed.returncode == 0, resumed.stderr
    ref = prebake.open(files / "ref")
    assert prebake.open(files / "killed").columns == ref.columns
    for name in ref.columns:
        for f in ref.specs[name].files:
            assert (files / "ref" / f).read_bytes() == (files / "killed" / f).read_bytes(), f
