"""A values file the workers write in place is checksummed by spans of rows (cache/spans.py): the workers hash
what they write, nothing is read back, and every reader of the checksum (verify, export, an incremental build
reusing rows) still catches a changed byte anywhere in the file, a damaged offsets file or an edited entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import prebake
from benchmarks.trials.mixed_writes import stored_checksum
from prebake.bake import stream
from prebake.cache.format import sign_manifest
from prebake.errors import CacheCorruptError, FormatError

VALUES = "image.values.npy"


def _photos(root: Path, n: int = 26, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(8, 60, 2))
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{k % 2}" / f"{k}.png")
    return root


@pytest.fixture
def read_backs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The chunks whose span the building process read back from disk (no digest came from the worker)."""
    got: list[int] = []
    hash_to = stream._Placed.hash_to

    def counted(self: stream._Placed, end: int, digest: str | None = None) -> None:
        if digest is None:
            got.append(self.chunks)
        hash_to(self, end, digest)

    monkeypatch.setattr(stream._Placed, "hash_to", counted)
    return got


def _built(tmp_path: Path, workers: int = 2, rows: int = 4) -> tuple[prebake.Cache, Path]:
    out = tmp_path / "out"
    cache = prebake.build(str(_photos(tmp_path / "photos")), out, workers=workers, chunk_rows=rows, progress=False)
    return cache, out


def _flip(file: Path, at: int) -> None:
    with open(file, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x10]))


@pytest.mark.parametrize("workers", [1, 2])
def test_the_workers_hash_what_they_place_and_nothing_is_read_back(tmp_path, read_backs, workers):
    cache, out = _built(tmp_path, workers)
    meta = cache.manifest["columns"]["image"]["files"][VALUES]
    assert meta["span_rows"] == 4 and not read_backs  # every span's digest came from the worker that wrote it
    assert meta["xxh3_64"] == stored_checksum(out, cache.manifest["columns"]["image"], VALUES)
    assert prebake.verify(out).ok and len(cache) == 26


def test_a_chunk_without_a_digest_is_read_back_to_the_same_checksum(tmp_path, monkeypatch, read_backs):
    """A chunk journaled by a prebake before span digests (or a worker that sent none) is hashed from disk."""
    from prebake.bake import build

    run_chunk = build.run_chunk

    def without(*a, **k):
        r = run_chunk(*a, **k)
        if r.chunk % 2:
            r.spans = {}
        return r

    monkeypatch.setattr(build, "run_chunk", without)
    cache, out = _built(tmp_path, workers=1)
    assert sorted(read_backs) == [1, 3, 5]  # 26 rows, 4 a chunk: chunks 0..6
    assert cache.manifest["columns"]["image"]["files"][VALUES]["xxh3_64"] == stored_checksum(
        out, cache.manifest["columns"]["image"], VALUES)


