"""Options, config files, resources and volume geometry (issue 25, items 3, 11 and 12).

Bad option values are refused before any work in all three front ends; hostile config
files are OptionErrors naming the file; hostile volume headers are bad items, refused
from the header before anything is allocated; the number of workers is capped.
"""

from __future__ import annotations

import logging
import random
import re

import numpy as np
import pytest

import prebake
from benchmarks.trials.options_resources import (
    BAD_VALUES,
    CONFIG_KINDS,
    FRONTS,
    GREW_LIMIT_KIB,
    Data,
    cli_tokens,
    config_refused,
    hostile_config,
    in_child,
    options_resources,
    python_call,
    refused_before_work,
    volume_refused,
)
from benchmarks.trials.volumefiles import VOLUME_KINDS, hostile_volume, write_dicom, write_nifti
from prebake.bake.api import prepare
from prebake.cli import main
from prebake.config import check_settings
from prebake.errors import BadItemError, OptionError
from prebake.settings import build_kwargs
from prebake.steps import CropOrPad, Spacing


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return Data(tmp_path_factory.mktemp("data"))


def test_chunk_rows_minus_one_is_refused_before_work_in_python_the_cli_and_a_config_file(data, capsys):
    out = data.fresh() / "out"
    with pytest.raises(OptionError, match=r"`chunk_rows` is -1, out of range: it takes an integer >= 1"):
        prebake.build(data.images, out, chunk_rows=-1, workers=0)
    assert main(["build", str(data.images), str(out), "--chunk-rows", "-1"]) == 2
    assert "error: prebake build: --chunk-rows is -1, out of range" in capsys.readouterr().err
    cfg = out.parent / "bake.yaml"
    cfg.write_text(f"source: {data.images}\nout: {out}\nchunk-rows: -1\n")
    with pytest.raises(OptionError, match=r"bake.yaml: chunk-rows is -1, out of range: it takes an integer >= 1"):
        prebake.load_config(cfg)
    assert main(["build", "--config", str(cfg)]) == 2 and "bake.yaml: chunk-rows is -1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("front", FRONTS)
def test_every_bad_option_value_is_refused_before_work(data, front):
    """Each value of BAD_VALUES (0, negatives, NaN, inf, bools, strings, unordered pairs), through ``front``.

    In a child under a memory limit: an image_size of 10^6 accepted would ask for terabytes.
    """
    def attempt() -> str | None:
        tried = [(key, value) for key, values in BAD_VALUES.items() for value in values
                 if (front != "cli" or cli_tokens(value) is not None)
                 and (front != "python" or python_call(key, value, data.images, data.root / "never") is not None)]
        problems = [f"{key}={value!r}: {p}" for key, value in tried
                    if (p := refused_before_work(front, key, value, data.images, data.fresh() / "out")) is not None]
        return "; ".join(problems[:8]) or None

    problem, _ = in_child(attempt, timeout=300)
    assert problem is None, problem


def test_numpy_numbers_are_numbers(data):
    """A value from numpy (np.int64(16), np.float32(2.5)) is checked as the number it is, not refused by its type."""
    given = check_settings({"source": str(data.images), "out": "o", "image_size": np.int64(16),
                            "lock_timeout": np.float32(2.5)})
    assert given["image_size"] == 16 and type(given["image_size"]) is int and given["lock_timeout"] == 2.5
    with pytest.raises(OptionError, match=r"`image_size` is -16, out of range"):
        check_settings({"image_size": np.int64(-16)})


def test_a_million_workers_are_capped_with_a_warning_that_says_why(data, caplog):
    given = check_settings({"source": str(data.images), "out": str(data.root / "never"), "workers": 10**6})
    with caplog.at_level(logging.WARNING, logger="prebake"):
        workers = prepare(**build_kwargs(given))[2].workers
    assert 1 <= workers <= 256 and workers < 10**6
    assert f"`workers=1000000` is more than this machine can use: using {workers}" in caplog.text
    assert prepare(**build_kwargs({**given, "workers": 2}))[2].workers == 2  # below the cap: as given


@pytest.mark.parametrize("kind", CONFIG_KINDS)
@pytest.mark.parametrize("via_cli", [False, True], ids=["load_config", "cli"])
def test_a_hostile_config_file_is_an_option_error_naming_the_file(data, kind, via_cli):
    d = data.fresh()
    path = hostile_config(d, kind, random.Random(0))
    problem, grew = in_child(lambda: config_refused(path, via_cli, d), timeout=30)
    assert problem is None, problem
    assert grew < GREW_LIMIT_KIB


