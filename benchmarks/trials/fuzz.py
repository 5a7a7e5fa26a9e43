"""Fuzzed manifests: values of the wrong type, keys removed, huge or negative numbers.

Each example mutates one entry of a real manifest (replace it, delete it, or add a
stray key), then either leaves the checksum as it was (the usual case of a damaged
file) or computes a new one (a careless edit, so the schema checks are exercised).
``prebake.open`` plus reads, ``prebake.verify`` and ``prebake verify`` must raise nothing
but :class:`prebake.PrebakeError` subclasses, and the CLI must exit 1 ("problems found") for a changed
manifest whose checksum was left as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from prebake.cache.format import MANIFEST, sign_manifest
from prebake.cli import main

from . import Row
from .corruption import judge, sample_caches

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["../x.npy", "/etc/passwd", "<i8", "|O", "V0", "S0", "(", "image.npy", "0" * 16]),
    st.lists(st.one_of(st.none(), st.integers(-5, 10**12), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.integers(), st.text(max_size=4)), max_size=3),
)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON object."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def mutate(manifest: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    m = json.loads(json.dumps(manifest))
    parent: Any = m
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif action == "add" and isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    else:
        parent[last] = value
    return m


def fuzzed_manifests(workdir: Path, examples: int, seed_: int = 0) -> Row:
    row = Row("fuzzed manifests (types, removed keys, huge numbers): only PrebakeError from open, read, "
              "verify; 'prebake verify' exits 1 when the checksum was not redone")
    caches = sample_caches(workdir)
    originals = {c: (c / MANIFEST).read_bytes() for c in caches}
    parsed = {c: json.loads(raw) for c, raw in originals.items()}

    @seed(seed_)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: Any) -> None:
        cache = data.draw(st.sampled_from(caches))
        path = data.draw(st.sampled_from(paths(parsed[cache])))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        m = mutate(parsed[cache], path, action, data.draw(_VALUES))
        resign = data.draw(st.booleans())
        text = json.dumps(sign_manifest(m) if resign else m, indent=1)
        (cache / MANIFEST).write_text(text)
        try:
            _, _, untyped = judge(cache)
            code = _cli_verify(cache)
        finally:
            (cache / MANIFEST).write_bytes(originals[cache])
        where = f"{cache.name}: {action} {'.'.join(map(str, path))}{' (re-signed)' if resign else ''}"
        changed = m != parsed[cache]
        allowed = (1,) if changed and not resign else (0, 1, 2)  # a re-signed edit may be a valid manifest
        if untyped:
            row.fail(f"{where}: {untyped}")
        elif code not in allowed:
            row.fail(f"{where}: prebake verify exited {code}, expected one of {allowed}")
        else:
            row.ok()

    one()
    return row


def _cli_verify(cache: Path) -> Any:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(["verify", str(cache), "-q"])
    except Exception as e:  # noqa: BLE001 - an untyped exception is what this looks for
        return f"{type(e).__name__}: {e}"
