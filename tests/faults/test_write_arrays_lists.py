"""``prebake.write_arrays`` with list columns whose items disagree: a clear FormatError naming the column and
the item (numpy's own ValueError or TypeError before), or numpy's promotion where it loses nothing."""

from __future__ import annotations

import numpy as np
import pytest

import prebake
from prebake.errors import FormatError


@pytest.mark.parametrize("items, words", [
    ([np.zeros((2, 3)), np.zeros((4, 5))], ["item 1 has shape (4, 5)", "item 0 (2, 3)", "first axis only"]),
    ([np.zeros((2, 3)), np.float32(3)], ["item 1 is a scalar", "wrap it as [value]"]),
    ([np.zeros(2, "U3"), np.ones(4, np.float32)], ["no common type", "<U3", "float32"]),
    ([np.zeros(2, object), np.ones(4, np.float32)], ["no common type"]),
])
def test_disagreeing_items_name_the_column_and_the_item(tmp_path, items, words):
    with pytest.raises(FormatError) as e:
        prebake.write_arrays(tmp_path / "c", {"x": items, "y": np.arange(len(items))})
    assert "column 'x'" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / "c").exists()


def test_numeric_items_promote_without_loss(tmp_path):
    items = [np.array([[-3, 7]], np.int16), np.array([[0.5, 2.25], [2.0 ** 100, -1.0]], np.float32)]
    cache = prebake.write_arrays(tmp_path / "c", {"x": items})
    assert cache[0]["x"].dtype == np.float32
    assert cache[0]["x"].tolist() == [[-3.0, 7.0]] and cache[1]["x"].tolist() == [[0.5, 2.25], [2.0 ** 100, -1.0]]


def test_one_dtype_keeps_its_byte_order_and_strings_widen(tmp_path):
    cache = prebake.write_arrays(tmp_path / "c", {"big": [np.array([1, 258], ">i2"), np.array([-2], ">i2")],
                                                  "s": [np.array(["a"]), np.array(["longer", "b"])]})
    assert cache[0]["big"].dtype == np.dtype(">i2") and cache[0]["big"].tolist() == [1, 258]
    assert cache[1]["s"].tolist() == ["longer", "b"]
