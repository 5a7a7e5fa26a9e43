"""Images, audio and arrays an outside tester fed to a build: each test is an attack the code before failed, on files
Pillow, soundfile and numpy write here (a 16-bit PGM, an overshooting resample, a WAV whose writer was killed, ...)."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from PIL import Image

import prebake
from prebake.errors import BadItemError
from prebake.sources import SourceOptions
from prebake.sources.images import decode_image
from prebake.sources.notes import take_notes
from prebake.steps import BandPass, Resample, SegmentCycles, ToRGB8

sf = pytest.importorskip("soundfile")


def _build(source, out, steps=None, **kw):
    return prebake.build(source, out, steps, workers=0, progress=False, **kw)


def _image(cache, key):
    return np.asarray(cache[cache.source_keys.index(key)]["image"])


def _notes(cache, words):
    return [n for n in cache.manifest.get("notes", []) if words in n["what"]]


# --- images ---------------------------------------------------------------------------------------------------------


def test_rgb_makes_sixteen_bit_grey_eight_bit_under_every_channel_policy(tmp_path):
    """--rgb --channels 3 kept 16-bit grey as three uint16 channels of 40000, and the column became uint16."""
    (tmp_path / "src" / "a").mkdir(parents=True)
    Image.fromarray(np.full((4, 5), 40000, np.uint16)).save(tmp_path / "src" / "a" / "deep.png")
    Image.fromarray(np.full((4, 5, 3), 9, np.uint8)).save(tmp_path / "src" / "a" / "rgb.png")
    for channels in (None, "1", "3", "keep"):
        cache = _build(tmp_path / "src", tmp_path / f"out{channels}", [ToRGB8()],
                       source_options=SourceOptions(channels=channels))
        assert cache.column("image").dtype == np.uint8, channels
        np.testing.assert_array_equal(_image(cache, "a/deep.png"), np.full((3, 4, 5), 40000 >> 8, np.uint8))
        np.testing.assert_array_equal(_image(cache, "a/rgb.png"), np.full((3, 4, 5), 9, np.uint8))


def test_rgb_makes_grey_beside_colour_arrays_one_channel_count(tmp_path):
    """The hint of Crops for grey beside colour is ToRGB8: an array source's (1, H, W) uint8 images become RGB."""
    grey = np.arange(20, dtype=np.uint8).reshape(2, 1, 2, 5)
    np.save(tmp_path / "images.npy", grey)
    cache = _build(tmp_path / "images.npy", tmp_path / "out", [ToRGB8()])
    assert cache.column("image").shape[1:] == (3, 2, 5)
    np.testing.assert_array_equal(cache[1]["image"], np.repeat(grey[1], 3, axis=0))
    with pytest.raises(BadItemError, match=r"image of shape \(5, 2, 5\) and dtype uint8 has no 8-bit RGB form: "
                                           r"`prebake.steps.ToRGB8` takes .* 1 to 4 channels"):
        ToRGB8()({"image": np.zeros((5, 2, 5), np.uint8)})  # it passed through, unconverted and unsaid


@pytest.mark.parametrize("channels", [None, "1", "keep", "3"])
def test_sixteen_bit_pgm_is_kept_at_full_depth_as_png_and_tiff_are(tmp_path, channels):
    """Pillow opens a 16-bit PGM as mode I: it was cut to value >> 8 (as 8-bit RGB by default), with no note."""
    px = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 7
    (tmp_path / "src" / "a").mkdir(parents=True)
    for ext in ("pgm", "png", "tif"):
        Image.fromarray(px).save(tmp_path / "src" / "a" / f"deep.{ext}")
    assert Image.open(tmp_path / "src" / "a" / "deep.pgm").mode == "I"  # the attack needs Pillow's mode I
    cache = _build(tmp_path / "src", tmp_path / "out", source_options=SourceOptions(channels=channels))
    want = np.repeat(px[None], 3 if channels == "3" else 1, axis=0)
    assert cache.column("image").dtype == np.uint16
    for ext in ("pgm", "png", "tif"):
        np.testing.assert_array_equal(_image(cache, f"a/deep.{ext}"), want)
    rgb = _build(tmp_path / "src", tmp_path / "rgb", [ToRGB8()], source_options=SourceOptions(channels=channels))
    np.testing.assert_array_equal(_image(rgb, "a/deep.pgm"), np.repeat((px >> 8).astype(np.uint8)[None], 3, axis=0))


