"""One function per benchmark: its results file (benchmarks/results/<name>-<device>.json) as Markdown tables.

Each takes the parsed JSON and returns the tables with the machine they were measured on. Targets are
the goals the issues set (not measurements); whether a figure meets one is computed here from the JSON.
"""

from __future__ import annotations

from typing import Any

from results_format import machine, named, num, pct, ratio, size, spread, table, target


def bake(d: dict[str, Any]) -> str:
    rows = []
    for r in d["rows"]:
        who = "prebake" if r["pipeline"] == "prebake" else f"{named(r['pipeline'])} (float32)"
        what = f"{who}, {r['size']} px" + (f", {r['workers']} worker{'s' * (r['workers'] > 1)}"
                                          if r["pipeline"] == "prebake" else "")
        what += ", test split" if r.get("split") == "test" else ""
        rows.append([what, num(r["items"]), f"{r['seconds']:.2f} s", num(r["items_per_s"]), size(r.get("bytes"))])
    out = [f"Data: {d.get('data', '')}. Times cover the whole build, from unpickling to a durable, "
           "checksummed commit.", "",
           table(["build", "images", "time", "images/s", "on disk"], rows, right=(1, 2, 3, 4)), ""]
    out += [f"- {named(k)}: {ratio(v)}" for k, v in d.get("ratios", {}).items()]
    floor = d.get("disk_floor")
    if floor:
        out.append(f"- writing and fsyncing the same {size(floor['bytes'])} alone: {floor['seconds']:.2f} s")
    return "\n".join(out + ["", machine(d.get("machine"), d.get("device"))])


def bake_vs_main(d: dict[str, Any]) -> str:
    """The same builds from the current tree and an older commit's (benchmarks/bake_against.py)."""
    rows = [[r["row"], f"{r['current_s']:.2f} s", f"{r['current_cpu_s']:.2f}", f"{r['previous_s']:.2f} s",
             f"{r['previous_cpu_s']:.2f}", ratio(r["ratio"]) + spread(min(r["ratio_per_round"]),
                                                                    max(r["ratio_per_round"])),
             ratio(r.get("cpu_ratio")), target(r["ratio"], 0.95)] for r in d["rows"]]
    loads = d.get("load_1min_after_each_round") or [0.0]
    return "\n".join([f"{d['current']['commit'][:10]} against {d['against']['commit'][:10]}, {d['against']['why']}: "
                      "fresh processes, "
                      f"{d.get('rounds')} interleaved rounds, medians; both trees' columns byte-identical; "
                      f"1-minute load {min(loads):.2f}-{max(loads):.2f}.", "",
                      table(["build", "current", "CPU s", "previous", "CPU s", "current / previous (items/s)",
                             "previous / current (CPU s)", "target"], rows, right=(1, 2, 3, 4, 5, 6)), "",
                      machine(d.get("machine"), d.get("device"))])


def _bench_setting(name: str, s: dict[str, Any]) -> str:
    rows = [[named(r["name"]), "skipped: " + str(r["skipped"]) if r.get("skipped") else num(r["samples_per_s"]),
             ratio(r.get("prebake_loader_speedup")) + spread(*(r.get("speedup_min_max") or (None, None)))]
            for r in s["rows"]]
    head = (f"**{name}**: {num(s.get('items'))} images of {s.get('cache_image_size')} px, "
            f"{s.get('image_size')} px batches of {s.get('batch_size')}, on {s.get('device')}")
    notes = [f"- {named(r['name'])}: {n}" for r in s["rows"] for n in r.get("notes", [])]
    frac = s.get("loader_output_fraction_of_memcpy")
    if frac and s.get("memcpy_gbps"):
        notes.append(f"- prebake.Loader writes {pct(frac)} of this machine's memcpy bandwidth "
                     f"({s['memcpy_gbps']:.1f} GB/s)")
    return "\n".join([head, "", table(["pipeline", "samples/s", "prebake.Loader's samples/s over the row's"], rows,
                                      right=(1, 2)), "", *notes, "", machine(s.get("machine"), s.get("device"))])


