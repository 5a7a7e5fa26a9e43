"""HDF5 in and out: ragged offsets, linked files, dtypes, corrupt caches and full disks.

Every attack is a real file (written with h5py, or a real cache exported and edited), and
every judgement is made against what was written:

- bad ``offsets`` of a ragged group (negative, decreasing, not from 0, past or short of the
  values' end, floats, another length or shape) are a SourceError naming the dataset;
  valid offsets of any integer width give back exactly the rows written;
- a virtual dataset, external link or external raw storage whose file is missing (or too
  short) is a SourceError naming the dataset and that file, and a linked file changed after a
  build makes the rebuild name it;
- every dtype a cache stores comes back byte-identical (dtype string included) through
  cache -> export -> ``prebake build FILE.h5``;
- a byte flipped in a cache's column before an export is a CacheCorruptError, and no
  output file is left;
- an export onto a full disk is a DiskFullError (no segmentation fault), leaving nothing.

Anything else (a build that succeeds on a bad file, wrong rows, an exception that is not a
PrebakeError, a crash) is a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import prebake
from prebake.bake.build import BuildOptions, build_all, resolve_sources
from prebake.cli import main
from prebake.errors import CacheCorruptError, DiskFullError, PrebakeError, SourceError

from . import Row
from .diskfull import can_mount, mount_tmpfs

OFFSET_FAULTS = ("negative", "decreasing", "start", "past_end", "short_end", "float", "float_frac",
                 "length", "2d", "uint_huge")
LINK_KINDS = ("vds", "link", "raw")
LINK_FAULTS = ("missing", "changed", "short", "no_dataset")
DTYPES = (">i2", "<i2", "S5", "<U3", ">U2", "|b1", "<f2", ">f4", "<f8", "<M8[ns]", ">M8[s]", "<m8[s]",
          "<c8", ">c16", "|u1", "<u8", ">i8", "|V3")


def build(source: Path, out: Path, **options: Any) -> Any:
    """One split's build report (action, reasons)."""
    [report] = build_all(resolve_sources(source), out, BuildOptions(workers=0, **options))
    return report


def valid_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(rng.integers(0, 4, n))]).astype(np.int64)


