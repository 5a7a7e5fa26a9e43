"""Real files read by what they are, not by what they are called.

Every file of :func:`shipped.catalogue` (nibabel's, pydicom's and scipy's test data, images and recordings written
with Pillow and soundfile) goes through one mutation: kept as is, renamed without its suffix (an export named
``IM000001``), given another kind's suffix (a NIfTI named ``.png``), or truncated; then it is read as a row of a
CSV table or as the one item of a class folder of the kind its name claims. A failure is:

- a traceback (anything but a PrebakeError);
- a file read as another kind, or with values (or an affine) that differ from the reference reader's;
- an intact file refused, except where its name hides what it is from the folder it is in (then the reason must
  name its content), a header/data pair renamed so one half cannot find the other (the reason must say so), or
  a format with no mark in its bytes (HTK, MPC 2000) renamed: then only its name could have told;
- an intact file left out of a folder that its name (or, without a suffix, its content) puts it in;
- a truncated file read with values the reference reader does not give for it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from prebake.errors import BadItemError, SourceError
from prebake.sources import SourceOptions, detect

from . import Row
from .shipped import UNMARKED, catalogue, copy_as, reference

MUTATIONS = ("as is", "no suffix", "wrong suffix", "truncated")
#: A suffix of another kind, for each kind.
_WRONG = {"volume": (".png", ".wav", ".jpg"), "image": (".wav", ".nii", ".dcm"), "audio": (".png", ".nii.gz", ".jpg")}
_PAIR_HEADERS = (".PAR", ".HEAD", ".hdr")
_OPTIONS = SourceOptions(audio_dtype="float32")


def formats(work_dir: Path, trials: int, seed: int | None = 0) -> Row:
    row = Row("formats: real files as is, renamed without or with a wrong suffix, truncated; read as CSV rows and "
              "folder items")
    files = catalogue(Path(work_dir) / "made")
    combos = [(f, m, w) for f in files for m in MUTATIONS for w in ("csv", "folder")]
    random.Random(seed).shuffle(combos)
    row.notes["files"] = len(files)
    for n in range(trials):
        (path, kind), how, where = combos[n % len(combos)]
        trial = Path(work_dir) / f"t{n}"
        try:
            problem = one_trial(trial, path, kind, how, where, random.Random(f"{seed}-{n}"))
        except Exception as e:  # noqa: BLE001 - a traceback out of prebake is what the trial counts
            problem = f"{type(e).__name__}: {e}"
        row.check(problem is None, f"{path.name} {how} in a {where}: {problem}")
    return row


def one_trial(d: Path, path: Path, kind: str, how: str, where: str, rng: random.Random) -> str | None:
    """None when prebake read (or refused) the mutated copy of ``path`` as it should; else what went wrong."""
    name = _name(path, kind, how, rng)
    claimed = kind if how != "wrong suffix" else _claimed(name)
    folder = d / "root" / "c"
    copy = copy_as(path, folder / name)
    if how == "truncated":
        data = copy.read_bytes()
        copy.write_bytes(data[: max(1, int(len(data) * rng.uniform(0.05, 0.9)))])
    try:
        item = _read(d, copy, claimed if where == "folder" else kind, where)
    except BadItemError as e:
        return _refusal_ok(e.reason, path, kind, how, where, claimed)
    except SourceError as e:
        if "holds no" not in str(e):
            raise
        item = None
    if item is None:
        unmarked = how in ("no suffix", "wrong suffix") and path.suffix in UNMARKED
        return None if how == "wrong suffix" or unmarked or how == "no suffix" and _is_pair(path) else \
            "left out of the folder"
    return _compare(item, copy if how == "truncated" else path, kind, how)


def _name(path: Path, kind: str, how: str, rng: random.Random) -> str:
    stem = path.name.split(".")[0].replace("+", "_") or "file"
    if how in ("as is", "truncated"):
        return path.name
    if how == "no suffix":
        return stem
    return stem + rng.choice(_WRONG[kind])


def _claimed(name: str) -> str:
    return {".png": "image", ".jpg": "image", ".wav": "audio"}.get(Path(name).suffix, "volume")


def _is_pair(path: Path) -> bool:
    return path.name.endswith(_PAIR_HEADERS)


def _read(d: Path, copy: Path, kind: str, where: str) -> dict[str, Any] | None:
    """Row 1 of a one-row CSV table (``kind="audio"`` for a recording's), or the item of a class folder of ``kind``."""
    if where == "csv":
        table = d / "table.csv"
        table.write_text(f"path,label\nroot/c/{copy.name},1\n")
        source = detect(table, kind="audio" if kind == "audio" else None, options=_OPTIONS)[""]
    else:
        source = detect(d / "root", kind={"image": "imagefolder", "volume": "volumes"}.get(kind, kind),
                        options=_OPTIONS)[""]
    return source.read(0) if source.keys() else None


def _refusal_ok(reason: str, path: Path, kind: str, how: str, where: str, claimed: str) -> str | None:
    if how == "truncated" or how in ("no suffix", "wrong suffix") and path.suffix in UNMARKED:
        return None  # cut short; or renamed where nothing but the name said what it is
    if how == "wrong suffix" and where == "folder" and claimed != kind:
        return None if f"({_a(kind)})" in reason else f"refused without naming its content ({kind}): {reason}"
    if how in ("no suffix", "wrong suffix") and _is_pair(path):
        said = "name the pair" in reason or "is missing" in reason
        return None if said else f"a renamed pair header refused without saying why: {reason}"
    return f"a readable file refused: {reason}"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _compare(item: dict[str, Any], original: Path, kind: str, how: str) -> str | None:
    got = "volume" if "affine" in item else "audio" if "signal" in item else "image"
    if got != kind:
        return f"read as {got}, but it is {kind}"
    try:
        ref = reference(original, kind)
    except Exception:  # noqa: BLE001 - the reference reader refuses the truncated file: prebake had to as well
        return f"a truncated file read ({how}), which the reference reader refuses" if how == "truncated" else None
    if kind == "volume":
        same = np.array_equal(item["image"], ref["image"]) and np.allclose(item["affine"], ref["affine"])
    elif kind == "audio":
        same = np.array_equal(item["signal"], ref["signal"]) and int(item["sample_rate"]) == int(ref["sample_rate"])
    else:
        same = np.array_equal(np.asarray(item["image"]), ref["image"])
    return None if same else f"values differ from the reference reader's ({how})"