def _epochs(rows: list[dict[str, Any]], info: dict[str, Any] | None) -> str:
    body = [[num(r["items"]), named(r["pipeline"]), f"{r['epoch_ms']:.2f}", num(r["samples_per_s"]),
             ratio(r["loader_ratio"]) + spread(r.get("loader_ratio_min"), r.get("loader_ratio_max"))] for r in rows]
    return "\n".join(["**Whole epochs** (each epoch's start-up counted; ranges over the interleaved rounds)", "",
                      table(["items", "pipeline", "epoch ms", "samples/s", "the Loader's samples/s over this"], body,
                            right=(0, 2, 3, 4)), "", machine(info)])


def loader(d: dict[str, Any]) -> str:
    if "epochs" in d or "bench" in d:
        parts = [_epochs(d["epochs"], d.get("machine"))] if d.get("epochs") else []
        parts += [_bench_setting(k, {"machine": d.get("machine"), **v}) for k, v in d.get("bench", {}).items()]
        return "\n\n".join(parts)
    return "\n\n".join(_bench_setting(k, v) for k, v in d.items() if isinstance(v, dict) and "rows" in v)


def views(d: dict[str, Any]) -> str:
    rows = []
    for s in d["settings"]:
        for r in s["rows"]:
            rows.append([s["setting"], named(r["pipeline"]), num(r["samples_per_s"]), f"{r['output_gb_per_s']:.2f}",
                         ratio(r["prebake_ratio"]) + spread(r.get("prebake_ratio_min"), r.get("prebake_ratio_max"))])
    head = (f"{d.get('rounds')} interleaved rounds of {d.get('seconds')} s per pipeline (medians); "
            f"memcpy {d.get('memcpy_gbps', 0):.1f} GB/s in the same run.")
    return "\n".join([head, "", table(["setting", "pipeline", "samples/s", "output GB/s",
                                       "prebake.Loader (memmap) over the row"], rows, right=(2, 3, 4)),
                      "", machine(d.get("machine"))])


def augment(d: dict[str, Any]) -> str:
    alloc = d.get("allocator")
    alloc = alloc if isinstance(alloc, str) else ", ".join(f"{k}={v}" for k, v in (alloc or {}).items())
    rows = []
    for r in d["rows"]:
        reps = r.get("samples_per_s_per_repeat") or []
        rows.append([r["suite"], named(r["pipeline"]), "x".join(map(str, r["batch"])),
                     num(r["samples_per_s"]) + (f" ({num(min(reps))}-{num(max(reps))})" if reps else ""),
                     named(r.get("note") or "")])
    ratios = [[named(r["ours"]), named(r["peer"]), ratio(r["ratio"]) + spread(r.get("ratio_min"), r.get("ratio_max")),
               target(r["ratio"], r["target"]) if r.get("target") else ""] for r in d.get("ratios", [])]
    return "\n".join([f"Allocator: {alloc}; {d.get('process', '')}; {d.get('repeats')} repeats, medians "
                      "(min-max over the repeats).", "",
                      table(["suite", "pipeline", "batch", "samples/s", "note"], rows, right=(3,)), "",
                      table(["prebake", "against", "ratio", "target"], ratios, right=(2,)), "",
                      machine(d.get("machine"))])


def federated(d: dict[str, Any]) -> str:
    rows, info = [], None
    for name, run in d["runs"].items():
        info = run.get("machine", info)
        base = run["results"]["prebake"]["median_round_seconds"]
        for path, r in run["results"].items():
            shown_t = pct(r["transform_fraction"]) if path == "prebake" else "(workers)"
            rows.append([name, path, f"{r['median_round_seconds']:.2f}", pct(r["data_wait_fraction"]), shown_t,
                         ratio(r["median_round_seconds"] / base)])
    return "\n".join([table(["setting", "data path", "round (s)", "data wait", "the Loader's transform",
                             "round time vs prebake"], rows, right=(2, 3, 4, 5)), "", machine(info, d.get("device"))])


PCG_PATHS = {"original": "original: segmentation and six scipy ops per `__getitem__`, x2 views",
             "viewcache": "view cache: views recomputed every 5 epochs",
             "prebake": "prebake: cycles baked, six ops x2 views on the device",
             "prebake-threads": "prebake, the six ops on the Loader's threads (`transform_in_threads=True`)"}


