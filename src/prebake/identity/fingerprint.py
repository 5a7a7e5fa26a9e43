"""What a cache was made from, hashed, and a readable account of what changed.

The fingerprint covers the format version and the prebake version (a new release
may bake differently), the source identity (its parameters and its files: by
content for sources of a few large files, else by size, mtime and ctime, see
:func:`prebake.identity.files.file_identity`), the bake transforms with their
parameters, the identity of user code (:mod:`prebake.identity.code`, weights of
``nn.Module`` objects apart), and output-shaping options. The files that transforms
and stages read while baking are known only once the bake ran: they are kept in the
inputs as ``reads`` but not in the digest (:mod:`prebake.identity.reads`). Equal digests and
unchanged reads mean the cache is up to date; anything else comes with reasons.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .._version import __version__
from ..cache.format import FORMAT_VERSION
from .reads import changes as read_changes

_EXAMPLES = 3


def make(source: dict[str, Any], transforms: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    inputs = {"format_version": FORMAT_VERSION, "prebake_version": __version__, "source": source,
              "transforms": transforms, "options": options}
    return {"digest": digest(inputs), "inputs": inputs}


def digest(inputs: dict[str, Any]) -> str:
    """The sha256 of ``inputs`` but their ``reads`` (checked file by file: :func:`read_changes`)."""
    known = {k: v for k, v in inputs.items() if k != "reads"}
    blob = json.dumps(known, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def explain(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human reasons why ``old`` inputs differ from ``new`` ones (empty if equal)."""
    reasons: list[str] = []
    for key in ("format_version", "prebake_version"):
        if old.get(key) != new.get(key):
            reasons.append(f"{key.replace('_', ' ')} {old.get(key)} -> {new.get(key)}")
    reasons += _explain_source(old.get("source", {}), new.get("source", {}))
    if old.get("transforms") != new.get("transforms"):
        reasons += _explain_transforms(old.get("transforms", []), new.get("transforms", []))
    for key in sorted(set(old.get("options", {})) | set(new.get("options", {}))):
        a, b = old.get("options", {}).get(key), new.get("options", {}).get(key)
        if a != b:
            reasons.append(f"option {key}: {a!r} -> {b!r}")
    reasons += read_changes(old)
    if not reasons and digest(old) != digest(new):
        reasons.append("inputs changed")
    return reasons


