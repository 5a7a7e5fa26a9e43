"""The other files an HDF5 file reads its rows from: part of its identity, and refused when missing.

Three HDF5 features keep data outside the file a source names: external links
(``h5py.ExternalLink``), virtual datasets (VDS, ``dset.virtual_sources()``) and external raw
storage (``dset.external``). HDF5 reads a VDS whose source file or dataset is missing as its
fill value, and the missing tail of a short external raw file as zeros, without an error; and
a changed linked file leaves the main file's bytes as they were. So every linked file is
resolved and checked when the source is opened (a missing one is a SourceError naming the
dataset and the file) and enters the source's ``describe()`` (by size, mtime and ctime, or
by content with ``content_hash``), so a change means a rebuild that names the file.

Relative names are looked up as HDF5 looks them up: external links and VDS sources beside
the file that names them, then in the current directory (``HDF5_VDS_PREFIX`` first, if set);
external raw files in the current directory (``HDF5_EXTFILE_PREFIX`` first, if set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..cache.export import h5py_module
from ..errors import SourceError

_MAX_DEPTH = 8  # virtual datasets of virtual datasets: deeper than any real file nests them


class LinkedFiles:
    """Collects (and checks) the files outside ``path`` that the datasets it bakes read from."""

    def __init__(self, path: Path):
        self.path = path
        self.files: dict[Path, None] = {}  # in the order found
        self._seen: set[tuple[Path, str]] = set()

    def follow(self, group: Any, name: str, where: str) -> None:
        """Refuse a dangling link at ``group[name]``; note the file an external link leads to."""
        h5py = h5py_module()
        link = group.get(name, getlink=True)
        if not isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            return
        try:
            target = group[name]
        except (KeyError, OSError, ValueError):
            raise SourceError(self._dangling(link, where, Path(group.file.filename))) from None
        if isinstance(link, h5py.ExternalLink):
            self._add(Path(target.file.filename))

    def storage(self, ds: Any, where: str, depth: int = 0) -> None:
        """Note and check the files the rows of the dataset ``ds`` are stored in."""
        if ds.is_virtual:
            for vmap in ds.virtual_sources():
                self._virtual(ds, vmap, where, depth)
        h5f = h5py_module().h5f
        for name, offset, size in ds.external or ():
            self._raw(os.fsdecode(name), offset, None if size == h5f.UNLIMITED else size, ds, where)

    def _virtual(self, ds: Any, vmap: Any, where: str, depth: int) -> None:
        h5py = h5py_module()
        home = Path(ds.file.filename)
        src = home if vmap.file_name == "." else _near(vmap.file_name, home.parent, "HDF5_VDS_PREFIX")
        what = (f"{self.path}: dataset {where!r} is a virtual dataset that reads dataset {vmap.dset_name!r} of "
                f"{vmap.file_name}")
        fill = "HDF5 would read its rows as the fill value"
        if not src.is_file():
            raise SourceError(f"{what}, which is missing (looked for {src}); {fill}: put the file back, or rebuild "
                              "the virtual dataset without it")
        if (src.resolve(), vmap.dset_name) in self._seen or depth >= _MAX_DEPTH:
            return
        self._seen.add((src.resolve(), vmap.dset_name))
        self._add(src)
        try:
            with h5py.File(src, "r") as f:
                source = f.get(vmap.dset_name)
                if not isinstance(source, h5py.Dataset):
                    raise SourceError(f"{what}, which has no such dataset; {fill}: put the dataset back, or rebuild "
                                      "the virtual dataset without it")
                _check_extent(vmap, source, f"{what}, {fill}")
                self.storage(source, where, depth + 1)
        except OSError as e:
            raise SourceError(f"{what}, which cannot be read as HDF5 ({e}); {fill}: "
                              "replace it with a good copy") from None

    def _raw(self, name: str, offset: int, size: int | None, ds: Any, where: str) -> None:
        path = _external_raw(name, Path(ds.file.filename).parent)
        what = f"{self.path}: dataset {where!r} stores its rows in the external file {name}"
        if not path.is_file():
            raise SourceError(f"{what}, which is missing (looked for {path}); put the file back, or store the rows "
                              "in the HDF5 file itself")
        have = path.stat().st_size
        if size is not None and have < offset + size:
            raise SourceError(f"{what}, which is {have:,} bytes but must hold bytes {offset:,} to {offset + size:,}; "
                              "HDF5 would read the missing part as zeros: put the whole file back")
        self._add(path)

    def _add(self, path: Path) -> None:
        path = Path(os.path.abspath(path))
        if path != self.path:
            self.files[path] = None

    def _dangling(self, link: Any, where: str, home: Path) -> str:
        if isinstance(link, h5py_module().SoftLink):
            return (f"{self.path}: {where!r} is a link to {link.path}, which does not exist in the file; "
                    "remove the link or restore its target")
        target = _near(link.filename, home.parent, "HDF5_EXT_PREFIX")
        why = f"which has no object {link.path}" if target.is_file() else f"which is missing (looked for {target})"
        return (f"{self.path}: {where!r} is an external link to {link.path} in {link.filename}, {why}; "
                "put the file back, or remove the link")


def _near(name: str, folder: Path, env: str) -> Path:
    """Where HDF5 finds the file ``name`` that a file in ``folder`` names (the first that exists)."""
    p = Path(os.fsdecode(name))
    if p.is_absolute():
        return p
    prefix = os.environ.get(env)
    tried = ([Path(prefix.replace("${ORIGIN}", str(folder))) / p] if prefix else []) + [folder / p, Path.cwd() / p]
    return next((c for c in tried if c.is_file()), tried[0])


def _external_raw(name: str, folder: Path) -> Path:
    p = Path(name)
    if p.is_absolute():
        return p
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX")
    return (Path(prefix.replace("${ORIGIN}", str(folder))) if prefix else Path.cwd()) / p


def _check_extent(vmap: Any, source: Any, what: str) -> None:
    """Refuse a mapping that reads past the end of its source dataset (those rows would be fill values)."""
    needed = _needed_extent(vmap)
    if needed is None or len(needed) != source.ndim:
        return
    if any(n > s for n, s in zip(needed, source.shape)):
        raise SourceError(f"{what}: it maps a region of {needed} from a dataset of shape {source.shape}; "
                          "restore the full source dataset, or rebuild the virtual dataset for its real shape")


def _needed_extent(vmap: Any) -> tuple[int, ...] | None:
    """The source extent a mapping reads (None when HDF5 cannot say: unlimited selections)."""
    h5s = h5py_module().h5s
    try:
        if vmap.src_space.get_select_type() == h5s.SEL_HYPERSLABS:
            needed = tuple(int(e) + 1 for e in vmap.src_space.get_select_bounds()[1])
        elif vmap.vspace.get_select_type() == h5s.SEL_HYPERSLABS:
            start, end = vmap.vspace.get_select_bounds()
            needed = tuple(int(e) - int(s) + 1 for s, e in zip(start, end))
        else:
            needed = tuple(int(d) for d in vmap.vspace.shape)
    except (ValueError, RuntimeError):
        return None
    return None if any(n >= 2**62 for n in needed) else needed  # an unlimited selection
