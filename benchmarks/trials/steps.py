"""One list of steps, four front ends: the same cache; and bad step parameters, refused.

A random valid list of steps in the flags' order (images, audio or volumes) is built four ways:
``prebake build``'s flags, a config file of flat keys, a config file's ``steps:`` list (each entry
written as a mapping, a list of positional parameters or one value) and Python's ``steps=[...]``.
Every column's bytes and the fingerprint's digest must be equal. The same steps shuffled (an order
the flags cannot write) must give one cache through a ``steps:`` list and Python. A random bad
parameter of a random public step, in Python or in a ``steps:`` list, must be a PrebakeError
naming the step (an OptionError naming the field and the value when the step is made in Python),
and nothing may be committed. Lists that are not lists of steps (a class, a number, a per-item step
after a stage) are refused the same way.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import prebake
from prebake import steps as S
from prebake.cli import main
from prebake.errors import OptionError, PrebakeError
from prebake.synthetic import write_audio_folder, write_image_folder

from . import Row

TRANSFORM = ("import numpy as np\n"
             "def shade(item):\n"
             "    item['image'] = (np.asarray(item['image']) // 2 + 40).astype(np.uint8)\n"
             "    return item\n")
NAN, INF = float("nan"), float("inf")


def steps(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    """``trials`` attempts: same-cache checks through the four front ends, shuffled lists and bad parameters."""
    row = Row("build steps: flags, config files and Python give one cache")
    rng = random.Random(seed)
    data = Data(Path(work_dir))
    families: tuple[Callable[[Data, random.Random], str | None], ...] = (four_fronts, shuffled, bad_parameter,
                                                                         bad_list)
    for t in range(trials):
        family = families[t % len(families)]
        try:
            problem = family(data, rng)
        except Exception as e:  # noqa: BLE001 - anything escaping a front end is the finding
            problem = f"raised {type(e).__name__}: {e} | {traceback.format_exc(limit=-3)[-500:]}"
        row.check(problem is None, f"{family.__name__}: {problem}")
    row.notes["families"] = len(families)
    return row


class Data:
    """Tiny sources of the three kinds with steps (images, heart sounds, CT volumes), and fresh directories."""

    def __init__(self, root: Path):
        self.root = root
        self.images = write_image_folder(root / "images", classes=("a", "b"), per_class=2, size=(24, 18))
        (root / "tf.py").write_text(TRANSFORM)
        self.transform = f"{root / 'tf.py'}:shade"
        self.audio = write_audio_folder(root / "audio", classes=("a", "b"), per_class=1, rate=2000, seconds=(3, 4))
        from prebake.synthetic_volumes import write_volume_table

        self.volumes = write_volume_table(root / "vol", patients=2, scans_per_patient=(1, 1), shape=(10, 14))
        self.count = 0

    def fresh(self) -> Path:
        self.count += 1
        path = self.root / f"t{self.count}"
        path.mkdir()
        return path

    def source(self, kind: str) -> tuple[Path, dict[str, Any]]:
        """The source of ``kind`` and the flat source settings it needs."""
        if kind == "volumes":
            return self.volumes, {"label_columns": ["diagnosis"]}
        return (self.images if kind == "images" else self.audio), {}


# -- random valid settings, and the Python steps they stand for -------------------------------------

def flat_settings(kind: str, rng: random.Random, data: Data) -> dict[str, Any]:
    """A random valid set of the flags' step settings for ``kind`` (at least one step)."""
    s: dict[str, Any] = {}
    while not s:
        if kind == "images":
            s = _image_settings(rng, data)
        elif kind == "audio":
            s = _audio_settings(rng)
        else:
            s = _volume_settings(rng)
    return s


def _image_settings(rng: random.Random, data: Data) -> dict[str, Any]:
    s: dict[str, Any] = {}
    if rng.random() < 0.4:
        s["rgb"] = True
    resize = rng.choice([None, "image_size", "shorter_side"])
    if resize:
        s[resize] = rng.randint(8, 20)
    if rng.random() < 0.5:
        s["crop"] = rng.randint(3, 8)
    if rng.random() < 0.4:
        s["transform"] = data.transform
    return s


