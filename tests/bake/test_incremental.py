"""Incremental rebuilds: unchanged items are copied from the old cache, never baked again."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import prebake
import prebake.bake.build as build_mod  # noqa: E402
from prebake.steps import Resize, compile_steps
from prebake.synthetic import write_csv_table, write_image_folder

PROBE = 1  # a full build bakes its first item once more, to learn the columns


def _build(source, out, steps=(), **options):
    """Build one cache; return its BuildReport."""
    sources = build_mod.resolve_sources(source)
    (report,) = build_mod.build_all(sources, out, build_mod.BuildOptions(compile_steps(steps), workers=0, **options))
    return report


def _same_files(a, b):
    for name in ("image.npy", "label.npy", "_item_ids.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture
def counting(tmp_path):
    """A transform that appends one line per baked item to a log file."""
    log = tmp_path / "calls.log"
    module = tmp_path / "counting.py"
    module.write_text(
        f"LOG = {str(log)!r}\n"
        "def count(item):\n"
        "    with open(LOG, 'a') as f:\n"
        "        f.write('x\\n')\n"
        "    return item\n"
    )
    from prebake.identity.plugins import load_object

    fn = load_object(f"{module}:count")

    def calls():
        n = len(log.read_text().splitlines()) if log.exists() else 0
        log.unlink(missing_ok=True)
        return n

    return fn, calls


def test_added_images_are_the_only_ones_baked(tmp_path, counting):
    fn, calls = counting
    root = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=6, size=(12, 12))
    first = _build(root, tmp_path / "c", [fn])
    assert first.action == "built" and calls() == 12 + PROBE
    write_image_folder(tmp_path / "more", classes=("a", "b"), per_class=2, size=(12, 12), seed=7)
    for cls in ("a", "b"):
        for f in (tmp_path / "more" / cls).iterdir():
            shutil.copy(f, root / cls / f"new_{f.name}")
    second = _build(root, tmp_path / "c", [fn])
    assert second.action == "rebuilt" and any("4 source files added" in r for r in second.reasons)
    assert (second.num_items, second.reused, calls()) == (16, 12, 4)
    fresh = _build(root, tmp_path / "fresh", [fn])
    assert fresh.reused == 0 and calls() == 16 + PROBE
    _same_files(tmp_path / "c", tmp_path / "fresh")
    assert prebake.verify(tmp_path / "c").ok


def test_a_modified_image_is_baked_again_and_a_removed_one_dropped(tmp_path, counting):
    fn, calls = counting
    root = write_image_folder(tmp_path / "imgs", classes=("a",), per_class=5, size=(12, 12))
    _build(root, tmp_path / "c", [fn])
    calls()
    target = root / "a" / "a_002.png"
    shutil.copy(root / "a" / "a_000.png", target)  # new content for item 2
    os.utime(target, ns=(1, 1))
    (root / "a" / "a_004.png").unlink()
    report = _build(root, tmp_path / "c", [fn])
    assert (report.num_items, report.reused, calls()) == (4, 3, 1)
    cache = prebake.open(tmp_path / "c")
    assert np.array_equal(cache[2]["image"], cache[0]["image"])
    _build(root, tmp_path / "fresh", [fn])
    _same_files(tmp_path / "c", tmp_path / "fresh")


def test_other_changes_bake_everything(tmp_path, counting):
    fn, calls = counting
    root = write_image_folder(tmp_path / "imgs", classes=("a",), per_class=4, size=(12, 12))
    _build(root, tmp_path / "c", [fn])
    calls()
    report = _build(root, tmp_path / "c", [Resize(8), fn])  # a parameter changed
    assert report.reused == 0 and calls() == 4 + PROBE
    shutil.copy(root / "a" / "a_000.png", root / "a" / "z.png")
    report = _build(root, tmp_path / "c", [Resize(8), fn], force=True)
    assert report.reused == 0 and calls() == 5 + PROBE  # --force never reuses


def test_a_corrupted_old_cache_is_not_reused(tmp_path, counting, caplog):
    fn, calls = counting
    root = write_image_folder(tmp_path / "imgs", classes=("a",), per_class=4, size=(12, 12))
    _build(root, tmp_path / "c", [fn])
    calls()
    image = tmp_path / "c" / "image.npy"
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF
    image.write_bytes(bytes(data))
    shutil.copy(root / "a" / "a_000.png", root / "a" / "z.png")
    report = _build(root, tmp_path / "c", [fn])
    assert report.reused == 0 and calls() == 5 + PROBE
    assert "does not match its checksum" in caplog.text
    assert prebake.verify(tmp_path / "c").ok


def test_csv_rows_inserted_above_keep_their_rows(tmp_path, counting):
    fn, calls = counting
    csv_path = write_csv_table(tmp_path / "t", n=8)
    _build(csv_path, tmp_path / "c", [fn])
    calls()
    header, *rows = csv_path.read_text().splitlines()
    shutil.copy(tmp_path / "t" / "scans" / "0000.png", tmp_path / "t" / "scans" / "extra.png")
    label = rows[0].split(",", 1)[1]
    csv_path.write_text("\n".join([header, f"scans/extra.png,{label}", *rows]) + "\n")
    report = _build(csv_path, tmp_path / "c", [fn])
    assert (report.num_items, report.reused, calls()) == (9, 8, 1)
    _build(csv_path, tmp_path / "fresh", [fn])
    _same_files(tmp_path / "c", tmp_path / "fresh")


def _killed_build(root, out, transform, fraction):
    """In a forked child: build, and SIGKILL it once ``fraction`` of the items are written."""
    build_mod._CHECKPOINT_S = 0.0  # journal every chunk, so the kill leaves resumable work

    def progress(split, done, total):
        if fraction * total <= done < total:
            os.kill(os.getpid(), 9)

    sources = build_mod.resolve_sources(root)
    options = build_mod.BuildOptions(compile_steps([transform]), workers=0, chunk_rows=2)
    build_mod.build_all(sources, out, options, progress)


def test_a_killed_incremental_build_resumes_to_the_same_bytes(tmp_path, counting):
    import multiprocessing as mp

    fn, calls = counting
    root = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=6, size=(12, 12))
    _build(root, tmp_path / "c", [fn], chunk_rows=2)
    write_image_folder(tmp_path / "more", classes=("a", "b"), per_class=4, size=(12, 12), seed=9)
    for cls in ("a", "b"):
        for f in (tmp_path / "more" / cls).iterdir():
            shutil.copy(f, root / cls / f"new_{f.name}")
    child = mp.get_context("fork").Process(target=_killed_build, args=(root, tmp_path / "c", fn, 0.5))
    child.start()
    child.join()
    assert child.exitcode == -9
    assert len(prebake.open(tmp_path / "c")) == 12  # the old cache is still the committed one
    report = _build(root, tmp_path / "c", [fn], chunk_rows=2)
    assert report.action == "resumed" and report.num_items == 20
    calls()
    _build(root, tmp_path / "fresh", [fn])
    _same_files(tmp_path / "c", tmp_path / "fresh")


def _sources_with_files(tmp_path):
    """An image folder, an audio folder, a volume folder (a NIfTI, an Analyze .hdr/.img pair, a DICOM series
    folder), CSV tables of those volumes and of images (with rows naming a missing file, no file, or the table
    itself) and, with PyAV, a video folder: each source whose items are identified by the files describe() lists."""
    from prebake.sources.folder import ImageFolderSource
    from prebake.sources.volume_folder import VolumeFolderSource

    write_image_folder(tmp_path / "img", classes=("a", "b"), per_class=3, size=(8, 8))
    out = [ImageFolderSource(tmp_path / "img")]
    from prebake.sources.audio import AudioFolderSource
    from prebake.synthetic import write_audio_folder

    out.append(AudioFolderSource(write_audio_folder(tmp_path / "audio")))
    nib = pytest.importorskip("nibabel")
    pytest.importorskip("pydicom")
    from benchmarks.trials.geometry_files import series_planes, write_series

    vol = tmp_path / "vol" / "ct"
    vol.mkdir(parents=True)
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    nib.save(nib.Nifti1Image(data, np.eye(4)), vol / "a.nii.gz")
    nib.save(nib.AnalyzeImage(data, np.eye(4)), vol / "b.hdr")
    rng = np.random.default_rng(0)
    write_series(vol / "series", series_planes(3, rng), rng)
    out.append(VolumeFolderSource(tmp_path / "vol"))
    (tmp_path / "vol" / "table.csv").write_text("path,label\nct/a.nii.gz,1\nct/b.hdr,0\nct/series,1\n"
                                               "ct/missing.nii.gz,0\ntable.csv,1\n")
    out += [build_mod.resolve_sources(write_csv_table(tmp_path / "csv", n=6, bad_rows=True))[""],
            build_mod.resolve_sources(tmp_path / "vol" / "table.csv")[""]]
    try:
        import av  # noqa: F401
    except ImportError:
        return out
    from prebake.sources.video import VideoFolderSource, write_video

    clips = tmp_path / "clips"
    (clips / "b").mkdir(parents=True)
    frames = np.zeros((3, 3, 16, 16), np.uint8)
    write_video(clips / "a.mp4", frames, 25)
    write_video(clips / "b" / "video.mp4", frames, 25)
    out.append(VideoFolderSource(clips))
    return out


@pytest.mark.parametrize("content", [False, True])
def test_identities_from_the_described_files_equal_the_sources_own(tmp_path, content):
    """A build names each item from the file table its fingerprint took (Source.item_identities_from), not by
    taking every file's identity again: the same strings as item_identities, so old caches still match."""
    for src in _sources_with_files(tmp_path):
        src = src.with_content_hash() if content else src
        files = src.describe()["files"]
        assert src.item_identities_from(files) == src.item_identities(), type(src).__name__
        partial = src.item_identities_from({})  # a table without the items' files: each taken the source's own way
        assert partial is None or partial == src.item_identities(), type(src).__name__


