"""Hugging Face ``datasets`` both ways: ``prebake.build(hf_dataset, out)`` and :func:`to_hf`.

>>> import datasets, prebake  # doctest: +SKIP
>>> ds = datasets.load_dataset("uoft-cs/cifar10")  # a DatasetDict: train and test  # doctest: +SKIP
>>> caches = prebake.build(ds, "cache/cifar10")     # cache/cifar10/train, cache/cifar10/test  # doctest: +SKIP
>>> back = prebake.integrations.hf.to_hf(caches["test"])  # a datasets.Dataset  # doctest: +SKIP

Baking (:class:`~prebake.sources.hf.HFSource`, which ``prebake.build`` picks for a ``datasets.Dataset``
or ``DatasetDict``, a reader like the others in :mod:`prebake.sources`; a ``DatasetDict`` bakes one
cache per split, in ``out/<split>``):

- every column becomes a cache column of its Arrow type: numbers and bools as they are,
  strings and binaries as fixed-width ``U``/``S`` columns as wide as the longest value,
  ``ClassLabel`` as int64, fixed-length lists and ``Array2D``..``Array5D`` as fixed columns,
  variable-length lists (and arrays whose first axis is ``None``) as ragged columns;
- ``Image`` features are decoded in the bake workers, with the image folder's rules
  (:mod:`prebake.sources.images`: 8-bit RGB ``(3, H, W)``, 16-bit grey kept, EXIF orientation
  applied as ``datasets`` does, ``SourceOptions.max_pixels`` checked from the header before decoding);
- ``Audio`` features are decoded in the workers with soundfile (``pip install
  'prebake[audio]'``), under the audio folder's ``channel`` and ``audio_dtype`` settings, and
  resampled to the feature's ``sampling_rate`` when it has one; each is a ragged column, with its
  rate beside it in ``<column>_sample_rate``;
- names: the one ``Image`` column is baked as ``image`` and the one ``Audio`` column as
  ``signal`` + ``sample_rate``, the columns prebake's image and audio steps (``prebake.steps.Resize``,
  ``Resample``, ``BandPass``...) act on; the ``ClassLabel`` column named ``label``, or else the
  one ``ClassLabel`` column, is baked as ``label`` and its names become the cache's ``classes``.
  A name already taken stays as it is. ``cache.manifest["fingerprint"]["inputs"]`` records
  which dataset column each cache column came from;
- identity: the dataset's ``_fingerprint`` and features, plus what it is made of (the size,
  mtime and ctime of its Arrow cache files, or an xxh3 of in-memory tables), so a dataset whose
  fingerprint ``datasets`` drew at random (an unhashable ``map``) still rebuilds only when its
  data changed. A nested ``dict`` feature (``ds.flatten()`` first) or an unsupported type is a
  :class:`~prebake.errors.SourceError` naming the column; a missing value (null) is a bad item.

Exporting: :func:`to_hf` (see its docstring). ``datasets`` is imported only when one is used
(``pip install 'prebake[hf]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..sources.hf import HFSource, sources

if TYPE_CHECKING:
    from ..cache.reader import Cache


def to_hf(cache: Cache | str | os.PathLike[str], columns: Sequence[str] | None = None,
          path: str | os.PathLike[str] | None = None, chunk_rows: int = 4096) -> Any:
    """The cache as a ``datasets.Dataset`` whose values equal the cache's.

    Args:
        cache: a :class:`~prebake.Cache` or the path of one.
        columns: the columns to export; default: all of them.
        path: an Arrow file to write the rows to, memory-mapped by the returned Dataset (for caches larger
            than RAM); default: an in-memory Dataset.
        chunk_rows: rows converted at a time.

    Each column keeps its cache name, dtype and shape: a scalar column is a ``Value``, a fixed ``(k,)``
    column a fixed-length ``List``, 2- to 5-D items an ``Array2D``..``Array5D``, a ragged column a
    ``List`` (or an ``ArrayND`` whose first axis is ``None``), strings ``Value("string")`` and bytes
    ``Value("binary")``; ``label`` is a ``ClassLabel`` with the cache's classes when it has them.
    Images stay ``(C, H, W)`` uint8 arrays, never re-encoded, so every value equals the cache's.
    """
    from .hf_export import export

    return export(cache, columns, path, chunk_rows)


__all__: Sequence[str] = ("HFSource", "sources", "to_hf")
