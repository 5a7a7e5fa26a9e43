"""Build settings in a file: the same keys as ``prebake build``'s arguments and flags.

>>> import prebake, tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "bake.yaml"
>>> _ = f.write_text("source: data/photos\\nout: cache/photos\\nimage-size: 64\\nworkers: 2\\n")
>>> prebake.load_config(f)
{'source': 'data/photos', 'out': 'cache/photos', 'image_size': 64, 'workers': 2}

``prebake build --config bake.yaml`` reads it (flags on the command line win), and
``prebake.build(**prebake.load_config("bake.yaml"))`` does the same in Python.
``prebake build ... --print-config`` prints the settings a command would use, as YAML,
so a file can start from a command that works. YAML, JSON and TOML are read by suffix.
Paths in the file are taken relative to the current directory, like paths on the
command line.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    Key("source", "path", "what to bake: a CIFAR-10/100 folder, a folder of class subfolders (images or WAV), "
        "a .csv table, or .npy/.npz arrays", "SOURCE"),
    Key("out", "path", "the cache directory to write (OUT/<split> for sources with splits, such as CIFAR's "
        "train and test)", "OUT"),
    Key("kind", "str", "source kind, when detection from the path is not what you want", "KIND"),
    Key("split", "str", "build only this split (for example train)", "NAME"),
    Key("dataset", "str", "a function returning a map-style dataset to bake, instead of SOURCE", "MODULE:FUNC"),
    Key("transform", "str", "your per-item function, item dict -> item dict; runs last, in the workers",
        "MODULE:FUNC"),
    Key("image_size", "int", "resize images to S x S (antialiased bilinear)", "S"),
    Key("shorter_side", "int", "resize the shorter image side to S, keeping the aspect ratio", "S"),
    Key("crop", "int", "center crop S x S, after the resize", "S"),
    Key("sample_rate", "int", "resample audio signals to HZ (needs scipy: prebake[audio])", "HZ"),
    Key("bandpass", "pair", "band-pass audio signals between LOW and HIGH Hz (needs scipy: prebake[audio])",
        "LOW HIGH"),
    Key("ragged", "strs", "a column whose first axis varies per item (repeatable)", "COLUMN"),
    Key("path_column", "str", "CSV: the column holding the file paths (default: one named path, file, "
        "image, filename, ...)", "COLUMN"),
    Key("label_columns", "strs", "CSV: a label column (repeatable; default: every other column)", "COLUMN"),
    Key("base_dir", "path", "CSV: the directory the paths are relative to (default: the CSV file's)", "DIR"),
    Key("delimiter", "str", "CSV: the field separator (default: detected among , ; tab |)", "CHAR"),
    Key("keep_columns", "strs", "CSV: also keep this column, under its name, as a column of its own (repeatable): "
        "patient id, study, age; text stays text", "COLUMN"),
    Key("rgb", "bool", "every image as 8-bit RGB (16-bit grey PNG/TIFF are kept as uint16 otherwise)"),
    Key("orientation", "str", "volumes: reorient to these axis codes, e.g. RAS (nibabel's; as MONAI "
        "Orientation)", "CODES"),
    Key("spacing", "float3", "volumes: resample to this voxel spacing in mm, trilinear (integer volumes are "
        "rounded back to their dtype)", "X Y Z"),
    Key("window", "pair", "volumes: clip intensities to [LOW, HIGH], e.g. CT HU -1000 1000 (the dtype is kept)",
        "LOW HIGH"),
    Key("scale_to", "pair", "volumes: with --window, map [LOW, HIGH] onto [A, B] as float32 (as MONAI "
        "ScaleIntensityRange)", "A B"),
    Key("volume_shape", "int3", "volumes: centre-crop or pad the spatial axes to D H W (as MONAI "
        "ResizeWithPadOrCrop)", "D H W"),
    Key("pad_value", "float", "volumes: the value of --volume-shape padding (default: the window's low end, "
        "else 0)", "V"),
    Key("workers", "int", "worker processes (default: one per core; 0 or 1 bakes in this process)", "N"),
    Key("force", "bool", "rebuild even when the cache is up to date"),
    Key("strict", "bool", "fail on the first bad item instead of skipping it"),
    Key("allow_empty", "bool", "commit a cache even when every item is bad (default: that build fails)"),
    Key("chunk_rows", "int", "rows per unit of work (default: about 16 MB of rows)", "N"),
    Key("lock_timeout", "float", "give up after waiting SEC for another build of the same OUT "
        "(default: wait)", "SEC"),
)
KEYS = {k.name: k for k in BUILD_KEYS}


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read build settings from the YAML, JSON or TOML file at ``path``; see the module docstring.

    Keys may be written with dashes (``image-size``) or underscores, and
    ``label_column`` (the CLI flag's spelling) for ``label_columns``. An unknown key or a
    value of the wrong type is an :class:`~prebake.errors.OptionError` naming the file,
    the key and the fix.
    """
    path = Path(path)
    raw = _parse(path)
    if not isinstance(raw, dict):
        raise OptionError(f"{path}: a config file holds keys and values (a mapping), found {type(raw).__name__}")
    return {name: check_value(name, value, str(path)) for name, value in
            ((_key_name(k, path), v) for k, v in raw.items()) if value is not None}