def test_a_changed_byte_in_any_span_fails_verify_and_export(tmp_path):
    cache, out = _built(tmp_path)
    size = (out / VALUES).stat().st_size
    offsets = np.load(out / "image.offsets.npy")
    head = size - int(offsets[-1])
    for at in (head - 1, head, head + int(offsets[4]) - 1, head + int(offsets[4]), size // 2, size - 1):
        _flip(out / VALUES, at)
        report = prebake.verify(out)
        assert not report.ok and any(VALUES in p for p in report.problems), at
        with pytest.raises(CacheCorruptError, match=VALUES):
            prebake.export_hdf5(out, tmp_path / f"x{at}.h5")
        _flip(out / VALUES, at)
    assert prebake.verify(out).ok


def test_appended_or_cut_bytes_fail_verify(tmp_path):
    _, out = _built(tmp_path)
    data = (out / VALUES).read_bytes()
    for changed in (data + b"\0", data[:-1]):
        (out / VALUES).write_bytes(changed)
        report = prebake.verify(out)
        assert not report.ok and any("bytes, manifest says" in p for p in report.problems)
    (out / VALUES).write_bytes(data)
    assert prebake.verify(out).ok


def test_a_damaged_offsets_file_is_reported_for_both_files_without_a_traceback(tmp_path):
    _, out = _built(tmp_path)
    offsets = out / "image.offsets.npy"
    good = offsets.read_bytes()
    arr = np.load(offsets)
    arr[5], arr[6] = arr[6], arr[5]  # no longer non-decreasing: the spans cannot be cut
    np.save(offsets, arr)
    report = prebake.verify(out)
    assert not report.ok
    assert any("image.offsets.npy" in p and "checksum" in p for p in report.problems)
    assert any("cannot be checked" in p and VALUES in p for p in report.problems)
    offsets.write_bytes(good[:100])  # not even a .npy
    report = prebake.verify(out)
    assert not report.ok and any("image.offsets.npy" in p for p in report.problems)


def _edit(out: Path, change) -> None:
    m = json.loads((out / "manifest.json").read_text())
    change(m)
    (out / "manifest.json").write_text(json.dumps(sign_manifest(m)))


@pytest.mark.parametrize("value", [0, -1, "4", 2.0, None, True])
def test_a_span_rows_that_is_not_a_positive_integer_is_refused_by_the_format(tmp_path, value):
    _, out = _built(tmp_path)
    _edit(out, lambda m: m["columns"]["image"]["files"][VALUES].update(span_rows=value))
    with pytest.raises(FormatError, match="span_rows"):
        prebake.open(out)
    assert not prebake.verify(out).ok


@pytest.mark.parametrize("column,fname", [("label", "label.npy"), ("image", "image.offsets.npy"),
                                          ("image", "image.shapes.npy")])
def test_span_rows_on_a_file_that_is_not_placed_values_is_refused_by_the_format(tmp_path, column, fname):
    _, out = _built(tmp_path)
    _edit(out, lambda m: m["columns"][column]["files"][fname].update(span_rows=4))
    with pytest.raises(FormatError, match=f"{fname}.span_rows"):
        prebake.open(out)
    report = prebake.verify(out)
    assert not report.ok and any(fname in p and "span_rows" in p for p in report.problems)


def test_another_span_rows_than_the_workers_used_is_a_mismatch(tmp_path):
    _, out = _built(tmp_path)
    _edit(out, lambda m: m["columns"]["image"]["files"][VALUES].update(span_rows=5))
    report = prebake.verify(out)
    assert not report.ok and any(VALUES in p and "checksum" in p for p in report.problems)


def test_dropping_span_rows_makes_the_checksum_a_whole_file_one_that_does_not_match(tmp_path):
    _, out = _built(tmp_path)
    _edit(out, lambda m: m["columns"]["image"]["files"][VALUES].pop("span_rows"))
    assert not prebake.verify(out).ok


def test_an_incremental_build_reuses_rows_of_an_intact_placed_cache_and_not_of_a_damaged_one(tmp_path, caplog):
    from PIL import Image

    _, out = _built(tmp_path)
    src = tmp_path / "photos"
    Image.fromarray(np.zeros((9, 11, 3), np.uint8)).save(src / "c0" / "new.png")
    with caplog.at_level("INFO", logger="prebake"):
        again = prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)
    assert "copying 26 unchanged items" in caplog.text and len(again) == 27 and prebake.verify(out).ok
    caplog.clear()
    _flip(out / VALUES, (out / VALUES).stat().st_size // 2)
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(src / "c1" / "new2.png")
    with caplog.at_level("INFO", logger="prebake"):
        third = prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)
    assert "does not match its checksum" in caplog.text and "unchanged items" not in caplog.text
    assert len(third) == 28 and prebake.verify(out).ok


