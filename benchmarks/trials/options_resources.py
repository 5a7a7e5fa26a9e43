"""Bad options, hostile config files and hostile volume headers (issue 25, items 3, 11 and 12).

Every out-of-range option value, given through Python, the CLI or a config file, must be
an OptionError naming the option as the user wrote it, before any work: nothing is
committed. Every hostile config file (a FIFO, /dev/zero, a YAML alias bomb, 2 MB, deep
nesting, not UTF-8) must be an OptionError naming the file. Every hostile volume header
(1200^3 voxels in 8 KB, a zero-length axis, a singular or NaN affine, a zero, negative or
NaN pixdim, a DICOM of 65535 x 65535 x 1000) must be a bad item with its reason, read
without allocating what it declares.

Each attempt runs in a forked child under an address-space limit of 1 GiB over what it
maps at the fork, so an attempt that hangs is killed and counted, and one that would
allocate what a hostile header declares fails in the child instead of taking the
machine's memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import resource
import select
import signal
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prebake
from prebake.bake.api import prepare
from prebake.cli import main
from prebake.config import check_settings
from prebake.errors import BadItemError, OptionError, PrebakeError
from prebake.settings import SOURCE_KEYS, STEP_KEYS, build_kwargs
from prebake.sources.volume_readers import read_volume
from prebake.synthetic import write_image_folder

from . import Row
from .volumefiles import VOLUME_KINDS, hostile_volume, write_nifti

Attempt = Callable[[], "str | None"]  # None when prebake did the right thing, else what went wrong
TIMEOUT_S = 60.0
GREW_LIMIT_KIB = 64 * 1024  # a refused header costs its header, not what it declares


def options_resources(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    """``trials`` attempts drawn from the option, config-file and volume-header families (each at least once)."""
    row = Row("options, config files and volume headers")
    rng = random.Random(seed)
    data = Data(work_dir)
    families = (option_attempt, config_attempt, volume_attempt, build_attempt)
    for t in range(trials):
        name, attempt = families[t % len(families)](data, rng, t)
        problem, grew = in_child(attempt)
        if problem is None and grew > GREW_LIMIT_KIB:
            problem = f"the child's peak memory grew by {grew:,} KiB"
        row.check(problem is None, f"{name}: {problem}")
    row.notes["families"] = len(families)
    return row


# -- running one attempt ----------------------------------------------------------------------------

def in_child(attempt: Attempt, timeout: float = TIMEOUT_S) -> tuple[str | None, int]:
    """``attempt()`` in a forked child under an address-space limit: (its problem, peak RSS growth in KiB)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        _child(attempt, write)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return f"no answer in {timeout:g} s (a hang)", 0
        with os.fdopen(read, "rb", closefd=False) as f:
            blob = f.read()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    if not blob:
        return "the child died without an answer", 0
    report = json.loads(blob)
    return report["problem"], report["grew"]


def _child(attempt: Attempt, write: int) -> None:
    try:
        _limit_memory(2**30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            problem = attempt()
        except BaseException as e:  # noqa: BLE001 - any escape is the finding
            problem = f"raised {type(e).__name__}: {e} | {traceback.format_exc(limit=-3)[-600:]}"
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        os.write(write, json.dumps({"problem": problem, "grew": grew}).encode())
    finally:
        os._exit(0)


def _limit_memory(extra: int) -> None:
    mapped = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                      if line.startswith("VmSize:"))) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, resource.getrlimit(resource.RLIMIT_AS)[1]))


# -- shared inputs --------------------------------------------------------------------------------

class Data:
    """A tiny image folder, a good volume, and a fresh directory per attempt."""

    def __init__(self, work_dir: Path):
        self.root = Path(work_dir)
        self.images = write_image_folder(self.root / "images", classes=("a", "b"), per_class=2, size=(8, 8))
        (self.root / "volumes" / "a").mkdir(parents=True)
        write_nifti(self.root / "volumes" / "a" / "good.nii", (4, 5, 6))
        for source in (self.images, self.root / "volumes"):  # what a build imports, imported before the children
            prebake.build(source, self.fresh() / "warm", workers=0, progress=False)

    def fresh(self) -> Path:
        """A new directory, unique across the forked children too."""
        return Path(tempfile.mkdtemp(prefix="t", dir=self.root))


# -- 1. option values -------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
_SIZES = ("chunk_rows", "image_size", "shorter_side", "crop", "frame_size", "max_pixels", "max_voxels",
          "sample_rate", "cycle_length")
