"""Build settings: the keys of ``prebake build``'s arguments and flags, their types and ranges, and config files.

>>> import prebake, tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "bake.yaml"
>>> _ = f.write_text("source: data/photos\\nout: cache/photos\\nimage-size: 64\\nworkers: 2\\n")
>>> prebake.load_config(f)
{'source': 'data/photos', 'out': 'cache/photos', 'workers': 2, 'steps': [Resize(size=64)]}

``prebake build --config bake.yaml`` reads it (flags on the command line win), and
``prebake.build(**prebake.load_config("bake.yaml"))`` does the same in Python: the step
settings (``image-size``) compile to the same steps Python writes (:mod:`prebake.settings`),
and a file may list the steps itself (``steps:``). ``prebake build ... --print-config``
prints what a command would use, as YAML, so a file can start from a command that works.
YAML, JSON and TOML are read by suffix. Paths in the file are taken relative to the
current directory, like paths on the command line.

Every value is checked before any work, in one place whichever front end it came from
(:func:`check_settings`): its type and its range (``chunk_rows >= 1``, ``0 < LOW < HIGH``,
finite numbers); :mod:`prebake.settings` then checks sizes against the input limits
(``image_size`` squared within ``max_pixels``, ``volume_shape`` within ``max_voxels``).
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .configfile import parse
from .errors import OptionError, opt


@dataclass(frozen=True)
class Key:
    """One build setting: its name (as in Python; the CLI flag uses dashes), type and help."""

    name: str
    type: str  # "path" | "str" | "int" | "float" | "bool" | "strs" (a list) | "pair" (two floats) | "float3" | "int3"
    help: str
    metavar: str | None = None


#: Every setting of ``prebake build``, in the order ``--help`` and ``--print-config`` show them.
BUILD_KEYS: tuple[Key, ...] = (
    Key("source", "path", "what to bake: a CIFAR-10/100 folder, a folder of class subfolders (images, or audio: "
        "WAV, FLAC, OGG), a folder of video clips (+ their WAV files), "
        "a .csv table, or .npy/.npz arrays", "SOURCE"),
    Key("out", "path", "the cache directory to write (OUT/<split> for sources with splits, such as CIFAR's "
        "train and test)", "OUT"),
    Key("kind", "str", "source kind, when detection from the path is not what you want", "KIND"),
    Key("split", "str", "build only this split (for example train)", "NAME"),
    Key("dataset", "str", "a function returning a map-style dataset to bake, instead of SOURCE", "MODULE:FUNC"),
    Key("transform", "str", "your per-item function, item dict -> item dict; runs last, in the workers",
        "MODULE:FUNC"),
    Key("stages", "strs", "a function returning a prebake.Stage (or a list of them): a batched step, such as "
        "a frozen encoder on the GPU, after the per-item transforms (repeatable; run in order)", "MODULE:FUNC"),
    Key("image_size", "int", "resize images to S x S (antialiased bilinear)", "S"),
    Key("shorter_side", "int", "resize the shorter image side to S, keeping the aspect ratio", "S"),
    Key("crop", "int", "center crop S x S, after the resize", "S"),
    Key("sample_rate", "int", "resample audio signals to HZ (needs scipy: prebake[audio])", "HZ"),
    Key("bandpass", "pair", "band-pass audio signals between LOW and HIGH Hz (needs scipy: prebake[audio])",
        "LOW HIGH"),
    Key("max_pixels", "int", "images: a larger width x height is a bad item, refused from the file header "
        "before decoding (default: 67108864, 64 Mpx)", "N"),
    Key("max_voxels", "int", "volumes: more voxels than N (the header's shape, channels included) is a bad item, "
        "refused from the header before reading; resampling to more is refused too (default: 1073741824, 1024^3)",
        "N"),
    Key("channel", "str", "audio: mix (the mean of the channels, default), all (keep T x channels) or a channel "
        "index (0, 1, ...)", "mix|all|N"),
    Key("audio_dtype", "str", "audio: the dtype of every signal, whatever the files' bit depth: int16 (default), "
        "int32 or float32", "DTYPE"),
    Key("fps", "float", "video: the frame rate of folders of frame images (videos carry their own)", "FPS"),
    Key("frame_size", "int", "video: resize every frame to S x S while decoding", "S"),
    Key("segment_cycles", "bool", "cut each recording into cardiac cycles, S1 to S1 (homomorphic envelope + "
        "dynamic programming; needs scipy): ragged cycles, cycle_lengths, cycle_bounds (S1/S2) and cycle_start "
        "columns, heart_rate per recording; a recording without a detectable cycle is a bad item"),
    Key("cycle_length", "int", "samples per stored cycle: shorter ones are zero-padded, longer ones cut "
        "(default 4000: 0.8 s at 5 kHz, as the heart-sound workload's recordings)", "N"),
    Key("heart_rate", "pair", "the heart rates the segmentation looks for, LOW HIGH beats per minute "
        "(default 40 150)", "LOW HIGH"),
    Key("cycle_fallback", "str", "a recording without a detectable cycle: bad (a bad item, default) or windows "
        "(consecutive windows of cycle_length samples, segmented=False)", "bad|windows"),
    Key("ragged", "strs", "a column whose first axis varies per item (repeatable)", "COLUMN"),
    Key("path_column", "str", "CSV: the column holding the file paths (default: one named path, file, "
        "image, filename, ...)", "COLUMN"),
    Key("label_columns", "strs", "CSV: a label column (repeatable; default: every other column)", "COLUMN"),
    Key("base_dir", "path", "CSV: the directory the paths are relative to (default: the CSV file's)", "DIR"),
    Key("delimiter", "str", "CSV: the field separator (default: detected among , ; tab |)", "CHAR"),
    Key("keep_columns", "strs", "CSV: also keep this column, under its name, as a column of its own (repeatable): "
        "patient id, study, age; text stays text", "COLUMN"),
    Key("nan_fill", "float", "volumes: put V where a voxel is NaN or infinite (the background of a registered scan), "
        "counted in the manifest's notes (default: such a volume is a bad item)", "V"),
    Key("hdf5_group", "str", "HDF5: the group whose datasets are the columns, e.g. train (default: the file's top "
        "level; FILE.h5/train names it too)", "PATH"),
    Key("channels", "str", "images: 1 (every image one grey channel), 3 (every image RGB) or keep (each file's "
        "own: grey 1, grey+alpha 2, RGB 3, RGBA 4); default: 8-bit images as RGB with alpha dropped, as "
        "torchvision's loader, 16-bit grey kept at full depth", "1|3|keep"),
    Key("rgb", "bool", "every image as 8-bit RGB (16-bit grey PNG/TIFF/PGM are kept as uint16 otherwise)"),
    Key("orientation", "str", "volumes: reorient to these axis codes, e.g. RAS (nibabel's; as MONAI "
        "Orientation)", "CODES"),
    Key("spacing", "float3", "volumes: resample to this voxel spacing in mm along the stored axes, as MONAI "
        "Spacing (after --orientation, so with --orientation RAS they are R, A, S), trilinear (integer volumes are "
        "rounded back to their dtype)", "X Y Z"),
    Key("window", "pair", "volumes: clip intensities to [LOW, HIGH], e.g. CT HU -1000 1000 (the dtype is kept; a "
        "window wholly outside it sets the nearest bound, in a dtype that holds it)", "LOW HIGH"),
    Key("scale_to", "pair", "volumes: with --window, map [LOW, HIGH] onto [A, B] as float32 (as MONAI "
        "ScaleIntensityRange)", "A B"),
    Key("volume_shape", "int3", "volumes: centre-crop or pad the spatial axes to D H W (as MONAI "
        "ResizeWithPadOrCrop)", "D H W"),
    Key("pad_value", "float", "volumes: the value of --volume-shape padding (default: the window's low end, "
        "else 0)", "V"),
    Key("workers", "int", "worker processes (default: one per core; 0 or 1 bakes in this process); with "
        "--executor ray, chunk tasks at a time (default: the cluster's CPUs)", "N"),
    Key("executor", "str", "where the chunks are baked: local (forked worker processes, the default) or ray (Ray "
        "tasks, and stages as Ray actors, on a cluster whose nodes share OUT's filesystem; needs prebake[ray])",
        "local|ray"),
    Key("ray_address", "str", "the Ray cluster for --executor ray: auto (the one running on this node), HOST:PORT or "
        "ray://HOST:PORT (default: the RAY_ADDRESS variable, else a new local Ray)", "ADDR"),
    Key("force", "bool", "rebuild even when the cache is up to date"),
    Key("content_hash", "bool", "identify source files by their bytes (one read of every file per build), not by "
        "size, mtime and ctime"),
    Key("strict", "bool", "fail on the first bad item instead of skipping it"),
    Key("max_skipped", "float", "fail the build (nothing committed; the baked items kept, so a re-run with a higher "
        "limit commits them) when more items than N, or than a FRACTION of them below 1, are skipped as bad",
        "N|FRACTION"),
    Key("dtypes", "strs", "cast every item of COLUMN to DTYPE, a numpy dtype such as int16 or float32 (repeatable); "
        "a value it cannot hold exactly makes its item bad (a float to a narrower float rounds). Default: the "
        "items' one dtype, or numpy's promotion of theirs when that holds every value exactly (integers beside "
        "floats: each within the float's exact range)",
        "COLUMN=DTYPE"),
    Key("allow_empty", "bool", "commit a cache even when every item is bad (default: that build fails)"),
    Key("chunk_rows", "int", "rows per unit of work (default: about 16 MB of rows)", "N"),
    Key("lock_timeout", "float", "give up after waiting SEC for another build of the same OUT "
        "(default: wait)", "SEC"),
    Key("watchdog", "float", "when a worker has been on one item for SEC seconds, log each such worker's Python "
        "stack and the item it is on (default 120; 0 turns it off)", "SEC"),
    Key("steps", "steps", "config files only: the steps as a list, in the order they run, instead of the step "
        "settings above (see prebake.settings)"),
)
KEYS = {k.name: k for k in BUILD_KEYS}


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read build settings from the YAML, JSON or TOML file at ``path``; see the module docstring.

    Keys may be written with dashes (``image-size``) or underscores, and
    ``label_column`` (the CLI flag's spelling) for ``label_columns``. An unknown key, a
    value of the wrong type or out of its range (:data:`RANGES`), and a file that is not a
    regular file of at most 1 MB of UTF-8 (or YAML with aliases) are each an
    :class:`~prebake.errors.OptionError` naming the file, the key and the fix.
    """
    path = Path(path)
    raw = parse(path)
    if not isinstance(raw, dict):
        raise OptionError(f"{path}: a config file holds keys and values (a mapping), found {type(raw).__name__}")
    named = [(_key_name(k, path), str(k), v) for k, v in raw.items()]
    return {name: check_value(name, v, str(path), written) for name, written, v in named if v is not None}


