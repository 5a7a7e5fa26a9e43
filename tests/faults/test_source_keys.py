"""Each item's source path stays in the cache: ``Cache.source_keys`` names the file every row came from,
skipped items leave no key behind, and a tampered keys file is refused, never served."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import prebake
from prebake.errors import CacheCorruptError
from prebake.synthetic import write_image_folder


def test_every_row_names_the_file_it_came_from(tmp_path):
    photos = write_image_folder(tmp_path / "photos", per_class=3, size=(10, 12))
    (photos / "cat" / "broken.png").write_bytes(b"not a png")  # skipped: its key must not shift the others
    cache = prebake.build(photos, tmp_path / "c", workers=2, progress=False)
    keys = cache.source_keys
    assert len(keys) == len(cache) == 6 and not any("broken" in k for k in keys)
    for i, key in enumerate(keys):
        with Image.open(photos / key) as im:
            expected = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(cache[i]["image"], expected), key
        assert cache.classes[cache[i]["label"]] == key.split("/")[0]


def test_arrays_and_datasets_are_keyed_by_index_and_a_cache_without_keys_says_none(tmp_path):
    cache = prebake.write_arrays(tmp_path / "c", {"x": np.arange(4)})
    assert cache.source_keys == ["0", "1", "2", "3"]
    manifest = dict(cache.manifest, item_keys=None)  # what a cache that records no keys holds
    cache.manifest = manifest
    assert cache.source_keys is None


@pytest.mark.parametrize("tamper", ["swap two keys", "drop one", "not json"])
def test_a_tampered_keys_file_is_refused(tmp_path, tamper):
    photos = write_image_folder(tmp_path / "photos", per_class=2, size=(8, 8))
    prebake.build(photos, tmp_path / "c", workers=0, progress=False)
    target = tmp_path / "c" / "_item_keys.json"
    keys = json.loads(target.read_text())
    text = {"swap two keys": lambda: json.dumps([keys[1], keys[0], *keys[2:]]),
            "drop one": lambda: json.dumps(keys[:-1]),
            "not json": lambda: "[oops"}[tamper]()
    target.write_text(text)
    with pytest.raises(CacheCorruptError, match="_item_keys.json"):  # at open (its size) or here (its bytes)
        prebake.open(tmp_path / "c").source_keys
