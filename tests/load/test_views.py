"""Windows and Elements against a per-item numpy reference, on real caches in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

import prebake

#: Item lengths: empty, shorter than any window, exactly a window, long ones; "other" has other lengths.
LENGTHS = [0, 1, 4, 7, 0, 12, 3, 25, 5]


def _cache(path, lengths=LENGTHS):
    rng = np.random.default_rng(0)
    return prebake.write_arrays(path, {
        "frames": [rng.integers(0, 256, (n, 3, 2, 2), dtype=np.uint8) for n in lengths],
        "lat": [rng.standard_normal((n, 4)).astype(np.float32) for n in lengths],
        "other": [np.arange(i % 3, dtype=np.int16) for i in range(len(lengths))],
        "label": np.arange(len(lengths), dtype=np.int64) * 10,
        "name": np.array([f"clip-{i}" for i in range(len(lengths))]),
        "tag": np.array([b"t%d" % i for i in range(len(lengths))]),
    })


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return _cache(tmp_path_factory.mktemp("v") / "c")


def reference_windows(cache, column, length, stride=1, context=0, require_context=False, items=None):
    """Every window, item by item, with Python slicing of each item's own arrays."""
    out = []
    raw = {n: cache.column(n) for n in ("frames", "lat")}
    for i in (range(len(cache)) if items is None else items):
        n = len(raw[column][i])
        for s in range((context if require_context else 0), n - length + 1, stride):
            w = {"item": i, "start": s, "label": i * 10, "name": f"clip-{i}", "tag": b"t%d" % i}
            for c, col in raw.items():
                seq = np.asarray(col[i])
                w[c] = seq[s:s + length]
                if context:
                    w[f"{c}_context"] = np.stack([seq[s - context + j] if s - context + j >= 0
                                                  else np.zeros_like(seq[0]) for j in range(context)])
                    w["context_mask"] = np.array([s - context + j >= 0 for j in range(context)])
            out.append(w)
    return out


def _same(got: dict, want: dict):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k, v in want.items():
        g = np.asarray(got[k])
        assert g.dtype == np.asarray(v).dtype or k in ("item", "start", "label"), k
        assert np.array_equal(g, np.asarray(v)), (k, g, v)


SETTINGS = [
    dict(length=1),
    dict(length=4),
    dict(length=3, stride=2),
    dict(length=5, stride=3, context=2),
    dict(length=4, context=4),
    dict(length=4, context=4, require_context=True),
    dict(length=2, stride=7, context=1),
    dict(length=25),  # only the longest item fits, once
    dict(length=26),  # nothing fits
]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_windows_match_a_per_item_reference(cache, setting):
    view = prebake.Windows(cache, "frames", columns=["frames", "lat", "label", "name", "tag"], **setting)
    want = reference_windows(cache, "frames", **setting)
    assert len(view) == len(want)
    assert view.item.tolist() == [w["item"] for w in want] and view.start.tolist() == [w["start"] for w in want]
    for j, w in enumerate(want):
        _same(view[j], w)
    if want:  # a batch in any order, repeats included, is the same rows
        idx = np.random.default_rng(1).integers(0, len(want), 40)
        batch = view[idx]
        for k, w in zip(idx, (want[i] for i in idx)):
            _same({key: batch[key][list(idx).index(k)] for key in batch}, w)


def test_starts_last_window_short_and_empty_items(cache):
    view = prebake.Windows(cache, "frames", 4, stride=3)
    per_item = {i: view.start[view.item == i].tolist() for i in range(len(cache))}
    assert per_item[0] == [] and per_item[1] == [] and per_item[4] == [] and per_item[6] == []  # empty or short
    assert per_item[2] == [0]  # exactly one window long
    assert per_item[3] == [0, 3]  # 7 rows: starts 0 and 3 fit (3 + 4 = 7), 6 does not
    assert per_item[7] == list(range(0, 22, 3))  # 25 rows: the last start is 21
    tail = view[int(np.flatnonzero(view.item == 7)[-1])]["frames"]
    assert np.array_equal(tail, np.asarray(cache.column("frames")[7])[21:25])


def test_context_before_the_start_is_zero_and_masked(cache):
    view = prebake.Windows(cache, "frames", 2, context=3)
    first = view[int(np.flatnonzero(view.item == 3)[0])]  # start 0 of a 7-row clip
    assert first["start"] == 0 and first["context_mask"].tolist() == [False, False, False]
    assert not first["frames_context"].any() and not first["lat_context"].any()
    second = view[int(np.flatnonzero(view.item == 3)[1])]
    assert second["context_mask"].tolist() == [False, False, True]
    assert np.array_equal(second["lat_context"][2], np.asarray(cache.column("lat")[3])[0])
    full = prebake.Windows(cache, "frames", 2, context=3, require_context=True)
    assert full.start.min() == 3 and all(full[j]["context_mask"].all() for j in range(len(full)))