BAD_VALUES: dict[str, list[Any]] = {
    **{k: [0, -1, -2**40, True, 2.5, NAN, INF, "8", 2**64] for k in _SIZES},
    "image_size": [0, -3, True, 2.5, NAN, "224", 10**6],  # 10^12 pixels: over max_pixels
    "crop": [0, -3, False, NAN, 10**5],
    "workers": [-1, -8, True, 2.5, NAN, "4"],
    "fps": [0.0, -25.0, NAN, INF, -INF, True],
    "lock_timeout": [-1.0, NAN, INF, -INF, True],
    "watchdog": [-1.0, NAN, INF, -INF, False],
    "pad_value": [NAN, INF, -INF, True],
    "nan_fill": [NAN, INF, -INF, True],
    "max_skipped": [-1, 1.5, NAN, INF, True, "5"],
    "bandpass": [[5.0, 1.0], [0.0, 5.0], [-1.0, 5.0], [NAN, 5.0], [1.0, INF], [3.0, 3.0], [1.0], [1, 2, 3],
                 [True, 5.0]],
    "heart_rate": [[150.0, 40.0], [0.0, 150.0], [-40.0, 150.0], [NAN, 150.0], [40.0, INF], [40.0]],
    "window": [[5.0, 5.0], [5.0, 1.0], [NAN, 1.0], [-INF, 1000.0], [1.0]],
    "scale_to": [[NAN, 1.0], [0.0, INF]],
    "spacing": [[0.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [NAN, 1.0, 1.0], [INF, 1.0, 1.0], [1.0, 1.0]],
    "volume_shape": [[0, 8, 8], [-1, 8, 8], [8, 8], [2.5, 8, 8], [True, 8, 8], [10**4, 10**4, 10**4]],
}
FRONTS = ("python", "settings", "cli", "yaml", "json", "toml")


def option_attempt(data: Data, rng: random.Random, t: int) -> tuple[str, Attempt]:
    key = rng.choice(sorted(BAD_VALUES))
    value = rng.choice(BAD_VALUES[key])
    front = FRONTS[(t // 4) % len(FRONTS)]
    if key == "workers" and rng.random() < 0.2:
        return "workers=10**6", lambda: workers_capped(data)
    if front == "cli" and cli_tokens(value) is None:
        front = "python"  # a bool or a string: every CLI value is a string
    if front == "python" and python_call(key, value, data.images, data.root / "never") is None:
        front = "settings"  # a pair of the wrong length: a step's signature cannot take it
    d = data.fresh()
    out = d / "out"
    return f"{front} {key}={value!r}", lambda: refused_before_work(front, key, value, data.images, out)


def refused_before_work(front: str, key: str, value: Any, source: Path, out: Path) -> str | None:
    """None when the build refuses ``key=value`` with an OptionError naming it, and OUT was never made."""
    if front == "cli":
        problem = _cli_refuses(key, value, source, out)
    elif front == "python":
        call = python_call(key, value, source, out)
        if call is None:
            raise ValueError(f"Python's steps cannot spell {key}={value!r}: try it through the settings")
        problem = _python_refuses(call[0], call[1])
    elif front == "settings":  # the flat settings of the flags, compiled by prebake.settings
        given = {"source": str(source), "out": str(out), "workers": 0, key: value}
        problem = _python_refuses(lambda: prebake.build(progress=False, **build_kwargs(check_settings(given))), key)
    else:
        cfg = write_config(out.parent / f"bake.{front}", {"source": str(source), "out": str(out), key: value},
                           front)
        problem = _python_refuses(lambda: prebake.build(progress=False, **prebake.load_config(cfg)), key, cfg.name)
    if problem is None and out.exists():
        problem = f"refused, but {out} was made"
    return problem


def python_call(key: str, value: Any, source: Path, out: Path) -> tuple[Callable[[], Any], str] | None:
    """``key=value`` as Python writes it (a keyword of build(), a field of SourceOptions, a step) and the name
    its refusal must give; None for a pair of the wrong length, which a step's signature cannot take."""
    from prebake import steps as S

    if key in SOURCE_KEYS:
        return lambda: prebake.build(source, out, source_options=prebake.SourceOptions(**{key: value}), workers=0,
                                     progress=False), key
    if key not in STEP_KEYS:
        return lambda: prebake.build(source, out, progress=False, **{"workers": 0, key: value}), key
    pair = isinstance(value, list) and len(value) == 2
    made: dict[str, tuple[str, Callable[[], Any]] | None] = {
        "image_size": ("Resize", lambda: S.Resize(value)),
        "shorter_side": ("ShorterSide", lambda: S.ShorterSide(value)),
        "crop": ("CenterCrop", lambda: S.CenterCrop(value)), "sample_rate": ("Resample", lambda: S.Resample(value)),
        "cycle_length": ("SegmentCycles", lambda: S.SegmentCycles(length=value)),
        "heart_rate": ("SegmentCycles", lambda: S.SegmentCycles(heart_rate=tuple(value))),
        "bandpass": ("BandPass", lambda: S.BandPass(*value)) if pair else None,
        "window": ("Window", lambda: S.Window(*value)) if pair else None,
        "scale_to": ("Window", lambda: S.Window(-1000, 1000, scale_to=tuple(value))),
        "spacing": ("Spacing", lambda: S.Spacing(tuple(value))),
        "volume_shape": ("CropOrPad", lambda: S.CropOrPad(tuple(value))),
        "pad_value": ("CropOrPad", lambda: S.CropOrPad((4, 4, 4), value)),
    }
    if made[key] is None:
        return None
    name, step = made[key]
    return lambda: prebake.build(source, out, [step()], workers=0, progress=False), name


def _python_refuses(call: Callable[[], Any], key: str, file: str = "") -> str | None:
    """None when ``call()`` raises an OptionError naming ``key`` (or the config ``file`` it came from)."""
    try:
        call()
    except OptionError as e:
        written = (key, key.replace("_", "-")) + ((file,) if file else ())
        return None if any(w in str(e) for w in written) else f"OptionError does not name {key}: {e}"
    except PrebakeError as e:
        return f"{type(e).__name__} instead of an OptionError: {e}"
    return "accepted"


def _cli_refuses(key: str, value: Any, source: Path, out: Path) -> str | None:
    tokens = cli_tokens(value)
    if tokens is None:
        raise ValueError(f"the CLI cannot spell {value!r}: try it through Python")
    flag = "--" + key.replace("_", "-")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["build", str(source), str(out), "--workers", "0", "-q", flag, *tokens])
        except SystemExit as e:  # argparse's refusal of a value its type cannot parse
            code = e.code if isinstance(e.code, int) else 2
    text = err.getvalue()
    if code != 2 or "Traceback" in text or not (flag in text or "usage:" in text):  # argparse names it, or its count
        return f"rc {code}, stderr {text[-300:]!r}"
    return None


def cli_tokens(value: Any) -> list[str] | None:
    """``value`` as CLI words, or None for what the CLI cannot spell (a switch's bool, a string: every word is one)."""
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, (bool, str)) for v in values):
        return None
    return [repr(v) if isinstance(v, float) else str(v) for v in values]