def test_an_exported_placed_cache_builds_again_to_the_same_values(tmp_path):
    cache, out = _built(tmp_path)
    h5 = prebake.export_hdf5(out, tmp_path / "x.h5")
    again = prebake.build(str(h5), tmp_path / "again", workers=2, progress=False)
    assert len(again) == len(cache)
    for i in range(len(cache)):
        assert np.array_equal(again[i]["image"], cache[i]["image"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked build")
def test_a_build_killed_midway_resumes_to_a_cache_that_verifies(tmp_path):
    from tests.faults.test_placed import _killed_at_commit

    src = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    _killed_at_commit(src, out, "half")
    cache = prebake.build(str(src), out, workers=2, chunk_rows=4, progress=False)
    meta = cache.manifest["columns"]["image"]["files"][VALUES]
    assert meta["xxh3_64"] == stored_checksum(out, cache.manifest["columns"]["image"], VALUES)
    assert prebake.verify(out).ok and len(cache) == 26


@pytest.mark.parametrize("workers,rows", [(1, 7), (2, 4), (3, 3), (None, -1)])
def test_a_placed_build_cuts_at_least_4_chunks_per_worker_and_a_given_chunk_rows_wins(tmp_path, workers, rows):
    """About 64 MB of rows a chunk (bake/build.py: _placed_rows), but never fewer than 4 chunks per worker:
    26 small photos give 26 / (4 x workers) rows, rounded up."""
    src = _photos(tmp_path / "photos")
    want = rows if rows > 0 else -(-26 // (4 * (os.cpu_count() or 1)))
    cache = prebake.build(str(src), tmp_path / "out", workers=workers, progress=False)
    assert cache.manifest["columns"]["image"]["files"][VALUES]["span_rows"] == want
    given = prebake.build(str(src), tmp_path / "given", workers=workers, chunk_rows=5, progress=False)
    assert given.manifest["columns"]["image"]["files"][VALUES]["span_rows"] == 5
    assert prebake.verify(tmp_path / "out").ok and prebake.verify(tmp_path / "given").ok


def _header_lies(monkeypatch: pytest.MonkeyPatch, row: int) -> None:
    """The image folder's header of item ``row`` tells a size 3 elements off, as a lying header would."""
    from prebake.sources.folder import ImageFolderSource

    predicted = ImageFolderSource.predicted_sizes

    def off(self, column):
        sizes = predicted(self, column)
        if sizes is not None:
            sizes[row] += 3
        return sizes

    monkeypatch.setattr(ImageFolderSource, "predicted_sizes", off)


def test_a_streamed_column_is_checksummed_by_spans_as_it_is_written_unless_a_row_was_skipped(tmp_path, monkeypatch):
    """A photo whose size its header told wrong sends the column down the stream (bake/stream.py), which hashes
    each chunk as it writes it: nothing is read back. A skipped file shifts the rows off the chunks, so that
    column is read back once and checksummed whole."""
    from benchmarks.trials.placed import counting_read_backs

    _header_lies(monkeypatch, 9)  # a guess missed: the worker spills that photo
    src = _photos(tmp_path / "photos")
    with counting_read_backs() as reads:
        cache = prebake.build(str(src), tmp_path / "out", workers=2, chunk_rows=4, progress=False)
    meta = cache.manifest["columns"]["image"]["files"][VALUES]
    assert not reads and meta["span_rows"] == 4 and len(cache) == 26
    assert meta["xxh3_64"] == stored_checksum(tmp_path / "out", cache.manifest["columns"]["image"], VALUES)
    assert prebake.verify(tmp_path / "out").ok
    (src / "c1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with counting_read_backs() as reads:
        cache = prebake.build(str(src), tmp_path / "skipped", workers=2, chunk_rows=4, progress=False)
    meta = cache.manifest["columns"]["image"]["files"][VALUES]
    assert len(cache) == 26 and len(cache.manifest["skipped"]) == 1 and reads and "span_rows" not in meta
    assert meta["xxh3_64"] == stored_checksum(tmp_path / "skipped", cache.manifest["columns"]["image"], VALUES)
    assert prebake.verify(tmp_path / "skipped").ok


def test_a_build_in_one_process_whose_guess_missed_rewrites_the_column_at_commit(tmp_path, monkeypatch):
    """In one process nothing is streamed (its writes would take the GIL from the baking): a photo whose header
    told a wrong size leaves a hole in the placed file, and the commit writes the column again, checksummed whole
    as it writes it, with every value Pillow's."""
    from PIL import Image

    from benchmarks.trials.placed import counting_read_backs

    _header_lies(monkeypatch, 5)
    src = _photos(tmp_path / "photos")
    with counting_read_backs() as reads:
        cache = prebake.build(str(src), tmp_path / "out", workers=1, chunk_rows=4, progress=False)
    meta = cache.manifest["columns"]["image"]["files"][VALUES]
    assert not reads and "span_rows" not in meta and len(cache) == 26
    assert meta["xxh3_64"] == stored_checksum(tmp_path / "out", cache.manifest["columns"]["image"], VALUES)
    assert prebake.verify(tmp_path / "out").ok
    for i, key in enumerate(cache.source_keys or ()):
        want = np.asarray(Image.open(src / key).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(cache[i]["image"], want), key
