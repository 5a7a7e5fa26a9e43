"""A CSV table: one row per image, a path column and label column(s)::

    image_path,diagnosis            image_path,effusion,nodule,pneumonia
    scans/0001.png,benign           scans/0001.png,0,1,0

- Fields are separated by ``delimiter``; by default it is detected from the start of the
  file among ``,`` ``;`` tab and ``|`` (a ``.tsv`` file is tab-separated).
- The header row is required. The path column is ``path_column``, else the first of
  :data:`PATH_COLUMNS` present (case-insensitive). Paths are relative to ``base_dir``
  (default: the CSV's directory); absolute paths are used as they are.
- Label columns are ``label_columns``, else every other column.
  One column: all integers -> ``label`` int, ``classes`` None; otherwise the sorted
  distinct strings are the ``classes`` and ``label`` is the index. Several columns ->
  ``label`` of shape (K,), int64 when every value is an integer, else float32; the
  column names are in :attr:`CsvSource.label_names`.
- ``keep_columns`` are kept as columns of their own, under their own names (patient id,
  study, age): int64 when every value is an integer, float64 when every value is a
  number, else strings (``<U`` as wide as the longest value). They are not labels.
- Each file is read by what it holds, its first bytes before its name (:mod:`.by_content`):
  a volume (NIfTI, DICOM, also named ``IM000001``, MGH, MINC, PAR/REC, AFNI, Analyze,
  ``.npy``) or a directory (a DICOM series) gives ``image`` (C, D, H, W) at full bit depth
  and ``spacing``, ``origin`` and ``affine`` (:mod:`prebake.sources.volume_readers`); an image
  gives ``image``. A table of recordings (``reads="audio"``, ``--kind audio``, or most rows
  audio) gives ``signal`` (ragged) and ``sample_rate`` (:mod:`prebake.sources.audio`).
- A bad row (wrong number of fields, empty path, empty or unparseable label, missing
  file) becomes a :class:`BadItemError` at :meth:`CsvSource.read` time, with its row
  number, so every other row still builds. Row numbers are CSV line numbers (the
  header is row 1), as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache.format import validate_column_name
from ..errors import BadItemError, FormatError, OptionError, SourceError, opt
from ..identity.files import file_identity, relative_key
from .audio import check_channel, check_dtype
from .base import Source
from .by_content import READS, SNIFFED_ROWS, Readers, read_file, require_readers, row_family, table_reads
from .images import DEFAULT_MAX_PIXELS, check_channels
from .volume_readers import DEFAULT_MAX_VOXELS, identity_files

#: Column names tried, in order, when no path column is given.
PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "image", "image_path", "img")


@dataclass
class _Row:
    line: int
    path: str
    values: list[str]  # label field values, in label_columns order
    error: str | None = None


#: Separators tried when none is given, most common first.
DELIMITERS = ",;\t|"
_SNIFF_BYTES = 64 << 10


def detect_delimiter(csv_path: Path) -> str:
    """The field separator of ``csv_path``: tab for ``.tsv``, else sniffed from its first lines (',' if unsure)."""
    if csv_path.suffix.lower() == ".tsv":
        return "\t"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as f:
            sample = f.read(_SNIFF_BYTES)
        return csv.Sniffer().sniff(sample.rsplit("\n", 1)[0] if "\n" in sample else sample, DELIMITERS).delimiter
    except (OSError, csv.Error):
        return ","


def _read_table(csv_path: Path, delimiter: str) -> tuple[list[str], list[_Row], list[list[str]]]:
    """Header, rows (with the raw fields) and the raw field lists, skipping blank lines."""
    try:  # undecodable bytes become surrogates, so one bad byte costs its row, not the table
        with open(csv_path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header: list[str] | None = None
            rows: list[_Row] = []
            fields: list[list[str]] = []
            start = 1
            for record in reader:
                line, start = start, reader.line_num + 1
                if not record:
                    continue
                if header is None:
                    _check_header_text(record, csv_path)
                    header = [h.strip() for h in record]
                    continue
                rows.append(_Row(line, "", [], _undecodable(record)))
                fields.append(record)
    except FileNotFoundError:
        raise SourceError(f"{csv_path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{csv_path} is not a readable UTF-8 CSV file: {e}") from None
    if header is None:
        raise SourceError(f"{csv_path} is empty; a CSV source needs a header row (e.g. 'path,label')")
    return header, rows, fields


_ESCAPED = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as the surrogateescape decoding keeps it


def _undecodable(record: list[str]) -> str | None:
    """The reason a row holds bytes that are not UTF-8, or None (ASCII fields skipped, the rest searched in C: 0.08 ms
    for benchmarks/realdata.py's table of 600 volume rows, against 0.47 ms looping over every character)."""
    for k, field in enumerate(record):
        bad = None if field.isascii() else _ESCAPED.search(field)
        if bad is not None:
            return (f"row is not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x} in field {k + 1}); "
                    "re-save the table as UTF-8")
    return None


def _check_header_text(record: list[str], csv_path: Path) -> None:
    reason = _undecodable(record)
    if reason is not None:
        raise SourceError(f"{csv_path}: the header {reason.removeprefix('row ')}")


def _find_path_column(header: list[str], wanted: str | None, csv_path: Path) -> str:
    lower = {h.lower(): h for h in reversed(header)}
    if wanted is not None:
        if wanted in header:
            return wanted
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        raise SourceError(f"{csv_path} has no column {wanted!r}; its columns are {header}")
    for name in PATH_COLUMNS:
        if name in lower:
            return lower[name]
    raise SourceError(
        f"{csv_path} has no image path column: its columns are {header}, and none is one of "
        f"{list(PATH_COLUMNS)}; name it with {opt('path_column')}"
    )


def _parse_numbers(text: str, kind: type) -> int | float | None:
    try:
        return kind(text)
    except ValueError:
        return None


class CsvSource(Source):
    """Items ``{"image": RGB PIL.Image, "label": ...}`` from the rows of a CSV table."""

    kind = "csv"

    def __init__(
        self,
        csv_path: str | os.PathLike[str],
        path_column: str | None = None,
        label_columns: tuple[str, ...] = (),
        base_dir: str | os.PathLike[str] | None = None,
        delimiter: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        keep_columns: tuple[str, ...] = (),
        max_voxels: int = DEFAULT_MAX_VOXELS,
        reads: str | None = None,
        readers: Readers | None = None,
    ):
        readers = readers or Readers()
        self.readers = Readers(int(max_pixels), int(max_voxels), readers.nan_fill, check_channel(readers.channel),
                               check_dtype(readers.audio_dtype), check_channels(readers.channels))
        self.max_pixels, self.max_voxels = self.readers.max_pixels, self.readers.max_voxels
        if reads is not None and reads not in READS:
            raise OptionError(f"a CSV table reads {' or '.join(READS)}, not {reads!r}")
        self.keep_columns = tuple(keep_columns)
        self.csv_path = Path(csv_path).resolve()
        self.base_dir = Path(base_dir).resolve() if base_dir is not None else self.csv_path.parent
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter) if delimiter is not None else None
        if delimiter is not None and len(delimiter) != 1:
            raise OptionError(f"{opt('delimiter')} must be one character (for a tab: '\\t'), got {delimiter!r}")
        self.delimiter = delimiter if delimiter is not None else detect_delimiter(self.csv_path)
        header, self._rows, fields = _read_table(self.csv_path, self.delimiter)
        if len(set(header)) != len(header):
            raise SourceError(f"{self.csv_path} has duplicate column names: {header}; rename them")
        if len(header) == 1 and any(d in header[0] for d in DELIMITERS):
            raise SourceError(f"{self.csv_path}: the header {header[0]!r} reads as one column with "
                              f"{self.delimiter!r} as the separator; name the separator with {opt('delimiter')}")
        self.path_column = _find_path_column(header, path_column, self.csv_path)
        self.label_names = self._label_columns(header, label_columns)
        self._split_fields(header, fields)
        self._kept = kept_columns(self.csv_path, header, fields, self._rows, self.keep_columns, self.path_column)
        self._read_as(reads)
        self.classes: list[str] | None = None
        self._labels: list[Any] = [None] * len(self._rows)
        if len(self.label_names) == 1:
            self._single_labels()
        elif self.label_names:
            self._multi_labels()

    def _read_as(self, forced: str | None) -> None:
        """Decide what the table reads (audio or media) and check its readers are installed."""
        paths = [self._file(r) for r in self._rows if r.path]
        families = [row_family(p, k < SNIFFED_ROWS) for k, p in enumerate(paths)]
        self.reads = table_reads(families, forced)
        self.families = frozenset(f for f in families if f)  # what its rows hold: image, volume, audio, ...
        require_readers(self.reads, paths, families)
        found = iter(families)
        self._families = [next(found) if r.path else None for r in self._rows]
        self._volumes = [f == "volume" for f in self._families]
        self._kind: str | None = None  # of a media table with images and volumes: the kind most rows hold
        images, volumes = self._mixed = families.count("image"), families.count("volume")
        if self.reads == "media" and images and volumes:
            self._kind = "image" if images > volumes else "volume"
        if self.reads == "audio":
            self.ragged_columns = ("signal",)  # type: ignore[misc]

    def imports(self) -> tuple[str, ...]:
        volumes = ("nibabel", "pydicom", "pydicom.pixels") if any(self._volumes) else ()
        return ("soundfile",) if self.reads == "audio" else ("PIL.Image", *volumes)

    def _label_columns(self, header: list[str], wanted: tuple[str, ...]) -> list[str]:
        if not wanted:
            return [h for h in header if h != self.path_column and h not in self.keep_columns]
        missing = [c for c in wanted if c not in header]
        if missing or self.path_column in wanted:
            raise SourceError(
                f"{self.csv_path}: label columns {list(wanted)} must be columns of the table other "
                f"than the path column {self.path_column!r}; its columns are {header}"
            )
        return list(wanted)

    def _split_fields(self, header: list[str], fields: list[list[str]]) -> None:
        """Fill each row's path and label values, or its error."""
        path_at = header.index(self.path_column)
        label_at = [header.index(c) for c in self.label_names]
        for row, record in zip(self._rows, fields):
            if row.error is not None:
                continue
            if len(record) != len(header):
                row.error = f"has {len(record)} fields, the header has {len(header)}"
                continue
            row.path = record[path_at].strip()
            row.values = [record[i].strip() for i in label_at]
            if not row.path:
                row.error = f"empty path in column {self.path_column!r}"

    def _good_rows(self) -> list[tuple[int, _Row]]:
        return [(i, r) for i, r in enumerate(self._rows) if r.error is None]

    def _single_labels(self) -> None:
        column = self.label_names[0]
        for _, row in self._good_rows():
            if not row.values[0]:
                row.error = f"empty label in column {column!r}"
        good = self._good_rows()
        ints = [_parse_numbers(r.values[0], int) for _, r in good]
        if all(v is not None for v in ints):
            for (i, _), v in zip(good, ints):
                self._labels[i] = v
            return
        self.classes = sorted({r.values[0] for _, r in good})
        index = {name: k for k, name in enumerate(self.classes)}
        for i, row in good:
            self._labels[i] = index[row.values[0]]

    def _multi_labels(self) -> None:
        good = self._good_rows()
        for k, column in enumerate(self.label_names):
            if good and all(_parse_numbers(r.values[k], float) is None for _, r in good):
                raise SourceError(
                    f"{self.csv_path}: column {column!r} holds no numbers (e.g. {good[0][1].values[k]!r}), "
                    f"but a table with several label columns needs numeric ones; choose among {self.label_names} "
                    f"with {opt('label_columns')}"
                )
        all_int = all(_parse_numbers(v, int) is not None for _, r in good for v in r.values)
        kind, dtype = (int, np.int64) if all_int else (float, np.float32)
        for i, row in good:
            parsed = [_parse_numbers(v, kind) for v in row.values]
            bad = [(c, v) for c, v, p in zip(self.label_names, row.values, parsed) if p is None]
            if bad:
                c, v = bad[0]
                row.error = f"label {v!r} in column {c!r} is not a number"
            else:
                self._labels[i] = np.array(parsed, dtype=dtype)

    def _file(self, row: _Row) -> Path:
        return self.base_dir / row.path  # an absolute row.path replaces base_dir

    def _not_found(self, row: _Row, path: Path) -> str:
        """A missing file shown where it was looked for: a relative row path is read under ``base_dir``."""
        if Path(row.path).is_absolute():
            return f"file not found: {path}"
        under = "the CSV's folder" if self.base_dir == self.csv_path.parent else "the given base directory"
        return (f"file not found: {path} (read under {self.base_dir}, {under}; if the CSV's paths are relative "
                f"to another directory, pass {opt('base_dir', 'DIR')})")

    def keys(self) -> list[str]:
        return [f"row {r.line}: {r.path}" if r.path else f"row {r.line}" for r in self._rows]

    def read(self, index: int) -> dict[str, Any]:
        row = self._rows[index]
        if row.error is not None:
            raise BadItemError(row.error)
        if self._kind is not None and self._families[index] in ("image", "volume") \
                and self._families[index] != self._kind:  # a volume's row has geometry columns an image's has not
            images, volumes = self._mixed
            raise BadItemError(f"an {self._families[index]} in a table whose rows are mostly {self._kind}s ({images:,} "
                               f"images, {volumes:,} volumes): a table bakes one kind into its columns; bake the "
                               f"{self._families[index]}s from a table of their own")
        path = self._file(row)
        try:
            item: dict[str, Any] = read_file(path, self.reads, self.readers)
        except BadItemError as e:
            if not os.path.lexists(path):
                raise BadItemError(self._not_found(row, path)) from None
            raise BadItemError(e.reason) from None  # the key already names the row and the file
        item.update({name: values[index] for name, values in self._kept.items()})
        if self.label_names:
            item["label"] = self._labels[index]
        return item

    def item_identities(self) -> list[str]:
        """Path, file size and mtime (or content), and labels: independent of the row's position in the table.

        A volume read from several files (a DICOM series' slices, the ``.img`` of a ``.hdr``, the ``.BRIK.gz`` of a
        ``.HEAD``) is identified by all of them: by its row's path alone, a changed slice kept its stale voxels."""
        return self._identities(self._row_identity)

    def item_identities_from(self, files: dict[str, Any]) -> list[str] | None:
        table = relative_key(self.csv_path, self.base_dir)  # in ``files`` by content, whatever content_hash says
        known = {k: v for k, v in files.items() if k != table}
        return self._identities(lambda i: self._row_identity(i, known))

    def _identities(self, identity: Callable[[int], Any]) -> list[str]:
        out = []
        for i, (row, label) in enumerate(zip(self._rows, self._labels)):
            kept = [str(v[i]) for v in self._kept.values()] if self._kept else ""
            out.append(f"{row.path}|{identity(i)}|{row.values}|{_label_text(label)}|{row.error}{kept}")
        return out

    def _row_identity(self, index: int, known: dict[str, Any] | None = None) -> Any:
        """The identity of the files row ``index`` is read from: its file's alone for one file (as caches made before
        volumes of several files were tracked recorded it), else every file's, sorted by path. ``known``: identities
        already taken (:meth:`describe`'s), used for the files it holds."""
        row = self._rows[index]
        if not row.path:
            return None
        path = self._file(row)
        files = identity_files(path) if self._volumes[index] else [path]
        keys = [relative_key(f, self.base_dir) for f in files]
        if known is not None and all(k in known for k in keys):
            found = {k: known[k] for k in keys}
        else:
            found = file_identity(files, self.base_dir, content=self.content_hash)
        if files == [path]:
            return found[keys[0]]
        return sorted(found.items())

    def describe(self) -> dict[str, Any]:
        """The table itself by content, the files it names by metadata (or content, see
        :attr:`~prebake.sources.base.Source.content_hash`)."""
        files = [f for i, r in self._good_rows()
                 for f in (identity_files(self._file(r)) if self._volumes[i] else [self._file(r)])]
        # the default max_voxels stays out of the identity, so caches made before the limit existed stay fresh
        params = {"csv": str(self.csv_path), "path_column": self.path_column, "label_columns": list(self.label_names),
                  "max_pixels": self.max_pixels, "delimiter": self.delimiter,
                  **({"keep_columns": list(self.keep_columns)} if self.keep_columns else {}),
                  **({"max_voxels": self.max_voxels} if self.max_voxels != DEFAULT_MAX_VOXELS else {}),
                  **self._reading_params()}
        out = self.describe_files(self.base_dir, params, files)
        out["files"].update(file_identity([self.csv_path], self.base_dir, content=True))
        return out


    def _reading_params(self) -> dict[str, Any]:
        """What changes the items beyond the files (only what is set, so older caches' identities hold)."""
        r = self.readers
        audio = {"reads": "audio", "channel": r.channel, "audio_dtype": r.audio_dtype} if self.reads == "audio" else {}
        return {**audio, **({"nan_fill": r.nan_fill} if r.nan_fill is not None else {}),
                **({"channels": r.channels} if r.channels is not None else {})}