def test_a_view_over_a_subset_keeps_its_order(cache):
    items = [7, 2, 3]
    view = prebake.Windows(cache, "frames", 3, context=1, indices=items)
    want = reference_windows(cache, "frames", 3, context=1, items=items)
    assert len(view) == len(want) and sorted(set(view.item.tolist())) == [2, 3, 7]
    for j, w in enumerate(want):
        _same({k: v for k, v in view[j].items() if k != "other"}, {k: v for k, v in w.items()})
    assert view.targets.tolist() == [w["label"] for w in want]
    with pytest.raises(prebake.ViewError, match="indices holds item 9, but .* has items 0..8"):
        prebake.Windows(cache, "frames", 3, indices=[1, 9])


def test_elements_match_a_per_item_reference(cache):
    view = prebake.Elements(cache, "lat", columns=["lat", "frames", "label", "name"])
    want = [(i, e) for i in range(len(cache)) for e in range(LENGTHS[i])]
    assert len(view) == sum(LENGTHS) and list(zip(view.item.tolist(), view.element.tolist())) == want
    lat, frames = cache.column("lat"), cache.column("frames")
    idx = np.random.default_rng(2).permutation(len(view))[:50]
    batch = view[idx]
    for k, j in enumerate(idx):
        i, e = want[j]
        assert np.array_equal(batch["lat"][k], lat[i][e]) and np.array_equal(batch["frames"][k], frames[i][e])
        assert batch["label"][k] == i * 10 and batch["name"][k] == f"clip-{i}" and batch["element"][k] == e
    one = view[5]
    assert one["lat"].shape == (4,) and one["item"] == want[5][0] and one["name"] == f"clip-{want[5][0]}"
    sub = prebake.Elements(cache, "lat", indices=[5, 0, 3])
    assert sub.item.tolist() == [5] * 12 + [3] * 7


def test_ragged_columns_with_other_lengths(cache):
    view = prebake.Windows(cache, "frames", 2)
    assert "other" not in view.columns and {"frames", "lat", "label", "name", "tag"} <= set(view.columns)
    with pytest.raises(prebake.ViewError, match="'other' has other item lengths than 'frames'"):
        prebake.Windows(cache, "frames", 2, columns=["frames", "other"])
    assert prebake.Elements(cache, "other").columns == ["label", "name", "tag", "other"]


@pytest.mark.parametrize("make, match", [
    (lambda c: prebake.Windows(c, "label", 2), "'label' .* is not ragged"),
    (lambda c: prebake.Windows(c, "nope", 2), "has no column 'nope'"),
    (lambda c: prebake.Windows(c, "frames", 0), "length=0 is below 1; length must be a whole number >= 1"),
    (lambda c: prebake.Windows(c, "frames", 2, stride=0), "stride=0"),
    (lambda c: prebake.Windows(c, "frames", 2, context=-1), "context=-1"),
    (lambda c: prebake.Windows(c, "frames", 2, columns=["label", "missing"]), "no column 'missing'"),
    (lambda c: prebake.Elements(c, "tag"), "'tag' .* is not ragged"),
])
def test_bad_arguments_are_refused_with_the_fix(cache, make, match):
    with pytest.raises(prebake.ViewError, match=match):
        make(cache)


def test_added_keys_may_not_shadow_a_column(tmp_path):
    c = prebake.write_arrays(tmp_path / "c", {"x": [np.ones(3), np.ones(4)], "item": np.arange(2)})
    with pytest.raises(prebake.ViewError, match=r"adds the keys \['item'\].*columns=\[\.\.\.\]"):
        prebake.Windows(c, "x", 2)
    assert "item" in prebake.Windows(c, "x", 2, columns=["x"]).keys  # the fix the message names


def test_index_errors_and_negative_indices(cache):
    view = prebake.Windows(cache, "frames", 3)
    assert np.array_equal(view[-1]["frames"], view[len(view) - 1]["frames"])
    with pytest.raises(IndexError, match=f"index {len(view)} out of range"):
        view[len(view)]
    with pytest.raises(IndexError):
        view[[0, -len(view) - 1]]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_stock_dataloader_over_a_view(cache, context):
    """Workers receive the pickled view (the cache reopens its maps there); default collate stacks the items."""
    import torch.utils.data

    view = prebake.Windows(cache, "frames", 3, context=2, columns=["frames", "lat", "label"])
    loader = torch.utils.data.DataLoader(view, batch_size=8, num_workers=2, multiprocessing_context=context)
    batches = list(loader)
    assert sum(len(b["item"]) for b in batches) == len(view)
    for k, b in enumerate(batches):
        want = view[np.arange(8 * k, min(8 * k + 8, len(view)))]
        assert set(b) == set(want) and all(np.array_equal(b[key].numpy(), want[key]) for key in want)
