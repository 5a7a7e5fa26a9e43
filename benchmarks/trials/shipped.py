"""Real files that nobody here wrote: the test data nibabel, pydicom, scipy and h5py ship in their wheels (never
downloaded), plus files of every other format written with Pillow and soundfile, and each reference reader's values.

A catalogue entry is ``(path, family)``; :func:`reference` gives what the field's own reader makes of the file,
laid out as prebake's items are: a volume ``(C, D, H, W)`` + affine (nibabel; pydicom through prebake's own reader
of the original file, whose DICOM geometry tests/sources/test_dicom_names.py checks against pydicom), an image
(Pillow's first frame as RGB, or 16-bit grey), audio (soundfile's float samples, channels mixed).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np

#: nibabel's shipped files that it reads, beyond NIfTI: MGZ, MINC-1, MINC-2, PAR/REC, AFNI, ECAT.
NIBABEL_READABLE = ("test.mgz", "minc1_1_scale.mnc", "minc1_4d.mnc", "minc1-no-att.mnc", "tiny.mnc",
                    "minc2_1_scale.mnc", "minc2_4d.mnc", "minc2-4d-d.mnc", "minc2-no-att.mnc", "small.mnc",
                    "phantom_EPI_asc_CLEAR_2_1.PAR", "phantom_varscale.PAR", "example4d+orig.HEAD", "scaled+tlrc.HEAD",
                    "tinypet.v", "anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii",
                    "standard.nii.gz", "reoriented_anat_moved.nii")
#: nibabel's shipped files that are no readable volume, and a fragment of the reason prebake must give.
NIBABEL_REFUSED = {"row_major.dconn.nii": "Cifti2Image", "T1.PAR": "T1.REC", "analyze.hdr": "analyze.img",
                   "nifti1.hdr": "nifti1.img", "phantom_truncated.PAR": "PAR/REC", "bad_datatype+orig.HEAD": "AFNI",
                   "resampled_anat_moved.nii": "nan_fill"}
#: pydicom's shipped files that decode here without extra plugins (single and multi-frame, RLE, big-endian,
#: JPEG baseline, JPEG 2000), and real exports named without a suffix.
DICOM_READABLE = ("CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_expb.dcm",
                  "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle.dcm",
                  "SC_rgb_jpeg_dcmtk.dcm", "rtdose.dcm", "liver_1frame.dcm", "JPEG2000.dcm", "ExplVR_BigEnd.dcm")
DICOM_UNNAMED = ("dicomdirtests/77654033/CR1/6154", "dicomdirtests/77654033/CT2/17106",
                 "dicomdirtests/98892001/CT5N/2062", "dicomdirtests/98892003/MR2/4981")
#: scipy's shipped WAV files that libsndfile reads (the others are refused: tests/sources/test_audio_formats.py).
SCIPY_WAVS = ("test-44100Hz-2ch-32bit-float-be.wav", "test-44100Hz-2ch-32bit-float-le.wav",
              "test-44100Hz-be-1ch-4bytes.wav", "test-44100Hz-le-1ch-4bytes.wav", "test-44100Hz-le-1ch-4bytes-rf64.wav",
              "test-48000Hz-2ch-64bit-float-le-wavex.wav", "test-8000Hz-be-3ch-5S-24bit.wav",
              "test-8000Hz-le-1ch-1byte-ulaw.wav", "test-8000Hz-le-2ch-1byteu.wav", "test-8000Hz-le-3ch-5S-24bit.wav",
              "test-8000Hz-le-3ch-5S-24bit-inconsistent.wav", "test-8000Hz-le-4ch-9S-12bit.wav",
              "test-8000Hz-le-5ch-9S-5bit.wav", "test-1234Hz-le-1ch-10S-20bit-extra.wav")
#: soundfile formats written here, with the suffix each is saved under (libsndfile reads them all back; SD2 is left
#: out: its data lives in a resource fork, so libsndfile cannot read back what it writes on Linux).
AUDIO_FORMATS = {"WAV": ".wav", "WAVEX": ".wav", "W64": ".w64", "RF64": ".rf64", "FLAC": ".flac", "OGG": ".ogg",
                 "AIFF": ".aiff", "AU": ".au", "CAF": ".caf", "AVR": ".avr", "HTK": ".htk", "SVX": ".svx",
                 "PAF": ".paf", "PVF": ".pvf", "SDS": ".sds", "IRCAM": ".sf", "VOC": ".voc",
                 "NIST": ".nist", "XI": ".xi", "MPC2K": ".mpc", "MP3": ".mp3"}


#: Suffixes of the formats whose bytes carry no mark (HTK, MPC 2000): renamed, nothing can tell what they are.
UNMARKED = (".htk", ".mpc")


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def nibabel_data() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


def pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).parent / name


def scipy_data() -> Path:
    import scipy.io

    return Path(scipy.io.__file__).parent / "tests" / "data"


def pair_of(path: Path) -> list[Path]:
    """The file and the other half of its header/data pair (what must move together)."""
    partners = {".PAR": (".REC",), ".HEAD": (".BRIK",), ".hdr": (".img", ".mat")}
    out = [path]
    for head, data in partners.items():
        if path.name.endswith(head):
            stem = path.name[: -len(head)]
            out += [p for ending in data for p in path.parent.glob(stem + ending + "*")]
    return out


def catalogue(work: Path) -> list[tuple[Path, str]]:
    """Every real file of the trial, as ``(path, family)``; files written here go under ``work``."""
    out: list[tuple[Path, str]] = []
    if has("nibabel"):
        out += [(nibabel_data() / n, "volume") for n in NIBABEL_READABLE]
        out += written_volumes(work / "volumes")
    if has("pydicom"):
        out += [(pydicom_file(n), "volume") for n in DICOM_READABLE + DICOM_UNNAMED]
    if has("scipy"):
        out += [(scipy_data() / n, "audio") for n in SCIPY_WAVS]
    if has("soundfile"):
        out += [(p, "audio") for p in written_audio(work / "audio").values()]
    out += [(p, "image") for p in written_images(work / "images")]
    return out


def written_volumes(d: Path) -> list[tuple[Path, str]]:
    """Analyze 7.5, SPM Analyze and NIfTI pairs (no shipped file has its data half), and an MGH, written by nibabel."""
    import nibabel as nib

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    data = rng.integers(-300, 300, (6, 5, 4), dtype=np.int16)
    affine = np.array([[2.0, 0, 0, -5], [0, 3, 0, 4], [0, 0, 4, 1], [0, 0, 0, 1]])
    nib.save(nib.AnalyzeImage(data, affine), d / "analyze.img")
    nib.save(nib.Spm2AnalyzeImage(data, affine), d / "spm.img")
    nib.save(nib.Nifti1Pair(data, affine), d / "pair.img")
    nib.save(nib.MGHImage(data.astype(np.float32) / 7, affine), d / "plain.mgh")
    return [(d / "analyze.hdr", "volume"), (d / "spm.hdr", "volume"), (d / "pair.hdr", "volume"),
            (d / "plain.mgh", "volume")]


def written_images(d: Path) -> list[Path]:
    """One image per format Pillow writes: PNG (8- and 16-bit), JPEG, an animated GIF, a 2-page TIFF, BMP, WebP, PGM."""
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    frames = [Image.fromarray(np.full((20, 30), 40 * k, np.uint8)).convert("P") for k in range(3)]
    out = {"photo.png": lambda p: rgb.save(p), "photo.jpg": lambda p: rgb.save(p, quality=90),
           "grey16.png": lambda p: Image.fromarray(rng.integers(0, 65535, (12, 10), dtype=np.uint16)).save(p),
           "anim.gif": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:]),
           "pages.tif": lambda p: rgb.save(p, save_all=True, append_images=[rgb.rotate(90)]),
           "photo.bmp": lambda p: rgb.save(p), "photo.webp": lambda p: rgb.save(p, lossless=True),
           "grey.pgm": lambda p: rgb.convert("L").save(p)}
    for name, write in out.items():
        write(d / name)
    return [d / n for n in out]


def written_audio(d: Path) -> dict[str, Path]:
    """One recording per soundfile format this libsndfile writes (``{format: path}``), 2 channels where it can."""
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    t = np.arange(800) / 8000
    x = (0.4 * np.stack([np.sin(2 * np.pi * 440 * t), np.cos(2 * np.pi * 220 * t)], axis=1)).astype(np.float32)
    out = {}
    for fmt, suffix in AUDIO_FORMATS.items():
        if fmt not in sf.available_formats():
            continue
        path = d / f"{fmt.lower()}{suffix}"
        for channels in (2, 1):
            try:
                sf.write(path, x[:, :channels], 8000, format=fmt)
                break
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
                path.unlink(missing_ok=True)
        if path.exists():
            out[fmt] = path
    return out


def reference(path: Path, family: str) -> dict[str, Any]:
    """What the field's own reader gives for ``path`` (see the module docstring)."""
    if family == "volume":
        return _volume_reference(path)
    if family == "audio":
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:  # sf.read seeks first: MP3 then decodes other (fuzzy-seek) samples
            rate, x = f.samplerate, f.read(frames=f.frames if not f.seekable() else -1, dtype="float64",
                                           always_2d=True)
        return {"signal": (x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)).astype(np.float32), "sample_rate": rate}
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16"):
            return {"image": np.asarray(im).astype(np.uint16)[None]}
        return {"image": np.asarray(im.convert("RGB"))}


