"""Audio folders of WAV files: PCM decoding, ragged signals, resample and band-pass at bake time."""

from __future__ import annotations

import struct
import sys
import wave

import numpy as np
import pytest
import scipy.signal

import prebake
from prebake.errors import BadItemError
from prebake.bake.sources import detect
from prebake.bake.sources.audio import read_wav
from prebake.synthetic import write_audio_folder, write_wav

import prebake.bake.build as build_mod  # noqa: E402


def _stdlib_int16(path):
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def test_audio_folder_is_detected_and_baked_as_a_ragged_signal(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", per_class=3, rate=2000)
    sources = detect(root)
    assert list(sources) == [""] and sources[""].kind == "audio"
    cache = prebake.build(root, tmp_path / "c", workers=2, chunk_rows=2)
    assert cache.classes == ["abnormal", "normal"] and cache.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert cache.manifest["columns"]["signal"]["ragged"] and cache.manifest["columns"]["signal"]["dtype"] == "<i2"
    files = sorted(root.glob("*/*.wav"))
    lengths = set()
    for i, f in enumerate(files):
        want, rate = _stdlib_int16(f)
        assert np.array_equal(cache[i]["signal"], want) and int(cache[i]["sample_rate"]) == rate == 2000
        lengths.add(len(want))
    assert len(lengths) > 1  # recordings of different lengths, in one ragged column
    assert prebake.verify(tmp_path / "c").ok


@pytest.mark.parametrize("width,dtype,scale", [(1, np.int16, None), (2, np.int16, 32767), (3, np.int32, 8388607),
                                               (4, np.int32, 2147483647)])
def test_pcm_widths_decode_to_natural_integers(tmp_path, width, dtype, scale):
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.25])
    write_wav(tmp_path / "a.wav", x, 8000, width)
    signal, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and signal.dtype == dtype
    if width == 1:  # unsigned 8-bit, centred and scaled to int16
        want = (np.clip(np.rint(x * 127 + 128), 0, 255).astype(np.int16) - 128) << 8
    else:
        want = np.clip(np.rint(x * scale), -scale - 1, scale)
    assert signal.tolist() == want.astype(dtype).tolist()


def test_stereo_is_time_by_channels(tmp_path):
    x = np.stack([np.linspace(-1, 1, 50), np.linspace(1, -1, 50)], axis=1)
    write_wav(tmp_path / "s.wav", x, 4000)
    signal, _ = read_wav(tmp_path / "s.wav")
    assert signal.shape == (50, 2) and signal[0].tolist() == [-32767, 32767]


def test_resample_and_bandpass_match_scipy(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", per_class=2, rate=4000, seconds=(0.5, 1.0))
    cache = prebake.build(root, tmp_path / "c", workers=0, sample_rate=1000, bandpass=(25, 400))
    raw, _ = _stdlib_int16(sorted(root.glob("*/*.wav"))[0])
    y = scipy.signal.resample_poly(raw.astype(np.float64), 1, 4)
    y = np.clip(np.rint(y), -32768, 32767)
    sos = scipy.signal.butter(4, [25, 400], btype="bandpass", fs=1000, output="sos")
    want = np.clip(np.rint(scipy.signal.sosfiltfilt(sos, y.astype(np.int16).astype(np.float64))), -32768, 32767)
    assert int(cache[0]["sample_rate"]) == 1000
    assert np.array_equal(cache[0]["signal"], want.astype(np.int16))


def _float_wav_bytes() -> bytes:
    data = np.zeros(8, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_bad_wav_files_are_bad_items(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", classes=("a",), per_class=3)
    good = (root / "a" / "a_000.wav").read_bytes()
    (root / "a" / "truncated.wav").write_bytes(good[: len(good) // 2])
    (root / "a" / "garbage.wav").write_bytes(b"not a riff file at all")
    (root / "a" / "empty.wav").write_bytes(b"")
    (root / "a" / "float.wav").write_bytes(_float_wav_bytes())
    cache = prebake.build(root, tmp_path / "c", workers=0)
    reasons = {s["key"]: s["reason"] for s in cache.manifest["skipped"]}
    assert len(cache) == 3 and len(reasons) == 4
    assert "truncated WAV" in reasons["a/truncated.wav"]
    assert "not a readable PCM WAV file" in reasons["a/garbage.wav"]
    assert reasons["a/empty.wav"] == "empty file (0 bytes)"
    assert "not a readable PCM WAV file" in reasons["a/float.wav"]
    with pytest.raises(BadItemError, match="file not found"):
        read_wav(root / "a" / "missing.wav")


def test_added_recordings_are_the_only_ones_baked(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", per_class=2)
    out = tmp_path / "c"
    (first,) = build_mod.build_all(build_mod.resolve_sources(root), out, build_mod.BuildOptions(workers=0))
    write_wav(root / "normal" / "zz_new.wav", np.sin(np.linspace(0, 50, 3000)), 2000)
    (second,) = build_mod.build_all(build_mod.resolve_sources(root), out, build_mod.BuildOptions(workers=0))
    assert (second.num_items, second.reused) == (5, 4)
    assert np.array_equal(prebake.open(out)[4]["signal"], read_wav(root / "normal" / "zz_new.wav")[0])
