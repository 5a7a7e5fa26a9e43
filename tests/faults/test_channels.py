"""Images of mixed channels (grey, grey+alpha, RGB, RGBA, palette, CMYK, 16-bit grey) under each channel policy:
every value is Pillow's own conversion of the file, the policy is part of the cache's identity, and a bad policy
is refused by every front end before any work."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

import prebake
from prebake.cli import main
from prebake.errors import OptionError
from prebake.sources import SourceOptions


def _files(root):
    """One file per mode, of different sizes (so the cache is ragged whatever the policy); with the 16-bit grey
    file the column is uint16 (the schema promotes uint8), every value kept."""
    rng = np.random.default_rng(3)
    made = {}
    for k, (mode, ext) in enumerate([("L", "png"), ("LA", "png"), ("RGB", "png"), ("RGBA", "png"), ("P", "png"),
                                     ("CMYK", "jpg"), ("I;16", "png")]):
        h, w = 5 + k, 9 - k
        if mode == "I;16":
            im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
        elif mode == "P":
            im = Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L").convert("P")
            im.info["transparency"] = 0
        else:
            bands = len(Image.new(mode, (1, 1)).getbands())
            im = Image.fromarray(rng.integers(0, 255, (h, w, bands), dtype=np.uint8).squeeze(), mode)
        (root / "c").mkdir(parents=True, exist_ok=True)
        path = root / "c" / f"{k}_{mode.replace(';', '')}.{ext}"
        im.save(path, transparency=0) if mode == "P" else im.save(path)
        made[path.name] = path
    return made


def _reference(path, channels):
    """What the policy promises, from Pillow alone (CHW)."""
    im = Image.open(path)
    if im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.uint16)[None]
        return np.repeat(a, 3, axis=0) if channels == "3" else a
    target = {None: "RGB", "3": "RGB", "1": "L"}.get(channels)
    if channels == "keep":
        target = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA"}.get(im.mode)
        if im.mode == "P":
            target = "RGBA" if "transparency" in im.info else "RGB"
        target = target or "RGB"
    if channels == "1" and im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if im.mode == "P" else "RGB")
    a = np.asarray(im.convert(target) if im.mode != target else im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


@pytest.mark.parametrize("channels", [None, "1", "3", "keep"])
def test_every_image_is_pillows_conversion_under_the_policy(tmp_path, channels):
    files = _files(tmp_path / "photos")
    options = SourceOptions(channels=channels)
    cache = prebake.build(tmp_path / "photos", tmp_path / "c", source_options=options, workers=2, progress=False)
    assert len(cache) == len(files)
    for i, key in enumerate(cache.source_keys):
        got, want = np.asarray(cache[i]["image"]), _reference(files[key.split("/")[-1]], channels)
        assert got.dtype == np.uint16 and np.array_equal(got, want), (key, channels, got.shape, want.shape)
    if channels == "keep":
        assert sorted({cache[i]["image"].shape[0] for i in range(len(cache))}) == [1, 2, 3, 4]


def test_the_policy_is_in_the_identity_and_the_default_identity_is_unchanged(tmp_path, capsys):
    _files(tmp_path / "photos")
    out = str(tmp_path / "c")
    assert main(["build", str(tmp_path / "photos"), out, "--workers", "0", "-q"]) == 0
    params = prebake.open(out).manifest["fingerprint"]["inputs"]["source"]["params"]
    assert "channels" not in params  # the digest of a default build is what it was: older caches stay fresh
    capsys.readouterr()
    assert main(["build", str(tmp_path / "photos"), out, "--workers", "0", "--channels", "keep"]) == 0
    assert '"channels": "keep"' in capsys.readouterr().out
    assert main(["build", str(tmp_path / "photos"), out, "--workers", "0", "--channels", "keep"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_csv_table_of_images_follows_the_policy(tmp_path):
    files = _files(tmp_path / "photos")
    (tmp_path / "t.csv").write_text("path,label\n" + "".join(f"photos/c/{n},{i}\n" for i, n in enumerate(files)))
    cache = prebake.build(tmp_path / "t.csv", tmp_path / "c", source_options=SourceOptions(channels="1"),
                          workers=0, progress=False)
    assert {cache[i]["image"].shape[0] for i in range(len(cache))} == {1}


@pytest.mark.parametrize("bad", ["2", "rgb", "", 3, "KEEP"])
def test_a_bad_policy_is_refused_by_every_front_end_before_any_work(tmp_path, capsys, bad):
    _files(tmp_path / "photos")
    with pytest.raises(OptionError, match="channels"):
        prebake.build(tmp_path / "photos", tmp_path / "py", source_options=SourceOptions(channels=bad), workers=0)
    if isinstance(bad, str):  # on a command line 3 is the text "3", a good value
        assert main(["build", str(tmp_path / "photos"), str(tmp_path / "cli"), "--channels", bad]) == 2
        assert "--channels" in capsys.readouterr().err
    (tmp_path / "bake.yaml").write_text(yaml.safe_dump({"source": str(tmp_path / "photos"),
                                                        "out": str(tmp_path / "cfg"), "channels": bad}))
    assert main(["build", "--config", str(tmp_path / "bake.yaml")]) == 2
    assert "channels" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("py", "cli", "cfg"))