def _volume_reference(path: Path) -> dict[str, Any]:
    from pydicom.misc import is_dicom

    if is_dicom(str(path)):
        from prebake.sources.volume_readers import read_dicom_file

        item = read_dicom_file(path)
        return {"image": item["image"], "affine": item["affine"]}
    import nibabel as nib

    img = nib.ecat.load(path) if path.suffix == ".v" else nib.load(path)
    values = np.asanyarray(img.dataobj)
    names = getattr(getattr(img.dataobj, "minc_file", None), "_dim_names", None)
    if names is not None and values.ndim == 4:  # MINC names its axes: the non-spatial one is the channels
        values = np.moveaxis(values, [i for i, n in enumerate(names) if not str(n).endswith("space")][0], 0)
    else:
        values = values[None] if values.ndim == 3 else np.moveaxis(values, -1, 0)
    return {"image": values, "affine": img.affine}


def copy_as(path: Path, dest: Path) -> Path:
    """``path`` copied to ``dest`` (a pair's other half beside it, under the same new stem)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    stem = dest.name[: -len(_ending(path))] if dest.name.endswith(_ending(path)) else dest.name
    for other in pair_of(path)[1:]:
        shutil.copyfile(other, dest.with_name(stem + _ending(other)))
    return dest


def _ending(path: Path) -> str:
    name = path.name
    for ending in (".BRIK.gz", ".PAR", ".REC", ".HEAD", ".BRIK", ".hdr", ".img", ".mat"):
        if name.endswith(ending):
            return ending
    return path.suffix