def test_mode_i_values_beyond_sixteen_bits_are_kept_as_int32_not_cut(tmp_path):
    """A 32-bit integer TIFF: values outside [0, 65535] are kept value for value; --rgb gives the mode I rule."""
    px = np.array([[-5, 0, 70000], [2**31 - 1, 65535, 12]], np.int32)
    Image.fromarray(px).save(tmp_path / "wide.tif")
    assert Image.open(tmp_path / "wide.tif").mode == "I"
    for channels in (None, "1", "keep"):
        got = decode_image(tmp_path / "wide.tif", channels=channels)
        assert got.dtype == np.int32 and got.shape == (1, 2, 3)
        np.testing.assert_array_equal(got[0], px)
    assert decode_image(tmp_path / "wide.tif", channels="3").shape == (3, 2, 3)
    rgb = ToRGB8()({"image": decode_image(tmp_path / "wide.tif")})["image"]
    np.testing.assert_array_equal(rgb[1], (np.clip(px.astype(np.int64), 0, None) >> 23).astype(np.uint8))


# --- audio steps ----------------------------------------------------------------------------------------------------


def _square(root):
    """A float WAV inside full scale: a 0.999 square wave decodes unclipped, its filtered edges overshoot int16."""
    (root / "c").mkdir(parents=True)
    t = np.arange(4000) / 8000
    sf.write(root / "c" / "square.wav", 0.999 * np.sign(np.sin(2 * np.pi * 50 * t)), 8000, subtype="FLOAT")


def _over(y):
    y = np.rint(y)
    return int(np.count_nonzero((y > 32767) | (y < -32768)))


def test_resample_overshoot_clipped_to_int16_is_counted_in_the_notes(tmp_path):
    scipy_signal = pytest.importorskip("scipy.signal")
    _square(tmp_path / "src")
    cache = _build(tmp_path / "src", tmp_path / "out", [Resample(2000)])
    decoded = np.clip(np.rint(sf.read(tmp_path / "src" / "c" / "square.wav")[0] * 32768), -32768, 32767)
    want = _over(scipy_signal.resample_poly(decoded, 1, 4))
    assert want > 100  # the attack: Gibbs overshoot beyond int16
    notes = _notes(cache, "after resampling clipped")
    assert [(n["count"], n["items"]) for n in notes] == [(want, 1)]
    assert "audio_dtype" in notes[0]["what"] and "float32" in notes[0]["what"]
    assert "after resampling clipped" in (tmp_path / "out" / "build.log").read_text()
    float_cache = _build(tmp_path / "src", tmp_path / "f32", [Resample(2000)],
                         source_options=SourceOptions(audio_dtype="float32"))
    assert not _notes(float_cache, "clipped") and np.abs(float_cache[0]["signal"]).max() > 1.0  # the fix keeps them


def test_band_pass_overshoot_clipped_to_int16_is_counted_in_the_notes(tmp_path):
    scipy_signal = pytest.importorskip("scipy.signal")
    _square(tmp_path / "src")
    x = np.clip(np.rint(sf.read(tmp_path / "src" / "c" / "square.wav")[0] * 32768), -32768, 32767).astype(np.int16)
    sos = scipy_signal.butter(4, [25, 400], btype="bandpass", fs=8000, output="sos")
    want = _over(scipy_signal.sosfiltfilt(sos, x.astype(np.float64)))
    take_notes()
    out = BandPass(25, 400)({"signal": x, "sample_rate": 8000})["signal"]
    assert want > 100 and int(np.count_nonzero((out == 32767) | (out == -32768))) >= want
    notes = take_notes()
    assert [v for k, v in notes.items() if "after band-pass filtering clipped" in k] == [[want, 1]]


