"""Files read by what they are (issue 26 part 3): each test is an attack that the code before failed, on real
files the field's packages ship (nibabel, pydicom, scipy, h5py) or that Pillow, soundfile and h5py write here."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.formats import formats
from benchmarks.trials.shipped import (
    DICOM_UNNAMED,
    nibabel_data,
    pydicom_file,
    reference,
    scipy_data,
    written_audio,
    written_images,
    written_volumes,
)
from prebake.cli import main
from prebake.errors import SourceError
from prebake.sources import SourceOptions, detect

nib = pytest.importorskip("nibabel")
pytest.importorskip("pydicom")
sf = pytest.importorskip("soundfile")
h5py = pytest.importorskip("h5py")


def _build(source, out, **kw):
    return prebake.build(source, out, workers=0, progress=False, **kw)


def _table(path: Path, rows: list[str]) -> Path:
    path.write_text("path,label\n" + "".join(f"{r},{k % 2}\n" for k, r in enumerate(rows)))
    return path


# -- DICOM without .dcm, nibabel's formats, CIFTI ------------------------------------------------------------

def test_dicom_exports_without_a_suffix_are_read_as_dicom_in_tables_and_folders(tmp_path):
    names = [n for n in DICOM_UNNAMED if "/CT" in n]  # the 16 x 16 int16 slices: one shape, one dtype
    for n in names:
        shutil.copy(pydicom_file(n), tmp_path / Path(n).name)
        (tmp_path / "scans" / "ct").mkdir(parents=True, exist_ok=True)
        shutil.copy(pydicom_file(n), tmp_path / "scans" / "ct" / Path(n).name)
    table = _build(_table(tmp_path / "t.csv", [Path(n).name for n in names]), tmp_path / "c1")
    folder = _build(tmp_path / "scans", tmp_path / "c2", kind="volumes")
    assert len(table) == len(names) and len(folder) == len(names)
    for k, n in enumerate(names):
        ref = reference(pydicom_file(n), "volume")
        np.testing.assert_array_equal(table[k]["image"], ref["image"])
        np.testing.assert_array_equal(folder[k]["image"], ref["image"])


@pytest.mark.parametrize("name", ["test.mgz", "minc1_4d.mnc", "minc2_1_scale.mnc", "small.mnc", "tinypet.v",
                                  "phantom_varscale.PAR", "example4d+orig.HEAD", "scaled+tlrc.HEAD"])
def test_nibabels_other_formats_are_read_in_tables_and_folders(tmp_path, name):
    folder = tmp_path / "scans" / "a"
    folder.mkdir(parents=True)
    for f in nibabel_data().glob(name.split(".")[0] + ".*"):
        shutil.copy(f, folder / f.name)
    ref = reference(nibabel_data() / name, "volume")
    for source in (detect(_table(tmp_path / "t.csv", [f"scans/a/{name}"]))[""], detect(tmp_path / "scans")[""]):
        assert source.keys()[0].endswith(name)
        item = source.read(0)
        np.testing.assert_array_equal(item["image"], ref["image"])
        np.testing.assert_array_equal(item["affine"], ref["affine"])


def test_analyze_and_nifti_pairs_are_one_item_each_with_nibabels_values(tmp_path):
    written = [p for p, _ in written_volumes(tmp_path / "scans" / "a")]
    source = detect(tmp_path / "scans")[""]
    assert sorted(source.keys()) == sorted(f"a/{p.name}" for p in written)  # one item per .hdr + .img pair
    for k, key in enumerate(source.keys()):
        np.testing.assert_array_equal(source.read(k)["image"], reference(tmp_path / "scans" / key, "volume")["image"])


def test_cifti_named_without_its_suffix_is_refused_as_no_volume(tmp_path):
    shutil.copy(nibabel_data() / "row_major.dconn.nii", tmp_path / "conn")
    shutil.copy(nibabel_data() / "anatomical.nii", tmp_path / "anat")
    cache = _build(_table(tmp_path / "t.csv", ["conn", "anat"]), tmp_path / "c")
    assert len(cache) == 1
    reason = cache.manifest["skipped"][0]["reason"]
    assert "Cifti2Image" in reason and "not a volume" in reason, reason


def test_a_lone_data_half_is_refused_naming_its_header(tmp_path):
    (tmp_path / "s" / "a").mkdir(parents=True)
    shutil.copy(nibabel_data() / "phantom_varscale.REC", tmp_path / "s" / "a" / "p.REC")
    source = detect(tmp_path / "s", kind="volumes")[""]
    with pytest.raises(prebake.BadItemError, match=r"p\.PAR is missing"):
        source.read(0)


# -- audio in tables, every libsndfile format, WAV blockAlign ----------------------------------------------------

def test_a_table_of_recordings_is_read_as_audio_detected_or_asked(tmp_path):
    wavs = [scipy_data() / n for n in ("test-44100Hz-le-1ch-4bytes.wav", "test-44100Hz-be-1ch-4bytes.wav")]
    table = _table(tmp_path / "t.csv", [str(w) for w in wavs])
    for k, kind in enumerate((None, "audio")):
        cache = _build(table, tmp_path / f"c{k}", kind=kind, source_options=SourceOptions(audio_dtype="float32"))
        assert {"signal", "sample_rate", "label"} <= set(cache.manifest["columns"]) and len(cache) == 2
        for i, w in enumerate(wavs):
            np.testing.assert_array_equal(np.asarray(cache[i]["signal"]), reference(w, "audio")["signal"])


def test_every_format_libsndfile_decodes_is_an_item_of_an_audio_folder(tmp_path):
    made = written_audio(tmp_path / "rec" / "a")
    source = detect(tmp_path / "rec", kind="audio", options=SourceOptions(audio_dtype="float32"))[""]
    assert len(source.keys()) == len(made) >= 20
    by_key = dict(zip(source.keys(), range(len(made))))
    for fmt, path in made.items():
        item = source.read(by_key[f"a/{path.name}"])
        np.testing.assert_array_equal(item["signal"], reference(path, "audio")["signal"], err_msg=fmt)


def test_a_wav_with_a_wrong_block_align_is_read_not_called_truncated(tmp_path):
    ref, _ = sf.read(scipy_data() / "test-8000Hz-le-3ch-5S-24bit-inconsistent.wav", dtype="float32", always_2d=True)
    signal, _ = prebake.sources.audio.read_audio(scipy_data() / "test-8000Hz-le-3ch-5S-24bit-inconsistent.wav",
                                                 "mix", "float32")
    assert len(signal) == len(ref) == 5
    path = tmp_path / "w.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 300).reshape(100, 3), 8000, subtype="PCM_24")
    data = bytearray(path.read_bytes())
    at = data.index(b"fmt ") + 8 + 12
    data[at : at + 2] = struct.pack("<H", 4)  # blockAlign 4 where 3 channels of 3 bytes need 9
    path.write_bytes(bytes(data))
    signal, _ = prebake.sources.audio.read_audio(path, "mix", "float32")
    assert len(signal) == 100


def test_gif_frames_in_an_image_folder_first_frame_kept_others_counted(tmp_path):
    for p in written_images(tmp_path / "made"):
        if p.suffix in (".gif", ".pgm"):
            (tmp_path / "img" / "a").mkdir(parents=True, exist_ok=True)
            shutil.copy(p, tmp_path / "img" / "a" / p.name)
    cache = _build(tmp_path / "img", tmp_path / "c", steps=[prebake.steps.Resize(8)])
    assert len(cache) == 2  # before: the GIF was not an item at all
    notes = cache.manifest.get("notes", [])
    assert any("first frame" in n["what"] and n["count"] == 2 for n in notes), notes


# -- HDF5 ------------------------------------------------------------------------------------------------------

def _h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        beats = f.create_dataset("beats", (5,), dtype=h5py.vlen_dtype(np.float32))
        for i in range(5):
            beats[i] = np.arange(i + 1, dtype=np.float32) * (i + 1)
        table = np.zeros(5, dtype=[("age", "i4"), ("weights", "f4", (2,))])
        table["age"], table["weights"][:, 1] = np.arange(5) + 40, 0.5
        f["patient"] = table
        f["heart rate (bpm)"] = np.arange(5, dtype=np.float64) + 60
        f["label"] = np.arange(5) % 2
        train = f.create_group("train")
        train["x"], train["y"] = np.ones((3, 2, 2), np.float32), np.arange(3)
    return path


def test_hdf5_vlen_compound_and_odd_names_become_columns(tmp_path):
    cache = _build(_h5(tmp_path / "d.h5"), tmp_path / "c")
    columns = cache.manifest["columns"]
    assert {"beats", "patient_age", "patient_weights", "heart_rate_bpm", "label"} <= set(columns)
    assert columns["beats"]["ragged"]
    with h5py.File(tmp_path / "d.h5") as f:
        for i in range(5):
            np.testing.assert_array_equal(np.asarray(cache[i]["beats"]), f["beats"][i])
            assert int(cache[i]["patient_age"]) == f["patient"]["age"][i]
    params = cache.manifest["fingerprint"]["inputs"]["source"]["params"]
    assert params["renamed"] == {"heart_rate_bpm": "heart rate (bpm)"}


def test_hdf5_datasets_under_a_group_by_option_or_by_path(tmp_path):
    path = _h5(tmp_path / "d.h5")
    by_option = _build(path, tmp_path / "c1", source_options=SourceOptions(hdf5_group="train"))
    by_path = _build(tmp_path / "d.h5" / "train", tmp_path / "c2")
    for cache in (by_option, by_path):
        assert len(cache) == 3 and {"x", "y"} <= set(cache.manifest["columns"])
    assert main(["build", str(path), str(tmp_path / "c3"), "--hdf5-group", "train", "--workers", "0"]) == 0


def test_an_hdf5_file_of_groups_only_is_refused_naming_them(tmp_path):
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.create_group("train")["x"] = np.ones(4)
    with pytest.raises(SourceError, match="train"):
        detect(tmp_path / "k.h5")


# -- .npz 0-d entries --------------------------------------------------------------------------------------------

def test_npz_scalars_become_attributes_and_a_sparse_matrix_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((4, 3), np.float32), y=np.arange(4), sample_rate=np.int64(16000))
    cache = _build(tmp_path / "a.npz", tmp_path / "c")
    assert cache.manifest["fingerprint"]["inputs"]["source"]["params"]["attributes"] == {"sample_rate": 16000}
    scipy_sparse = pytest.importorskip("scipy.sparse")
    scipy_sparse.save_npz(tmp_path / "s.npz", scipy_sparse.csr_matrix(np.eye(3)))
    with pytest.raises(SourceError, match="save_npz"):
        detect(tmp_path / "s.npz")


# -- NaN voxels ----------------------------------------------------------------------------------------------------

def test_nan_voxels_are_refused_naming_nan_fill_or_filled_and_counted(tmp_path):
    shutil.copy(nibabel_data() / "resampled_anat_moved.nii", tmp_path / "moved.nii")  # NaN background, as shipped
    shutil.copy(nibabel_data() / "resampled_anat_moved.nii", tmp_path / "other.nii")
    table = _table(tmp_path / "t.csv", ["moved.nii", "other.nii"])
    with pytest.raises(SourceError, match="fill them with `nan_fill=0`"):  # every row refused, each naming the option
        _build(table, tmp_path / "c1")
    filled = _build(table, tmp_path / "c2", source_options=SourceOptions(nan_fill=-1.0))
    ref = np.asanyarray(nib.load(tmp_path / "moved.nii").dataobj)
    np.testing.assert_array_equal(np.asarray(filled[0]["image"])[0], np.where(np.isfinite(ref), ref, -1.0))
    notes = filled.manifest["notes"]
    assert notes[0]["count"] == 2 * int((~np.isfinite(ref)).sum()) and "nan_fill" in notes[0]["what"]
    assert "NaN or infinite voxels" in (tmp_path / "c2" / "build.log").read_text()


# -- silent loss counted -------------------------------------------------------------------------------------------

def test_float_samples_beyond_full_scale_48_bit_colour_and_tiff_pages_are_counted(tmp_path):
    (tmp_path / "rec" / "a").mkdir(parents=True)
    sf.write(tmp_path / "rec" / "a" / "loud.wav", np.linspace(-2, 2, 400).astype(np.float32), 8000, subtype="FLOAT")
    loud = _build(tmp_path / "rec", tmp_path / "c1")
    assert loud.manifest["notes"][0]["count"] == int((np.abs(np.linspace(-2, 2, 400).astype(np.float32)) > 1).sum())
    assert "audio_dtype" in loud.manifest["notes"][0]["what"]
    (tmp_path / "img" / "a").mkdir(parents=True)
    _png48(tmp_path / "img" / "a" / "deep.png")
    pages = next(p for p in written_images(tmp_path / "made") if p.suffix == ".tif")
    shutil.copy(pages, tmp_path / "img" / "a" / "pages.tif")
    images = _build(tmp_path / "img", tmp_path / "c2", steps=[prebake.steps.Resize(8)])
    whats = " | ".join(n["what"] for n in images.manifest["notes"])
    assert "8 bits per channel" in whats and "first frame" in whats, whats
    assert "warning:" in (tmp_path / "c2" / "build.log").read_text()


def _png48(path: Path) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow writes no such file, and decodes it at 8 bits)."""
    import zlib

    a = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 700).astype(">u2")
    raw = b"".join(b"\0" + a[y].tobytes() for y in range(6))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 5, 6, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
                     chunk(b"IEND", b""))
    return path