def bad_offsets(fault: str, offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``offsets`` (valid, over ``offsets[-1]`` rows) broken the way ``fault`` says."""
    o, n, rows = offsets.copy(), len(offsets) - 1, int(offsets[-1])
    if fault == "negative":
        o[int(rng.integers(0, n + 1))] = -int(rng.integers(1, 6))
    elif fault == "decreasing":
        k = int(rng.integers(0, n))
        o[k] = o[k + 1] + int(rng.integers(1, 4))
    elif fault == "start":
        o[0] = int(rng.integers(1, 4))
    elif fault == "past_end":
        o[-1] = rows + int(rng.integers(1, 6))
    elif fault == "short_end":
        o[-1] = rows - int(rng.integers(1, 3))
    elif fault == "float":
        return o.astype(np.float64)
    elif fault == "float_frac":
        return o.astype(np.float64) + 0.5
    elif fault == "length":
        return np.append(o, rows) if rng.integers(2) else o[:-1]
    elif fault == "2d":
        return o.reshape(-1, 1)
    elif fault == "uint_huge":
        o = o.astype(np.uint64)
        o[-1] = np.uint64(2**63 + int(rng.integers(0, 1000)))
    return o


def ragged_file(path: Path, offsets: np.ndarray, values: np.ndarray, n: int, exported: bool = True) -> Path:
    """An HDF5 file with a ``label`` dataset and a ragged group ``signal`` (``num_items`` if ``exported``)."""
    import h5py

    with h5py.File(path, "w") as f:
        f["label"] = np.arange(n, dtype=np.int64) % 2
        group = f.create_group("signal")
        group["values"], group["offsets"] = values, offsets
        if exported:
            f.attrs["num_items"] = n
    return path


def refused(call: Callable[[], Any], kind: type[PrebakeError], *words: str) -> str | None:
    """None when ``call()`` raises ``kind`` with every one of ``words`` in its message, else what happened."""
    try:
        call()
    except kind as e:
        missing = [w for w in words if w not in str(e)]
        return f"the message lacks {missing}: {e}" if missing else None
    except PrebakeError as e:
        return f"{type(e).__name__} instead of {kind.__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - an untyped exception is the finding
        return f"untyped {type(e).__name__}: {e}"
    return "accepted (no error)"


# -- the attack families: each returns None (prebake did right) or what went wrong ---------------------


def offsets_attack(d: Path, rng: np.random.Generator, t: int) -> tuple[str, str | None]:
    n = int(rng.integers(1, 8))
    good = valid_offsets(rng, n)
    values = rng.standard_normal((int(good[-1]), 2)).astype(np.float32)
    if t % 8 == 7:  # the control: valid offsets of another integer width bake exactly
        width = rng.choice(["<i4", ">i8", "<u2"])
        path = ragged_file(d / "good.h5", good.astype(width), values, n, exported=bool(rng.integers(2)))
        cache = prebake.build(path, d / "cache", workers=0, progress=False, force=True)
        same = all(np.array_equal(cache[i]["signal"], values[good[i] : good[i + 1]]) for i in range(n))
        return f"valid {width} offsets", None if same else "wrong rows from valid offsets"
    fault = OFFSET_FAULTS[int(rng.integers(len(OFFSET_FAULTS)))]
    bad = bad_offsets(fault, good, rng)
    path = ragged_file(d / f"bad-{fault}.h5", bad, values, n)
    problem = refused(lambda: prebake.build(path, d / f"out-{fault}", workers=0, progress=False),
                      SourceError, path.name, "signal/offsets")
    if problem is None and (d / f"out-{fault}").exists():
        problem = "an output was left behind"
    return f"offsets {fault} {bad.tolist()} over {len(values)} rows", problem


def linked_files(d: Path, kind: str, n: int = 6) -> tuple[Path, Path]:
    """A main file whose ``x`` lives in another file (``kind``: vds, link, raw): (main, that file)."""
    import h5py

    x = np.arange(n * 2, dtype="<i4").reshape(n, 2)
    other = d / ("raw.bin" if kind == "raw" else "data.h5")
    if kind == "raw":
        x.tofile(other)
    else:
        with h5py.File(other, "w") as f:
            f["x"] = x
    with h5py.File(d / "main.h5", "w") as f:
        f["label"] = np.arange(n, dtype=np.int64) % 2
        if kind == "vds":
            layout = h5py.VirtualLayout(shape=x.shape, dtype=x.dtype)
            layout[:] = h5py.VirtualSource(other.name, "x", shape=x.shape)  # relative: found beside main.h5
            f.create_virtual_dataset("x", layout, fillvalue=-7)
        elif kind == "link":
            f["x"] = h5py.ExternalLink(other.name, "/x")
        else:
            f.create_dataset("x", shape=x.shape, dtype=x.dtype, external=[(str(other), 0, x.nbytes)])
    return d / "main.h5", other


def link_attack(d: Path, rng: np.random.Generator, t: int) -> tuple[str, str | None]:
    kind, fault = LINK_KINDS[t % 3], LINK_FAULTS[(t // 3) % len(LINK_FAULTS)]
    if fault == "no_dataset" and kind == "raw":
        fault = "missing"
    if fault == "short" and kind == "link":  # a linked dataset of another length is left out, as any other
        fault = "no_dataset"
    main, other = linked_files(d, kind)
    what = f"{kind} {fault}"
    if fault == "changed":
        first = build(main, d / "cache")
        st = other.stat()
        _edit_x(other, kind, rng)
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the bytes differ
        again = build(main, d / "cache")
        reasons = " ".join(again.reasons)
        if again.action != "rebuilt" or other.name not in reasons:
            return what, f"after the change: {again.action} ({reasons}), first {first.action}"
        got = prebake.open(d / "cache").column("x")
        return what, None if np.array_equal(got, _x_now(other, kind)) else "the rebuild kept the old rows"
    if fault == "missing":
        other.unlink()
    elif fault == "short":
        other.write_bytes(other.read_bytes()[:-8]) if kind == "raw" else _shrink_dataset(other)
    else:
        _rename_dataset(other)
    problem = refused(lambda: build(main, d / "out"), SourceError, "'x'", other.name)
    return what, problem


def flip_bytes(path: Path, rng: np.random.Generator, start: int, stop: int) -> None:
    data = bytearray(path.read_bytes())
    for at in rng.integers(max(0, start), stop, 4):
        data[int(at)] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


def _edit_x(path: Path, kind: str, rng: np.random.Generator) -> None:
    """New values for rows of ``x`` in its own file, the file's size kept."""
    if kind == "raw":
        x = np.fromfile(path, dtype="<i4")
        x[int(rng.integers(len(x)))] += 1 + int(rng.integers(100))
        x.tofile(path)
        return
    import h5py

    with h5py.File(path, "r+") as f:
        f["x"][int(rng.integers(len(f["x"])))] += 1 + int(rng.integers(100))


def _x_now(path: Path, kind: str) -> np.ndarray:
    if kind == "raw":
        return np.fromfile(path, dtype="<i4").reshape(-1, 2)
    import h5py

    with h5py.File(path, "r") as f:
        return f["x"][:]


def _shrink_dataset(path: Path) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        x = f["x"][:]
        del f["x"]
        f["x"] = x[:-1]


def _rename_dataset(path: Path) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        f.move("x", "renamed")


def random_column(rng: np.random.Generator, dtype: str, n: int) -> Any:
    """A fixed column (array) or a ragged one (list of arrays) of ``dtype``, random shape (0-wide axes too)."""
    inner = tuple(int(s) for s in rng.integers(0, 3, int(rng.integers(0, 3))))
    if rng.integers(3) == 0:
        return [random_values(rng, np.dtype(dtype), (int(rng.integers(0, 4)), *inner)) for _ in range(n)]
    return random_values(rng, np.dtype(dtype), (n, *inner))


def random_values(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    if dtype.kind in "SV":  # any bytes, not UTF-8 (NULs inside, trailing ones are numpy's padding)
        raw = rng.integers(0, 256, size * dtype.itemsize, dtype=np.uint8).tobytes()
        return np.frombuffer(raw, dtype).reshape(shape).copy()
    if dtype.kind == "U":
        words = ["", "a", "é", "ß\x00x", "日本", "zz"]
        return np.array([words[i] for i in rng.integers(0, len(words), size)], dtype=dtype).reshape(shape)
    if dtype.kind in "Mm":
        return rng.integers(-(2**40), 2**40, size).astype(dtype).reshape(shape)
    if dtype.kind == "c":
        return (rng.standard_normal(size) + 1j * rng.standard_normal(size)).astype(dtype).reshape(shape)
    if dtype.kind == "f":
        return rng.standard_normal(size).astype(dtype).reshape(shape)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    high = 2 if info is None else min(int(info.max), 2**62)
    low = 0 if info is None else max(int(info.min), -(2**62))
    return rng.integers(low, high, size, endpoint=True).astype(dtype).reshape(shape)


def column_bytes(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache.iterdir())
            if p.suffix == ".npy" and not p.name.startswith("_")}


def dtype_attack(d: Path, rng: np.random.Generator, t: int) -> tuple[str, str | None]:
    n = int(rng.integers(1, 7))
    dtypes = [DTYPES[t % len(DTYPES)], *rng.choice(DTYPES, 2)]
    columns = {f"c{i}": random_column(rng, dt, n) for i, dt in enumerate(dtypes)}
    shown = {k: f"{dt}{' ragged' if isinstance(v, list) else str(v.shape)}"
             for (k, v), dt in zip(columns.items(), dtypes)}
    first = prebake.write_arrays(d / "a", columns)
    compression = [None, "gzip", "lzf"][t % 3]
    prebake.export_hdf5(first.path, d / "a.h5", compression=compression)
    second = prebake.build(d / "a.h5", d / "b", workers=0, progress=False)
    a, b = column_bytes(first.path), column_bytes(second.path)
    differ = sorted(set(a) ^ set(b)) + [k for k in a if k in b and a[k] != b[k]]
    specs = (json.loads((p / "manifest.json").read_text())["columns"] for p in (first.path, second.path))
    dtypes_a, dtypes_b = ({k: v["dtype"] for k, v in s.items()} for s in specs)
    if differ or dtypes_a != dtypes_b:
        return f"{shown} ({compression})", f"not byte-identical: {differ}, dtypes {dtypes_a} -> {dtypes_b}"
    return f"{shown} ({compression})", None


def corrupt_attack(d: Path, rng: np.random.Generator, t: int) -> tuple[str, str | None]:
    n = int(rng.integers(2, 9))
    columns = {"x": random_column(rng, str(rng.choice(DTYPES)), n), "y": np.arange(n, dtype=np.int64)}
    cache = prebake.write_arrays(d / "a", columns).path
    files = [p for p in sorted(cache.iterdir()) if p.suffix == ".npy" and not p.name.startswith("_")]
    victim = files[int(rng.integers(len(files)))]
    flip_bytes(victim, rng, 0, victim.stat().st_size)
    out = d / "out.h5"
    problem = refused(lambda: prebake.export_hdf5(cache, out), CacheCorruptError, victim.name)
    if problem is None and sorted(p.name for p in d.iterdir()) != ["a"]:
        problem = f"left behind: {sorted(p.name for p in d.iterdir())}"
    return f"a byte flipped in {victim.name}", problem


def disk_full_attack(d: Path, rng: np.random.Generator, t: int) -> tuple[str, str | None]:
    n = 400
    cache = prebake.write_arrays(d / "a", {"x": rng.integers(0, 255, (n, 1000), dtype=np.uint8),
                                           "s": [np.zeros((i % 5, 3), "<f4") for i in range(n)]}).path
    how = "tmpfs" if t % 2 == 0 and can_mount(d) else "rlimit"
    cfg = {"cache": str(cache), "disk": str(d / "disk"), "how": how, "size": int(rng.integers(1, 300)) * 1024,
           "compression": [None, "gzip"][int(rng.integers(2))], "cli": t % 4 >= 2, "report": str(d / "report.json")}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - reports through its file and exit status
        _full_child(cfg)
    _, status = os.waitpid(pid, 0)
    what = f"{how} of {cfg['size']:,} bytes, compression {cfg['compression']}{' (CLI)' if cfg['cli'] else ''}"
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return what, f"the export died: wait status {status}"
    r = json.loads(Path(cfg["report"]).read_text())
    ok = r.get("error") == "DiskFullError" and "bytes" in r.get("message", "") and r.get("left") == []
    return what, None if ok else f"{r}"


def _full_child(cfg: dict[str, Any]) -> None:
    disk = Path(cfg["disk"])
    disk.mkdir(exist_ok=True)
    result: dict[str, Any] = {}
    try:
        if cfg["how"] == "tmpfs":
            mount_tmpfs(disk, cfg["size"])
        else:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["size"], resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        if cfg["cli"]:  # the command line, where the full disk was a segmentation fault
            with contextlib.redirect_stderr(io.StringIO()) as err:
                rc = main(["export", cfg["cache"], str(disk / "x.h5"), "--compression", cfg["compression"] or "none"])
            kind = "DiskFullError" if rc == 2 and "export to another disk" in err.getvalue() else f"rc {rc}"
            result.update(error=kind, message=err.getvalue())
        else:
            prebake.export_hdf5(cfg["cache"], disk / "x.h5", compression=cfg["compression"])
            result["error"] = None
    except DiskFullError as e:
        result.update(error="DiskFullError", message=str(e))
    except BaseException as e:  # noqa: BLE001 - anything else is the finding
        result.update(error=type(e).__name__, message=str(e), trace=traceback.format_exc())
    result["left"] = sorted(os.listdir(disk))
    Path(cfg["report"]).write_text(json.dumps(result))
    os._exit(0)


FAMILIES: dict[str, Callable[[Path, np.random.Generator, int], tuple[str, str | None]]] = {
    "offsets": offsets_attack, "links": link_attack, "dtypes": dtype_attack, "corrupt": corrupt_attack,
    "disk-full": disk_full_attack,
}


def hdf5_exchange(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    """``trials`` attacks, the families in turn (each at least once when ``trials`` >= 5)."""
    row = Row("HDF5 in and out: bad offsets, linked files, dtypes, corrupt caches, full disks")
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    for t in range(trials):
        family = names[t % len(names)]
        d = Path(work_dir) / f"hdf5-{t}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        try:
            what, problem = FAMILIES[family](d, rng, t // len(names))
        except PrebakeError as e:
            what, problem = family, f"refused what it must accept: {type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - an untyped exception is the finding
            what, problem = family, f"untyped {type(e).__name__}: {e}"
        row.check(problem is None, f"{family}: {what}: {problem}")
        shutil.rmtree(d, ignore_errors=True)
    row.notes["kinds"] = ", ".join(names)
    return row