def _label_text(label: Any) -> str:
    return repr(label.tolist()) if isinstance(label, np.ndarray) else repr(label)


def kept_columns(csv_path: Path, header: list[str], fields: list[list[str]], rows: list[_Row],
                 names: tuple[str, ...], path_column: str) -> dict[str, np.ndarray]:
    """``{name: one value per row}`` for the ``keep_columns``: int64, float64 or fixed-width strings."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in header or name == path_column:
            raise SourceError(f"{csv_path}: {opt('keep_columns')} {name!r} must be a column of the table other "
                              f"than the path column {path_column!r}; its columns are {header}")
        try:
            validate_column_name(name)
        except FormatError as e:
            raise SourceError(f"{csv_path}: column {name!r} cannot be kept under that name: {e}; rename it in "
                              "the header") from None
        at = header.index(name)
        texts = [record[at].strip() if row.error is None or len(record) == len(header) else ""
                 for row, record in zip(rows, fields)]
        out[name] = _typed(texts)
    return out


def _typed(texts: list[str]) -> np.ndarray:
    """int64 if every value is an integer, float64 if every value is a number, else ``<U`` strings."""
    for kind, dtype in ((int, np.int64), (float, np.float64)):
        parsed = [_parse_numbers(t, kind) for t in texts]
        if texts and all(v is not None for v in parsed):
            return np.array(parsed, dtype=dtype)
    width = max([len(t) for t in texts] + [1])
    return np.array(texts, dtype=f"<U{width}")