@pytest.mark.parametrize("kind, want", [
    ("fifo", r"bake.yaml is not a regular file \(a FIFO\); a config file is a YAML, JSON or TOML file on disk"),
    ("directory", r"bake.yaml is not a regular file \(a directory\)"),
    ("too-big", r"bake.yaml is [\d,]+ bytes, over the 1,048,576 bytes a config file may hold"),
    ("not-utf8", r"bake.yaml is not UTF-8 text \(byte 0xe9 at offset 11\); save it as UTF-8"),
    ("alias-bomb", r"bake.yaml: YAML aliases \(\*x0\) are not allowed in a config file; write the value out"),
    ("deep-json", r"bake.json nests lists or mappings deeper than Python can parse"),
])
def test_config_messages_name_the_file_and_the_fix(data, kind, want):
    path = hostile_config(data.fresh(), kind, random.Random(0))

    def attempt() -> str | None:  # in a child: a FIFO opened for reading waits for a writer forever
        try:
            prebake.load_config(path)
        except OptionError as e:
            return None if re.search(want, str(e)) else str(e)
        return "accepted"

    problem, _ = in_child(attempt, timeout=30)
    assert problem is None, problem


@pytest.mark.parametrize("kind", VOLUME_KINDS)
def test_a_hostile_volume_header_is_a_bad_item_read_without_allocating_it(data, kind):
    path, want = hostile_volume(data.fresh(), kind, random.Random(0))
    problem, grew = in_child(lambda: volume_refused(path, want), timeout=60)
    assert problem is None, problem
    assert grew < GREW_LIMIT_KIB  # the 1200^3 header alone asked for 3.3 GB


def test_the_oversized_header_reason_names_the_shape_the_limit_and_the_option(tmp_path):
    from prebake.sources.volume_readers import read_volume

    path = write_nifti(tmp_path / "big.nii.gz", (1200, 1200, 1200), data_bytes=8192)
    want = ("big.nii.gz declares 1200 x 1200 x 1200 = 1,728,000,000 voxels of int16, over the limit of 1,073,741,824 "
            "(reading it would take 3,456,000,000 bytes); raise `max_voxels` to bake it")

    def attempt() -> str | None:  # in a child under a memory limit: reading it would allocate 3.5 GB
        try:
            read_volume(path)
        except BadItemError as e:
            return None if e.reason == want else e.reason
        return "read"

    problem, _ = in_child(attempt)
    assert problem is None, problem


def _scans(tmp_path, shapes):
    for i, shape in enumerate(shapes):
        (tmp_path / "scans" / "a").mkdir(parents=True, exist_ok=True)
        write_nifti(tmp_path / "scans" / "a" / f"v{i}.nii", shape)
    return tmp_path / "scans"


def test_max_voxels_is_an_option_of_python_and_the_cli(tmp_path, capsys):
    scans = _scans(tmp_path, [(4, 5, 6), (2, 2, 2)])
    cache = prebake.build(scans, tmp_path / "c", [CropOrPad((2, 2, 2))], workers=0,
                          source_options=prebake.SourceOptions(max_voxels=100))
    assert len(cache) == 1 and "over the limit of 100" in cache.manifest["skipped"][0]["reason"]
    assert main(["build", str(scans), str(tmp_path / "d"), "--max-voxels", "100", "--volume-shape", "2", "2", "2",
                 "--workers", "0", "-q"]) == 0
    assert "raise `max_voxels` to bake it" in prebake.open(tmp_path / "d").manifest["skipped"][0]["reason"]
    assert len(prebake.build(scans, tmp_path / "e", [CropOrPad((2, 2, 2))], workers=0,
                             source_options=prebake.SourceOptions(max_voxels=120))) == 2


