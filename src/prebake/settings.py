"""From settings (``prebake build``'s flags, a config file) to the arguments of :func:`prebake.build`.

The flags are a short way to write common lists of steps: ``--sample-rate 2000 --bandpass 25
400`` compiles to ``steps=[Resample(2000), BandPass(25, 400)]``, always in this order:

    Resample, BandPass, SegmentCycles, Orient, Spacing, Window, CropOrPad, ToRGB8,
    Resize | ShorterSide, CenterCrop, then your --transform

A config file may instead hold the list itself, in any order (``steps:``, see
:func:`step_from_config`); ``--print-config`` prints it that way. Both give the same steps
objects, so the same cache, as Python's ``steps=[...]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable
from typing import Any

from .config import KEYS, read_config
from .errors import OptionError, opt

#: The flat settings that are steps (the rest are the source's options and the build's).
STEP_KEYS = ("sample_rate", "bandpass", "segment_cycles", "cycle_length", "heart_rate", "cycle_fallback",
             "orientation", "spacing", "window", "scale_to", "volume_shape", "pad_value", "rgb", "image_size",
             "shorter_side", "crop", "transform", "stages")
SOURCE_KEYS = ("path_column", "label_columns", "base_dir", "delimiter", "channel", "audio_dtype", "max_pixels",
               "max_voxels", "keep_columns", "fps", "frame_size", "nan_fill", "hdf5_group", "channels")
_CYCLE_KEYS = ("cycle_length", "heart_rate", "cycle_fallback")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The keyword arguments of :func:`prebake.build` that the config file at ``path`` asks for (its step
    settings compiled to ``steps``): ``prebake.build(**prebake.load_config(path))``."""
    return build_kwargs(read_config(path))


def build_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """Checked flat settings -> the keyword arguments of :func:`prebake.build` (steps compiled, source options
    grouped)."""
    from .sources import SourceOptions

    s = {k: v for k, v in settings.items() if v is not None}
    if "steps" in s and any(k in s for k in STEP_KEYS):
        given = ", ".join(opt(k) for k in STEP_KEYS if k in s)
        raise OptionError(f"give the steps as a list (steps:) or as settings ({given}), not both")
    source: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items() if k in SOURCE_KEYS}
    _check_audio(source)
    options = SourceOptions(**source) if source else None
    steps = [step_from_config(e, k) for k, e in enumerate(s["steps"])] if "steps" in s else flag_steps(s, options)
    out = {k: v for k, v in s.items() if k not in STEP_KEYS and k not in SOURCE_KEYS and k != "steps"}
    if "ragged" in out:
        out["ragged"] = tuple(out["ragged"])
    return {**out, "steps": steps, **({"source_options": options} if options is not None else {})}


def flag_steps(s: dict[str, Any], options: Any = None) -> list[Any]:
    """The steps that flat settings ask for, in the flags' order (the module docstring)."""
    from .identity.plugins import load_object
    from .sources import SourceOptions
    from .steps import (
        BandPass,
        CenterCrop,
        CropOrPad,
        Function,
        Orient,
        Resample,
        Resize,
        ShorterSide,
        Spacing,
        ToRGB8,
        Window,
    )

    limits = options or SourceOptions()
    _check_sizes(s, limits.max_pixels, limits.max_voxels)
    if "image_size" in s and "shorter_side" in s:
        raise OptionError(f"give {opt('image_size')} (S x S) or {opt('shorter_side')}, not both")
    if "scale_to" in s and "window" not in s:
        raise OptionError(f"{opt('scale_to')} maps the {opt('window')} range: give {opt('window')} LOW HIGH too")
    made: list[tuple[str, Callable[[], Any]]] = [
        ("sample_rate", lambda: Resample(s["sample_rate"])),
        ("bandpass", lambda: BandPass(*s["bandpass"])),
        ("segment_cycles", lambda: segment_step(s)),
        ("orientation", lambda: Orient(s["orientation"])),
        ("spacing", lambda: Spacing(tuple(s["spacing"]), limits.max_voxels)),
        ("window", lambda: Window(s["window"][0], s["window"][1], scale_to=_tuple(s.get("scale_to")))),
        ("volume_shape", lambda: CropOrPad(tuple(s["volume_shape"]), _pad_value(s))),
        ("rgb", lambda: ToRGB8()),
        ("image_size", lambda: Resize(s["image_size"])),
        ("shorter_side", lambda: ShorterSide(s["shorter_side"])),
        ("crop", lambda: CenterCrop(s["crop"])),
    ]
    steps = [make() for key, make in made if s.get(key) not in (None, False)]
    if not s.get("segment_cycles"):
        segment_step(s)  # cycle settings without segment_cycles are refused
    if "transform" in s:
        fn = s["transform"]
        steps.append(Function(load_object(fn), spec=fn) if isinstance(fn, str) else fn)
    return steps + list(stages_of(s.get("stages", ())))