def test_a_content_hashed_build_reads_every_file_once(tmp_path, monkeypatch):
    import prebake.identity.files as identity_files

    root = write_image_folder(tmp_path / "img", classes=("a", "b"), per_class=4, size=(8, 8))
    read: list[str] = []
    checksum = identity_files.file_checksum
    monkeypatch.setattr(identity_files, "file_checksum", lambda p: read.append(os.fspath(p)) or checksum(p))
    _build(root, tmp_path / "c", content_hash=True)
    assert len(read) == 8 and len(set(read)) == 8  # before: 16, the identities hashed every file again
    (root / "a" / os.listdir(root / "a")[0]).write_bytes(b"")  # incremental: still once a file
    read.clear()
    _build(root, tmp_path / "c", content_hash=True)
    assert len(read) == len(set(read)) == 8


def test_a_subclass_with_its_own_identities_or_description_is_asked_its_own_way(tmp_path):
    """A user's subclass that changes item_identities (or describe) never has its identities taken from the file
    table by the inherited item_identities_from: the build asks the subclass."""
    from prebake.bake.incremental import hash_identities
    from prebake.sources.folder import ImageFolderSource

    class Tagged(ImageFolderSource):
        def item_identities(self):
            return [f"{s}|v2" for s in super().item_identities()]

    class Described(ImageFolderSource):
        asked = 0

        def describe(self):
            return {**super().describe(), "mine": 1}

        def item_identities(self):
            Described.asked += 1
            return super().item_identities()

    root = write_image_folder(tmp_path / "img", classes=("a", "b"), per_class=2, size=(8, 8))
    prebake.build(Tagged(root), tmp_path / "t", workers=0, progress=False)
    stored = np.load(tmp_path / "t" / "_item_ids.npy")
    assert np.array_equal(stored, hash_identities(Tagged(root).item_identities()))
    assert not np.array_equal(stored, hash_identities(ImageFolderSource(root).item_identities()))
    prebake.build(Described(root), tmp_path / "d", workers=0, progress=False)
    assert Described.asked == 1