def _parse(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise OptionError(f"cannot read the config file {path}: {e.strerror or e}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            return _toml().loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
    except Exception as e:  # each parser has its own error types; all mean "not valid"
        raise OptionError(f"{path} is not valid {suffix[1:].upper()}: {e}") from None
    raise OptionError(f"{path}: config files are .yaml, .yml, .json or .toml, not {suffix or 'without a suffix'}")


def _toml() -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise OptionError("TOML config files need Python 3.11, or: pip install tomli") from None
    return tomllib


def _key_name(key: Any, path: Path) -> str:
    name = str(key).replace("-", "_")
    name = {"label_column": "label_columns", "keep_column": "keep_columns"}.get(name, name)  # the CLI flags' spelling
    if name not in KEYS:
        close = difflib.get_close_matches(name, KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OptionError(f"{path}: unknown key {key!r}{hint} (keys: {', '.join(KEYS)})")
    return name


def check_value(name: str, value: Any, where: str) -> Any:
    """``value`` for setting ``name``, checked against its type (lists of one accepted as scalars)."""
    kind = KEYS[name].type
    ok: bool
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "strs":
        value = [value] if isinstance(value, str) else value
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind in ("pair", "float3", "int3"):
        count, number = (2, (int, float)) if kind == "pair" else (3, (int,) if kind == "int3" else (int, float))
        ok = isinstance(value, (list, tuple)) and len(value) == count and all(
            isinstance(v, number) and not isinstance(v, bool) for v in value)
        value = [(int if kind == "int3" else float)(v) for v in value] if ok else value
    elif kind == "path":
        ok = isinstance(value, (str, os.PathLike))
        value = os.fspath(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        want = {"bool": "true or false", "int": "an integer", "float": "a number", "strs": "a list of strings",
                "pair": "two numbers [LOW, HIGH]", "float3": "three numbers [X, Y, Z]",
                "int3": "three integers [D, H, W]"}.get(kind, "a string")
        raise OptionError(f"{where}: {name} is {value!r}, expected {want}")
    return value


def dump_config(settings: dict[str, Any]) -> str:
    """``settings`` as YAML that :func:`load_config` reads back, in :data:`BUILD_KEYS` order."""
    import yaml

    ordered = {k.name: settings[k.name] for k in BUILD_KEYS if settings.get(k.name) not in (None, [], False)}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None)


def check_settings(settings: dict[str, Any], where: str = "prebake.build") -> dict[str, Any]:
    """Every key known (else an OptionError naming the closest one) and every value of its type."""
    out = {}
    for key, value in settings.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise OptionError(f"{where}: unknown setting {key!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                                     f" (settings: {', '.join(KEYS)})"))
        if value is not None and not (key in ("source", "transform") and not isinstance(value, str)):
            value = check_value(key, list(value) if isinstance(value, tuple) else value, where)
        out[key] = value
    return out


def resolve(settings: dict[str, Any], source_options: Any = None) -> tuple[dict[str, Any], Any, Any]:
    """``(sources by split, out, BuildOptions)`` for checked settings: what ``prebake build`` runs.

    ``settings["source"]`` may be a path, a :class:`~prebake.Source` or a map-style dataset;
    ``settings["transform"]`` a function or ``"module:function"``.
    """
    from .bake.build import BuildOptions, resolve_sources, select_split
    from .bake.plugins import load_object
    from .bake.sources import DatasetSource, SourceOptions
    from .bake.volumes import VolumeOptions

    s = {k: v for k, v in settings.items() if v is not None}
    if s.get("out") is None:
        raise OptionError("no output directory: give OUT")
    if "dataset" in s:
        if "source" in s:
            raise OptionError(f"give a SOURCE or {opt('dataset')}, not both")
        sources = {"": DatasetSource.from_spec(s["dataset"])}
    elif "source" in s:
        fields = {"path_column": s.get("path_column"), "label_columns": tuple(s.get("label_columns", ())),
                  "base_dir": s.get("base_dir"), "delimiter": s.get("delimiter"),
                  "keep_columns": tuple(s.get("keep_columns", ()))}
        if source_options is not None and any(v not in (None, ()) for v in fields.values()):
            raise OptionError("give source_options= or the CSV settings (path_column=..., ...), not both")
        sources = resolve_sources(s["source"], kind=s.get("kind"), options=source_options or SourceOptions(**fields))
    else:
        raise OptionError(f"nothing to bake: give SOURCE, or {opt('dataset')}")
    transform = s.get("transform")
    volume = VolumeOptions(orientation=s.get("orientation"), spacing=_tuple(s.get("spacing")),
                           window=_tuple(s.get("window")), scale_to=_tuple(s.get("scale_to")),
                           shape=_tuple(s.get("volume_shape")), pad_value=s.get("pad_value"))
    options = BuildOptions(
        image_size=s.get("image_size"), shorter_side=s.get("shorter_side"), crop=s.get("crop"),
        sample_rate=s.get("sample_rate"), bandpass=tuple(s["bandpass"]) if "bandpass" in s else None,
        transform=load_object(transform) if isinstance(transform, str) else transform,
        workers=s.get("workers"), force=s.get("force", False), strict=s.get("strict", False),
        allow_empty=s.get("allow_empty", False), ragged=tuple(s.get("ragged", ())),
        lock_timeout=s.get("lock_timeout"), chunk_rows=s.get("chunk_rows"),
        volume=volume if volume or volume.scale_to is not None else None, rgb=s.get("rgb", False),
    )
    return select_split(sources, s.get("split")), s["out"], options


def _tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)
