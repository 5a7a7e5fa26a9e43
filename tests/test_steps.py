"""prebake.steps: one list of steps, written four ways, makes one cache; steps check their parameters; the user's
order is the order they run in.

The four ways: ``prebake build``'s flags, a config file of the same flat keys, a config file's ``steps:`` list,
and Python's ``prebake.build(source, out, steps=[...])``. Per source kind, every column file must be byte for
byte the same and the fingerprint's digest equal (so none of the four rebuilds another's cache).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

import prebake
from prebake.cli import main
from prebake.errors import OptionError
from prebake.identity.plugins import load_object
from prebake.steps import (
    BandPass,
    CenterCrop,
    CropOrPad,
    FgBgIndices,
    Function,
    MonaiTransforms,
    Orient,
    Resample,
    Resize,
    SegmentCycles,
    ShorterSide,
    Spacing,
    ToRGB8,
    Window,
)
from prebake.synthetic import pcg, write_cifar10_python, write_csv_table, write_image_folder, write_npz, write_wav

USER = '''
import numpy as np
import prebake
import torch


def shade(item):
    item["image"] = (np.asarray(item["image"]) // 2 + 40).astype(np.uint8)
    return item


def double(item):
    item["x"] = item["x"] * 2
    return item


class Items:
    def __len__(self):
        return 12

    def fingerprint(self):
        return "items-v1"

    def __getitem__(self, i):
        return {"x": np.linspace(0, 1, 4, dtype=np.float32) * i, "label": i % 2}


def make():
    return Items()


torch.manual_seed(0)
LAYER = torch.nn.Linear(4, 3)


def embed(batch):
    return {"emb": LAYER(batch["x"])}


def make_stage():
    return prebake.Stage(embed, inputs=("x",), outputs=("emb",), batch_size=4, device="cpu", name="embed")
'''


@pytest.fixture()
def user(tmp_path):
    (tmp_path / "user.py").write_text(USER)
    return str(tmp_path / "user.py")


def flags(settings: dict) -> list[str]:
    """Flat settings as ``prebake build`` words."""
    words = []
    for key, value in settings.items():
        flag = {"label_columns": "--label-column", "stages": "--stage"}.get(key, "--" + key.replace("_", "-"))
        if value is True:
            words.append(flag)
        elif key in ("label_columns", "stages"):
            words += [w for v in value for w in (flag, v)]
        else:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    return words


def snapshot(out) -> dict:
    """Per split (or ""): every column file's bytes and the fingerprint's digest."""
    roots = [out] if (out / "manifest.json").exists() else sorted(p.parent for p in out.glob("*/manifest.json"))
    assert roots, f"nothing was built in {out}"
    return {root.name if root != out else "": ({p.name: p.read_bytes() for p in sorted(root.glob("*.npy"))},
                                                prebake.open(root).manifest["fingerprint"]["digest"]) for root in roots}


def four_ways(tmp_path, source: dict, flat: dict, steps: list, entries: list, options=None) -> dict:
    """Build through the flags, a flat config, a ``steps:`` config and Python; return each one's snapshot.

    ``source``: {"source": path} or {"dataset": "file.py:make"}; ``flat`` holds the step and source settings."""
    source_keys = {k: v for k, v in flat.items() if k in prebake.settings.SOURCE_KEYS}
    where = ["--dataset", source["dataset"]] if "dataset" in source else [str(source["source"])]
    assert main(["build", *where, str(tmp_path / "flags"), "--workers", "0", "-q", *flags(flat)]) == 0
    for name, settings in (("flat", flat), ("listed", {**source_keys, "steps": entries})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**source, "out": str(tmp_path / name), "workers": 0, **settings}))
        prebake.build(**prebake.load_config(path), progress=False)
    given = {"dataset": source["dataset"]} if "dataset" in source else {"source": source["source"]}
    prebake.build(**given, out=tmp_path / "python", steps=steps, source_options=options, workers=0, progress=False)
    return {name: snapshot(tmp_path / name) for name in ("flags", "flat", "listed", "python")}


def assert_one_cache(shots: dict) -> None:
    want = shots["python"]
    for name, got in shots.items():
        assert sorted(got) == sorted(want), name
        for split, (files, digest) in got.items():
            assert digest == want[split][1], f"{name} {split}: another fingerprint"
            assert sorted(files) == sorted(want[split][0]), f"{name} {split}: other columns"
            assert all(files[f] == want[split][0][f] for f in files), f"{name} {split}: other bytes"


# -- (a) four front ends, one cache, per source kind ---------------------------------------------------


def test_an_image_folder(tmp_path, user):
    photos = write_image_folder(tmp_path / "photos", classes=("a", "b"), per_class=2, size=(30, 22))
    flat = {"rgb": True, "shorter_side": 20, "crop": 16, "transform": f"{user}:shade"}
    entries = [{"ToRGB8": None}, {"ShorterSide": 20}, {"CenterCrop": {"size": 16}}, {"function": f"{user}:shade"}]
    steps = [ToRGB8(), ShorterSide(20), CenterCrop(16), load_object(f"{user}:shade")]
    assert_one_cache(four_ways(tmp_path, {"source": str(photos)}, flat, steps, entries))
    image = prebake.open(tmp_path / "python")[0]["image"]
    assert image.shape == (3, 16, 16) and image.min() >= 40  # cropped after the resize, shaded last


def test_an_audio_folder(tmp_path):
    hearts = tmp_path / "hearts"
    for label in ("murmur", "normal"):
        (hearts / label).mkdir(parents=True)
        for i, bpm in enumerate((60, 90)):
            x, _, _ = pcg(5, 2000, bpm, 15, murmur=label == "murmur", rng=np.random.default_rng([i, len(label)]))
            write_wav(hearts / label / f"{i}.wav", 0.9 * x, 2000)
    flat = {"sample_rate": 1000, "bandpass": [25.0, 400.0], "segment_cycles": True, "cycle_length": 900}
    entries = [{"Resample": [1000]}, {"BandPass": [25, 400]}, {"SegmentCycles": {"length": 900}}]
    steps = [Resample(1000), BandPass(25, 400), SegmentCycles(length=900)]
    assert_one_cache(four_ways(tmp_path, {"source": str(hearts)}, flat, steps, entries))
    cache = prebake.open(tmp_path / "python")
    assert len(cache) == 4 and cache.manifest["columns"]["cycles"]["shape"] == [None, 900]
    assert all(bool(cache[i]["segmented"]) for i in range(4))  # cycles found, not the windows fallback


def test_nifti_volumes(tmp_path):
    pytest.importorskip("nibabel", reason="volumes need nibabel (the dev extra has it)")
    from prebake.synthetic_volumes import write_volume_table

    table = write_volume_table(tmp_path / "vol", patients=2, scans_per_patient=(1, 2), shape=(10, 14))
    flat = {"label_columns": ["diagnosis"], "orientation": "RAS", "spacing": [1.5, 1.5, 2.0],
            "window": [-500.0, 500.0], "scale_to": [0.0, 1.0], "volume_shape": [8, 8, 8]}
    window = {"Window": {"low": -500, "high": 500, "scale_to": [0, 1]}}
    entries = [{"Orient": "RAS"}, {"Spacing": [1.5, 1.5, 2.0]}, window, {"CropOrPad": {"shape": [8, 8, 8]}}]
    steps = [Orient("RAS"), Spacing((1.5, 1.5, 2.0)), Window(-500, 500, scale_to=(0, 1)), CropOrPad((8, 8, 8), 0.0)]
    options = prebake.SourceOptions(label_columns=("diagnosis",))
    assert_one_cache(four_ways(tmp_path, {"source": str(table)}, flat, steps, entries, options))
    cache = prebake.open(tmp_path / "python")
    assert cache[0]["image"].shape == (1, 8, 8, 8) and cache[0]["image"].dtype == np.float32


def test_cifar(tmp_path):
    write_cifar10_python(tmp_path / "data", n_train=40, n_test=10)
    flat = {"image_size": 16}
    shots = four_ways(tmp_path, {"source": str(tmp_path / "data" / "cifar-10-batches-py")}, flat, [Resize(16)],
                      [{"Resize": {"size": 16}}])
    assert_one_cache(shots)
    assert sorted(shots["python"]) == ["test", "train"]


def test_a_csv_table(tmp_path):
    table = write_csv_table(tmp_path / "t", n=6, labels="int", size=(28, 20))
    flat = {"label_columns": ["grade"], "shorter_side": 12, "crop": 10}
    options = prebake.SourceOptions(label_columns=("grade",))
    assert_one_cache(four_ways(tmp_path, {"source": str(table)}, flat, [ShorterSide(12), CenterCrop(10)],
                               [{"ShorterSide": [12]}, {"CenterCrop": 10}], options))


def test_arrays(tmp_path, user):
    arrays = write_npz(tmp_path / "arr", n=8, fmt="npz", size=(20, 20))
    flat = {"image_size": 12, "transform": f"{user}:shade"}
    assert_one_cache(four_ways(tmp_path, {"source": str(arrays)}, flat, [Resize(12), load_object(f"{user}:shade")],
                               [{"Resize": 12}, {"function": f"{user}:shade"}]))


def test_a_dataset_with_a_stage(tmp_path, user):
    flat = {"transform": f"{user}:double", "stages": [f"{user}:make_stage"]}
    steps = [load_object(f"{user}:double"), load_object(f"{user}:make_stage")()]
    entries = [{"function": f"{user}:double"}, {"stage": f"{user}:make_stage"}]
    assert_one_cache(four_ways(tmp_path, {"dataset": f"{user}:make"}, flat, steps, entries))
    cache = prebake.open(tmp_path / "python")
    assert cache.column("emb").shape == (12, 3) and float(cache[3]["x"][-1]) == 6.0  # doubled, then embedded


# -- (b) --print-config prints the steps, and a build from the printed file is the same cache --------------


@pytest.mark.parametrize("kind", ["images", "volumes"])
def test_print_config_round_trips_to_the_same_digest(tmp_path, capsys, user, kind):
    if kind == "images":
        source = write_image_folder(tmp_path / "photos", per_class=2, size=(30, 22))
        words = ["--rgb", "--shorter-side", "20", "--crop", "16", "--transform", f"{user}:shade"]
    else:
        pytest.importorskip("nibabel", reason="volumes need nibabel (the dev extra has it)")
        from prebake.synthetic_volumes import write_volume_table

        source = write_volume_table(tmp_path / "vol", patients=2, scans_per_patient=(1, 1), shape=(10, 12))
        words = ["--label-column", "diagnosis", "--orientation", "LPS", "--window", "-400", "400", "--volume-shape",
                 "6", "7", "8"]
    command = ["build", str(source), str(tmp_path / "c"), "--workers", "0", *words]
    assert main([*command, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "steps:" in printed and "image_size" not in printed and "window" not in printed  # the steps, expanded
    (tmp_path / "printed.yaml").write_text(printed)
    assert main([*command, "-q"]) == 0
    again = prebake.build(**prebake.load_config(tmp_path / "printed.yaml"), progress=False)
    assert again.build_report.action == "up to date"  # the same fingerprint as the flags' build
    assert main(["build", "--config", str(tmp_path / "printed.yaml"), "--json"]) == 0
    assert '"action": "up to date"' in capsys.readouterr().out


# -- (c) every public step refuses bad parameters, naming the step, the field and the value --------------


NAN, INF = float("nan"), float("inf")
REFUSED = [
    (lambda: Resize(True), "Resize(size=True): size takes a whole number >= 1"),
    (lambda: Resize(0), "Resize(size=0): size takes a whole number >= 1"),
    (lambda: ShorterSide(-3), "ShorterSide(size=-3): size takes a whole number >= 1"),
    (lambda: CenterCrop(2.5), "CenterCrop(size=2.5): size takes a whole number >= 1"),
    (lambda: CenterCrop("8"), "CenterCrop(size='8'): size takes a whole number >= 1"),
    (lambda: Resample(NAN), "Resample(rate=nan): rate takes a whole number >= 1"),
    (lambda: Resample(INF), "Resample(rate=inf): rate takes a whole number >= 1"),
    (lambda: BandPass(0, 400), "BandPass(low=0): low takes a frequency in Hz > 0"),
    (lambda: BandPass(25, 10), "BandPass(high=10): high takes a frequency in Hz above low (25)"),
    (lambda: BandPass(25, 400, order=0), "BandPass(order=0): order takes a whole number >= 1"),
    (lambda: SegmentCycles(length=NAN), "`SegmentCycles.length` takes a positive number of samples, got nan"),
    (lambda: SegmentCycles(heart_rate=(40,)), "`SegmentCycles.heart_rate` takes LOW HIGH beats per minute"),
    (lambda: SegmentCycles(fallback="skip"), "`SegmentCycles.fallback` is 'skip'; give bad"),
    (lambda: SegmentCycles(alpha=-1), "SegmentCycles(alpha=-1): alpha takes a weight >= 0"),
    (lambda: Orient("RAX"), "Orient(axcodes='RAX'): axcodes takes three axis codes"),
    (lambda: Orient(3), "Orient(axcodes=3): axcodes takes three axis codes"),
    (lambda: Spacing((1, 1)), "Spacing(spacing=(1, 1)): spacing takes three voxel sizes"),
    (lambda: Spacing(-1.0), "Spacing(spacing=-1.0): spacing takes three voxel sizes"),
    (lambda: Spacing(1.0, max_voxels=0), "Spacing(max_voxels=0): max_voxels takes a whole number >= 1"),
    (lambda: Window(NAN, 1), "Window(low=nan): low takes a finite number"),
    (lambda: Window(5, 5), "Window(high=5): high takes a finite number above low (5)"),
    (lambda: Window(0, 1, scale_to=(0, INF)), "Window(scale_to=(0, inf)): scale_to takes two finite numbers"),
    (lambda: Window(0, 1, scale_to=(0, 1, 2)), "Window(scale_to=(0, 1, 2)): scale_to takes two finite numbers"),
    (lambda: CropOrPad((8, 8, 0)), "CropOrPad(shape=(8, 8, 0)): shape takes three sizes D H W"),
    (lambda: CropOrPad((8, 8)), "CropOrPad(shape=(8, 8)): shape takes three sizes D H W"),
    (lambda: CropOrPad(8, value=True), "CropOrPad(value=True): value takes a finite number"),
    (lambda: FgBgIndices(label=""), "FgBgIndices(label=''): label takes the name (str) of the label-map column"),
    (lambda: FgBgIndices(classes=(1, 1)), "FgBgIndices(classes=(1, 1)): classes takes distinct whole numbers >= 0"),
    (lambda: FgBgIndices(classes="ab"), "FgBgIndices(classes='ab'): classes takes a list of the label values"),
    (lambda: Function(5), "a step must be callable (item dict -> item dict), got int"),
    (lambda: MonaiTransforms([]), "MonaiTransforms(transforms=[]): give a non-empty list of MONAI transforms"),
]


@pytest.mark.parametrize("make, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_a_step_refuses_a_bad_parameter(make, message):
    with pytest.raises(OptionError) as e:
        make()
    assert str(e.value).startswith(message), str(e.value)


def test_every_public_step_is_in_the_refusals():
    tried = {m.split("(")[0].split(" ")[0] for _, m in REFUSED} | {"Function"}
    public = {n for n in prebake.steps.__all__ if isinstance(getattr(prebake.steps, n), type)}
    assert public - tried == {"Pipeline", "Stage", "Step", "ToCHW", "ToRGB8"}  # no parameters, or not steps


def test_a_good_step_keeps_numbers_as_numbers():
    assert Resize(np.int64(8)).size == 8 and type(Resize(8.0).size) is int
    assert Spacing(2).spacing == (2.0, 2.0, 2.0) and CropOrPad(6).shape == (6, 6, 6)
    assert SegmentCycles(heart_rate=[40, 150]).heart_rate == (40.0, 150.0) and math.isclose(BandPass(25, 400).high, 400)


# -- (d) lists that are not lists of steps, and the user's order -----------------------------------------


def test_a_per_item_step_after_a_stage_and_a_non_step_are_refused_before_any_work(tmp_path, user):
    photos = write_image_folder(tmp_path / "photos", per_class=1, size=(12, 12))
    stage = load_object(f"{user}:make_stage")()
    with pytest.raises(OptionError, match=r"steps\[1\] \(Resize\(size=8\)\) comes after the stage 'embed'"):
        prebake.build(photos, tmp_path / "c", [stage, Resize(8)])
    with pytest.raises(OptionError, match=r"steps\[1\] is a int \(5\); a step is a prebake.steps object, a function"):
        prebake.build(photos, tmp_path / "c", [Resize(8), 5])
    with pytest.raises(OptionError, match=r"steps\[0\] is the class Resize, not a step; give one with its parameters"):
        prebake.build(photos, tmp_path / "c", [Resize])
    with pytest.raises(OptionError, match=r"steps is a str; give a list of steps"):
        prebake.build(photos, tmp_path / "c", "Resize(8)")
    assert not (tmp_path / "c").exists()


def test_the_users_order_is_the_order_the_steps_run_in(tmp_path):
    photos = write_image_folder(tmp_path / "photos", per_class=1, size=(30, 20))
    seen = []

    def look(item):
        seen.append(item["image"].shape)
        return item

    def pad(item):  # an output Resize must then resize
        item["image"] = np.pad(item["image"], ((0, 0), (0, 10), (0, 0)))
        return item

    resized_first = prebake.build(photos, tmp_path / "a", [Resize(8), look], workers=0, progress=False)
    assert set(seen) == {(3, 8, 8)} and resized_first[0]["image"].shape == (3, 8, 8)  # the function saw 8 x 8
    seen.clear()
    resized_last = prebake.build(photos, tmp_path / "b", [look, pad, Resize(8)], workers=0, progress=False)
    assert set(seen) == {(3, 20, 30)} and resized_last[0]["image"].shape == (3, 8, 8)  # a CHW array, then resized
    from PIL import Image

    first = np.asarray(Image.open(sorted(photos.glob("*/*.png"))[0]).convert("RGB")).transpose(2, 0, 1)
    padded = np.pad(first, ((0, 0), (0, 10), (0, 0)))
    want = Resize(8)({"image": padded})["image"]
    assert np.array_equal(resized_last[0]["image"], want)  # the padded image was resized, not the original


# -- (e) the report of each build ---------------------------------------------------------------------


def test_the_build_report_says_built_then_up_to_date(tmp_path):
    photos = write_image_folder(tmp_path / "photos", per_class=2, size=(12, 12))
    first = prebake.build(photos, tmp_path / "c", [Resize(8)], workers=0, progress=False)
    assert first.build_report.action == "built" and first.build_report.num_items == 4
    again = prebake.build(photos, tmp_path / "c", [Resize(8)], workers=0, progress=False)
    assert again.build_report.action == "up to date" and again.build_report.reasons == []
    changed = prebake.build(photos, tmp_path / "c", [Resize(10)], workers=0, progress=False)
    assert changed.build_report.action == "rebuilt" and any("Resize" in r for r in changed.build_report.reasons)
    caches = prebake.build(write_cifar10_python(tmp_path / "d", n_train=20, n_test=10), tmp_path / "s", workers=0,
                           progress=False)
    assert {s: c.build_report.action for s, c in caches.items()} == {"train": "built", "test": "built"}