def _audio_settings(rng: random.Random) -> dict[str, Any]:
    s: dict[str, Any] = {}
    rate = 2000
    if rng.random() < 0.5:
        rate = s["sample_rate"] = rng.choice([1000, 1500, 3000, 4000])
    if rng.random() < 0.6:
        s["bandpass"] = [float(rng.randint(10, 40)), float(rng.randint(100, min(rate, 2000) // 2 - 50))]
    if rng.random() < 0.5:
        s.update(segment_cycles=True, cycle_length=rng.randint(300, 1500), cycle_fallback="windows")
        if rng.random() < 0.5:
            s["heart_rate"] = [float(rng.randint(30, 50)), float(rng.randint(120, 170))]
    return s


def _volume_settings(rng: random.Random) -> dict[str, Any]:
    s: dict[str, Any] = {}
    if rng.random() < 0.5:
        s["orientation"] = rng.choice(["RAS", "LPS", "PLI", "SAR"])
    if rng.random() < 0.5:
        s["spacing"] = [rng.choice([1.5, 2.0, 2.5]) for _ in range(3)]
    if rng.random() < 0.6:
        s["window"] = [float(rng.randint(-1000, -200)), float(rng.randint(100, 1000))]
        if rng.random() < 0.5:
            s["scale_to"] = [0.0, float(rng.choice([1, 255]))]
    if rng.random() < 0.6:
        s["volume_shape"] = [rng.randint(4, 12) for _ in range(3)]
        if rng.random() < 0.3:
            s["pad_value"] = float(rng.randint(-50, 50))
    return s


def python_steps(s: dict[str, Any]) -> list[Any]:
    """What ``s`` asks for, written by hand as Python steps in the flags' order (settings.py's docstring)."""
    from prebake.identity.plugins import load_object

    out: list[Any] = []
    if "sample_rate" in s:
        out.append(S.Resample(s["sample_rate"]))
    if "bandpass" in s:
        out.append(S.BandPass(*s["bandpass"]))
    if s.get("segment_cycles"):
        extra = {"heart_rate": tuple(s["heart_rate"])} if "heart_rate" in s else {}
        out.append(S.SegmentCycles(length=s["cycle_length"], fallback=s["cycle_fallback"], **extra))
    if "orientation" in s:
        out.append(S.Orient(s["orientation"]))
    if "spacing" in s:
        out.append(S.Spacing(tuple(s["spacing"])))
    if "window" in s:
        out.append(S.Window(*s["window"], scale_to=tuple(s["scale_to"]) if "scale_to" in s else None))
    if "volume_shape" in s:
        pad = s.get("pad_value", s["scale_to"][0] if "scale_to" in s else s["window"][0] if "window" in s else 0)
        out.append(S.CropOrPad(tuple(s["volume_shape"]), pad))
    if s.get("rgb"):
        out.append(S.ToRGB8())
    for key, step in (("image_size", S.Resize), ("shorter_side", S.ShorterSide), ("crop", S.CenterCrop)):
        if key in s:
            out.append(step(s[key]))
    if "transform" in s:
        out.append(load_object(s["transform"]))
    return out


def config_entry(step: Any, rng: random.Random, data: Data) -> Any:
    """``step`` as a ``steps:`` entry: a mapping of its parameters, the positional ones as a list, or one value."""
    import dataclasses

    if not isinstance(step, S.Step):
        return {"function": data.transform}
    params = {f.name: _plain(getattr(step, f.name)) for f in dataclasses.fields(step)}
    positional = [_plain(getattr(step, f.name)) for f in dataclasses.fields(step) if f.default is dataclasses.MISSING]
    form = rng.random()
    if not params:
        return {type(step).__name__: None}
    # the one-value form names the first parameter only: the others must be at their defaults to leave them out
    rest_default = all(_plain(getattr(step, f.name)) == _plain(f.default) for f in dataclasses.fields(step)
                       if f.default is not dataclasses.MISSING)
    if form < 0.3 and len(positional) == 1 and rest_default:
        return {type(step).__name__: positional[0]}
    if form < 0.6 and positional and len(positional) == len(params):
        return {type(step).__name__: positional}
    return {type(step).__name__: params}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


# -- the front ends ---------------------------------------------------------------------------------

def via_flags(source: Path, out: Path, s: dict[str, Any]) -> str | None:
    """A build through ``prebake build``'s flags: None, or what went wrong."""
    words = ["build", str(source), str(out), "--workers", "0", "-q"]
    for key, value in s.items():
        flag = {"label_columns": "--label-column"}.get(key, "--" + key.replace("_", "-"))
        if value is True:
            words.append(flag)
        elif isinstance(value, list) and key == "label_columns":
            words += [w for v in value for w in (flag, v)]
        else:
            words += [flag, *(str(v) for v in (value if isinstance(value, list) else [value]))]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(words)
    return None if code == 0 else f"prebake {' '.join(words[3:])}: rc {code}, {err.getvalue()[-300:]!r}"


def via_config(path: Path, settings: dict[str, Any]) -> Any:
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return prebake.build(progress=False, **prebake.load_config(path))


def via_python(source: Path, out: Path, steps_: list[Any], s: dict[str, Any]) -> Any:
    options = prebake.SourceOptions(label_columns=tuple(s["label_columns"])) if "label_columns" in s else None
    return prebake.build(source, out, steps_, source_options=options, workers=0, progress=False)


def snapshot(out: Path) -> tuple[dict[str, bytes], str]:
    """Every column file's bytes, and the fingerprint's digest."""
    cache = prebake.open(out)
    files = {p.name: p.read_bytes() for p in sorted(out.glob("*.npy"))}
    return files, cache.manifest["fingerprint"]["digest"]


def differences(shots: dict[str, tuple[dict[str, bytes], str]]) -> str | None:
    (first, (files, digest)), *rest = shots.items()
    for name, (other, other_digest) in rest:
        if other_digest != digest:
            return f"{name}'s digest {other_digest[:12]} differs from {first}'s {digest[:12]}"
        if sorted(other) != sorted(files):
            return f"{name} has columns {sorted(other)}, {first} {sorted(files)}"
        changed = [f for f in files if other[f] != files[f]]
        if changed:
            return f"{name} differs from {first} in {changed}"
    return None


# -- the families ---------------------------------------------------------------------------------

def four_fronts(data: Data, rng: random.Random) -> str | None:
    """One random valid list of steps through the flags, a flat config, a ``steps:`` config and Python."""
    kind = rng.choice(["images", "audio", "volumes"])
    source, needs = data.source(kind)
    flat = {**needs, **flat_settings(kind, rng, data)}
    d = data.fresh()
    problem = via_flags(source, d / "flags", flat)
    if problem:
        return f"{kind} {flat}: {problem}"
    base = {"source": str(source), "workers": 0, **needs}
    via_config(d / "flat.yaml", {**base, "out": str(d / "flat"), **flat})
    step_list = python_steps(flat)
    entries = [config_entry(x, rng, data) for x in step_list]
    via_config(d / "steps.yaml", {**base, "out": str(d / "listed"), "steps": entries})
    via_python(source, d / "python", step_list, flat)
    problem = differences({name: snapshot(d / name) for name in ("flags", "flat", "listed", "python")})
    return None if problem is None else f"{kind} {flat} (steps: {entries}): {problem}"


def shuffled(data: Data, rng: random.Random) -> str | None:
    """A valid list in a random order: one cache through a ``steps:`` list and Python, or one refusal."""
    kind = rng.choice(["images", "audio", "volumes"])
    source, needs = data.source(kind)
    flat = flat_settings(kind, rng, data)
    step_list = python_steps(flat)
    rng.shuffle(step_list)
    entries = [config_entry(x, rng, data) for x in step_list]
    d = data.fresh()
    outcomes = []
    for name, build in (("listed", lambda: via_config(d / "s.yaml", {"source": str(source), "out": str(d / "listed"),
                                                                     "workers": 0, **needs, "steps": entries})),
                        ("python", lambda: via_python(source, d / "python", step_list, needs))):
        try:
            build()
            outcomes.append(None)
        except PrebakeError as e:
            outcomes.append(f"{type(e).__name__}: {e}".replace(str(d / name), "OUT"))
    if outcomes[0] != outcomes[1]:
        return f"{kind} {entries}: the steps: list gave {outcomes[0]!r}, Python {outcomes[1]!r}"
    if outcomes[0] is not None:
        return None if kind == "images" and "smaller than the" in outcomes[0] else f"{kind} {entries}: {outcomes[0]}"
    problem = differences({name: snapshot(d / name) for name in ("listed", "python")})
    return None if problem is None else f"{kind} {entries}: {problem}"


#: Each public step, made from keyword parameters, with a valid value of every parameter.
PUBLIC_STEPS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "Resize": (S.Resize, {"size": 8}), "ShorterSide": (S.ShorterSide, {"size": 8}),
    "CenterCrop": (S.CenterCrop, {"size": 4}), "ToRGB8": (S.ToRGB8, {}),
    "Resample": (S.Resample, {"rate": 1000}), "BandPass": (S.BandPass, {"low": 25.0, "high": 400.0, "order": 4}),
    "SegmentCycles": (S.SegmentCycles, {"length": 800, "heart_rate": (40.0, 150.0), "fallback": "windows",
                                        "min_periodicity": 0.3, "max_deviation": 0.3, "alpha": 5.0}),
    "Orient": (S.Orient, {"axcodes": "RAS"}), "Spacing": (S.Spacing, {"spacing": (2.0, 2.0, 2.0), "max_voxels": 10**6}),
    "Window": (S.Window, {"low": -500.0, "high": 500.0, "scale_to": (0.0, 1.0)}),
    "CropOrPad": (S.CropOrPad, {"shape": (6, 6, 6), "value": 0.0}),
}
_SIZE = [0, -1, -2**40, True, False, 2.5, NAN, INF, -INF, "8", None, [8], (8, 8)]
_NUMBER = [NAN, INF, -INF, True, "1", None, [1.0], {}]
#: Bad values of each parameter: none of them is valid for it.
BAD: dict[tuple[str, str], list[Any]] = {
    **{(step, "size"): _SIZE for step in ("Resize", "ShorterSide", "CenterCrop")},
    ("Resample", "rate"): _SIZE, ("BandPass", "order"): _SIZE, ("SegmentCycles", "length"): _SIZE,
    ("Spacing", "max_voxels"): _SIZE,
    ("BandPass", "low"): [*_NUMBER, 0, -25.0], ("BandPass", "high"): [*_NUMBER, 25.0, 10.0, -400.0],
    ("SegmentCycles", "heart_rate"): [(40.0,), (150.0, 40.0), (0, 150), (NAN, 150), (40, INF), "ab", 60, None,
                                      (40, 100, 150), (True, 150)],
    ("SegmentCycles", "fallback"): ["skip", "", None, 1, ["bad"], True],
    ("SegmentCycles", "min_periodicity"): [*_NUMBER, -0.1, 1.5],
    ("SegmentCycles", "max_deviation"): [*_NUMBER, 0, 1, -1],
    ("SegmentCycles", "alpha"): [*_NUMBER, -1.0],
    ("Orient", "axcodes"): ["RAX", "RA", "RASS", "RRS", "", None, 3, ["R", "A", "S"], "LRS"],
    ("Spacing", "spacing"): [0, -1.0, NAN, INF, True, "1", None, (1.0, 1.0), (1.0, 0.0, 1.0), (1.0, NAN, 1.0),
                             (1.0, 1.0, 1.0, 1.0), [True, 1, 1]],
    ("Window", "low"): [*_NUMBER], ("Window", "high"): [*_NUMBER, -500.0, -1000.0],
    ("Window", "scale_to"): [(0.0,), (0.0, NAN), (INF, 1.0), "ab", 1.0, (0.0, 1.0, 2.0), (True, 1.0)],
    ("CropOrPad", "shape"): [0, -6, 2.5, NAN, INF, True, "6", None, (6, 6), (6, 6, 0), (6, 6, 2.5), (6, 6, 6, 6)],
    ("CropOrPad", "value"): [*_NUMBER],
}


def bad_parameter(data: Data, rng: random.Random) -> str | None:
    """One bad value of one parameter of one step: refused in Python and in a ``steps:`` list, nothing committed."""
    (name, field), values = rng.choice(sorted(BAD.items(), key=lambda kv: kv[0]))
    value = rng.choice(values)
    make, valid = PUBLIC_STEPS[name]
    params = {**valid, field: value}
    try:
        make(**params)
        return f"{name}({params}) was accepted"
    except OptionError as e:
        if name not in str(e) or field not in str(e).replace("-", "_") or not _shows(value, str(e)):
            return f"{name}({field}={value!r}): the message does not name the step, the field and the value: {e}"
    except Exception as e:  # noqa: BLE001 - any escape other than an OptionError is the finding
        return f"{name}({field}={value!r}) raised {type(e).__name__}: {e}"
    return _refused_in_a_config(data, name, params)


def _shows(value: Any, message: str) -> bool:
    """The message shows ``value`` (as repr, or as a number the way the message formats it)."""
    if isinstance(value, float) and math.isfinite(value) and f"{value:g}" in message:
        return True
    return repr(value) in message or repr(list(value) if isinstance(value, tuple) else value) in message


def _refused_in_a_config(data: Data, name: str, params: dict[str, Any]) -> str | None:
    if any(isinstance(v, dict) for v in params.values()):
        return None  # a mapping is not a parameter a config file can hold as one
    d = data.fresh()
    cfg = d / "bad.yaml"
    plain = {k: _plain(v) for k, v in params.items()}
    try:
        via_config(cfg, {"source": str(data.images), "out": str(d / "out"), "workers": 0, "steps": [{name: plain}]})
        return f"steps: [{{{name}: {plain}}}] in a config file was accepted"
    except PrebakeError as e:
        if name not in str(e):
            return f"steps: [{{{name}: {plain}}}]: the message does not name {name}: {e}"
    return None if not (d / "out").exists() else f"{name} {plain} refused, but OUT was made"


def bad_list(data: Data, rng: random.Random) -> str | None:
    """Lists that are not lists of steps, and a per-item step after a stage: an OptionError, nothing made."""
    stage = prebake.Stage(lambda batch: {"mean": batch["image"].float().mean((1, 2, 3))}, inputs=["image"],
                          outputs=["mean"], name="mean")
    lists = [[stage, S.Resize(8)], [S.Resize], [S.CenterCrop, S.Resize(8)], [5], ["Resize"], "Resize(8)", [None],
             {"Resize": 8}, [S.Resize(8), stage, S.CenterCrop(4)], S.Resize, 3.5]
    given = rng.choice(lists)
    d = data.fresh()
    try:
        prebake.build(data.images, d / "out", given, workers=0, progress=False)
        return f"steps={given!r} was accepted"
    except OptionError as e:
        if "step" not in str(e):
            return f"steps={given!r}: the message does not say what a step is: {e}"
    except Exception as e:  # noqa: BLE001 - any escape other than an OptionError is the finding
        return f"steps={given!r} raised {type(e).__name__}: {e}"
    return None if not (d / "out").exists() else f"steps={given!r} refused, but OUT was made"
