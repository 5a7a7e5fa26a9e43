"""Any map-style dataset (``__len__`` + ``__getitem__``) as a source.

Item shapes become dicts:

- a dict is used as it is;
- a 2-tuple/list ``(x, y)`` becomes ``{"image": x, "label": y}`` (the torchvision convention);
- another tuple becomes ``{"x0": ..., "x1": ..., ...}``;
- anything else becomes ``{"data": value}``.

Values: torch tensors become numpy arrays (0-d ones numpy scalars; bfloat16 becomes
float32, which numpy lacks), PIL images are converted to RGB, everything else passes
through unchanged. An exception raised by ``dataset[i]`` makes item ``i`` a bad item.

Fingerprint: :meth:`DatasetSource.describe` records the identity of the dataset's
factory (or class), hashed like a transform's code (:mod:`prebake.identity.code`:
across your modules, module constants and ``nn.Module`` weights included). It cannot
see the files a dataset reads, so a dataset that reads external files should define
``fingerprint(self) -> str`` (for example a hash of its file list with sizes and
mtimes); its result is recorded under ``"user"`` and a change makes the cache stale.
Without one, the description says so under ``"unverified"``, and the build and
``prebake ls`` print it::

    class Scans:
        def __len__(self): ...
        def __getitem__(self, i): ...
        def fingerprint(self) -> str:
            return hashlib.sha256(repr(sorted(self.index.items())).encode()).hexdigest()
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from PIL import Image

from ..errors import BadItemError, SourceError, opt
from ..identity.code import code_identity
from ..identity.plugins import load_object
from .base import Source
from .images import to_rgb


def convert_value(value: Any) -> Any:
    """A torch tensor as numpy, a PIL image as RGB, anything else unchanged."""
    torch = sys.modules.get("torch")  # no tensor can exist unless torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        arr = t.numpy()
        return arr[()] if arr.ndim == 0 else arr
    if isinstance(value, Image.Image):
        return to_rgb(value)
    return value


def item_dict(item: Any) -> dict[str, Any]:
    """Apply the item-shape rules of the module docstring."""
    if isinstance(item, dict):
        out = dict(item)
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        out = {"image": item[0], "label": item[1]}
    elif isinstance(item, tuple):
        out = {f"x{i}": v for i, v in enumerate(item)}
    else:
        out = {"data": item}
    return {k: convert_value(v) for k, v in out.items()}


class DatasetSource(Source):
    """Wraps a map-style dataset; see the module docstring for items and fingerprints."""

    kind = "dataset"

    def __init__(self, dataset: Any, name: str | None = None, factory: Callable[..., Any] | None = None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise SourceError(
                f"{type(dataset).__qualname__} is not a map-style dataset: it needs __len__ and "
                "__getitem__ (an IterableDataset cannot be baked; index it instead)"
            )
        self.dataset = dataset
        self.factory = factory
        self.spec: str | None = None
        self._len = len(dataset)
        self.name = name or type(dataset).__qualname__
        classes: Any = getattr(dataset, "classes", None)
        ok = isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)
        self.classes = list(classes) if ok else None
        self._keys = [str(i) for i in range(self._len)]

    @classmethod
    def from_spec(cls, spec: str, name: str | None = None) -> DatasetSource:
        """Build the dataset with ``module:function`` or ``path/to/file.py:function`` (a file imports the modules
        beside it: :func:`prebake.identity.plugins.load_object`)."""
        factory = load_object(spec)
        if not callable(factory):
            raise SourceError(f"{spec!r} is a {type(factory).__name__}, expected a function returning a dataset")
        source = cls(factory(), name=name or spec, factory=factory)
        source.spec = spec
        return source

    def keys(self) -> list[str]:
        return self._keys

    def read(self, index: int) -> dict[str, Any]:
        try:
            item = self.dataset[index]
        except Exception as e:  # noqa: BLE001 - any failure of user code is one bad item
            raise BadItemError(f"{type(e).__name__}: {e}") from None
        return item_dict(item)

    def describe(self) -> dict[str, Any]:
        identity = code_identity(self.factory if self.factory is not None else type(self.dataset))
        params: dict[str, Any] = {"type": type(self.dataset).__qualname__, "len": self._len, **identity}
        if self.spec is not None:
            params["spec"] = self.spec
        out: dict[str, Any] = {"kind": self.kind, "root": self.name, "params": params, "files": {}}
        fingerprint = getattr(self.dataset, "fingerprint", None)
        if not callable(fingerprint):
            # this text is in the fingerprint digest: keep it byte for byte (the old module path included),
            # or every cache of a dataset without fingerprint() rebuilds
            out["unverified"] = (
                f"the data of dataset {self.name} is not checked: {type(self.dataset).__qualname__} has no "
                "fingerprint() method, so a change to the files it reads never makes this cache stale; "
                "define fingerprint() on the dataset (see prebake.sources.dataset), "
                f"or rebuild with {opt('force')}"
            )
        else:
            out["user"] = fingerprint()
            try:
                json.dumps(out["user"])
            except (TypeError, ValueError):
                raise SourceError(
                    f"{self.name}.fingerprint() returned a {type(out['user']).__name__}, which is "
                    "not JSON-serialisable; return a str (e.g. a hex digest)"
                ) from None
        return out