def pcg(d: dict[str, Any]) -> str:
    rows = []
    for path, r in d["results"].items():
        t, data = r["train"], r["data"]
        ops = pct(t.get("transform_fraction")) if t.get("transform_fraction") else "(workers or threads)"
        row = [PCG_PATHS.get(path, path), num(data["samples_per_s"]), f"{data['distinct_views_per_epoch']:.2f}",
               num(t["samples_per_s"]), pct(t["data_wait_fraction"]), ops, pct(t.get("wait_with_transform_fraction"))]
        if "verdict" in t:
            row.append(f"{t['verdict']} ({t.get('input_cores', 0):.2f} cores)")
        rows.append(row)
    head = ["data path", "data only, samples/s", "distinct views per cycle per epoch", "training, samples/s",
            "data wait", "the six ops on the device", "wait + ops"] + (["watch says"] if len(rows[0]) > 7 else [])
    same = d.get("same_cycles", {})
    r = d.get("ratios", {})
    lines = [f"{d.get('recordings')} synthetic recordings, {num(same.get('cycles'))} cardiac cycles "
             f"(the original pipeline's segmentation gives the same cycles: {same.get('identical')}); "
             f"bake {d.get('bake_seconds', 0):.1f} s.", "",
             table(head, rows, right=(1, 2, 3, 4, 5, 6)), "",
             f"- data throughput, prebake over the original: {ratio(r.get('prebake/original data'))} "
             f"(target {target(r.get('prebake/original data'), 10)})",
             f"- prebake over the view cache: data {ratio(r.get('prebake/viewcache data'))}, "
             f"training {ratio(r.get('prebake/viewcache train'))}; over the original, training "
             f"{ratio(r.get('prebake/original train'))}",
             f"- data wait with prebake: {pct(d['results']['prebake']['train']['data_wait_fraction'])} "
             f"(target {target(d['results']['prebake']['train']['data_wait_fraction'], 0.05, False, pct)})"]
    return "\n".join(lines + ["", machine(d.get("machine"), d.get("device"))])


MEDICAL_PATHS = {"prebake": "prebake: int16 cache, `Loader(convert={'image': IntensityWindow(...)})`",
                 "prebake-transform": "prebake, the same cache, the window on each batch (`transform=`)",
                 "prebake-float32": "prebake, a float32 cache (`--scale-to 0 1`), loaded as is",
                 "monai-persistent": "MONAI `PersistentDataset` + DataLoader",
                 "monai-persistent-2w": "MONAI `PersistentDataset` + DataLoader (first epoch only)",
                 "monai-cache": "MONAI `CacheDataset` + DataLoader"}
# the goals of the 3-D medical workload: (pipeline, figure) -> (goal, whether the figure must be at least it)
MEDICAL_TARGETS = {("monai-persistent", "steady_samples_per_s"): (3.0, True),
                   ("monai-persistent", "cache_bytes"): (0.55, False),
                   ("monai-persistent-2w", "first_epoch_speedup"): (1.5, True),
                   ("seed-hdf5", "steady_samples_per_s"): (2.0, True)}


def _per_repeat(d: dict[str, Any], key: str, field: str) -> str:
    values = [r[key][field] for r in d.get("ratios_per_repeat", []) if r.get(key, {}).get(field) is not None]
    return spread(min(values), max(values)) if values else ""