def _key_name(key: Any, path: Path) -> str:
    name = str(key).replace("-", "_")
    name = {"label_column": "label_columns", "stage": "stages", "keep_column": "keep_columns",
            "dtype": "dtypes"}.get(name, name)  # CLI spellings
    if name not in KEYS:
        close = difflib.get_close_matches(name, KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OptionError(f"{path}: unknown key {key!r}{hint} (keys: {', '.join(KEYS)})")
    return name


def check_value(name: str, value: Any, where: str, written: str | None = None) -> Any:
    """``value`` for setting ``name``, checked against its type and its range (:data:`RANGES`).

    ``written`` is the key as the user wrote it (in a config file); else the option is named
    as its front end spells it (``--chunk-rows`` or ``chunk_rows``).
    """
    shown = written or opt(name).removesuffix("=True")
    if name == "dtypes" and isinstance(value, dict):  # a config file's {column: dtype}
        value = [f"{k}={v}" for k, v in value.items()]
    value = _typed(name, value, where, shown)
    if KEYS[name].type in _NUMERIC:
        _check_range(name, value, where, shown)
    return value


def _typed(name: str, value: Any, where: str, shown: str) -> Any:
    """``value`` as setting ``name``'s type (numpy numbers accepted as numbers), else an OptionError."""
    kind = KEYS[name].type
    ok: bool
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = _is_int(value)
        value = int(value) if ok else value
    elif kind == "float":
        ok = _is_number(value)
        value = float(value) if ok else value
    elif kind == "strs":
        value = [value] if isinstance(value, str) else value
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind in ("pair", "float3", "int3"):
        count, number = (3, _is_int) if kind == "int3" else (2 if kind == "pair" else 3, _is_number)
        ok = isinstance(value, (list, tuple)) and len(value) == count and all(number(v) for v in value)
        value = [(int if kind == "int3" else float)(v) for v in value] if ok else value
    elif kind == "steps":
        ok = isinstance(value, list)
    elif kind == "path":
        ok = isinstance(value, (str, os.PathLike))
        value = os.fspath(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        want = {"bool": "true or false", "int": "an integer", "float": "a number", "strs": "a list of strings",
                "pair": "two numbers [LOW, HIGH]", "float3": "three numbers [X, Y, Z]",
                "int3": "three integers [D, H, W]"}.get(kind, "a string")
        raise OptionError(f"{where}: {shown} is {value!r}, expected {want}")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


_NUMERIC = ("int", "float", "pair", "float3", "int3")
_INT64_MAX = 2**63 - 1  # what numpy holds: a larger count would overflow there, not here
_SIZE = (lambda v: v >= 1, "an integer >= 1")
#: What each numeric setting allows beyond its type: (test, the words for it). Every number must also be finite.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: _SIZE for k in ("chunk_rows", "image_size", "shorter_side", "crop", "frame_size", "cycle_length",
                          "max_pixels", "max_voxels")},
    "sample_rate": (lambda v: v >= 1, "a rate in Hz >= 1"),
    "workers": (lambda v: v >= 0, "an integer >= 0 (0 or 1 bakes in this process)"),
    "fps": (lambda v: v > 0, "frames per second > 0"),
    "lock_timeout": (lambda v: v >= 0, "seconds >= 0 (leave it out to wait as long as it takes)"),
    "watchdog": (lambda v: v >= 0, "seconds >= 0 (0 turns it off)"),
    "max_skipped": (lambda v: v >= 0 and (v < 1 or float(v).is_integer()),
                    "a count of items (0, 1, 2, ...) or a fraction of the items below 1 (0.05)"),
    "bandpass": (lambda v: 0 < v[0] < v[1], "LOW HIGH in Hz with 0 < LOW < HIGH"),
    "heart_rate": (lambda v: 0 < v[0] < v[1], "LOW HIGH beats per minute with 0 < LOW < HIGH"),
    "window": (lambda v: v[0] < v[1], "LOW HIGH with LOW < HIGH"),
    "spacing": (lambda v: min(v) > 0, "three voxel sizes X Y Z in mm, each > 0"),
    "volume_shape": (lambda v: min(v) >= 1, "three sizes D H W, each >= 1"),
}