_SHEAR = np.array([[2.0, 2.0, 0, 0], [0, 0, 0, 0], [0, 0, 2.0, 0]])  # voxel axes 0 and 1 point the same way
BAD_GEOMETRY = {  # file maker, and what its reason says
    "zero-length axis": (lambda p: write_nifti(p.with_suffix(".nii"), (4, 0, 6)), "with a zero-length axis"),
    "pixdim 0": (lambda p: write_nifti(p.with_suffix(".nii"), (4, 5, 6), pixdim=(0.0, 2, 2)), "pixdim[1] is 0"),
    "pixdim -2": (lambda p: write_nifti(p.with_suffix(".nii"), (4, 5, 6), pixdim=(2, -2.0, 2), qform=0),
                  "pixdim[2] is -2"),
    "pixdim NaN": (lambda p: write_nifti(p.with_suffix(".nii"), (4, 5, 6), pixdim=(2, 2, float("nan"))),
                   "pixdim[3] is nan"),
    "singular sform": (lambda p: write_nifti(p.with_suffix(".nii"), (4, 5, 6), qform=0, sform=1, srow=_SHEAR),
                       "the voxel-to-world affine is singular"),
    "NaN sform": (lambda p: write_nifti(p.with_suffix(".nii"), (4, 5, 6), qform=0, sform=1,
                                        srow=np.full((3, 4), np.nan)), "affine is not 4 x 4 finite numbers"),
    "DICOM PixelSpacing 0": (lambda p: write_dicom(p.with_suffix(".dcm"), PixelSpacing=[0, 0.66]),
                             "PixelSpacing is 0 0.66"),
    "DICOM collinear axes": (lambda p: write_dicom(p.with_suffix(".dcm"), ImageOrientationPatient=[1, 0, 0, 1, 0, 0]),
                             "the voxel-to-world affine is singular"),
}


@pytest.mark.parametrize("kind", sorted(BAD_GEOMETRY))
def test_a_build_of_only_bad_geometry_fails_and_commits_nothing(tmp_path, kind):
    """Cropped or padded to one shape, as a real pipeline would: before, each was kept (an all-padding volume, 1 mm)."""
    make, reason = BAD_GEOMETRY[kind]
    (tmp_path / "scans" / "a").mkdir(parents=True)
    for i in range(2):
        make(tmp_path / "scans" / "a" / f"bad{i}")
    with pytest.raises(prebake.errors.SourceError, match=re.escape(reason)):
        prebake.build(tmp_path / "scans", tmp_path / "out", [CropOrPad((4, 4, 4))], workers=0)
    assert not (tmp_path / "out").exists()


def test_bad_geometry_is_skipped_beside_good_volumes(tmp_path):
    (tmp_path / "scans" / "a").mkdir(parents=True)
    for i, (make, _) in enumerate(BAD_GEOMETRY.values()):
        make(tmp_path / "scans" / "a" / f"bad{i}")
    write_nifti(tmp_path / "scans" / "a" / "good.nii", (4, 5, 6))
    cache = prebake.build(tmp_path / "scans", tmp_path / "out", [CropOrPad((4, 4, 4))], workers=0)
    reasons = sorted(s["reason"] for s in cache.manifest["skipped"])
    assert len(cache) == 1 and len(reasons) == len(BAD_GEOMETRY)
    assert all(any(want in r for r in reasons) for _, want in BAD_GEOMETRY.values()), reasons


def test_resampling_to_a_spacing_over_max_voxels_is_a_bad_item(tmp_path):
    scans = _scans(tmp_path, [(4, 5, 6)])

    def attempt() -> str | None:
        try:
            prebake.build(scans, tmp_path / "c", [Spacing((0.002, 0.002, 0.002))], workers=0)
        except prebake.errors.PrebakeError as e:
            return None if "over the limit of 1,073,741,824" in str(e) else str(e)
        return "built"

    problem, grew = in_child(attempt, timeout=60)
    assert problem is None, problem
    assert grew < GREW_LIMIT_KIB


def test_the_bad_values_cover_every_numeric_setting():
    from prebake.config import BUILD_KEYS

    numeric = {k.name for k in BUILD_KEYS if k.type in ("int", "float", "pair", "float3", "int3")}
    assert numeric <= set(BAD_VALUES), numeric - set(BAD_VALUES)


def test_a_geometry_check_keeps_real_files(tmp_path):
    """The nibabel and pydicom sample files still read (their headers are sane)."""
    import nibabel
    from pydicom.data import get_testdata_file

    from prebake.sources.volume_readers import read_volume

    data = __import__("pathlib").Path(nibabel.__file__).parent / "tests" / "data"
    for path in [data / "example4d.nii.gz", data / "anatomical.nii", data / "standard.nii.gz",
                 get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")]:
        item = read_volume(path)
        assert item["image"].size > 0 and np.isfinite(item["affine"]).all()


def test_the_trial_tries_every_family_without_a_failure(tmp_path):
    row = options_resources(tmp_path, trials=12, seed=1)
    assert row.trials == 12 and row.failures == 0, row.examples