def medical3d(d: dict[str, Any]) -> str:
    rows = [[MEDICAL_PATHS.get(r["pipeline"], named(r["pipeline"])), r["workers"], f"{r['first_epoch_seconds']:.1f} s",
             num(r.get("steady_samples_per_s")), f"{size(r['cache_bytes'])} ({r['cache_where']})",
             f"{num(r['pss_mib'])} MiB" if r.get("pss_mib") else "-"] for r in d["results"]]
    ratios = []
    for key, r in d["ratios"].items():
        goals = [f"{field.split('_')[0]} {target(r[field], goal, at_least)}"
                 for (k, field), (goal, at_least) in MEDICAL_TARGETS.items() if k == key]
        ratios.append([MEDICAL_PATHS.get(key, named(key)),
                       ratio(r["steady_samples_per_s"]) + _per_repeat(d, key, "steady_samples_per_s"),
                       ratio(r["first_epoch_speedup"]) + _per_repeat(d, key, "first_epoch_speedup"),
                       ratio(r["cache_bytes"]), "; ".join(goals)])
    s = d.get("settings", {})
    head = (f"{s.get('volumes')} int16 CT-like volumes ({size(d.get('input_bytes'))} of `.nii.gz`), RAS, 1.5 mm, "
            f"HU window to [0, 1], {s.get('size')}^3, float32 batches of {s.get('batch_size')}; each pipeline in a "
            f"fresh process, {s.get('repeat')} repeats, medians; outputs equal within {d.get('tolerance')}.")
    versions = ", ".join(f"{k} {v}" for k, v in d.get("versions", {}).items())
    pipelines = table(["pipeline", "workers", "first epoch, cache build included", "steady samples/s", "cache",
                       "PSS of its processes"], rows, right=(1, 2, 3, 5))
    against = table(["prebake vs", "steady samples/s", "first epoch, faster by", "cache bytes (prebake / theirs)",
                     "target"], ratios, right=(1, 2, 3))
    return "\n".join([head, "", pipelines, "", "prebake (the first row) against each, min-max over the repeats:", "",
                      against, "", f"{machine(d.get('machine'))} {versions}"])


STAGE_WAYS = {"stage_b32": "`Stage`, 32 clips per call (motion: at most 256 frames)",
              "stage_b32_unbounded": "`Stage`, 32 clips per call, no `max_rows`",
              "stage_b8": "`Stage`, 8 clips per call", "stage_b4": "`Stage`, 4 clips per call",
              "stage_b1": "`Stage`, 1 clip per call", "per_item_loop": "the original loop, one clip per call"}
TALKING_PATHS = {"original": "original: decode + both encoders in `__getitem__`, 2 workers",
                 "optimised": "optimised: the original's list of dicts, sliced in `__getitem__`, 2 workers",
                 "optimised_0_workers": "optimised, in-process (0 workers)",
                 "prebake": "prebake: `Windows` over the baked latents, `prebake.Loader`"}


def _talking_head_bake(b: dict[str, Any]) -> str:
    enc = b["encoders"]
    rows = [[STAGE_WAYS.get(k, k), f"{v['w_audio']:.2f}", f"{v['motion']:.2f}", f"{enc['total'][k]:.2f}"]
            for k, v in enc["median"].items()]
    sizes = b.get("sizes", {})
    return "\n".join([f"**Bake**: the two frozen encoders over {b['clips']} decoded clips ({num(b['frames'])} frames), "
                      "seconds, medians of interleaved rounds:", "",
                      table(["way", "audio encoder", "motion encoder", "both"], rows, right=(1, 2, 3)), "",
                      f"- 32 clips per call against 1: {ratio(b.get('ratio_stage_b32_vs_b1'))} "
                      f"(target {target(b.get('ratio_stage_b32_vs_b1'), 5)})",
                      f"- whole bake (decode, encoders, commit): {b['build_b32']:.1f} s at 32 clips per call, "
                      f"{b['build_b1']:.1f} s at 1; the original preprocessing + `torch.save`: "
                      f"{b['seed_preprocess_seconds']:.1f} s",
                      f"- stored: {size(sizes.get('prebake_cache_bytes'))} of latents against the original's "
                      f"{size(sizes.get('seed_optimised_pt_bytes'))} `optimised.pt` of frames and latents"])


def talking_head(d: dict[str, Any]) -> str:
    rows = [[TALKING_PATHS.get(k, k), num(r["data"]["samples_per_s"]), num(r["train"]["samples_per_s"]),
             pct(r["train"]["data_wait_fraction"])] for k, r in d["results"].items()]
    r = d.get("ratios", {})
    wait = d["results"]["prebake"]["train"]["data_wait_fraction"]
    same = d.get("same_windows", {})
    data = "\n".join([f"**Data**: {num(same.get('windows'))} windows of 16 frames with 16 of context, the same "
                      f"windows in every path (checked: {same.get('same_index')}); data alone, then training steps:",
                      "", table(["data path", "data only, samples/s", "training, samples/s", "data wait"], rows,
                                right=(1, 2, 3)), "",
                      f"- prebake over the original, data: {ratio(r.get('prebake/original data'))} (target "
                      f"{target(r.get('prebake/original data'), 50)}); training "
                      f"{ratio(r.get('prebake/original train'))}",
                      f"- prebake over the optimised design with its workers: {ratio(r.get('prebake/optimised data'))}"
                      f" (target {target(r.get('prebake/optimised data'), 5)}); in-process it reads "
                      f"{ratio(1 / r['prebake/optimised_0_workers data'])} prebake's rate",
                      f"- data wait with prebake: {pct(wait)} (target {target(wait, 0.05, False, pct)})"])
    return "\n\n".join([_talking_head_bake(d["bake"]), data, machine(d.get("machine"), d.get("device"))])


