"""prebake's C loops (src/prebake/native.py; benchmarks/trials/native.py): the same values as the Pillow and numpy
ways they stand in for, hostile calls refused, and a build that writes the same bytes with them and without."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.trials.native import bands_of, native_loops, random_image
from prebake import native
from prebake.cache.stats import chunk_stats
from prebake.steps.image import ToCHW

ROOT = Path(__file__).resolve().parents[2]
BUILT = importlib.util.find_spec("prebake._native") is not None  # NATIVE may be off here: PREBAKE_NATIVE=0
needs_native = pytest.mark.skipif(not native.NATIVE, reason="prebake was built without its C extension, or "
                                  "PREBAKE_NATIVE=0")


@needs_native
def test_native_trial(tmp_path: Path) -> None:
    row = native_loops(tmp_path, 150, seed=4)
    assert row.trials == 150 and row.failures == 0, row.examples


@needs_native
def test_an_image_over_pillows_block_is_copied_out_then_laid_out() -> None:
    """Rows in more than one block have no Arrow export (Pillow's 16 MB blocks): the planes come from a copy."""
    img = random_image(np.random.default_rng(5), "RGB", 40).resize((2200, 2100))
    with pytest.raises(ValueError):
        img.__arrow_c_array__()
    assert np.array_equal(native.image_planes(img), bands_of(img))


@needs_native
def test_an_arrow_export_of_another_layout_is_not_read_as_pixels() -> None:
    """An export that is not 4 bytes a pixel (here a grey image's, standing in for a Pillow that exports otherwise)
    is refused by the C loop's checks, and the planes come from a copy of the rows."""
    rgb = random_image(np.random.default_rng(10), "RGB", 60)

    class Exported:
        mode, size = rgb.mode, rgb.size

        def __arrow_c_array__(self):
            return rgb.convert("L").__arrow_c_array__()

        def tobytes(self, *args):
            return rgb.tobytes(*args)

    assert np.array_equal(native.image_planes(Exported()), bands_of(rgb))


@needs_native
def test_planes_of_edge_sizes_and_both_modes() -> None:
    rng = np.random.default_rng(6)
    for mode in ("RGB", "RGBA"):
        for h, w in ((1, 1), (1, 15), (1, 16), (1, 17), (2, 8), (16, 16), (3, 33)):
            img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
            got = ToCHW()({"image": img})["image"]
            assert got.shape == (len(mode), h, w) and got.flags.c_contiguous and got.flags.writeable
            assert np.array_equal(got, bands_of(img)), (mode, h, w)


def test_an_image_of_no_pixels_has_empty_planes() -> None:
    for mode in ("RGB", "RGBA"):
        for size in ((0, 0), (0, 5), (7, 0)):
            got = ToCHW()({"image": Image.new(mode, size)})["image"]
            assert got.shape == (len(mode), size[1], size[0]) and got.dtype == np.uint8


def test_other_modes_and_arrays_take_the_other_way() -> None:
    assert native.image_planes(Image.new("L", (4, 3))) is None
    assert native.byte_stats(np.arange(10, dtype=np.uint16)) is None
    assert native.byte_stats(np.zeros(0, np.uint8)) is None
    assert native.byte_stats(np.zeros(8, np.uint8)[::2]) is None


def test_chunk_stats_agree_with_numpy_for_bytes() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 15, 16, 17, 4095, 4096, 70_001):
        values = rng.integers(3, 250, n, dtype=np.uint8)
        want = [int(values.min()), int(values.max()), int(values.sum(dtype=np.uint64)), n]
        assert chunk_stats(values) == want
        assert chunk_stats(values, bounds_held=True)[2:] == want[2:]


def _build(folder: Path, out: Path, native_on: bool) -> dict:
    code = ("import json, sys, prebake; from prebake import native; prebake.build(sys.argv[1], sys.argv[2], "
            "workers=2, progress=False); print(json.dumps(native.NATIVE))")
    env = {**os.environ, "PREBAKE_NATIVE": "1" if native_on else "0"}
    proc = subprocess.run([sys.executable, "-c", code, str(folder), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) is native_on
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.skipif(not BUILT, reason="prebake was built without its C extension")
def test_a_build_writes_the_same_bytes_with_and_without_the_c_loops(tmp_path: Path) -> None:
    """Photos of every size and 8-bit mode (RGB, RGBA kept as RGB, grey, palette), JPEG and PNG: every data file
    and the statistics equal, with the extension and with ``PREBAKE_NATIVE=0``."""
    rng = np.random.default_rng(8)
    folder = tmp_path / "photos"
    for k in range(40):
        mode = ("RGB", "RGBA", "L", "P")[k % 4]
        img = random_image(rng, mode, 120)
        (folder / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        img.save(folder / f"c{k % 2}" / f"{k}.{'jpg' if mode in ('RGB', 'L') and k % 3 else 'png'}")
    on, off = _build(folder, tmp_path / "on", True), _build(folder, tmp_path / "off", False)
    assert on["num_items"] == off["num_items"] == 40 and on["stats"] == off["stats"]
    names = sorted(p.name for p in (tmp_path / "on").iterdir() if p.suffix == ".npy")
    assert names == sorted(p.name for p in (tmp_path / "off").iterdir() if p.suffix == ".npy") and names
    for name in names:
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes(), name


@needs_native
def test_the_other_way_gives_what_the_c_loops_give(monkeypatch) -> None:
    """The Pillow and numpy way (no extension) against the C loops, in this process: planes and statistics."""
    rng = np.random.default_rng(9)
    images = [random_image(rng, mode, 90) for mode in ("RGB", "RGBA") for _ in range(6)]
    arrays = [rng.integers(0, 256, n, dtype=np.uint8) for n in (1, 255, 4096, 4097, 50_000)]
    with_c = [ToCHW()({"image": im})["image"] for im in images], [chunk_stats(a) for a in arrays]
    monkeypatch.setattr(native, "_native", None)
    without = [ToCHW()({"image": im})["image"] for im in images], [chunk_stats(a) for a in arrays]
    assert all(np.array_equal(a, b) for a, b in zip(with_c[0], without[0])) and with_c[1] == without[1]
    assert native.image_planes(images[0]) is None and native.byte_stats(arrays[0]) is None
