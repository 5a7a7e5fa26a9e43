"""Group-aware splits: no group in two splits, deterministic for a seed, each split within one group of its
target, stratification keeps the label mix; from Python, from the CLI, saved beside the cache, and as
Loader(indices=...)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import prebake
from prebake.cache.splits import split_groups
from prebake.cli import main
from prebake.errors import CacheNotFoundError, OptionError

FRACTIONS = {"train": 0.7, "val": 0.2, "test": 0.1}


def _groups(seed: int, n_groups: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_groups)
    groups = np.repeat(np.array([f"P{g:04d}" for g in range(n_groups)]), sizes)
    labels = np.repeat(rng.integers(0, 3, n_groups), sizes)  # one label per patient
    order = rng.permutation(len(groups))
    return groups[order], labels[order]


@pytest.mark.parametrize("seed", range(20))
def test_no_leakage_everything_once_and_fractions_within_one_group(seed):
    groups, _ = _groups(seed)
    parts = split_groups(groups, FRACTIONS, seed=seed)
    everything = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(everything), np.arange(len(groups)))  # every item exactly once
    seen = [set(groups[idx]) for idx in parts.values()]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])  # no patient in two splits
    largest = np.unique(groups, return_counts=True)[1].max()
    for name, idx in parts.items():
        assert abs(len(idx) - FRACTIONS[name] * len(groups)) <= largest, (name, len(idx), largest)


def test_deterministic_for_a_seed_and_independent_of_row_order():
    groups, _ = _groups(3)
    a = split_groups(groups, FRACTIONS, seed=5)
    b = split_groups(groups, FRACTIONS, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = split_groups(groups, FRACTIONS, seed=6)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    perm = np.random.default_rng(0).permutation(len(groups))
    shuffled = split_groups(groups[perm], FRACTIONS, seed=5)
    for k in a:  # the same patients land in the same split whatever the row order
        assert set(groups[perm][shuffled[k]]) == set(groups[a[k]])


@pytest.mark.parametrize("seed", range(10))
def test_stratification_keeps_the_label_mix(seed):
    groups, labels = _groups(seed, n_groups=120)
    parts = split_groups(groups, FRACTIONS, seed=seed, strata=labels)
    for label in np.unique(labels):
        in_label = labels == label
        largest = np.unique(groups[in_label], return_counts=True)[1].max()
        for name, idx in parts.items():
            got = int(in_label[idx].sum())
            assert abs(got - FRACTIONS[name] * in_label.sum()) <= largest, (label, name, got)
    seen = [set(groups[idx]) for idx in parts.values()]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])


def test_bad_fractions_and_columns_are_clear(tmp_path):
    with pytest.raises(OptionError, match="sum to 1"):
        split_groups(np.array(["a", "b"]), {"train": 0.8, "val": 0.1})
    prebake.write_arrays(tmp_path / "c", {"x": np.zeros((4, 2)), "label": np.arange(4)})
    with pytest.raises(OptionError, match="no column 'patient_id'.*--keep-column"):
        prebake.split(tmp_path / "c", by="patient_id", fractions={"a": 1.0})
    with pytest.raises(OptionError, match="one value per item"):
        prebake.split(tmp_path / "c", by="x", fractions={"a": 1.0})


def test_string_patient_ids_from_the_cli_saved_beside_the_cache_and_used_by_the_loader(tmp_path, capsys):
    groups, labels = _groups(1, n_groups=30)
    prebake.write_arrays(tmp_path / "c", {"patient_id": groups, "label": labels, "x": np.arange(len(groups))})
    code = main(["split", str(tmp_path / "c"), "--by", "patient_id", "--fractions", "train=0.8", "val=0.1",
                 "test=0.1", "--seed", "2", "--stratify", "label"])
    assert code == 0 and "no patient_id is in two splits" in capsys.readouterr().out
    saved = json.loads((tmp_path / "c" / "splits.json").read_text())
    assert saved["by"] == "patient_id" and saved["seed"] == 2 and saved["stratify"] == "label"
    cache = prebake.open(tmp_path / "c")
    parts = prebake.load_splits(cache)
    direct = prebake.split(cache, by="patient_id", fractions={"train": 0.8, "val": 0.1, "test": 0.1}, seed=2,
                           stratify="label")
    assert all(np.array_equal(parts[k], direct[k]) for k in direct)
    loader = prebake.Loader(cache, 16, indices=parts["val"], columns=["x", "label"], shuffle=False)
    seen = np.concatenate([b["x"].numpy() for b in loader])
    assert np.array_equal(np.sort(seen), parts["val"])
    assert prebake.verify(tmp_path / "c").ok  # the splits file sits beside the columns, outside the manifest


def test_splits_of_another_build_are_refused(tmp_path):
    prebake.write_arrays(tmp_path / "c", {"g": np.arange(10) // 2})
    prebake.split(tmp_path / "c", by="g", fractions={"a": 0.5, "b": 0.5}, save=True)
    saved = json.loads((tmp_path / "c" / "splits.json").read_text())
    saved["cache_digest"] = "0" * 64
    (tmp_path / "c" / "splits.json").write_text(json.dumps(saved))
    with pytest.raises(CacheNotFoundError, match="another build"):
        prebake.load_splits(tmp_path / "c")