def startup(d: dict[str, Any]) -> str:
    rows = [[f"`{r['command']}`", f"{r['median_s']:.3f}", f"{r['min_s']:.3f}-{r['max_s']:.3f}",
             target(r["median_s"], r["target_s"], False, lambda s: f"{s} s") if r.get("target_s") else ""]
            for r in d["rows"]]
    return "\n".join([f"Fresh processes, {d.get('repeat')} each, medians (seconds).", "",
                      table(["command", "median s", "min-max", "target"], rows, right=(1, 2)), "",
                      machine(d.get("machine"))])


def scale(d: dict[str, Any]) -> str:
    base = {r["size"]: r["items_per_s"] for r in d["rows"] if r["pipeline"].startswith("fork pool")}
    rows = [[r["pipeline"], r["size"], num(r["items"]), f"{r['seconds']:.2f} s", num(r["items_per_s"]),
             ratio(r["items_per_s"] / base[r["size"]]) if r["size"] in base else "-", r.get("same_bytes_as_fork_pool")]
            for r in d["rows"]]
    over = d.get("ray_overhead", {})
    noop = over.get("noop_task", {})
    worst = min((r["items_per_s"] / base[r["size"]] for r in d["rows"] if r["size"] in base and r["size"] >= 224),
                default=None)
    lines = [f"Data: {d.get('data')}; whole builds, from unpickling to the durable commit. Ray {d.get('ray_version')}.",
             "", table(["build", "px", "images", "time", "images/s", "vs fork pool", "same bytes"], rows,
                       right=(1, 2, 3, 4, 5)), "",
             f"- Ray at 224 px against the fork pool: at worst {ratio(worst)} (target {target(worst, 0.7)})",
             f"- Ray's cost per chunk: {over.get('ms_per_chunk_32px', 0):.1f} ms at 32 px, "
             f"{over.get('ms_per_chunk_224px_cold', 0):.1f} ms (cold) to {over.get('ms_per_chunk_224px_warm', 0):.1f}"
             f" ms (warm) at 224 px; a task that does nothing {noop.get('ms_per_task', 0):.2f} ms; "
             f"`ray.init` {over.get('ray_init_s', 0):.2f} s, outside the times above",
             f"- a Stage on a GPU through a Ray actor: {d.get('gpu_stage_through_ray_actor_vs_local', 'not measured')}"]
    return "\n".join(lines + ["", machine(d.get("machine"), d.get("device"))])


def _notes(notes: dict[str, Any]) -> str:
    return f" ({'; '.join(f'{k}: {v}' for k, v in notes.items())})" if notes else ""


def faults(d: dict[str, Any]) -> str:
    rows = [[r["what"] + _notes(r.get("notes", {})), num(r["trials"]), num(r["failures"])] for r in d["rows"]]
    total = sum(r["trials"] for r in d["rows"]), sum(r["failures"] for r in d["rows"])
    rows.append(["**all rows**", f"**{num(total[0])}**", f"**{num(total[1])}**"])
    quick = " (a --quick run)" if d.get("quick") else ""
    return "\n".join([table(["what was tried", "trials", "failures"], rows, right=(1, 2)), "",
                      machine(d.get("machine")) + quick])


INTEGRATION_LOOPS = {"plain": "plain `prebake.Loader` loop", "lightning": "Lightning `CacheDataModule`",
                     "accelerate": "Accelerate `prepare_loader`",
                     "lightning-own": "Lightning's loop over the plain Loader",
                     "accelerate-own": "Accelerate's loop over the plain Loader"}
#: Each integration and its framework's own loop over the plain Loader (in results saved since they were measured).
INTEGRATION_OWN = {"lightning": "lightning-own", "accelerate": "accelerate-own"}


