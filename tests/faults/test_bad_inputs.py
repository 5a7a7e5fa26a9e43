"""Bad inputs: one CSV byte, an oversized image, a cut JPEG, and 30 kinds more."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.inputs import bad_inputs, big_png, jpeg_cut_early
from prebake.errors import BadItemError
from prebake.sources.images import decode_image
from prebake.synthetic import write_csv_table


def test_one_bad_utf8_byte_costs_its_row_not_the_table(tmp_path):
    table = write_csv_table(tmp_path / "t", n=6)
    clean = prebake.build(table, tmp_path / "clean", workers=0)
    lines = table.read_bytes().split(b"\n")
    lines[3] = lines[3] + b"\xff"  # the third data row: 'scans/0002.png,<label>\xff'
    table.write_bytes(b"\n".join(lines))
    cache = prebake.build(table, tmp_path / "dirty", workers=0)  # before: SourceError, 0 rows kept
    assert [(s["key"], s["reason"]) for s in cache.manifest["skipped"]] == [
        ("row 4", "row is not valid UTF-8 (byte 0xff in field 2); re-save the table as UTF-8")]
    keep = [0, 1, 3, 4, 5]
    assert np.array_equal(np.asarray(cache.column("image")), np.asarray(clean.column("image"))[keep])
    assert cache.targets.tolist() == clean.targets[keep].tolist()


def test_a_bad_utf8_header_says_so(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"pa\xfeth,label\nx.png,1\n")
    with pytest.raises(prebake.SourceError, match=r"t.csv: the header is not valid UTF-8 \(byte 0xfe"):
        prebake.build(tmp_path / "t.csv", tmp_path / "c", workers=0)


def _decode_in_child(path: str, max_pixels: int, report: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_image(path, max_pixels=max_pixels)
        reason = None
    except BadItemError as e:
        reason = e.reason
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    Path(report).write_text(json.dumps({"reason": reason, "grew_kib": grew}))


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    return big_png(tmp_path_factory.mktemp("huge") / "huge.png", 12000, 12000)  # valid, 144 Mpx, ~150 KB


@pytest.mark.parametrize("max_pixels, want", [
    (64 * 2**20, "image is 12000x12000 = 144,000,000 pixels, over the limit of 67,108,864"),  # the default
    (200_000_000, "decompression bomb: Image size (144000000 pixels) exceeds limit"),  # Pillow's warning, as a reason
])
def test_an_oversized_image_is_refused_from_its_header_before_decoding(huge_png, tmp_path, max_pixels, want):
    report = tmp_path / "r.json"
    child = mp.get_context("fork").Process(target=_decode_in_child, args=(str(huge_png), max_pixels, str(report)))
    child.start()
    child.join(120)
    r = json.loads(report.read_text())
    assert r["reason"] is not None and want in r["reason"], r
    assert r["grew_kib"] < 64 * 1024  # decoding would have taken 144 MB (L) and 432 MB (RGB)


def test_max_pixels_is_an_option_of_image_sources(tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for k, side in enumerate((10, 10, 40)):
        Image.fromarray(np.full((side, side, 3), k, np.uint8)).save(tmp_path / "imgs" / "a" / f"{k}.png")
    cache = prebake.build(tmp_path / "imgs", tmp_path / "c", [prebake.steps.Resize(8)], workers=0,
                          source_options=prebake.SourceOptions(max_pixels=1000))
    assert len(cache) == 2 and "over the limit of 1,000" in cache.manifest["skipped"][0]["reason"]


def test_a_cut_jpeg_is_reported_as_a_truncated_file(tmp_path):
    with pytest.raises(BadItemError) as e:
        decode_image(jpeg_cut_early(tmp_path / "cut.jpg"))
    assert e.value.reason.startswith("truncated image file: the JPEG data ends after 400 bytes"), e.value.reason
    assert "Truncated File Read" not in e.value.reason


def test_thirty_kinds_of_bad_input(tmp_path):
    row = bad_inputs(tmp_path)
    assert row.notes["kinds"] >= 15 and row.failures == 0, row.examples