def _pad_value(s: dict[str, Any]) -> float:
    """What --volume-shape padding holds: --pad-value, else the window's low end (or scale_to's), else 0."""
    if "pad_value" in s:
        return float(s["pad_value"])
    if "window" not in s:
        return 0.0
    return float(s["scale_to"][0]) if "scale_to" in s else float(s["window"][0])


def _check_sizes(s: dict[str, Any], max_pixels: int, max_voxels: int) -> None:
    """Output sizes over the limits on inputs, refused before any work."""
    for k in ("image_size", "shorter_side", "crop", "frame_size"):
        if k in s and s[k] ** 2 > max_pixels:
            raise OptionError(f"{opt(k, s[k])} makes images of {s[k]:,} x {s[k]:,} = {s[k] ** 2:,} pixels, over the "
                              f"limit of {max_pixels:,}; give a smaller size, or raise {opt('max_pixels')}")
    if "volume_shape" in s and math.prod(s["volume_shape"]) > max_voxels:
        shape = " x ".join(map(str, s["volume_shape"]))
        raise OptionError(f"{opt('volume_shape')} {shape} makes volumes of {math.prod(s['volume_shape']):,} voxels, "
                          f"over the limit of {max_voxels:,}; give a smaller shape, or raise {opt('max_voxels')}")


def _check_audio(given: dict[str, Any]) -> None:
    """The audio settings' values, before any source is opened."""
    from .sources.audio import check_channel, check_dtype
    from .sources.images import check_channels

    if "channels" in given:
        check_channels(given["channels"])
    if "channel" in given:
        check_channel(given["channel"])
    if "audio_dtype" in given:
        check_dtype(given["audio_dtype"])


def segment_step(s: dict[str, Any]) -> Any:
    """The :class:`~prebake.steps.SegmentCycles` step the settings ask for, or None."""
    if not s.get("segment_cycles"):
        stray = [k for k in _CYCLE_KEYS if k in s]
        if stray:
            raise OptionError(f"{', '.join(opt(k) for k in stray)} {'shape' if len(stray) > 1 else 'shapes'} the "
                              f"cardiac-cycle segmentation; add "
                              f"{opt('segment_cycles')}, or drop {'them' if len(stray) > 1 else 'it'}")
        return None
    from .steps import SegmentCycles

    given: dict[str, Any] = {"length": s.get("cycle_length"),
                             "heart_rate": tuple(s["heart_rate"]) if "heart_rate" in s else None,
                             "fallback": s.get("cycle_fallback")}
    return SegmentCycles(**{k: v for k, v in given.items() if v is not None})