def integrations(d: dict[str, Any]) -> str:
    rows = []
    first = next(iter(d["results"].values()))
    with_own = all(own in first for own in INTEGRATION_OWN.values())
    for name, w in d["results"].items():
        for loop, label in INTEGRATION_LOOPS.items():
            if loop not in w:
                continue
            r = w[loop]
            paired = "1.00x" if loop == "plain" else ratio(r["cpu_ratio_to_plain"]) + spread(*r["cpu_ratio_range"])
            added = "-" if loop == "plain" else f"{r['cpu_ms_per_step']:+.2f} ms"
            own = ratio(r["cpu_ratio_to_own_loop"]) + spread(*r["cpu_ratio_to_own_loop_range"]) \
                if loop in INTEGRATION_OWN and with_own else "-"
            rows.append([f"{name}, batch {w['batch_size']}", label, num(r["samples_per_cpu_s"]),
                         num(r["samples_per_s"]), paired, added, *([own] if with_own else []),
                         r.get("same_weights_as_plain", True)])
    small = max(d["results"].values(), key=lambda w: w["lightning"]["cpu_overhead_pct"])  # where the cost shows
    within = [f"- {INTEGRATION_LOOPS[k]} adds {small[k]['cpu_ms_per_step']:.2f} ms of CPU a step: within the 5 % "
              f"target for any step of {small[k]['cpu_ms_per_step'] / 0.05:.0f} ms or more" for k in ("lightning",
                                                                                                      "accelerate")]
    if with_own:
        within += [f"- against {INTEGRATION_LOOPS[o]} on the same batches: {INTEGRATION_LOOPS[k]} "
                   f"{ratio(small[k]['cpu_ratio_to_own_loop'])} ({small['batch_size']}-sample steps): the rest of "
                   "the cost is the framework's own loop" for k, o in INTEGRATION_OWN.items()]
    header = ["workload", "loop", "samples per CPU second", "samples/s (wall clock)", "paired ratio to plain",
              "CPU time added per step", *(["ratio to the framework's own loop"] if with_own else []),
              "same weights as plain"]
    return "\n".join([f"{num(first['items'])} items, {first['rounds']} interleaved rounds of "
                      f"{first['epochs_per_round']} epochs; ratios are the median of each round's ratio to the plain "
                      "loop (min-max over the rounds), in CPU time.", "",
                      table(header, rows, right=(2, 3, 4, 5, 6) if with_own else (2, 3, 4, 5)), "", *within, "",
                      machine(d.get("machine"))])


def reads(d: dict[str, Any]) -> str:
    rows = [[r["transform"], num(r["items"]), f"{r['without_hook_s']:.4f}", f"{r['with_hook_s']:.4f}",
             ratio(r["ratio"]), ratio(r["fastest_ratio"])] for r in d["rows"]]
    return "\n".join([f"A build's steps with and without the audit hook that records the files they open; "
                      f"{d.get('rounds')} rounds, medians (seconds).", "",
                      table(["transform", "items", "without the hook", "with it", "ratio", "fastest rounds' ratio"],
                            rows, right=(1, 2, 3, 4, 5)), "", machine(d.get("machine"))])


def patches(d: dict[str, Any]) -> str:
    r = d["results"]
    peers = [p for p in ("monai", "torchio") if p in r["first_epoch"]]
    rows = []
    for setting, w in r["steady"].items():
        cells = [setting, num(w["prebake"]["patches_per_s"])]
        for p in peers:
            cells += [num(w[p]["patches_per_s"]) if p in w else "-", ratio(w.get(f"prebake/{p}"))]
        rows.append(cells)
    header = ["sampler, patch side", "prebake patches/s"] + [h for p in peers for h in (f"{p} patches/s", f"vs {p}")]
    first = r["first_epoch"]
    extra = [f"- first epoch (the cache's build included): prebake {first['prebake']['seconds']:.2f} s, "
             + ", ".join(f"{p} {first[p]['seconds']:.2f} s" for p in peers),
             f"- cache on disk: prebake {size(r['cache_bytes']['prebake'])}, MONAI {size(r['cache_bytes']['monai'])}",
             "- peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_mib"].items()),
             f"- best worker counts: {r['workers']}"]
    goals = [f"- {name.replace('_', ' ')}: {ratio(t['measured'])} "
             f"({target(t['measured'], t['target'], not name.startswith('cache'))})"
             for name, t in r["targets"].items()]
    return "\n".join([f"Steady epochs of 4 patches per volume ({r['settings'].get('volumes')} volumes of "
                      f"{r['settings'].get('lo')}-{r['settings'].get('hi')} voxels a side), medians of interleaved "
                      "rounds.",
                      "", table(header, rows, right=tuple(range(1, len(header)))), "", *extra, *goals, "",
                      machine(d.get("machine"))])


