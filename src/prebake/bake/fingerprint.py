"""What a cache was made from, hashed, and a readable account of what changed.

The fingerprint covers the format version, the source identity (paths, sizes
and mtimes of its files, its parameters), the bake transforms with their
parameters and the source of user code, and output-shaping options. Equal
digests mean the cache is up to date; different ones come with reasons.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..cache.format import FORMAT_VERSION

_EXAMPLES = 3


def make(source: dict[str, Any], transforms: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    inputs = {"format_version": FORMAT_VERSION, "source": source, "transforms": transforms, "options": options}
    return {"digest": digest(inputs), "inputs": inputs}


def digest(inputs: dict[str, Any]) -> str:
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def explain(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human reasons why ``old`` inputs differ from ``new`` ones (empty if equal)."""
    reasons: list[str] = []
    if old.get("format_version") != new.get("format_version"):
        reasons.append(f"format version {old.get('format_version')} -> {new.get('format_version')}")
    reasons += _explain_source(old.get("source", {}), new.get("source", {}))
    if old.get("transforms") != new.get("transforms"):
        reasons += _explain_transforms(old.get("transforms", []), new.get("transforms", []))
    for key in sorted(set(old.get("options", {})) | set(new.get("options", {}))):
        a, b = old.get("options", {}).get(key), new.get("options", {}).get(key)
        if a != b:
            reasons.append(f"option {key}: {a!r} -> {b!r}")
    if not reasons and digest(old) != digest(new):
        reasons.append("inputs changed")
    return reasons


def _explain_source(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    reasons = []
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
            if t["name"] == "user" and prev.get("code") != t.get("code"):
                reasons.append(f"transform code changed ({t.get('function')})")
            else:
                reasons.append(f"transform {t['name']}: {_params(prev)} -> {_params(t)}")
    if not reasons:
        reasons.append("transform order changed")
    return reasons


def _params(t: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in t.items() if k != "name") or "()"


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 80 else s[:77] + "..."
