"""The ``prebake`` command line. Arguments are parsed here, once, and passed down as values.

Each command lives in its own module and imports what it needs when it runs, so
``prebake --version``, ``ls``, ``info``, ``verify`` and ``clear`` start without torch.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .._version import __version__
from ..config import BUILD_KEYS, Key
from ..errors import PrebakeError, StrictModeError
from ._echo import echo
from .spelling import REPEATED, Formatter, _actions

EXIT_CODES = """exit status:
  0    success (verify: every file was checked and is intact)
  1    verify found problems (a file or the manifest does not match: rebuild the cache);
       a --strict build met a bad item; clear was declined
  2    an error: bad arguments or input, or verify could not check (no cache, a file that cannot
       be read); the message says why
  130  interrupted (Ctrl-C); re-run the same command to resume a build"""

#: ``build``'s settings that are positional arguments rather than flags.
_POSITIONAL = ("source", "out")
_ARG_TYPES = {"int": int, "float": float, "pair": float, "float3": float, "int3": int}  # argparse type per Key.type
#: Values the ``--kind`` flag accepts (checked again, with the message, by the source detection).
KINDS = ("cifar", "cifar-bin", "imagefolder", "audio", "volumes", "video", "csv", "arrays", "hdf5")


class _Parser(argparse.ArgumentParser):
    """argparse, plus a suggestion for a mistyped flag: the closest of the parser's flags (a command's own, on a
    command's parser); and negative numbers in any notation as values (``--nan-fill -1e3``, ``--window -1e3 1e3``),
    where argparse's own pattern takes ``-1e3`` for an option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            known = sorted({o for a in _actions(self) for o in a.option_strings if o.startswith("--")})
            typos = [w.split("=")[0] for w in message.split(":", 1)[1].split() if w.startswith("--")]
            close = {t: difflib.get_close_matches(t, known, n=1, cutoff=0.7) for t in typos}
            hints = [f"{t}: did you mean {c[0]}?" if c[0] != t else f"{t} comes after '--', which makes everything "
                     "after it an argument: put the options before '--'" for t, c in close.items() if c]
            message += "".join(f"; {h}" for h in hints)
        super().error(message)


