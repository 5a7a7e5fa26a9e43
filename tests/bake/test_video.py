"""Video clips (PyAV): the three clip layouts, detection, frames and audio columns, bad items with their reasons,
the fingerprint and incremental rebuilds. Real .mp4, .wav and .png files in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest

import prebake
import prebake.bake.build as B
from prebake.cli import main
from prebake.sources import SourceOptions, detect
from prebake.sources.video import VideoFolderSource, read_video, write_video

sf = pytest.importorskip("soundfile")
pytest.importorskip("av")


def frames(n: int, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """Smooth moving gradients (what a codec keeps well): uint8 (n, 3, h, w)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 1, 3)[:, None, None]
    out = [(127 + 100 * np.sin(xx / w * 6 + k / 5 + base * 6) * np.cos(yy / h * 3 + base)) for k in range(n)]
    return np.stack(out).astype(np.uint8)


def wav(path, samples: int, rate: int = 16000, seed: int = 0):
    x = 0.3 * np.sin(np.arange(samples) / 7 + seed)
    sf.write(path, x, rate, subtype="PCM_16")
    return path


def write_layouts(root, lengths=(10, 7, 5)):
    """a.mp4 + a.wav; b/video.mp4 + b/speech.wav; c/frames/*.png + c/audio.wav."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    clips = {name: frames(n, seed=k) for k, (name, n) in enumerate(zip("abc", lengths))}
    write_video(root / "a.mp4", clips["a"], 25)
    wav(root / "a.wav", 6400)
    (root / "b").mkdir()
    write_video(root / "b" / "video.mp4", clips["b"], 30)
    wav(root / "b" / "speech.wav", 3000, seed=1)
    (root / "c" / "frames").mkdir(parents=True)
    for k, f in enumerate(clips["c"]):
        Image.fromarray(f.transpose(1, 2, 0)).save(root / "c" / "frames" / f"{k:04d}.png")
    wav(root / "c" / "audio.wav", 2000, seed=2)
    return clips


def test_three_layouts_give_frames_fps_and_audio(tmp_path):
    clips = write_layouts(tmp_path / "clips")
    cache = prebake.build(tmp_path / "clips", tmp_path / "cache", source_options=SourceOptions(fps=12), workers=0)
    assert len(cache) == 3 and sorted(cache.columns) == ["audio", "fps", "frames", "sample_rate"]
    assert cache.specs["frames"].ragged and cache.specs["frames"].dtype == "|u1" and cache.specs["audio"].ragged
    got = [np.asarray(cache.column("frames")[i]) for i in range(3)]
    assert [g.shape for g in got] == [(10, 3, 32, 48), (7, 3, 32, 48), (5, 3, 32, 48)]
    assert np.array_equal(got[2], clips["c"])  # PNG frames: exact
    for g, ref in zip(got[:2], (clips["a"], clips["b"])):  # H.264 at its default quality, yuv420p: close
        assert np.abs(g.astype(int) - ref).mean() < 6  # (RGB read as BGR: 50)
    assert np.asarray(cache.column("fps")).tolist() == [25.0, 30.0, 12.0]
    assert [len(cache.column("audio")[i]) for i in range(3)] == [6400, 3000, 2000]
    assert np.asarray(cache.column("sample_rate")).tolist() == [16000] * 3
    assert cache.manifest["fingerprint"]["origin"]["kind"] == "video"


def test_detection_and_a_folder_of_frames_needs_kind_video(tmp_path):
    write_layouts(tmp_path / "clips")
    assert isinstance(detect(tmp_path / "clips", options=SourceOptions(fps=25))[""], VideoFolderSource)
    with pytest.raises(prebake.SourceError, match=r"clips/c holds frame images, which carry no frame rate; "
                                                  r"give it with `fps=25`"):
        detect(tmp_path / "clips")
    stills = tmp_path / "stills" / "clip1"
    stills.mkdir(parents=True)
    from PIL import Image

    for k in range(3):
        Image.fromarray(frames(1)[0].transpose(1, 2, 0)).save(stills / f"{k}.png")
    assert type(detect(tmp_path / "stills")[""]).__name__ == "ImageFolderSource"  # a class folder of images
    source = detect(tmp_path / "stills", kind="video", options=SourceOptions(fps=10))[""]
    assert source.keys() == ["clip1"] and source.read(0)["frames"].shape == (3, 3, 32, 48)


def test_split_folders_and_frame_size(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "clips" / split).mkdir(parents=True)
        write_video(tmp_path / "clips" / split / "x.mp4", frames(4), 25)
        write_video(tmp_path / "clips" / split / "y.mp4", frames(6, 64, 64), 25)
    caches = prebake.build(tmp_path / "clips", tmp_path / "cache", source_options=SourceOptions(frame_size=16),
                           workers=0)
    assert sorted(caches) == ["train", "val"] and sorted(caches["val"].columns) == ["fps", "frames"]
    assert [np.asarray(caches["train"].column("frames")[i]).shape for i in range(2)] == [(4, 3, 16, 16),
                                                                                        (6, 3, 16, 16)]


def test_bad_clips_are_skipped_with_their_reasons(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    for name in ("good", "cut", "cutfast", "garbage", "noaudio", "badwav", "wide"):
        write_video(root / f"{name}.mp4", frames(30, seed=1), 25)
        if name != "noaudio":
            wav(root / f"{name}.wav", 4000)
    data = (root / "cut.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: it does not open
    write_video(root / "cutfast.mp4", frames(30, seed=1), 25, container_options={"movflags": "faststart"})
    data = (root / "cutfast.mp4").read_bytes()
    (root / "cutfast.mp4").write_bytes(data[: int(len(data) * 0.6)])  # index first: decoding stops part-way
    (root / "garbage.mp4").write_bytes(np.random.default_rng(7).bytes(4096))  # fixed: FFmpeg takes some random
    # bytes for a container with no video stream, which is refused too, with its own reason
    wav_bytes = (root / "badwav.wav").read_bytes()
    (root / "badwav.wav").write_bytes(wav_bytes[: len(wav_bytes) // 2])
    write_video(root / "wide.mp4", frames(5, 64, 64), 25)
    cache = prebake.build(root, tmp_path / "cache", workers=2)
    reasons = {s["key"]: s["reason"] for s in cache.manifest["skipped"]}
    assert len(cache) == 2 and sorted(reasons) == ["badwav", "cut", "cutfast", "garbage", "noaudio"]
    assert reasons["cut"].startswith("not a readable video, or one cut short before its index")
    assert reasons["garbage"].startswith(("not a readable video", "has no video stream"))
    assert reasons["cutfast"].startswith("truncated or corrupt video: decoding failed after") \
        or reasons["cutfast"].startswith("truncated video: the header says 30 frames")
    assert reasons["noaudio"].startswith("no audio file for the clip (other clips have one): add noaudio.wav")
    assert reasons["badwav"].startswith("audio badwav.wav: truncated WAV: the header says 4000 frames")
    frames_of = {k: cache[i]["frames"].shape for i, k in enumerate(json_keys(cache))}
    assert frames_of == {"good": (30, 3, 32, 48), "wide": (5, 3, 64, 64)}  # each clip at its own frame size


def json_keys(cache):
    return json.loads((cache.path / "_item_keys.json").read_text())


def test_read_video_reasons_and_write_video_checks(tmp_path):
    with pytest.raises(prebake.BadItemError, match="file not found"):
        read_video(tmp_path / "nothing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(prebake.BadItemError, match=r"empty file \(0 bytes\)"):
        read_video(tmp_path / "empty.mp4")
    with pytest.raises(ValueError, match=r"frames must be uint8 \(T, 3, H, W\), got float32"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 3, 8, 8), np.float32), 25)


def test_layout_errors_name_the_folder_and_the_fix(tmp_path):
    (tmp_path / "two" / "clip").mkdir(parents=True)
    for name in ("v1.mp4", "v2.mp4"):
        write_video(tmp_path / "two" / "clip" / name, frames(2), 25)
    with pytest.raises(prebake.SourceError, match=r"two/clip holds 2 video files \(v1.mp4, v2.mp4\); a clip folder "
                                                  r"holds one video"):
        VideoFolderSource(tmp_path / "two")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("no clips")
    with pytest.raises(prebake.SourceError, match=r"holds no clips .*root/<clip>.mp4"):
        VideoFolderSource(tmp_path / "none")
    (tmp_path / "twice" / "a").mkdir(parents=True)
    write_video(tmp_path / "twice" / "a.mp4", frames(2), 25)
    write_video(tmp_path / "twice" / "a" / "video.mp4", frames(2), 25)
    with pytest.raises(prebake.SourceError, match=r"has clips named \['a'\] twice"):
        VideoFolderSource(tmp_path / "twice")
    with pytest.raises(prebake.SourceError, match=r"`fps` is -1; give a positive number"):
        VideoFolderSource(tmp_path / "twice" / "a", fps=-1)


def test_a_changed_clip_rebuilds_and_an_added_one_is_the_only_one_baked(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    for k in range(3):
        write_video(root / f"c{k}.mp4", frames(6, seed=k), 25)
    options = B.BuildOptions(workers=0)
    first, = B.build_all(B.resolve_sources(root), tmp_path / "cache", options)
    assert first.action == "built"
    write_video(root / "c3.mp4", frames(4, seed=9), 25)
    again, = B.build_all(B.resolve_sources(root), tmp_path / "cache", options)
    assert (again.action, again.num_items, again.reused) == ("rebuilt", 4, 3)
    assert any("c3.mp4" in r for r in again.reasons), again.reasons
    cache = prebake.open(tmp_path / "cache")
    assert np.asarray(cache.column("frames")[3]).shape == (4, 3, 32, 48)
    same, = B.build_all(B.resolve_sources(root), tmp_path / "cache", options)
    assert same.action == "up to date"
    changed, = B.build_all(B.resolve_sources(root, options=SourceOptions(frame_size=16)), tmp_path / "cache", options)
    assert changed.action == "rebuilt" and changed.reused == 0


def test_the_cli_builds_clips_with_fps_and_frame_size(tmp_path, capsys):
    write_layouts(tmp_path / "clips")
    assert main(["build", str(tmp_path / "clips"), str(tmp_path / "cache"), "--fps", "12", "--frame-size", "16",
                 "--workers", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out[0]["action"], out[0]["num_items"]) == ("built", 3)
    assert np.asarray(prebake.open(tmp_path / "cache").column("frames")[0]).shape == (10, 3, 16, 16)
    assert main(["build", str(tmp_path / "clips"), str(tmp_path / "c2"), "--kind", "video"]) == 2
    assert "--fps 25" in capsys.readouterr().err


def test_a_chunk_counts_a_ragged_item_at_its_length_and_holds_a_stage_batch():
    """~16 MB per chunk: 200 clips of 80 frames were one chunk (one worker decoded them all) when a ragged column
    counted as one row."""
    from prebake.bake.build import _chunk_rows
    from prebake.cache.format import ColumnSpec

    frames, fps = ColumnSpec.of("frames", np.uint8, (3, 64, 64), ragged=True), ColumnSpec.of("fps", np.float32, ())
    item = {"frames": np.zeros((80, 3, 64, 64), np.uint8), "fps": np.float32(25)}
    assert _chunk_rows([frames, fps], item, []) == (16 << 20) // (80 * 3 * 64 * 64 + 4) == 17
    stage = prebake.Stage(lambda b: b, ("frames",), ("z",), batch_size=32)
    assert _chunk_rows([frames, fps], item, [stage]) == 32
    assert _chunk_rows([fps], {"fps": np.float32(25)}, []) == 1024
