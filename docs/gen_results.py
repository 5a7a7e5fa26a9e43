"""The tables of measured results, generated from benchmarks/results/*.json: the numbers live in the JSON only.

    python docs/gen_results.py OUT_DIR            # results/<benchmark>.md per benchmark (docs/conf.py runs this)
    python docs/gen_results.py --readme           # rewrite the README's results table between its two markers
    python docs/gen_results.py --readme --check   # exit 1 when the README's table is not what the JSON gives

A benchmark's page part holds every results file of that benchmark (``<name>-<device>[-variant].json``),
each with the machine it was measured on; a benchmark with no GPU file says its GPU figures were not
measured. A results file of a benchmark with no table of its own (docs/results_tables.py) is listed
with its figures as they are, so a new benchmark never breaks the build or goes missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_format import machine, named, ratio, short_machine, table  # noqa: E402
from results_tables import RENDERERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- results table: written by docs/gen_results.py --readme from benchmarks/results/*.json -->"
END = "<!-- end of the results table -->"


def benchmark_of(stem: str) -> str:
    """``talking-head-cpu-2core`` -> ``talking-head``: the longest known name the file's stem starts with."""
    known = [n for n in RENDERERS if stem == n or stem.startswith(n + "-")]
    return max(known, key=len) if known else "other"


def load(results: Path) -> dict[str, dict[str, Any]]:
    """Every results file by its stem, parsed."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def _machine_of(data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data.get("machine"), dict):
        return data["machine"]
    nested = [v for v in data.values() if isinstance(v, dict)]
    for v in nested + [r for v in nested for r in v.values() if isinstance(r, dict)]:
        if isinstance(v.get("machine"), dict):
            return v["machine"]
    return {}


def _flat(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in _flat(v, f"{prefix}{k}.")]
    if isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        return [kv for i, v in enumerate(data) for kv in _flat(v, f"{prefix}{i}.")]
    return [(prefix[:-1], data)]


def generic(data: dict[str, Any]) -> str:
    """A results file with no table of its own: its figures, key by key."""
    rows = [[f"`{k}`", named(json.dumps(v) if isinstance(v, list) else str(v))] for k, v in _flat(data)
            if not k.startswith("machine.")]
    return "\n".join([table(["figure", "value"], rows), "", machine(_machine_of(data))])


# what a renderer raises on a results file whose schema it does not know (a key gone, a value of another type)
SCHEMA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError, StopIteration)


def section(stem: str, data: dict[str, Any], problems: list[str]) -> str:
    """One results file as Markdown; a file its benchmark's table cannot read is shown as it is, and said so."""
    name = benchmark_of(stem)
    render: Callable[[dict[str, Any]], str] = RENDERERS.get(name, generic)
    try:
        body = render(data)
    except SCHEMA_ERRORS as e:
        problems.append(f"benchmarks/results/{stem}.json does not fit the {name!r} table of docs/results_tables.py "
                        f"({type(e).__name__}: {e}); it is shown key by key: update {render.__name__}() in "
                        "docs/results_tables.py to the file's new schema")
        body = generic(data)
    return f"From `benchmarks/results/{stem}.json`:\n\n{body}\n"


def _on_gpu(data: dict[str, Any]) -> bool:
    return _machine_of(data).get("gpu") not in (None, "not measured") or "cuda" in str(data.get("device", ""))


def pages(files: dict[str, dict[str, Any]], problems: list[str] | None = None) -> dict[str, str]:
    """``{benchmark: markdown}``: every results file of each benchmark, under the benchmark's name. What could
    not be read as its table is appended to ``problems``."""
    problems = [] if problems is None else problems
    out: dict[str, list[str]] = {name: [] for name in [*RENDERERS, "other"]}
    measured_on_gpu = {benchmark_of(stem) for stem, data in files.items() if _on_gpu(data)}
    for stem, data in files.items():
        out[benchmark_of(stem)].append(section(stem, data, problems))
    for name, parts in out.items():
        if name not in measured_on_gpu and (parts or name != "other"):
            parts.append("GPU figures: not measured (no GPU was available for any run of this benchmark).\n")
        if not parts:
            parts.append("None: every results file has a table of its own.\n" if name == "other" else
                         "Not measured yet: no results file.\n")
    return {name: "\n".join(parts) for name, parts in out.items()}


def write_pages(results: Path, out: Path, problems: list[str] | None = None) -> list[Path]:
    """Write ``out/results/<benchmark>.md``; files whose text is unchanged are left alone (no rebuild)."""
    folder = out / "results"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages(load(results), problems).items():
        path = folder / f"{name}.md"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def _row(files: dict[str, Any], stem: str, pick: Callable[[dict[str, Any]], list[str]]) -> list[str] | None:
    data = files.get(stem)
    if data is None:
        return None
    try:
        return [*pick(data), short_machine(_machine_of(data))]
    except SCHEMA_ERRORS:
        return None  # a file whose schema changed drops out of the summary; its own page still shows it


def _loader_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    return (d.get("bench") or d)["32px-b256"]["rows"]