def write_config(path: Path, settings: dict[str, Any], fmt: str) -> Path:
    if fmt == "yaml":
        import yaml

        path.write_text(yaml.safe_dump(settings))
    elif fmt == "json":
        path.write_text(json.dumps(settings))  # NaN and Infinity, as Python's json writes them
    else:
        path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items()))
    return path


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else str(v)


def workers_capped(data: Data) -> str | None:
    """``workers=10**6`` resolves to at most 4 per core (at most 256, at least one per core)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    given = check_settings({"source": str(data.images), "out": str(data.root / "never"), "workers": 10**6})
    workers = prepare(**build_kwargs(given))[2].workers
    cap = max(cpus, min(4 * cpus, 256))
    return None if workers == cap else f"workers=10**6 resolved to {workers}, expected the cap {cap}"


# -- 2. config files ------------------------------------------------------------------------------

def config_attempt(data: Data, rng: random.Random, t: int) -> tuple[str, Attempt]:
    d = data.fresh()
    kind = CONFIG_KINDS[(t // 4) % len(CONFIG_KINDS)]
    path = hostile_config(d, kind, rng)
    via_cli = rng.random() < 0.5
    return f"config {kind} ({'CLI' if via_cli else 'load_config'})", lambda: config_refused(path, via_cli, d)


CONFIG_KINDS = ("fifo", "dev-zero", "symlink-to-dev-zero", "directory", "too-big", "not-utf8", "alias-bomb",
                "deep-yaml", "deep-json", "deep-toml", "python-tag", "json-nan", "toml-huge-int", "binary-junk",
                "empty", "a-list", "missing")


def hostile_config(d: Path, kind: str, rng: random.Random) -> Path:
    p = d / {"deep-json": "bake.json", "json-nan": "bake.json", "deep-toml": "bake.toml",
             "toml-huge-int": "bake.toml", "binary-junk": "bake.json"}.get(kind, "bake.yaml")
    if kind == "fifo":
        os.mkfifo(p)
    elif kind in ("dev-zero", "symlink-to-dev-zero"):
        p = Path("/dev/zero") if kind == "dev-zero" else p
        if kind == "symlink-to-dev-zero":
            os.symlink("/dev/zero", p)
    elif kind == "directory":
        p.mkdir()
    elif kind == "too-big":
        p.write_text("# padding\n" * rng.randint(110_000, 400_000) + "workers: 0\n")
    elif kind == "not-utf8":
        p.write_bytes(b"source: caf\xe9\nworkers: 0\n")
    elif kind == "alias-bomb":
        p.write_text(alias_bomb(rng.randint(9, 12), rng.randint(9, 10)))  # 9^9 strings and up: gigabytes
    elif kind.startswith("deep-"):
        depth = rng.randint(2_000, 200_000)
        p.write_text({"deep-yaml": "a: " + "[" * depth, "deep-json": "[" * depth + "]" * depth,
                      "deep-toml": "a = " + "[" * depth + "]" * depth}[kind])
    elif kind != "missing":
        p.write_bytes(_fixed_config(kind, rng))
    return p


def _fixed_config(kind: str, rng: random.Random) -> bytes:
    return {
        "python-tag": b"workers: !!python/object/apply:os.getpid []\n",
        "json-nan": b'{"fps": NaN, "lock_timeout": Infinity}',
        "toml-huge-int": b"chunk_rows = 9223372036854775807\nworkers = -9223372036854775808\n",
        "binary-junk": rng.randbytes(4096),
        "empty": b"",
        "a-list": b"- workers\n- 0\n",
    }[kind]


def alias_bomb(levels: int, width: int) -> str:
    """The billion-laughs YAML under a real key: each level lists the previous one ``width`` times.

    PyYAML shares the repeated lists, so loading is cheap; the ``width ** levels`` strings appear when the
    value is walked or printed (a message that shows it took 2.1 GB).
    """
    lines = ["x0: &x0 [lol]"] + [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "ragged:\n" + "".join(f"  - {line}\n" for line in lines)


def config_refused(path: Path, via_cli: bool, d: Path) -> str | None:
    name = path.name
    if via_cli:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["build", "--config", str(path), str(d / "src-not-needed"), str(d / "out")])
        text = err.getvalue()
        if code != 2 or "Traceback" in text or name not in text:
            return f"rc {code}, stderr {text[-300:]!r}"
        return None if not (d / "out").exists() else "OUT was made"
    try:
        prebake.load_config(path)
    except OptionError as e:
        return None if name in str(e) else f"OptionError does not name {name}: {e}"
    except PrebakeError as e:
        return f"{type(e).__name__} instead of an OptionError: {e}"
    return "accepted"


# -- 3. volume headers ----------------------------------------------------------------------------

def volume_attempt(data: Data, rng: random.Random, t: int) -> tuple[str, Attempt]:
    kind = VOLUME_KINDS[(t // 4) % len(VOLUME_KINDS)]
    path, want = hostile_volume(data.fresh(), kind, rng)
    return f"volume {kind}", lambda: volume_refused(path, want)


def volume_refused(path: Path, want: str) -> str | None:
    try:
        read_volume(path)
    except BadItemError as e:
        return None if want in e.reason and path.name in e.reason else f"reason without {want!r} or the file: " \
                                                                        f"{e.reason}"
    return "read as a volume"


# -- 4. builds of hostile volumes -------------------------------------------------------------------

def build_attempt(data: Data, rng: random.Random, t: int) -> tuple[str, Attempt]:
    d = data.fresh()
    kinds = rng.sample(VOLUME_KINDS, 2)
    all_bad = rng.random() < 0.5
    folder = d / "scans"
    (folder / "a").mkdir(parents=True)
    for i, kind in enumerate(kinds):
        path, _ = hostile_volume(d, kind, rng)
        path.rename(folder / "a" / f"bad{i}{''.join(path.suffixes)}")
    if not all_bad:
        write_nifti(folder / "a" / "good.nii", (4, 5, 6))
    return f"build of {kinds}{' only' if all_bad else ' + a good one'}", lambda: built_right(folder, d / "out",
                                                                                             all_bad)


def built_right(folder: Path, out: Path, all_bad: bool) -> str | None:
    try:
        cache = prebake.build(folder, out, workers=0, progress=False)
    except PrebakeError as e:
        if all_bad and not out.exists():
            return None
        return f"{type(e).__name__}: {e}"
    if all_bad:
        return f"a build of only bad volumes committed {len(cache)} items"
    skipped = cache.manifest["skipped"]
    return None if len(cache) == 1 and len(skipped) == 2 else f"kept {len(cache)}, skipped {skipped}"