def crops(d: dict[str, Any]) -> str:
    r = d["row"]
    rows = [[name, num(r["samples_per_s"][name]), f"{r['steady_cpu_s'][name]:.2f}", f"{r['first_epoch_s'][name]:.2f}",
             "1.00x" if name == "prebake" else ratio(r["speedup_vs"].get(name))] for name in r["samples_per_s"]]
    worst = min(r["speedup_vs"].values())
    check = r.get("check", {})
    return "\n".join([f"{num(r['images'])} photos of many sizes, random-resized crops to {r['size']}, batch "
                      f"{r['batch']}, the same boxes in every pipeline; medians of {d.get('rounds')} interleaved "
                      "rounds.", "",
                      table(["pipeline", "samples/s", "CPU s an epoch", "first epoch s", "prebake over it"], rows,
                            right=(1, 2, 3, 4)), "",
                      f"- steady against the slowest peer: {ratio(worst)} ({target(worst, r['target'])})",
                      f"- crops against Pillow's: a mean of {check.get('mean_abs_vs_pillow', 0):.2f} grey levels "
                      f"(worst crop {check.get('max_mean_abs_vs_pillow', 0):.2f}) over {check.get('crops_compared')} "
                      "crops",
                      "", machine(d.get("machine"))])


def realdata(d: dict[str, Any]) -> str:
    parts = []
    for r in d["rows"]:
        med, cpu, per_s, ratios = r["median_s"], r["median_cpu_s"], r["items_per_s"], r["ratio_vs_prebake"]
        rows = [[name, f"{med[name]:.2f}", f"{cpu[name]:.2f}", num(per_s[name]),
                 "1.00x" if name == "prebake" else ratio(ratios.get(name))] for name in med]
        lines = [f"**{r['source']}**: {num(r['items'])} items, prebake with {r['workers']} workers; medians of "
                 f"{len(r['seconds']['prebake'])} interleaved rounds.", "",
                 table(["pipeline", "seconds", "CPU s", "items/s", "its time over prebake's"], rows,
                       right=(1, 2, 3, 4))]
        loop = ratios.get("reference loop")
        if r.get("target"):
            lines += ["", f"- prebake against the one-process reference loop: {ratio(loop)} "
                      f"(target {target(loop, r['target'])})"]
            stored = med.get(f"reference loop, {r['workers']} processes + write")
            if stored:
                lines.append(f"- the split loop that stores the reference reader's values, in {r['workers']} "
                             f"processes: {ratio(med['reference loop'] / stored)} the reference loop; prebake takes "
                             f"{ratio(med['prebake'] / stored)} its time")
            lines.append(f"- prebake's CPU seconds spread over {r['workers']} cores with no idle moment would be "
                         f"{ratio(med['reference loop'] / (cpu['prebake'] / r['workers']))} the reference loop: the "
                         "most its present work allows")
        elif loop is not None:
            lines += ["", f"- prebake against the one-process reference loop: {ratio(loop)} (no target)"]
        if r.get("monai_read_unreadable"):
            read, failed = r["monai_read_unreadable"]
            lines.append(f"- MONAI's LoadImage read {num(read)} files and had no reader for {num(failed)}")
        parts.append("\n".join(lines))
    return "\n\n".join([*parts, machine(d.get("machine"))])


RENDERERS = {"bake": bake, "bake-vs-main": bake_vs_main,
             "loader": loader, "views": views, "augment": augment, "federated": federated, "pcg": pcg,
             "medical3d": medical3d, "talking-head": talking_head, "startup": startup, "scale": scale,
             "faults": faults, "integrations": integrations, "reads": reads, "patches": patches, "crops": crops,
             "realdata": realdata}
