"""Reading a config file: a regular file of at most 1 MB, UTF-8 text, YAML (without aliases), JSON or TOML.

A config path can be anything a user or a script passes: a FIFO (reading it waits for a
writer that never comes), ``/dev/zero`` (endless), a 1 KB YAML "billion laughs" whose
aliases expand to gigabytes. So the file is opened without blocking, refused unless it is
a regular file, read up to a size limit, and parsed by a YAML loader that refuses aliases.
Every failure is an :class:`~prebake.errors.OptionError` naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from functools import cache
from pathlib import Path
from typing import Any

from .errors import OptionError

#: The most bytes a config file may hold: a page of settings is a few hundred bytes; 1 MB bounds what parsing costs.
MAX_CONFIG_BYTES = 2**20
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def parse(path: Path) -> Any:
    """The settings at ``path``, parsed by its suffix (.yaml, .yml, .json, .toml)."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml", ".yaml", ".yml"):
        raise OptionError(f"{path}: config files are .yaml, .yml, .json or .toml, not {suffix or 'without a suffix'}")
    text = read_text(path)
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            return _toml().loads(text)
        return _yaml_loads(text, path)
    except OptionError:
        raise
    except RecursionError:
        raise OptionError(f"{path} nests lists or mappings deeper than Python can parse; a config file holds "
                          "flat keys and values") from None
    except Exception as e:  # noqa: BLE001 - each parser has its own error types; all mean "not valid"
        raise OptionError(f"{path} is not valid {suffix[1:].upper()}: {e}") from None


def read_text(path: Path) -> str:
    """The UTF-8 text of the regular file at ``path``, of at most :data:`MAX_CONFIG_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except OSError as e:
        raise OptionError(f"cannot read the config file {path}: {e.strerror or e}; check the path") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = next((what for test, what in _KINDS if test(st.st_mode)), "not a file")
        raise OptionError(f"{path} is not a regular file ({kind}); a config file is a YAML, JSON or TOML file on disk")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        size = max(st.st_size, len(data))
        raise OptionError(f"{path} is {size:,} bytes, over the {MAX_CONFIG_BYTES:,} bytes a config file may hold; "
                          "a config file holds build settings, not data")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OptionError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as "
                          "UTF-8") from None


def _yaml_loads(text: str, path: Path) -> Any:
    loader = _no_alias_loader()(text)
    loader.path = path
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@cache
def _no_alias_loader() -> Any:
    """yaml.SafeLoader that refuses aliases: a 1 KB file of nested aliases expands to gigabytes."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        path: Path

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                anchor = self.peek_event().anchor
                raise OptionError(f"{self.path}: YAML aliases (*{anchor}) are not allowed in a config file; "
                                  "write the value out where the alias stands")
            return super().compose_node(parent, index)

    return NoAliasLoader


def _toml() -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise OptionError("TOML config files need Python 3.11, or: pip install tomli") from None
    return tomllib