def _explain_source(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    reasons = []
    old_params, new_params = old.get("params") or {}, new.get("params") or {}
    if isinstance(old_params, dict) and isinstance(new_params, dict) and "code" in new_params:
        reasons += _explain_code("dataset", old_params, new_params)  # a dataset's factory, like a transform
        old_params = {k: v for k, v in old_params.items() if k not in ("code", "weights")}
        new_params = {k: v for k, v in new_params.items() if k not in ("code", "weights")}
        old, new = {**old, "params": old_params}, {**new, "params": new_params}
    for key in sorted((set(old) | set(new)) - {"files"}):
        if old.get(key) != new.get(key):
            reasons.append(f"source {key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    reasons += explain_files(old.get("files", {}), new.get("files", {}))
    return reasons


def explain_files(old: dict[str, list[int]], new: dict[str, list[int]]) -> list[str]:
    """'2 source files modified (a.png, b.png)' style lines."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    modified = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    out = []
    for what, names in (("modified", modified), ("added", added), ("removed", removed)):
        if names:
            shown = ", ".join(names[:_EXAMPLES]) + (", ..." if len(names) > _EXAMPLES else "")
            out.append(f"{len(names)} source file{'s' if len(names) != 1 else ''} {what} ({shown})")
    return out


def _explain_transforms(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    reasons = []
    old_by, new_by = {t["name"]: t for t in old}, {t["name"]: t for t in new}
    for name in [t["name"] for t in old if t["name"] not in new_by]:
        reasons.append(f"transform {name} removed")
    for t in new:
        prev = old_by.get(t["name"])
        if prev is None:
            reasons.append(f"transform {t['name']} added {_params(t)}")
        elif prev != t:
            if t["name"].startswith("stage "):
                reasons += _explain_stage(prev, t)
            elif t["name"] == "user" and (prev.get("code"), prev.get("weights")) != (t.get("code"), t.get("weights")):
                reasons += _explain_code("transform", prev, t)
            elif isinstance(t.get("transforms"), list):  # a step made of nested parts (MonaiTransforms)
                reasons += [f"transform {t['name']}: {where} {_short(a)} -> {_short(b)}"
                            for where, a, b in _leaf_changes(prev, t, "")[:_EXAMPLES]]
            else:
                reasons.append(f"transform {t['name']}: {_params(prev)} -> {_params(t)}")
    if not reasons:
        reasons.append("transform order changed")
    return reasons


def _leaf_changes(old: Any, new: Any, where: str) -> list[tuple[str, Any, Any]]:
    """``(path, old, new)`` of each changed value, ``transforms[3:Spacingd].spacing_transform.pixdim``."""
    at = f"{where}." if where else ""
    if isinstance(old, dict) and isinstance(new, dict):
        if old.get("class") != new.get("class"):
            return [(at + "class", old.get("class"), new.get("class"))]
        return [c for k in sorted(set(old) | set(new)) for c in _leaf_changes(old.get(k), new.get(k), at + k)]
    if isinstance(old, list) and isinstance(new, list):
        names = [[_class_name(a) for a in side] for side in (old, new)]
        if len(old) != len(new):
            return [(where or "value", names[0], names[1]) if any(names[0]) else (where or "value", old, new)]
        return [c for i, (a, b) in enumerate(zip(old, new))
                for c in _leaf_changes(a, b, f"{where}[{i}{':' + names[0][i] if names[0][i] else ''}]")]
    return [] if old == new else [(where or "value", old, new)]


def _class_name(described: Any) -> str:
    return str(described.get("class", "")).rpartition(".")[2] if isinstance(described, dict) else ""


def _explain_stage(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """"stage 'encoder': 12 weight tensors changed (conv.weight, ...)" and the like."""
    name = new["name"].removeprefix("stage ")
    reasons = []
    if old.get("code") != new.get("code"):
        reasons.append(f"stage '{name}': code changed")
    w_old, w_new = old.get("weights") or {}, new.get("weights") or {}
    for what, keys in (("changed", [k for k in w_new if k in w_old and w_old[k] != w_new[k]]),
                       ("added", [k for k in w_new if k not in w_old]),
                       ("removed", [k for k in w_old if k not in w_new])):
        if keys:
            shown = ", ".join(keys[:_EXAMPLES]) + (", ..." if len(keys) > _EXAMPLES else "")
            reasons.append(f"stage '{name}': {len(keys)} weight tensor{'s' if len(keys) != 1 else ''} {what} ({shown})")
    for key in sorted((set(old) | set(new)) - {"name", "code", "weights"}):
        if old.get(key) != new.get(key):
            reasons.append(f"stage '{name}': {key} {old.get(key)!r} -> {new.get(key)!r}")
    return reasons or [f"stage '{name}' changed"]


def _explain_code(what: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'transform code changed (m:f)' and "transform 'f': weights of ENCODER changed" lines."""
    name = str(new.get("function") or new.get("name") or "?")
    short = name.rpartition(":")[2]
    reasons = []
    if old.get("code") != new.get("code"):
        reasons.append(f"{what} code changed ({name})")
    w_old, w_new = old.get("weights") or {}, new.get("weights") or {}
    for key in sorted(set(w_old) | set(w_new)):
        if key not in w_old:
            reasons.append(f"{what} '{short}': weights of {key} added")
        elif key not in w_new:
            reasons.append(f"{what} '{short}': weights of {key} removed")
        elif w_old[key] != w_new[key]:
            reasons.append(f"{what} '{short}': weights of {key} changed")
    return reasons


def _params(t: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in t.items() if k != "name") or "()"


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 80 else s[:77] + "..."
