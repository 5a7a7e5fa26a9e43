"""Audio as libsndfile reads it: scipy's shipped WAV files (big-endian, RF64, WAVEX, u-law, 24-bit, odd bit
depths, a wrong blockAlign) and one file of every format soundfile writes here, in audio folders and in CSV
tables (detected from the rows' content, or asked with kind="audio"); the samples equal soundfile's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from benchmarks.trials.shipped import SCIPY_WAVS, reference, scipy_data, written_audio, written_images
from prebake.errors import BadItemError
from prebake.sources import SourceOptions, detect
from prebake.sources.audio import read_audio

sf = pytest.importorskip("soundfile", reason="audio is read through soundfile: pip install soundfile")
pytest.importorskip("scipy", reason="the shipped WAV files are scipy's")
FLOAT = SourceOptions(audio_dtype="float32")
UNREADABLE = ("test-44100Hz-le-1ch-4bytes-early-eof-no-data.wav", "test-44100Hz-le-1ch-4bytes-incomplete-chunk.wav",
              "test-8000Hz-le-3ch-5S-36bit.wav", "test-8000Hz-le-3ch-5S-45bit.wav", "test-8000Hz-le-3ch-5S-53bit.wav",
              "test-8000Hz-le-3ch-5S-64bit.wav", "test-44100Hz-le-1ch-4bytes-early-eof.wav")


@pytest.mark.parametrize("name", SCIPY_WAVS)
def test_each_readable_scipy_wav_equals_soundfile(name):
    signal, rate = read_audio(scipy_data() / name, "mix", "float32")
    ref = reference(scipy_data() / name, "audio")
    np.testing.assert_array_equal(signal, ref["signal"])
    assert rate == ref["sample_rate"]


@pytest.mark.parametrize("name", UNREADABLE)
def test_a_wav_libsndfile_cannot_read_or_that_is_cut_is_a_bad_item_with_a_reason(name):
    with pytest.raises(BadItemError, match="not a readable audio file|truncated WAV"):
        read_audio(scipy_data() / name, "mix", "int16")


def test_every_written_format_in_a_folder_and_a_table(tmp_path):
    made = written_audio(tmp_path / "rec" / "a")
    rows = "".join(f"rec/a/{p.name},0\n" for p in made.values())
    (tmp_path / "t.csv").write_text("path,label\n" + rows)
    for source in (detect(tmp_path / "rec", kind="audio", options=FLOAT)[""], detect(tmp_path / "t.csv",
                                                                                     options=FLOAT)[""]):
        assert source.ragged_columns == ("signal",) and len(source.keys()) == len(made)
        for i, key in enumerate(source.keys()):
            path = tmp_path / "rec" / "a" / key.rsplit("/", 1)[-1]
            np.testing.assert_array_equal(source.read(i)["signal"], reference(path, "audio")["signal"], err_msg=key)


def test_a_recording_named_without_a_suffix_is_an_item_of_an_audio_folder(tmp_path):
    (tmp_path / "rec" / "a").mkdir(parents=True)
    shutil.copy(scipy_data() / "test-44100Hz-le-1ch-4bytes.wav", tmp_path / "rec" / "a" / "take_01")
    source = detect(tmp_path / "rec", options=FLOAT)[""]
    assert source.kind == "audio" and source.keys() == ["a/take_01"]


def test_an_image_row_in_a_table_of_recordings_is_refused_naming_it(tmp_path):
    image = next(p for p in written_images(tmp_path / "img") if p.suffix == ".png")
    wavs = [scipy_data() / n for n in SCIPY_WAVS[:3]]
    (tmp_path / "t.csv").write_text("path,label\n" + "".join(f"{p},0\n" for p in [*wavs, image]))
    source = detect(tmp_path / "t.csv")[""]
    assert source.reads == "audio"
    with pytest.raises(BadItemError, match="an image file, in a table of audio recordings"):
        source.read(3)


def test_float32_keeps_samples_beyond_full_scale_int16_clips_them(tmp_path):
    path = tmp_path / "loud.wav"
    x = np.linspace(-3, 3, 600).astype(np.float32)
    sf.write(path, x, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(path, "mix", "float32")[0], x)
    assert read_audio(path, "mix", "int16")[0].max() == 32767