# -- start-up: what the steps import, once before the fork ----------------------------------------------------------

def _saw_scipy_signal(item):
    """Whether this worker had scipy.signal before its first BandPass ran (a module-level step: workers inherit it)."""
    item["preloaded"] = np.int8("scipy.signal" in sys.modules)
    return item


def test_the_workers_inherit_what_the_steps_import_instead_of_importing_it_each(tmp_path):
    pytest.importorskip("scipy")
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
import numpy as np, soundfile as sf
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.steps import BandPass, compile_steps
from tests.faults.test_formats import _saw_scipy_signal
for k in range(6):
    (p := __import__("pathlib").Path({str(tmp_path)!r}) / "rec" / f"c{{k % 2}}").mkdir(parents=True, exist_ok=True)
    sf.write(p / f"{{k}}.wav", np.zeros(800, np.float32), 8000, subtype="PCM_16")
assert "scipy.signal" not in sys.modules
steps = compile_steps([_saw_scipy_signal, BandPass(100, 1000)])  # Resample needs no scipy
build_all(resolve_sources({str(tmp_path / "rec")!r}), {str(tmp_path / "c")!r},
          BuildOptions(steps, workers=2, chunk_rows=1))
print(sorted(np.load({str(tmp_path / "c" / "preloaded.npy")!r}).tolist()))
"""
    import subprocess

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[1, 1, 1, 1, 1, 1]", out.stdout


# -- the trial --------------------------------------------------------------------------------------------------------

def test_formats_trial_real_files_renamed_and_truncated(tmp_path):
    row = formats(tmp_path, trials=240, seed=3)
    assert row.failures == 0, json.dumps(row.to_json(), indent=1)
    assert row.trials == 240