def _of(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(r for r in rows if r["key"] == key)


def _source(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in d["rows"] if r["source"].startswith(name))


SUMMARY: list[tuple[str, str, Callable[[dict[str, Any]], list[str]]]] = [
    ("bake-cpu-2core", "Bake 60,000 CIFAR-10 images at 32 px", lambda d: [
        "the federated ViT's own preprocessing loop", "images/s, 2 workers",
        ratio(next(v for k, v in d["ratios"].items() if k.startswith("32px") and "2 worker" in k and "seed" in k))]),
    ("loader-cpu-2core", "Load CIFAR-10 batches (32 px, batch 256, 50,000 images)", lambda d: [
        "DataLoader over the same cache, 4 workers", "samples/s", ratio(_of(_loader_rows(d), "dataloader")
                                                                         ["prebake_loader_speedup"])]),
    ("loader-cpu-2core", "Load CIFAR-10 batches (32 px, batch 256, 50,000 images)", lambda d: [
        "per-sample PIL pipeline, 4 workers", "samples/s", ratio(_of(_loader_rows(d), "seed-online")
                                                                  ["prebake_loader_speedup"])]),
    ("pcg-cpu-2core", "Heart-sound contrastive pretraining", lambda d: [
        "original per-sample pipeline, 2 workers", "data samples/s", ratio(d["ratios"]["prebake/original data"])]),
    ("talking-head-cpu-2core", "Talking-head training, frozen encoders baked", lambda d: [
        "encoders in `__getitem__`, 2 workers", "data samples/s", ratio(d["ratios"]["prebake/original data"])]),
    ("medical3d-cpu-2core", "3-D CT volumes from a CSV", lambda d: [
        "MONAI `PersistentDataset`, 4 workers", "steady samples/s",
        ratio(d["ratios"]["monai-persistent"]["steady_samples_per_s"])]),
    ("monai_pipeline-cpu-2core", "A MONAI `Compose` (load, orient, resample, window, crop; flips, rot90, noise)",
     lambda d: ["the same `Compose` in `PersistentDataset`, 2 workers", "steady samples/s",
                ratio(d["results"]["steady"]["ratio"]["median"])]),
    ("views-cpu-2core", "Windows of video frames with context (batch 64)", lambda d: [
        "per-item Dataset over the same memmaps, 4 workers", "samples/s",
        ratio(next(r for s in d["settings"] if s["setting"] == "windows, batch 64" for r in s["rows"]
                   if r["pipeline"].startswith("per-item"))["prebake_ratio"])]),
    ("augment-cpu-2core", "Image augmentation on uint8 batches", lambda d: [
        "Kornia, from uint8", "samples/s", ratio(d["ratios"][0]["ratio"])]),
    ("patches-cpu-2core", "3-D patches of 96³ from 100 volumes of many shapes", lambda d: [
        "MONAI `PersistentDataset` + `RandCropByPosNegLabeld`, best of 0-2 workers", "steady patches/s",
        ratio(d["results"]["steady"]["balanced 96"]["prebake/monai"])]),
    ("crops-cpu-2core", "Random-resized crops to 224 of 2,000 photos of many sizes", lambda d: [
        "per-sample Pillow crop, 2 workers", "steady samples/s", ratio(d["row"]["speedup_vs"]["Pillow DataLoader"])]),
    ("realdata-cpu-2core", "Build 2,400 photos of many sizes, none resized", lambda d: [
        "Pillow in a loop, 1 process (writes nothing)", "seconds, 2 workers",
        ratio(_source(d, "images")["ratio_vs_prebake"]["reference loop"])]),
    ("realdata-cpu-2core", "Build a CSV of 600 medical volumes of mixed formats and dtypes, as float64", lambda d: [
        "nibabel/pydicom in a loop, 1 process (writes nothing)", "seconds, 2 workers",
        ratio(_source(d, "volumes")["ratio_vs_prebake"]["reference loop"])]),
    ("federated-cpu-2core", "Federated ViT round (224 px, CPU)", lambda d: [
        "per-sample PIL pipeline", "rounds per second", ratio(list(d["runs"].values())[-1]["round_time_ratios"]
                                                       ["online/prebake"])]),
]


def readme_table(files: dict[str, dict[str, Any]]) -> str:
    """The README's one table: prebake against what each workload used before, from the JSON."""
    rows = [[what, *row] for (stem, what, pick), row in zip(SUMMARY, [_row(files, s, p) for s, _, p in SUMMARY])
            if row is not None]
    faults = files.get("faults-cpu-2core", {}).get("rows", [])
    note = "\nprebake's figure over the other's, so above 1 is in prebake's favour. GPU figures: not measured."
    if faults:
        note += (f" Faults injected into real builds and caches (kills, bit flips, full disks, ...): "
                 f"{sum(r['failures'] for r in faults)} failures in {sum(r['trials'] for r in faults):,} trials.")
    note += "\n"
    header = ["workload", "prebake against", "measure", "prebake / other", "machine"]
    return table(header, rows, right=(3,)) + "\n" + note


def rewrite_readme(text: str, files: dict[str, dict[str, Any]]) -> str:
    """``text`` with the table between the markers replaced by what the JSON gives."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: the results markers are missing; put these two lines where the table goes:\n"
                         f"{BEGIN}\n{END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{readme_table(files)}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", type=Path, help="folder for results/<benchmark>.md")
    p.add_argument("--readme", action="store_true", help="rewrite the table in README.md")
    p.add_argument("--check", action="store_true", help="with --readme: only check, exit 1 when it differs")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: %(default)s)")
    args = p.parse_args(argv)
    files = load(args.results)
    if args.readme:
        text = README.read_text()
        new = rewrite_readme(text, files)
        if args.check:
            if new != text:
                print(f"{README}: the results table differs from benchmarks/results/; run docs/gen_results.py --readme")
                return 1
            return 0
        README.write_text(new)
        print(f"{'rewrote' if new != text else 'unchanged:'} the results table of {README}")
    if args.out:
        problems: list[str] = []
        for path in write_pages(args.results, args.out, problems):
            print(f"wrote {path}")
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
