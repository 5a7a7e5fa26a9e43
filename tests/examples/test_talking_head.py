"""examples/talking_head: the baked encoders equal the seed's per-clip calls, the three data paths give equal
windows, a new encoder checkpoint rebuilds (and the seed's cache does not notice), and the tiny configuration
trains (loss falls) with a per-step CSV. CPU, real .mp4 and .wav files in tmp_path."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("soundfile")

from examples.talking_head import data as D  # noqa: E402
from examples.talking_head import seed as S  # noqa: E402
from examples.talking_head.__main__ import main  # noqa: E402
from examples.talking_head.bench import same_windows  # noqa: E402
from examples.talking_head.config import Config, parse_args, tiny  # noqa: E402
from examples.talking_head.encoders import AudioEncoder, stages, write_random  # noqa: E402
from examples.talking_head.run import make_batches, prepare, run  # noqa: E402
from prebake.sources.audio import read_audio  # noqa: E402
from prebake.sources.video import read_video  # noqa: E402


def config(out: Path, **train) -> Config:
    cfg = tiny()
    cfg.out = out
    cfg.train = dataclasses.replace(cfg.train, **train)
    return cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    cfg = config(tmp_path_factory.mktemp("talk"))
    return cfg, prepare(cfg)


def test_each_stage_runs_its_own_copy_of_an_encoder_in_the_configured_autocast(prepared):
    cfg, p = prepared
    audio_stage, motion_stage, _ = stages(p.audio, p.motion, dataclasses.replace(cfg.encoders, stage_dtype="bf16"))
    assert audio_stage.fn is not p.audio and motion_stage.fn is not p.motion  # a Stage moves its module
    assert torch.equal(motion_stage.fn.state_dict()["net.0.weight"], p.motion.state_dict()["net.0.weight"])
    assert motion_stage.dtype == torch.bfloat16 and motion_stage.describe() != stages(p.audio, p.motion,
                                                                                     cfg.encoders)[1].describe()
    with pytest.raises(ValueError, match="stage_dtype='bf32'.*'bf16'"):
        stages(p.audio, p.motion, dataclasses.replace(cfg.encoders, stage_dtype="bf32"))


def test_the_baked_latents_equal_the_encoders_run_clip_by_clip(prepared):
    cfg, p = prepared
    cache = p.cache
    assert len(cache) == cfg.data.clips and sorted(cache.columns) == ["fps", "motion", "reference", "sample_rate",
                                                                      "w_audio"]  # frames, audio: keep=False
    files = S.Clips(p.root, cache, cfg.train.window, cfg.train.stride).files
    with torch.no_grad():
        for i in (0, 5, cfg.data.clips - 1):
            frames = torch.from_numpy(read_video(files[i][0])[0])
            audio = torch.from_numpy(read_audio(files[i][1])[0])
            motion = p.motion.encode(frames).numpy()
            np.testing.assert_allclose(cache.column("motion")[i], motion, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(cache.column("reference")[i], motion[0], rtol=1e-5, atol=1e-6)
            w_audio = p.audio.inference(audio, len(frames)).numpy()
            np.testing.assert_allclose(cache.column("w_audio")[i], w_audio, rtol=1e-5, atol=1e-6)
    assert cache.manifest["fingerprint"]["origin"]["kind"] == "video"


def test_the_three_data_paths_give_equal_windows(prepared):
    cfg, p = prepared
    check = same_windows(cfg, p)
    assert check["same_index"] and check["windows"] > 50
    assert max(check["max_abs_diff"].values()) < 1e-5, check
    for path in ("original", "optimised", "prebake"):
        batch = next(iter(make_batches(dataclasses.replace(cfg, data_path=path), p, "cpu").epoch(0)))
        assert batch["motion"].shape == batch["motion_context"].shape == (8, cfg.train.window, 16), path
        assert batch["w_audio"].shape == (8, cfg.train.window, 16) and batch["reference"].shape == (8, 16)


def test_an_audio_encoder_batch_is_each_clip_on_its_own():
    torch.manual_seed(0)
    enc = AudioEncoder(8, 8).eval()
    lengths, frames = [1200, 5000, 100, 3300], [3, 12, 1, 8]
    audio = [torch.randint(-3000, 3000, (n,), dtype=torch.int16) for n in lengths]
    padded = torch.zeros(4, max(lengths), dtype=torch.int16)
    for k, a in enumerate(audio):
        padded[k, : len(a)] = a
    with torch.no_grad():
        out = enc({"audio": padded, "audio_lengths": torch.tensor(lengths), "num_frames": torch.tensor(frames)})
        for k in range(4):
            alone = enc.inference(audio[k], frames[k])
            assert alone.shape == (frames[k], 8)
            torch.testing.assert_close(out["w_audio"][k, : frames[k]], alone, rtol=1e-5, atol=1e-6)
    assert out["w_audio_lengths"].tolist() == frames


def test_a_new_encoder_rebuilds_and_the_seeds_cache_does_not_notice(tmp_path, caplog):
    cfg = config(tmp_path)
    p = prepare(cfg)
    clips = S.Clips(p.root, p.cache, cfg.train.window, cfg.train.stride)
    stale = S.OptimisedDataset(clips, p.audio, p.motion, cfg.cache_root / "optimised.pt")[0]["w_audio"]
    cfg.encoders = dataclasses.replace(cfg.encoders, audio=write_random(
        lambda: AudioEncoder(cfg.encoders.audio_dim, cfg.encoders.width), tmp_path / "new_audio.pt", seed=7))
    with caplog.at_level(logging.INFO, logger="prebake"):
        q = prepare(cfg)
    assert "stage 'audio_encoder': 8 weight tensors changed" in caplog.text, caplog.text
    assert D.dataset_version(q.cache) != D.dataset_version(p.cache)
    fresh = q.cache.column("w_audio")[0][cfg.train.window : 2 * cfg.train.window]
    clips = S.Clips(q.root, q.cache, cfg.train.window, cfg.train.stride)
    seed_cached = S.OptimisedDataset(clips, q.audio, q.motion, cfg.cache_root / "optimised.pt")[0]["w_audio"]
    assert torch.equal(seed_cached, stale) and not np.allclose(seed_cached.numpy(), fresh)  # stale, silently
    forced = S.OptimisedDataset(clips, q.audio, q.motion, cfg.cache_root / "optimised.pt", force_preprocess=True)
    np.testing.assert_allclose(forced[0]["w_audio"].numpy(), fresh, rtol=1e-5, atol=1e-6)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="prebake"):
        prepare(dataclasses.replace(cfg, force_preprocess=True))
    assert "rebuilding" in caplog.text and "force=True" in caplog.text


def test_tiny_run_loss_falls_and_every_step_is_logged(prepared):
    cfg, p = prepared
    rows = run(cfg)
    assert len(rows) == cfg.train.steps
    assert np.mean([r.loss for r in rows[-5:]]) < 0.5 * rows[0].loss
    logged = list(csv.DictReader(open(cfg.out / "prebake.csv")))
    assert [int(r["step"]) for r in logged] == list(range(1, cfg.train.steps + 1))
    assert all(0 <= float(r["data_wait_fraction"]) <= 1 and float(r["samples_per_s"]) > 0 for r in logged)
    assert {r["dataset_version"] for r in logged} == {D.dataset_version(p.cache)}
    info = json.loads((cfg.out / "prebake.json").read_text())
    assert info["dataset_version"] == D.dataset_version(p.cache) and info["config"]["data_path"] == "prebake"


def test_the_cli_keeps_the_seeds_flags(prepared, tmp_path, capsys):
    cfg, p = prepared
    argv = ["--config", "tiny", "--data_root", str(p.root), "--out", str(cfg.out), "--data_path", "original",
            "--steps", "3", "--cache_dir", str(tmp_path / "c"), "--force_preprocess", "--wandb_project", "float"]
    parsed = parse_args(argv)
    assert (parsed.data_dir, parsed.cache_root, parsed.force_preprocess, parsed.train.steps) == (
        p.root, tmp_path / "c", True, 3)
    assert main(argv) == 0
    assert len(list(csv.DictReader(open(cfg.out / "original.csv")))) == 3
    assert (tmp_path / "c" / "prebake" / "manifest.json").is_file()
    bad = tmp_path / "bad.pt"
    torch.save({"nope": torch.zeros(1)}, bad)
    assert main(argv + ["--audio_encoder", str(bad)]) == 2
    assert f"--audio_encoder {bad} does not fit AudioEncoder" in capsys.readouterr().err


def test_a_clip_at_another_sample_rate_is_a_bad_item(tmp_path):
    import soundfile as sf

    cfg = config(tmp_path)
    cfg.data = dataclasses.replace(cfg.data, clips=3)
    root = D.write_synthetic(tmp_path / "clips", cfg.data)
    clip = sorted(root.iterdir())[1]
    sf.write(clip / "audio.wav", np.zeros(8000, np.int16), 8000, subtype="PCM_16")
    p = prepare(dataclasses.replace(cfg, data_dir=root))
    (skipped,) = p.cache.manifest["skipped"]
    assert skipped["key"] == clip.name and skipped["reason"].startswith(
        "audio at 8000 Hz; the audio encoder takes 16000 Hz: resample the WAV files")