# --- segmentation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [0, 3])
def test_segmenting_a_very_short_recording_says_it_is_too_short_without_a_warning(tmp_path, samples):
    """It was scipy's 'The length of the input vector x must be greater than padlen' and a numpy RuntimeWarning."""
    sf.write(tmp_path / "tiny.wav", np.full(samples, 0.25), 2000, subtype="PCM_16")
    signal, rate = sf.read(tmp_path / "tiny.wav", dtype="int16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BadItemError, match=rf"^recording too short to segment: {samples} samples, shorter than "
                                               r"two beats at 150 bpm.*\(needs at least 1600\)$"):
            SegmentCycles()({"signal": signal, "sample_rate": rate})
        windows = SegmentCycles(length=100, fallback="windows")({"signal": signal, "sample_rate": rate})
    assert not windows["segmented"] and windows["cycle_lengths"].tolist() == [samples]
    np.testing.assert_array_equal(windows["cycles"][0, :samples], signal)


def test_a_heart_rate_range_too_high_for_two_beats_still_meets_the_filter_minimum():
    """Two beats at 6000 bpm are two samples at 70 Hz; the envelope's filter needs 28: said as such, no scipy text."""
    with pytest.raises(BadItemError, match=r"^recording too short to segment: 10 samples, fewer than the envelope's "
                                           r"band-pass filter takes \(needs at least 28\)$"):
        SegmentCycles(heart_rate=(3000, 6000))({"signal": np.ones(10, np.int16), "sample_rate": 70})


# --- arrays ---------------------------------------------------------------------------------------------------------


def test_a_one_dimensional_big_endian_column_keeps_its_byte_order(tmp_path):
    """A 1-D >i4 .npy was stored <i4 while the manifest's params said >i4 (2-D ones kept >i4)."""
    np.save(tmp_path / "be.npy", (np.arange(5) * 70000).astype(">i4"))
    np.savez(tmp_path / "mixed.npz", wide=(np.arange(4) - 2**40).astype(">i8"), small=np.arange(4, dtype="<u2"))
    cache = _build(tmp_path / "be.npy", tmp_path / "out")
    params = cache.manifest["fingerprint"]["inputs"]["source"]["params"]["dtypes"]
    assert cache.manifest["columns"]["be"]["dtype"] == params["be"] == ">i4"
    assert cache[3]["be"].dtype == np.dtype(">i4") and int(cache[3]["be"]) == 210000
    npz = _build(tmp_path / "mixed.npz", tmp_path / "npz")
    assert npz.manifest["columns"]["wide"]["dtype"] == ">i8" and npz.manifest["columns"]["small"]["dtype"] == "<u2"
    assert [int(npz[i]["wide"]) for i in range(4)] == [-(2**40), 1 - 2**40, 2 - 2**40, 3 - 2**40]


# --- audio files ----------------------------------------------------------------------------------------------------


def test_channel_all_keeps_files_of_different_channel_counts_ragged(tmp_path):
    """What the audio docstring now says (it said every file needs the first one's channel count)."""
    (tmp_path / "src" / "c").mkdir(parents=True)
    mono, stereo = np.linspace(-0.5, 0.5, 300), np.stack([np.linspace(-0.5, 0.5, 200)] * 2, axis=1) * [1, -1]
    sf.write(tmp_path / "src" / "c" / "a.wav", mono, 8000, subtype="PCM_16")
    sf.write(tmp_path / "src" / "c" / "b.wav", stereo, 8000, subtype="PCM_16")
    cache = _build(tmp_path / "src", tmp_path / "out", source_options=SourceOptions(channel="all"))
    assert [cache[i]["signal"].shape for i in range(2)] == [(300, 1), (200, 2)]
    np.testing.assert_array_equal(cache[1]["signal"], sf.read(tmp_path / "src" / "c" / "b.wav", dtype="int16")[0])


