"""Audio folders (WAV, FLAC, OGG through soundfile): one dtype by option, channel policy, ragged
signals, resample and band-pass at bake time."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

import prebake
import prebake.bake.build as build_mod  # noqa: E402
from prebake.errors import BadItemError, OptionError
from prebake.sources import SourceOptions, detect
from prebake.sources.audio import read_audio
from prebake.steps import BandPass, Resample
from prebake.synthetic import write_audio_folder, write_wav


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


def _pcm_ints(x: np.ndarray, width: int) -> np.ndarray:
    """The integers write_wav stores for float ``x`` at ``width`` bytes (8-bit centred on 0)."""
    if width == 1:
        return np.clip(np.rint(x * 127 + 128), 0, 255).astype(np.int64) - 128
    top = {2: 32767, 3: 8388607, 4: 2147483647}[width]
    return np.clip(np.rint(x * top), -top - 1, top).astype(np.int64)


KNOWN = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 1e-4, -3e-3])


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", ["int16", "int32", "float32"])
def test_every_pcm_width_reads_into_the_chosen_dtype_on_one_scale(tmp_path, width, dtype):
    """Full scale is 2**15 (int16) or 2**31 (int32) whatever the file's bit depth; float32 is value / 2**(bits-1)."""
    write_wav(tmp_path / "a.wav", KNOWN, 8000, width)
    signal, rate = read_audio(tmp_path / "a.wav", dtype=dtype)
    v, bits = _pcm_ints(KNOWN, width), 8 * width
    assert rate == 8000 and signal.dtype == np.dtype(dtype)
    if dtype == "float32":
        want = (v / 2.0 ** (bits - 1)).astype(np.float32)
    else:
        full = 16 if dtype == "int16" else 32
        want = np.clip(np.rint(v * 2.0 ** (full - bits)), -(2 ** (full - 1)), 2 ** (full - 1) - 1)
    assert signal.tolist() == want.astype(dtype).tolist()
    if width == 2 and dtype == "int16":  # 16-bit files come back bit for bit
        assert np.array_equal(signal, _stdlib_int16(tmp_path / "a.wav")[0])


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_is_read_and_clipped_only_for_integer_dtypes(tmp_path, subtype):
    x = np.array([0.0, 0.5, -0.25, 1.5, -2.0])
    sf.write(tmp_path / "f.wav", x, 4000, subtype=subtype)
    as_float, _ = read_audio(tmp_path / "f.wav", dtype="float32")
    as_int, _ = read_audio(tmp_path / "f.wav", dtype="int16")
    assert as_float.tolist() == x.astype(np.float32).tolist()  # above 1.0 kept
    assert as_int.tolist() == [0, 16384, -8192, 32767, -32768]