def _check_range(name: str, value: Any, where: str, shown: str) -> None:
    values = value if isinstance(value, list) else [value]
    test, allowed = RANGES.get(name, (None, ""))
    bad = next((v for v in values if not math.isfinite(v) or isinstance(v, int) and abs(v) > _INT64_MAX), None)
    if bad is None and (test is None or test(value)):
        return
    if bad is not None:
        limit = "finite numbers" if isinstance(bad, float) else f"integers of at most {_INT64_MAX:,}"
        allowed = f"{limit}, {allowed}" if allowed else limit
    raise OptionError(f"{where}: {shown} is {value!r}, out of range: it takes {allowed}; give such a value, or leave "
                      f"{shown} out for its default")


def check_settings(settings: dict[str, Any], where: str = "prebake.build") -> dict[str, Any]:
    """Every key known (else an OptionError naming the closest one) and every value of its type."""
    out = {}
    for key, value in settings.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise OptionError(f"{where}: unknown setting {key!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                                     f" (settings: {', '.join(KEYS)})"))
        python_object = key in ("source", "transform") and not isinstance(value, str) or key == "stages" and not (
            isinstance(value, str) or isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)) \
            or key == "steps" and not isinstance(value, list)
        if value is not None and not python_object:
            value = check_value(key, list(value) if isinstance(value, tuple) else value, where)
        out[key] = value
    return out
