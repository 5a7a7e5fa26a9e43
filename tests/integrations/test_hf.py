"""Hugging Face datasets both ways, with the real package on small in-memory datasets (no hub access):
prebake.build(dataset) bakes every column kind, decodes Image and Audio in the workers, keeps ClassLabel names,
splits a DatasetDict and fingerprints the dataset; to_hf gives back a Dataset whose values equal the cache's."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import prebake
from benchmarks.trials.integrations import random_dataset, same
from prebake.errors import OptionError, SourceError
from prebake.integrations.hf import to_hf

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
datasets = pytest.importorskip("datasets")

F = datasets.Features
V = datasets.Value


def _images(n, seed=0, mode="RGB"):
    from PIL import Image

    r = np.random.default_rng(seed)
    return [Image.fromarray(r.integers(0, 255, (4, 5, 3), dtype=np.uint8)).convert(mode) for _ in range(n)]


def _mixed(n=6):
    r = np.random.default_rng(1)
    features = F({"img": datasets.Image(), "fine": datasets.ClassLabel(names=["cat", "dog"]), "s": V("string"),
                  "seq": datasets.Sequence(V("int32")), "m": datasets.Array2D((2, 3), "float32"),
                  "half": V("float16"), "flag": V("bool"), "fix": datasets.Sequence(V("uint8"), length=3),
                  "big": V("uint64")})
    cols = {"img": _images(n), "fine": [i % 2 for i in range(n)], "s": ["a", "bb", "", "dddd", "\u00e9\u4e2d", "x"][:n],
            "seq": [list(range(i % 4)) for i in range(n)], "m": [r.normal(size=(2, 3)) for _ in range(n)],
            "half": [0.5 * i for i in range(n)], "flag": [i % 3 == 0 for i in range(n)],
            "fix": [[i, 2, 3] for i in range(n)], "big": [2**40 + i for i in range(n)]}
    return datasets.Dataset.from_dict(cols, features=features), cols


def test_every_column_kind_bakes_to_the_datasets_values(tmp_path):
    ds, cols = _mixed()
    cache = prebake.build(ds, tmp_path / "c", workers=2, progress=False)
    assert cache.classes == ["cat", "dog"] and len(cache) == 6 and not cache.manifest["skipped"]
    assert set(cache.columns) == {"image", "label", "s", "seq", "m", "half", "flag", "fix", "big"}
    spec = {n: (s.dtype, s.shape, s.ragged) for n, s in cache.specs.items()}
    assert spec["image"] == ("|u1", (3, 4, 5), False) and spec["seq"] == ("<i4", (), True)
    assert spec["s"] == ("<U4", (), False) and spec["big"] == ("<u8", (), False) and spec["half"][0] == "<f2"
    for i in range(6):
        row = cache[i]
        assert np.array_equal(row["image"], np.asarray(cols["img"][i]).transpose(2, 0, 1))
        assert row["label"] == cols["fine"][i] and row["s"] == cols["s"][i] and row["big"] == cols["big"][i]
        assert row["seq"].tolist() == cols["seq"][i] and row["fix"].tolist() == cols["fix"][i]
        assert np.array_equal(row["m"], np.asarray(cols["m"][i], np.float32)) and row["flag"] == cols["flag"][i]
    source = cache.manifest["fingerprint"]["inputs"]["source"]
    assert source["params"]["columns"]["image"] == "img" and source["params"]["fingerprint"] == ds._fingerprint


def test_a_dataset_dict_bakes_one_cache_per_split(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1, 2, 3]}),
                               "validation": datasets.Dataset.from_dict({"x": [7]})})
    caches = prebake.build(dd, tmp_path / "c", workers=0, progress=False)
    assert sorted(caches) == ["train", "validation"] and (tmp_path / "c" / "validation" / "manifest.json").is_file()
    assert caches["train"].column("x").tolist() == [1, 2, 3] and caches["validation"].column("x").tolist() == [7]
    bad = datasets.DatasetDict({"a/b": datasets.Dataset.from_dict({"x": [1]})})
    with pytest.raises(SourceError, match="cannot name a cache directory"):
        prebake.build(bad, tmp_path / "d", progress=False)


def test_image_modes_and_a_corrupt_or_oversized_image(tmp_path):
    images = _images(3, mode="L") + _images(1, mode="RGBA") + _images(1, mode="P")
    raw = [{"bytes": _png(im), "path": None} for im in images] + [{"bytes": b"\x89PNG not an image", "path": None}]
    ds = datasets.Dataset.from_dict({"image": raw}, features=F({"image": datasets.Image()}))
    cache = prebake.build(ds, tmp_path / "c", workers=2, progress=False)
    assert [s["index"] for s in cache.manifest["skipped"]] == [5] and "image" in cache.manifest["skipped"][0]["reason"]
    for i, im in enumerate(images):
        assert np.array_equal(cache[i]["image"], np.asarray(im.convert("RGB")).transpose(2, 0, 1))
    from PIL import Image

    sizes = datasets.Dataset.from_dict({"image": [images[0], Image.new("RGB", (2, 2))]},
                                       features=F({"image": datasets.Image()}))
    small = prebake.build(sizes, tmp_path / "small", workers=0, source_options=prebake.SourceOptions(max_pixels=19),
                          progress=False)
    assert len(small) == 1 and "over the limit of 19" in small.manifest["skipped"][0]["reason"]


def _png(im):
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _wav(samples, rate):
    sf = pytest.importorskip("soundfile")
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_audio_is_decoded_in_the_workers_and_resampled_to_the_features_rate(tmp_path):
    r = np.random.default_rng(0)
    clips = [(r.integers(-3000, 3000, n).astype(np.int16), 16000) for n in (800, 1200, 400)]
    raw = [{"bytes": _wav(x, rate), "path": None} for x, rate in clips]
    # cast, not from_dict(features=...): datasets >= 4 needs torchcodec to encode audio, prebake does not
    ds = datasets.Dataset.from_dict({"audio": raw, "label": [0, 1, 0]}).cast_column("audio", datasets.Audio())
    cache = prebake.build(ds, tmp_path / "c", workers=2, progress=False)
    assert cache.specs["signal"].ragged and cache.specs["signal"].dtype == "<i2"
    for i, (x, rate) in enumerate(clips):
        assert np.array_equal(cache[i]["signal"], x) and cache[i]["sample_rate"] == rate
    ds8k = ds.cast_column("audio", datasets.Audio(sampling_rate=8000))
    low = prebake.build(ds8k, tmp_path / "low", workers=0, progress=False)
    assert [len(low[i]["signal"]) for i in range(3)] == [400, 600, 200] and low[0]["sample_rate"] == 8000


def test_the_datasets_fingerprint_and_content_decide_a_rebuild(tmp_path):
    ds = datasets.Dataset.from_dict({"x": [1, 2, 3]})
    out = tmp_path / "c"
    prebake.build(ds, out, workers=0, progress=False)
    first = (out / "manifest.json").read_bytes()
    prebake.build(datasets.Dataset.from_dict({"x": [1, 2, 3]}), out, workers=0, progress=False)
    assert (out / "manifest.json").read_bytes() == first  # the same data: up to date
    other = datasets.Dataset.from_dict({"x": [1, 2, 4]})
    other._fingerprint = ds._fingerprint  # datasets can repeat a random fingerprint (after set_seed)
    cache = prebake.build(other, out, workers=0, progress=False)
    assert cache.column("x").tolist() == [1, 2, 4]


def test_an_arrow_file_backed_dataset_is_identified_by_its_files(tmp_path):
    datasets.Dataset.from_dict({"x": [1, 2, 3]}).save_to_disk(str(tmp_path / "saved"))
    ds = datasets.load_from_disk(str(tmp_path / "saved"))
    cache = prebake.build(ds, tmp_path / "c", workers=2, progress=False)
    source = cache.manifest["fingerprint"]["inputs"]["source"]
    assert source["files"] and source["root"].startswith(str(tmp_path / "saved"))
    assert cache.column("x").tolist() == [1, 2, 3]


def test_nulls_are_bad_items_naming_the_column(tmp_path):
    ds = datasets.Dataset.from_dict({"x": [1, None, 3], "seq": [[1], [2], [None]], "f": [0.5, 1.5, 2.5]})
    cache = prebake.build(ds, tmp_path / "c", workers=0, progress=False)
    assert cache.column("x").tolist() == [1]
    assert [s["reason"] for s in cache.manifest["skipped"]] == ["column 'x' is missing (null)",
                                                                "column 'seq' is missing (null)"]


@pytest.mark.parametrize("features, value, words", [
    (F({"d": {"a": V("int32")}}), {"a": 1}, "flatten"),
    (F({"n": datasets.Sequence(datasets.Sequence(V("int32")))}), [[1], [2, 3]], "inner axis"),
    (F({"t": V("timestamp[s]")}), 0, "timestamp"),
])
def test_unbakeable_features_are_refused_naming_the_column(tmp_path, features, value, words):
    ds = datasets.Dataset.from_dict({next(iter(features)): [value]}, features=features)
    with pytest.raises(SourceError, match=words):
        prebake.build(ds, tmp_path / "c", progress=False)


def test_a_streaming_dataset_is_refused(tmp_path):
    stream = datasets.Dataset.from_dict({"x": [1, 2]}).to_iterable_dataset()
    with pytest.raises(SourceError, match="streaming"):
        prebake.build(stream, tmp_path / "c", progress=False)


# -- to_hf ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    r = np.random.default_rng(0)
    n = 7
    return prebake.write_arrays(tmp_path_factory.mktemp("hf") / "c", {
        "image": r.integers(0, 255, (n, 3, 4, 5), dtype=np.uint8), "label": np.arange(n) % 3,
        "vol": r.normal(size=(n, 1, 2, 3, 2)).astype(np.float32), "emb": r.normal(size=(n, 6)).astype(np.float16),
        "name": np.array([f"item{i}" for i in range(n)]), "blob": np.array([b"x" * i for i in range(n)]),
        "ok": np.arange(n) % 2 == 0, "be": np.arange(n, dtype=">i4"),
        "signal": [r.integers(-9, 9, i + 1).astype(np.int16) for i in range(n)],
        "track": [r.normal(size=(i, 2)).astype(np.float32) for i in range(n)]}, classes=["a", "b", "c"])


@pytest.mark.parametrize("to_file", [False, True])
def test_to_hf_gives_the_caches_values(cache, tmp_path, to_file):
    ds = to_hf(cache, path=tmp_path / "c.arrow" if to_file else None, chunk_rows=3)
    assert len(ds) == len(cache) and ds.features["label"].names == ["a", "b", "c"]
    assert bool(ds.cache_files) == to_file
    rows = ds.with_format("numpy")
    for i in range(len(cache)):
        for name in cache.columns:
            assert same(rows[i][name], cache[i][name]), (name, i)


def test_to_hf_of_a_baked_dataset_round_trips_and_picks_columns(tmp_path):
    import random

    ds, expected = random_dataset(random.Random(3))
    cache = prebake.build(ds, tmp_path / "c", workers=0, progress=False)
    back = to_hf(cache, columns=["t", "seq", "label"])
    assert list(back.features) == ["t", "seq", "label"] and back.features["label"].names == ["a", "b", "c"]
    kept = [i for i in range(len(ds)) if i not in expected["_null_rows"]]
    assert back["t"] == [expected["t"][i] for i in kept] and back["seq"] == [expected["seq"][i] for i in kept]


@pytest.mark.parametrize("kwargs, words", [({"columns": ["nope"]}, "no column 'nope'"), ({"columns": "label"},
                                           "one string"), ({"chunk_rows": 0}, "chunk_rows")])
def test_to_hf_bad_arguments(cache, kwargs, words):
    with pytest.raises(OptionError, match=words):
        to_hf(cache, **kwargs)


def test_to_hf_refuses_what_datasets_cannot_hold(tmp_path):
    odd = prebake.write_arrays(tmp_path / "odd", {"t": np.array(["2020-01-01"] * 2, dtype="datetime64[D]"),
                                                  "x": np.arange(2)})
    with pytest.raises(OptionError, match="'t'"):
        to_hf(odd)
    assert to_hf(odd, columns=["x"])["x"] == [0, 1]


def test_a_16_bit_grey_pgm_keeps_its_depth(tmp_path):
    """Pillow opens a 16-bit PGM as mode "I": its values were cut to 8 bits, where a 16-bit PNG keeps them."""
    from PIL import Image

    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300).astype(np.uint16)
    raw = []
    for fmt in ("PPM", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt)
        raw.append({"bytes": buf.getvalue(), "path": None})
    ds = datasets.Dataset.from_dict({"image": raw}, features=F({"image": datasets.Image()}))
    cache = prebake.build(ds, tmp_path / "c", workers=0, progress=False)
    assert len(cache) == 2 and cache[0]["image"].dtype == np.uint16
    for i in range(2):
        np.testing.assert_array_equal(cache[i]["image"], pixels[None])