@pytest.mark.parametrize("subtype,bits", [("PCM_16", 16), ("PCM_24", 24)])
def test_flac_is_lossless(tmp_path, subtype, bits):
    v = np.array([0, 1, -1, 12345, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
    sf.write(tmp_path / "a.flac", v / 2.0 ** (bits - 1), 16000, subtype=subtype)
    signal, rate = read_audio(tmp_path / "a.flac", dtype="int32")
    assert rate == 16000 and signal.tolist() == (v * 2 ** (32 - bits)).tolist()


def test_ogg_vorbis_decodes_close_to_what_was_encoded(tmp_path):
    t = np.arange(8000) / 8000
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    sf.write(tmp_path / "a.ogg", x, 8000)
    signal, rate = read_audio(tmp_path / "a.ogg", dtype="float32")
    assert rate == 8000 and len(signal) == len(x)
    assert np.corrcoef(signal, x)[0, 1] > 0.99  # lossy: close, not equal


def test_channel_policy_mix_index_and_all(tmp_path):
    x = np.stack([np.linspace(-1, 1, 50), np.linspace(1, -1, 50) * 0.5], axis=1)
    write_wav(tmp_path / "s.wav", x, 4000)
    ints = _pcm_ints(x, 2) * 1.0
    mix, _ = read_audio(tmp_path / "s.wav", "mix")
    second, _ = read_audio(tmp_path / "s.wav", "1")
    both, _ = read_audio(tmp_path / "s.wav", "all")
    assert mix.shape == (50,) and mix.tolist() == np.rint(ints.mean(axis=1)).astype(np.int16).tolist()
    assert second.tolist() == ints[:, 1].astype(np.int16).tolist()
    assert both.shape == (50, 2) and both[0].tolist() == [-32767, 16384]
    with pytest.raises(BadItemError, match=r"has 2 channel\(s\).*asks for channel 2"):
        read_audio(tmp_path / "s.wav", "2")
    with pytest.raises(OptionError, match="'left'"):
        prebake.build(tmp_path, tmp_path / "c", source_options=SourceOptions(channel="left"))


def test_stereo_files_are_mixed_into_a_mono_column_by_default(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", classes=("a",), per_class=2, channels=2)
    write_wav(root / "a" / "mono.wav", np.sin(np.linspace(0, 30, 900)), 2000)
    cache = prebake.build(root, tmp_path / "c", workers=0)
    assert len(cache) == 3 and not cache.manifest["skipped"]
    assert all(cache[i]["signal"].ndim == 1 for i in range(3))
    kept = prebake.build(root, tmp_path / "c2", workers=0,
                         source_options=SourceOptions(channel="all"))  # (T, 2) and the mono file's (T, 1)
    assert len(kept) == 3 and not kept.manifest["skipped"]  # channels vary: a ragged N-D column, each file kept
    assert kept.manifest["columns"]["signal"]["shape"] == [None, None]
    assert sorted(kept[i]["signal"].shape[1] for i in range(3)) == [1, 2, 2]


def test_the_dtype_comes_from_the_option_not_the_first_file(tmp_path):
    """A 24-bit file sorting first used to make an int32 column with 24- and 16-bit scales mixed."""
    root = tmp_path / "hearts"
    (root / "a").mkdir(parents=True)
    write_wav(root / "a" / "0_24bit.wav", KNOWN, 2000, width=3)
    write_wav(root / "a" / "1_16bit.wav", KNOWN, 2000, width=2)
    cache = prebake.build(root, tmp_path / "c", workers=0)
    assert cache.manifest["columns"]["signal"]["dtype"] == "<i2" and not cache.manifest["skipped"]
    a, b = cache[0]["signal"].astype(np.int64), cache[1]["signal"].astype(np.int64)
    assert np.abs(a - b).max() <= 1  # one scale: the 24-bit file rounded to 16 bits
    wide = prebake.build(root, tmp_path / "c32", workers=0, source_options=SourceOptions(audio_dtype="int32"))
    assert wide.manifest["columns"]["signal"]["dtype"] == "<i4"
    assert np.abs(wide[0]["signal"].astype(np.int64) - wide[1]["signal"]).max() <= 2 ** 16
    assert wide.manifest["fingerprint"]["digest"] != cache.manifest["fingerprint"]["digest"]


def test_flac_and_ogg_files_are_found_in_class_folders(tmp_path):
    root = tmp_path / "hearts"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    x = 0.5 * np.sin(np.linspace(0, 200, 4000))
    sf.write(root / "a" / "x.flac", x, 4000, subtype="PCM_16")
    sf.write(root / "b" / "y.ogg", x, 4000)
    assert detect(root)[""].kind == "audio"
    cache = prebake.build(root, tmp_path / "c", workers=0)
    assert len(cache) == 2 and cache.classes == ["a", "b"]
    assert np.abs(cache[0]["signal"] - np.rint(x * 32768)).max() <= 1


def test_resample_and_bandpass_match_scipy(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", per_class=2, rate=4000, seconds=(0.5, 1.0))
    cache = prebake.build(root, tmp_path / "c", [Resample(1000), BandPass(25, 400)], workers=0)
    raw, _ = _stdlib_int16(sorted(root.glob("*/*.wav"))[0])
    y = scipy.signal.resample_poly(raw.astype(np.float64), 1, 4)
    y = np.clip(np.rint(y), -32768, 32767)
    sos = scipy.signal.butter(4, [25, 400], btype="bandpass", fs=1000, output="sos")
    want = np.clip(np.rint(scipy.signal.sosfiltfilt(sos, y.astype(np.int16).astype(np.float64))), -32768, 32767)
    assert int(cache[0]["sample_rate"]) == 1000
    assert np.array_equal(cache[0]["signal"], want.astype(np.int16))


def test_bad_wav_files_are_bad_items(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", classes=("a",), per_class=3)
    good = (root / "a" / "a_000.wav").read_bytes()
    (root / "a" / "truncated.wav").write_bytes(good[: len(good) // 2])
    (root / "a" / "garbage.wav").write_bytes(b"not a riff file at all")
    (root / "a" / "empty.wav").write_bytes(b"")
    sf.write(root / "a" / "nan.wav", np.array([0.0, np.nan, 0.5]), 2000, subtype="FLOAT")
    cache = prebake.build(root, tmp_path / "c", workers=0)
    reasons = {s["key"]: s["reason"] for s in cache.manifest["skipped"]}
    assert len(cache) == 3 and len(reasons) == 4
    frames = (len(good) - 44) // 2
    assert reasons["a/truncated.wav"] == (f"truncated WAV: the header says {frames} frames, the file holds "
                                          f"{(len(good) // 2 - 44) // 2}")
    assert "not a readable audio file" in reasons["a/garbage.wav"]
    assert reasons["a/empty.wav"] == "empty file (0 bytes)"
    assert reasons["a/nan.wav"] == "contains NaN or Inf samples"
    with pytest.raises(BadItemError, match="file not found"):
        read_audio(root / "a" / "missing.wav")


def test_added_recordings_are_the_only_ones_baked(tmp_path):
    root = write_audio_folder(tmp_path / "hearts", per_class=2)
    out = tmp_path / "c"
    (first,) = build_mod.build_all(build_mod.resolve_sources(root), out, build_mod.BuildOptions(workers=0))
    write_wav(root / "normal" / "zz_new.wav", np.sin(np.linspace(0, 50, 3000)), 2000)
    (second,) = build_mod.build_all(build_mod.resolve_sources(root), out, build_mod.BuildOptions(workers=0))
    assert (second.num_items, second.reused) == (5, 4)
    assert np.array_equal(prebake.open(out)[4]["signal"], read_audio(root / "normal" / "zz_new.wav")[0])