def _unsized(path, tail=b""):
    """``path`` with its data chunk's size set to 0, as a streaming writer killed before it wrote the size leaves it."""
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4: at + 8] = struct.pack("<I", 0)
    path.write_bytes(bytes(data) + tail)
    return len(data) - at - 8


@pytest.mark.parametrize("subtype, tail", [("PCM_16", b"\x01"), ("FLOAT", b""),
                                           ("PCM_16", b"LIST" + struct.pack("<I", 18) + b"INFOISFT" + bytes(10))])
def test_a_wav_whose_data_chunk_says_zero_bytes_is_a_bad_item_that_says_so(tmp_path, subtype, tail):
    """libsndfile reads such a file as empty: it was baked as an empty signal, kept, with no word. Where its audio
    ends cannot be known (the frames, then a LIST chunk: reading to the end took the chunk for samples), so it is a
    bad item naming the repair."""
    (tmp_path / "src" / "c").mkdir(parents=True)
    x = np.stack([np.linspace(-0.5, 0.5, 1000)] * 2, axis=1) * [1, -1]
    for name in ("ok.wav", "size0.wav"):
        sf.write(tmp_path / "src" / "c" / name, x, 8000, subtype=subtype)
    follow = _unsized(tmp_path / "src" / "c" / "size0.wav", tail=tail)
    cache = _build(tmp_path / "src", tmp_path / "out", source_options=SourceOptions(channel="all"))
    assert cache.source_keys == ["c/ok.wav"]
    [skipped] = cache.manifest["skipped"]
    assert skipped["key"] == "c/size0.wav"
    assert f"says the audio is 0 bytes, but {follow + len(tail):,} bytes follow" in skipped["reason"]
    assert "sox's ignore-length option" in skipped["reason"]


def test_an_rf64_whose_data_size_is_zero_is_a_bad_item(tmp_path):
    """RF64 keeps the data size in its ds64 chunk: 0 there, with frames after the data chunk, was an empty signal."""
    (tmp_path / "src" / "c").mkdir(parents=True)
    path = tmp_path / "src" / "c" / "big.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 500), 8000, subtype="PCM_16", format="RF64")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RF64"
    at = data.find(b"ds64")
    data[at + 16: at + 24] = struct.pack("<Q", 0)  # ds64: riff size (8 bytes), then the data size
    path.write_bytes(bytes(data))
    sf.write(tmp_path / "src" / "c" / "ok.wav", np.linspace(-0.5, 0.5, 500), 8000, subtype="PCM_16", format="RF64")
    cache = _build(tmp_path / "src", tmp_path / "out")
    assert cache.source_keys == ["c/ok.wav"] and "says the audio is 0 bytes" in cache.manifest["skipped"][0]["reason"]
    np.testing.assert_array_equal(cache[0]["signal"], sf.read(tmp_path / "src" / "c" / "ok.wav", dtype="int16")[0])


def test_an_empty_wav_followed_by_metadata_stays_empty_without_a_note(tmp_path):
    """What follows a 0-byte data chunk is read as audio only when it is not a chain of chunks to the file's end."""
    (tmp_path / "src" / "c").mkdir(parents=True)
    sf.write(tmp_path / "src" / "c" / "one.wav", np.full(10, 0.25), 8000, subtype="PCM_16")
    sf.write(tmp_path / "src" / "c" / "empty.wav", np.zeros(0), 8000, subtype="PCM_16")
    _unsized(tmp_path / "src" / "c" / "empty.wav", tail=b"LIST" + struct.pack("<I", 5) + b"INFOx\x00")
    cache = _build(tmp_path / "src", tmp_path / "out")
    assert cache[cache.source_keys.index("c/empty.wav")]["signal"].shape == (0,)
    assert not _notes(cache, "data chunk")