class _Commands(argparse._SubParsersAction):
    """The commands, each parsed with its options and arguments in any order, as users type them
    (``prebake build SRC --workers 1 OUT``): argparse's plain parse fills build's optional SOURCE and OUT from the
    arguments before the first option, so an OUT after one came back unrecognized. An argument the command does not
    take is its own parser's error, so the usage printed with it is that command's, not the top level's."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        name, rest = values[0], values[1:]
        command = self._name_parser_map[name]  # argparse has checked the name against the choices
        setattr(namespace, self.dest, name)
        parsed, extras = command.parse_known_intermixed_args(rest)
        if extras:
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        for key, value in vars(parsed).items():
            setattr(namespace, key, value)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prebake", description="Bake deterministic preprocessing into a verified, "
                                "memory-mapped cache, and check that training is fed.", epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"prebake {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", action=_Commands)
    _build_parser(sub)
    c = _command(sub, "verify", "check every byte of a cache (or of every cache under a directory)")
    c.add_argument("path", metavar="PATH", help="a cache, or a directory that holds caches")
    c = _command(sub, "info", "describe a cache (or every cache under a directory)")
    c.add_argument("path", metavar="PATH", help="a cache, or a directory that holds caches")
    c = _command(sub, "ls", "list the caches under a directory with their state: committed, stale or partial")
    c.add_argument("path", metavar="ROOT", nargs="?", default=".", help="where to look (default: .)")
    c = _command(sub, "clear", "delete a cache, or every cache and unfinished build under a directory")
    c.add_argument("path", metavar="PATH", help="a cache, or a directory that holds caches")
    c.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    _export_parser(sub)
    _split_parser(sub)
    _bench_parser(sub)
    d = _command(sub, "demo", "bake a small synthetic CIFAR-10 at 32 and 224 px, verify it, and time the loaders")
    d.add_argument("--source", metavar="DIR", help="a real CIFAR-10 python-version download to use instead")
    d.add_argument("--workdir", default="prebake-demo", metavar="DIR",
                   help="where the data and the caches go (default: prebake-demo)")
    d.add_argument("--workers", type=int, metavar="N", help="bake worker processes (default: one per core)")
    d.add_argument("--bench-seconds", type=float, default=1.0, metavar="T",
                   help="seconds per pipeline in the closing loader comparison (default 1; 0 skips it)")
    return p


def _command(sub: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    c = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".", epilog=EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    c.add_argument("--quiet", "-q", action="store_true", help="print only warnings and errors on stderr")
    return c


def flag(key: Key) -> str:
    return REPEATED.get(key.name, "--" + key.name.replace("_", "-"))


def _build_parser(sub: argparse._SubParsersAction) -> None:
    b = _command(sub, "build", "bake a source into a cache (or resume, or say it is up to date)")
    b.usage = ("prebake build [options] SOURCE OUT\n       prebake build [options] --dataset MODULE:FUNC OUT\n"
               "       prebake build --config FILE [options] [SOURCE] [OUT]")
    b.description = ("Bake SOURCE into OUT (OUT/<split> for sources with splits). Running the same command "
                     "again is a no-op while the inputs are unchanged; after a crash or Ctrl-C it resumes.")
    keys = {k.name: k for k in BUILD_KEYS}
    for name in _POSITIONAL:
        b.add_argument(name, nargs="?", metavar=keys[name].metavar, help=keys[name].help)
    b.add_argument("--config", metavar="FILE", help="read the settings from a YAML, JSON or TOML file with these "
                   "keys (source, out, image_size, ...); flags given here override it")
    b.add_argument("--print-config", action="store_true",
                   help="print the settings this command would use, as YAML, and exit")
    for key in BUILD_KEYS:
        if key.name in _POSITIONAL or key.type == "steps":  # a list of steps is written in a config file
            continue
        kwargs: dict = {"help": key.help, "default": None}
        if key.type == "bool":
            kwargs["action"] = "store_true"
        else:
            several = {"pair": 2, "float3": 3, "int3": 3}.get(key.type)
            kwargs["metavar"] = tuple((key.metavar or "").split()) if several else key.metavar
            kwargs["type"] = _ARG_TYPES.get(key.type, str)
            if key.type == "strs":
                kwargs["action"] = "append"
            if several:
                kwargs["nargs"] = several
            if key.name == "kind":
                kwargs["choices"] = KINDS
                kwargs["help"] = f"{key.help}: {', '.join(KINDS)}"
        b.add_argument(flag(key), dest=key.name, **kwargs)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    c = _command(sub, "export", "write a cache as one HDF5 file (plain h5py reads it) or a Hugging Face dataset")
    c.description = ("Write CACHE as FILE.h5: one chunked dataset per column (a ragged column as a group of values "
                     "and offsets), the manifest in the attributes. 'prebake build FILE.h5 OUT' reads it back into "
                     "byte-identical columns. Needs h5py: pip install 'prebake[hdf5]'. With --format hf, write a "
                     "Hugging Face datasets directory instead (datasets.load_from_disk(OUT); values equal the "
                     "cache's): pip install 'prebake[hf]'.")
    c.add_argument("path", metavar="CACHE", help="a committed cache")
    c.add_argument("out", metavar="OUT", help="FILE.h5 to write, or with --format hf a directory that does not "
                   "exist yet (either written whole, then renamed into place)")
    c.add_argument("--format", choices=["hdf5", "hf"], default="hdf5",
                   help="hdf5 (default): one HDF5 file; hf: a Hugging Face datasets directory")
    c.add_argument("--compression", choices=["none", "gzip", "lzf"], default="none",
                   help="compress each chunk (with the byte-shuffle filter); default none")
    c.add_argument("--level", type=int, metavar="N", help="gzip level, 0-9 (default 4)")
    c.add_argument("--force", action="store_true", help="replace FILE.h5 even when prebake did not export it "
                   "(its own exports are replaced without it; a directory never is)")


def _split_parser(sub: argparse._SubParsersAction) -> None:
    c = _command(sub, "split", "split a cache's items by a group column (patients), so no group is in two splits")
    c.description = ("Split the items of CACHE by the values of a column (a patient id), with the given fractions, "
                     "deterministically for a seed, and save the index lists as CACHE/splits.json "
                     "(prebake.load_splits reads them; prebake.Loader(cache, indices=...) uses them).")
    c.add_argument("path", metavar="CACHE", help="a committed cache with the group column")
    c.add_argument("--by", required=True, metavar="COLUMN", help="the column naming each item's group, "
                   "e.g. patient_id (kept from a CSV with --keep-column)")
    c.add_argument("--fractions", nargs="+", default=["train=0.8", "val=0.1", "test=0.1"], metavar="NAME=F",
                   help="split names and fractions summing to 1 (default: train=0.8 val=0.1 test=0.1)")
    c.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the group order (default 0)")
    c.add_argument("--stratify", metavar="COLUMN", help="keep this column's mix (usually label) in every split")


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    c = _command(sub, "bench", "samples/s of prebake.Loader against DataLoaders, the original pipelines and peers")
    c.description = ("Time every pipeline on the same cache, in one run, in interleaved rounds of whole epochs, and "
                     "print the ratios with their spread. An image cache (uint8 3 x H x W 'image', 'label'): against "
                     "the original pipelines and peer libraries, all producing normalised float32 batches. Any other "
                     "cache, or a view of a ragged column: against DataLoaders over the same items, the same "
                     "values checked, with a per-column summary.")
    c.add_argument("path", metavar="CACHE", help="any prebake cache")
    c.add_argument("--windows", nargs=2, metavar=("COLUMN", "LENGTH"), help="time windows of LENGTH rows of a "
                   "ragged column (prebake.Windows)")
    c.add_argument("--context", type=int, default=0, metavar="K", help="with --windows: K rows of context before each")
    c.add_argument("--elements", metavar="COLUMN", help="time the rows of a ragged column (prebake.Elements)")
    c.add_argument("--columns", nargs="+", metavar="NAME", help="read only these columns (default: all)")
    c.add_argument("--rounds", type=int, default=5, metavar="R", help="timed rounds per pipeline (default 5)")
    c.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per batch (default 256)")
    c.add_argument("--image-size", type=int, metavar="S", help="output size (default: the cache's); "
                   "a different size is resized on the device")
    c.add_argument("--device", metavar="D", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    c.add_argument("--seconds", type=float, default=3.0, metavar="T", help="timed seconds per pipeline (default 3)")
    c.add_argument("--limit", type=int, metavar="N", help="use the first N items (default: all, or fewer to "
                   "keep the offline pipeline's float32 file under 4 GiB)")
    c.add_argument("--workers", type=int, default=4, metavar="W",
                   help="DataLoader workers (default 4, as the original)")
    c.add_argument("--only", action="append", metavar="KEY", help="run only these pipelines (repeatable): "
                   "prebake, prebake-ram, prebake-device, dataloader, seed-offline, seed-online, hf-datasets, litdata")
    c.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    c.add_argument("--workdir", metavar="DIR", help="keep the seed file and peer formats here (default: a temp dir)")
    c.add_argument("--out", metavar="FILE.json", help="also write the JSON result to FILE.json")
    c.add_argument("--plot", metavar="OUT.png", help="write a bar chart (needs matplotlib: prebake[plot])")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter("%(message)s"))  # the library's warnings name flags, as errors do
    logging.basicConfig(level=logging.WARNING if args.quiet or args.json else logging.INFO, handlers=[handler])
    for reader in ("pydicom", "nibabel"):  # a decoder's traceback or a header's complaint per file: the item's own
        logging.getLogger(reader).setLevel(logging.CRITICAL)  # reason (skip list, build.log) says what matters
    try:
        return _run(args)
    except StrictModeError as e:
        echo(f"error: {e}", file=sys.stderr)
        return 1
    except (PrebakeError, OSError, ValueError) as e:
        if isinstance(e, BrokenPipeError):
            return _closed_stdout()
        if isinstance(e, PrebakeError) and e.counts is not None:  # as every build ends, a failed one too
            echo("kept {:,} of {:,}, skipped {:,}".format(*e.counts), file=sys.stderr)
        echo(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        echo("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from . import build, caches, exchange, tools

    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "build": build.run, "verify": caches.verify, "info": caches.info, "ls": caches.ls,
        "clear": caches.clear, "demo": tools.demo, "bench": tools.bench, "export": exchange.export,
        "split": exchange.split,
    }
    code = commands[args.command](args)
    sys.stdout.flush()  # a closed pipe shows up here, inside the handler above
    return code


def _closed_stdout() -> int:
    """The reader of stdout went away (``prebake ls --json | head``): stop quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush does not complain
    return 0
