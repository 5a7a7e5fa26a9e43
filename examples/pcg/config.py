"""The run's settings: a YAML file with the heart-sound workload's sections, loaded into typed dataclasses.

Sections (``configs/default.yaml``): ``data`` (the recordings and the cycles), ``hardware``
(workers, pin_memory, prefetch, device), ``data_cache`` (the seed's in-memory and view
caches), ``augmentation`` (the six ops' parameters), ``model`` and ``train``. An unknown
section or key is an error that names it (and, for a key of the seed's that prebake spells
otherwise, says which setting does its job).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file that cannot be used: the file, the key and the fix."""


@dataclass
class Data:
    sample_rate: int = 2000  # Hz of the recordings (the seed's were 5 kHz: set 5000 and cycle_length 4000)
    cycle_length: int = 1600  # samples per cycle: 0.8 s, the seed's 4000 at 5 kHz
    recordings_per_class: int = 40
    seconds: tuple[float, float] = (8.0, 12.0)
    heart_rate: tuple[float, float] = (55.0, 120.0)  # bpm of the synthetic recordings
    snr_db: tuple[float, float] = (5.0, 25.0)
    substructures: int = 4  # parts per cycle for the substructure-level loss (0: cycle level only)


@dataclass
class Hardware:
    num_workers: int = 2
    pin_memory: bool = True
    prefetch_factor: int = 4
    persistent_workers: bool = True
    device: str = "auto"  # auto: cuda when there is one
    augment_in_threads: bool = False  # prebake on a CPU: the augmentation on the Loader's threads (see README)


@dataclass
class DataCache:
    cache_in_memory: bool = True  # original/viewcache: recordings in RAM; prebake: preload="ram"
    view_cache_refresh_epochs: int = 5  # viewcache: recompute both views of every cycle this often


@dataclass
class Augmentation:
    p: float = 0.5
    time_shift: float = 0.1  # max shift, a fraction of the cycle
    amplitude_scale: tuple[float, float] = (0.8, 1.2)
    noise_snr_db: tuple[float, float] = (20.0, 40.0)
    time_mask: float = 0.1  # max width, a fraction of the cycle
    freq_mask_hz: float = 250.0  # max width of the frequency mask
    time_stretch: tuple[float, float] = (0.8, 1.25)


@dataclass
class Model:
    channels: tuple[int, ...] = (16, 32, 64)
    embedding_dim: int = 64
    projection_dim: int = 32


@dataclass
class Train:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    temperature: float = 0.1
    substructure_weight: float = 0.5
    probe_epochs: int = 200
    seed: int = 0


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    hardware: Hardware = field(default_factory=Hardware)
    data_cache: DataCache = field(default_factory=DataCache)
    augmentation: Augmentation = field(default_factory=Augmentation)
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)

    @property
    def device(self) -> str:
        if self.hardware.device != "auto":
            return self.hardware.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


#: Keys of the seed's YAML that this example spells otherwise, and what to use.
SEED_KEYS = {
    "use_gpu_augment": "the augmentation runs on the device in --data_path prebake; drop the key",
    "num_workers": "put it under hardware:",
}


def load(path: str | Path | None) -> Config:
    """The config at ``path`` (None: the defaults), every section and key checked."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected sections (data, hardware, data_cache, augmentation, model, train)")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    built = {}
    for name, values in raw.items():
        if name not in sections:
            raise ConfigError(f"{path}: unknown section {name!r}{_hint(name, sections)}")
        built[name] = _section(path, name, sections[name].default_factory, values or {})  # type: ignore[misc]
    return Config(**built)


def _section(path: Path, name: str, cls: Any, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: section {name!r} holds keys and values, found {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in fields:
            why = f"; {SEED_KEYS[key]}" if key in SEED_KEYS else _hint(key, fields)
            raise ConfigError(f"{path}: unknown key {name}.{key}{why}")
        out[key] = _typed(path, f"{name}.{key}", getattr(cls(), key), value)
    return cls(**out)


def _typed(path: Path, where: str, default: Any, value: Any) -> Any:
    """``value`` in the type of the field's default (tuples from lists, ints as floats)."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or (len(default) == 2 and len(value) != 2):
            raise ConfigError(f"{path}: {where} is {value!r}, expected a list like {list(default)}")
        return tuple(_typed(path, where, default[0], v) for v in value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (isinstance(default, float) or float(value).is_integer())
        value = type(default)(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{path}: {where} is {value!r}, expected {type(default).__name__} like {default!r}")
    return value


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
