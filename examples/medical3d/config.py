"""The run's settings: a JSON or YAML file (the original scripts' keys where they still mean something), loaded into
typed dataclasses. An unknown key is an error that names it, the section it is in, and the keys there are.

The original scripts' keys that are gone, and why (README.md has the full mapping): ``use_fast_loader`` (there is one
loader), ``preprocess_batch_size`` (the bake parallelises per item), ``preprocessed_data_dir`` (``cache_dir``),
``enable_cache``/``cache_size`` (the cache is the page cache of a memory-mapped file; no LRU to size).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file that cannot be used: the message names the file, the key and the fix."""


@dataclass
class CacheConfig:
    """``cache_config``: what is held in memory. The seed's ``enable_cache`` and ``cache_size`` sized an
    LRU of decoded items; a prebake cache is memory-mapped, so the OS page cache plays that part."""

    preload_train_data: bool = False  # Loader(preload="device"): the train items' columns on the device
    preload_val_data: bool = True  # the seed's advice: validation sets are small, preload them


@dataclass
class VolumeConfig:
    """The deterministic preprocessing, baked once (``prebake build`` flags of the same names)."""

    orientation: str = "RAS"
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5)
    window: tuple[float, float] = (-1000.0, 1000.0)  # CT HU, clipped at bake time, kept int16
    volume_shape: tuple[int, int, int] = (32, 32, 32)


@dataclass
class SplitConfig:
    """Patient-level splits (``prebake split``)."""

    by: str = "patient_id"
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    stratify: str | None = "label"


@dataclass
class AugmentConfig:
    """Random 3-D augmentation, on the device, per batch."""

    crop: tuple[int, int, int] = (28, 28, 28)
    flip_axes: tuple[int, ...] = (0, 1, 2)
    rotate90: bool = True
    intensity_scale: tuple[float, float] = (0.9, 1.1)
    intensity_shift: tuple[float, float] = (-0.05, 0.05)
    noise_std: tuple[float, float] = (0.0, 0.02)


@dataclass
class Config:
    """The whole run. ``csv_path`` (image_path, patient_id, ..., diagnosis) with paths relative to
    ``base_path``; with ``synthetic_patients`` > 0 and no CSV on disk, synthetic NIfTI volumes are written."""

    output_dir: Path = Path("outputs/medical3d")
    csv_path: Path = Path("data/volumes.csv")
    base_path: Path | None = None
    cache_dir: Path = Path("cache/medical3d")
    path_column: str = "image_path"
    label_column: str = "diagnosis"
    keep_columns: tuple[str, ...] = ("patient_id", "age")
    synthetic_patients: int = 0
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3
    num_workers: int = 2  # bake worker processes (the seed's num_workers fed its DataLoader)
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available
    cache_config: CacheConfig = field(default_factory=CacheConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def resolved_device(self) -> str:
        import torch

        return ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device


_SECTIONS = {"cache_config": CacheConfig, "volume": VolumeConfig, "split": SplitConfig, "augment": AugmentConfig}


def load_config(path: str | Path) -> Config:
    """Read ``path`` (.json, .yaml or .yml) into a :class:`Config`; paths in it are relative to the file."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix.lower() == ".json" else _yaml(text)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config holds keys and values, found {type(raw).__name__}")
    cfg = _build(Config, raw, str(path), "")
    for name in ("output_dir", "csv_path", "base_path", "cache_dir"):
        value = getattr(cfg, name)
        if value is not None and not Path(value).is_absolute():
            setattr(cfg, name, path.parent / value)
    return cfg


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def _build(cls: type, raw: dict[str, Any], where: str, section: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            gone = " (a key of the original scripts; see README.md for what replaces it)" \
                if key in _SEED_KEYS_GONE else ""
            raise ConfigError(f"{where}: unknown key {section + key!r}{gone}{hint} (keys here: {', '.join(fields)})")
        if key in _SECTIONS and cls is Config:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} holds keys and values, found {value!r}")
            value = _build(_SECTIONS[key], value, where, f"{key}.")
        else:
            value = _typed(fields[key], value, where, section + key)
        values[key] = value
    return cls(**values)


def _typed(f: dataclasses.Field, value: Any, where: str, name: str) -> Any:
    kind = str(f.type)
    if value is None and "None" in kind:
        return None
    checks = [("bool", lambda v: isinstance(v, bool), bool), ("int", _is_int, int),
              ("float", lambda v: _is_int(v) or isinstance(v, float), float),
              ("str", lambda v: isinstance(v, str), str),
              ("Path", lambda v: isinstance(v, str), Path)]
    if kind.startswith("tuple"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: {name} is {value!r}, expected a list such as {list(f.default_factory() if callable(f.default_factory) else f.default)}")  # noqa: E501
        inner = "int" if "int" in kind and "float" not in kind else "float" if "float" in kind else "str"
        return tuple(_typed_scalar(v, inner, where, name) for v in value)
    if kind.startswith("dict"):
        if not isinstance(value, dict) or not all(_is_int(v) or isinstance(v, float) for v in value.values()):
            raise ConfigError(f"{where}: {name} is {value!r}, expected names and fractions, e.g. "
                              '{"train": 0.8, "val": 0.1, "test": 0.1}')
        return {str(k): float(v) for k, v in value.items()}
    for label, ok, convert in checks:
        if kind.startswith(label) or kind.startswith(f"{label} |"):
            if not ok(value):
                raise ConfigError(f"{where}: {name} is {value!r}, expected {label.lower()}")
            return convert(value)
    return value


def _typed_scalar(v: Any, inner: str, where: str, name: str) -> Any:
    ok = {"int": _is_int(v), "float": _is_int(v) or isinstance(v, float), "str": isinstance(v, str)}[inner]
    if not ok:
        raise ConfigError(f"{where}: {name} holds {v!r}, expected {inner} values")
    return {"int": int, "float": float, "str": str}[inner](v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_SEED_KEYS_GONE = {"use_fast_loader", "preprocess_batch_size", "preprocessed_data_dir", "enable_cache", "cache_size"}