def stages_of(given: Any) -> tuple[Any, ...]:
    """Stages from ``Stage`` objects, or ``"module:function"`` specs of functions that return one or a list."""
    from .identity.plugins import load_object
    from .steps import Stage

    out: list[Any] = []
    for item in [given] if isinstance(given, (str, Stage)) else list(given):
        obj = load_object(item) if isinstance(item, str) else item
        if not isinstance(obj, Stage) and callable(obj):
            obj = obj()
        for stage in obj if isinstance(obj, (list, tuple)) else [obj]:
            if not isinstance(stage, Stage):
                raise OptionError(f"{opt('stages')} {item!r} gave a {type(stage).__name__}, expected a prebake.Stage "
                                  "(or a function returning one, or a list of them)")
            if isinstance(item, str):
                stage.spec = item
            out.append(stage)
    return tuple(out)


def _tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


# -- a list of steps in a config file ------------------------------------------------------------


def _step_types() -> dict[str, type]:
    from . import steps

    return {name: getattr(steps, name) for name in ("Resize", "ShorterSide", "CenterCrop", "ToRGB8", "Resample",
                                                    "BandPass", "SegmentCycles", "Orient", "Spacing", "Window",
                                                    "CropOrPad")}


def step_from_config(entry: Any, k: int = 0) -> Any:
    """One entry of a config file's ``steps:`` list: ``{Name: params}`` with params a mapping, a list of the
    positional ones, one value or nothing; ``{function: "module:function"}``; ``{stage: "module:function"}``."""
    from .identity.plugins import load_object
    from .steps import Function

    if not isinstance(entry, dict) or len(entry) != 1:
        raise OptionError(f"steps[{k}] is {entry!r}: each step is one key, its name, with its parameters, e.g. "
                          "{'ShorterSide': {'size': 64}}, {'CenterCrop': 56} or {'function': 'tf.py:crop'}")
    ((name, params),) = entry.items()
    if name == "function" and isinstance(params, str):
        return Function(load_object(params), spec=params)
    if name == "stage" and isinstance(params, str):
        found = stages_of(params)
        if len(found) != 1:
            raise OptionError(f"steps[{k}]: stage {params!r} gave {len(found)} stages; give one per entry")
        return found[0]
    types = _step_types()
    if name not in types:
        close = difflib.get_close_matches(str(name), [*types, "function", "stage"], n=1)
        raise OptionError(f"steps[{k}]: unknown step {name!r}" + (f"; did you mean {close[0]!r}?" if close else
                          f" (steps: {', '.join(types)}, function, stage)"))
    try:
        if params is None:
            return types[name]()
        if isinstance(params, dict):
            return types[name](**params)
        if isinstance(params, list) and len(params) > len(dataclasses.fields(types[name])):
            return types[name](params)  # more values than parameters: the first one's, Spacing: [1.5, 1.5, 2]
        return types[name](*params) if isinstance(params, list) else types[name](params)
    except TypeError as e:
        raise OptionError(f"steps[{k}]: {name} {params!r}: {e}") from None


def step_to_config(step: Any) -> dict[str, Any]:
    """``step`` as an entry of a config file's ``steps:`` list (what :func:`step_from_config` reads back)."""
    from .steps import Function, Stage

    if isinstance(step, (Function, Stage)):
        spec = getattr(step, "spec", None)
        if spec is None:
            raise OptionError(f"{step} is a Python object, not a 'module:function' name, so a config file cannot "
                              "hold it; name it by --transform FILE.py:FUNCTION or --stage")
        return {"function" if isinstance(step, Function) else "stage": spec}
    params = {f.name: _plain(getattr(step, f.name)) for f in dataclasses.fields(step)
              if getattr(step, f.name) != f.default}
    return {type(step).__name__: params or None}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def dump(settings: dict[str, Any]) -> str:
    """Checked flat settings as the YAML a config file holds: the steps as a list, then the other settings."""
    import yaml

    s = {k: v for k, v in settings.items() if v is not None and v is not False and v != []}  # 0 is a setting
    rest = {k.name: s[k.name] for k in KEYS.values() if k.name in s and k.name not in STEP_KEYS and k.name != "steps"}
    steps = [step_to_config(x) for x in build_kwargs(s)["steps"]]
    return yaml.safe_dump({**rest, **({"steps": steps} if steps else {})}, sort_keys=False, default_flow_style=False)
