"""The release: ``python -m build`` makes an sdist and a wheel, which install into a fresh virtual environment
and run from a directory with no checkout on the path: ``prebake --version``, ``prebake demo`` and the README's
quickstart. One version everywhere: ``prebake --version``, ``prebake.__version__`` and the wheel's metadata.

The fresh environment gets the wheel with ``--no-deps``; torch, numpy and the rest come from the environment
running the tests (a ``.pth`` file names its site-packages), so nothing is downloaded and no CUDA build is ever
pulled. The demo and the quickstart take about a minute: they carry the ``release`` mark
(``make release-check``); the rest is part of ``make test``.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from .test_readme import quickstart_blocks

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("build", reason="python -m build needs the 'build' package: pip install -e '.[dev]'")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    shown = " ".join(map(str, cmd))
    assert proc.returncode == 0, f"{shown} failed in {cwd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _clean_env(path: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{path}{os.pathsep}{env.get('PATH', '')}" if path else env.get("PATH", "")
    return env


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """A copy of what the release is built from (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    return src


@pytest.fixture(scope="module")
def dist(sources, tmp_path_factory) -> Path:
    """sdist and wheel, built from :func:`sources`."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, sources], sources, _clean_env())
    return out


@pytest.fixture(scope="module")
def env(dist, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; the test environment's site-packages for its dependencies."""
    return _venv_with(next(dist.glob("prebake-*.whl")), tmp_path_factory.mktemp("venv") / "v")


def _venv_with(wheel: Path, home: Path) -> Path:
    """A fresh venv at ``home`` holding only ``wheel``; the test environment's site-packages for its dependencies."""
    venv.create(home, with_pip=False, symlinks=True)
    python = home / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], home,
                     _clean_env()).strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet",
          "--disable-pip-version-check", wheel], home, _clean_env())
    return home


def _version() -> str:
    namespace: dict[str, str] = {}
    exec((ROOT / "src" / "prebake" / "_version.py").read_text(), namespace)
    return namespace["__version__"]


def test_the_sdist_and_the_wheel_carry_one_version_and_the_license(dist):
    version = _version()
    wheel, sdist = next(dist.glob("prebake-*.whl")), next(dist.glob("prebake-*.tar.gz"))
    assert wheel.name.startswith(f"prebake-{version}-") and sdist.name == f"prebake-{version}.tar.gz"
    with zipfile.ZipFile(wheel) as z:
        meta = email.message_from_bytes(z.read(f"prebake-{version}.dist-info/METADATA"))
        assert "Apache License" in z.read(f"prebake-{version}.dist-info/licenses/LICENSE").decode()
        assert "prebake/py.typed" in z.namelist()
        assert any(re.fullmatch(r"prebake/_native\..*\.so", n) for n in z.namelist())  # the C loops, built
    assert meta["Version"] == version and meta["License-Expression"] == "Apache-2.0"
    torch = [r for r in meta.get_all("Requires-Dist") if re.match(r"torch\b(?!-|data|vision|audio)", r)]
    assert torch and all(">=" in r and "==" not in r and "<" not in r for r in torch), torch  # a range, no pin
    with tarfile.open(sdist) as t:
        names = t.getnames()
    assert f"prebake-{version}/LICENSE" in names and f"prebake-{version}/PKG-INFO" in names
    assert {f"prebake-{version}/setup.py", f"prebake-{version}/src/prebake/_native.c"} <= set(names)
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_wheel_installs_and_runs_outside_the_checkout(env, tmp_path):
    version, bin_dir = _version(), env / "bin"
    shell = _clean_env(str(bin_dir))
    assert _run([bin_dir / "prebake", "--version"], tmp_path, shell).strip() == f"prebake {version}"
    where = _run([bin_dir / "python", "-c", "import importlib.metadata as m, prebake, prebake.native as n; "
                  "print(prebake.__version__, m.version('prebake'), prebake.__file__, n.NATIVE)"], tmp_path,
                 shell).split()
    assert where[:2] == [version, version] and where[3] == "True"
    assert Path(where[2]).is_relative_to(env) and not Path(where[2]).is_relative_to(ROOT)  # the wheel, no checkout


def test_a_wheel_built_without_a_c_compiler_installs_and_bakes(sources, tmp_path):
    """The extension is optional: where the compiler fails, the build goes on and prebake does the same work with
    numpy and Pillow (src/prebake/native.py)."""
    src = tmp_path / "src"
    shutil.copytree(sources, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so"))  # nothing built
    out = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out, src], src,
         {**_clean_env(), "CC": "false"})
    wheel = next(out.glob("prebake-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert not any("_native" in n and n.endswith(".so") for n in z.namelist())
    home = _venv_with(wheel, tmp_path / "v")
    photos = tmp_path / "photos" / "a"
    photos.mkdir(parents=True)
    for k, size in enumerate(((17, 9), (40, 33))):
        Image.new("RGB", size, (k, 2 * k, 3 * k)).save(photos / f"{k}.png")
    code = ("import sys, prebake, prebake.native as n; c = prebake.build(sys.argv[1], sys.argv[2], workers=0, "
            "progress=False); print(n.NATIVE, len(c), tuple(c[1]['image'].shape), int(c[1]['image'][2].max()))")
    got = _run([home / "bin" / "python", "-c", code, tmp_path / "photos", tmp_path / "cache"], tmp_path,
               _clean_env()).split()
    assert got == ["False", "2", "(3,", "33,", "40)", "3"]


@pytest.mark.release
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the quickstart uses fork DataLoader workers")
def test_the_demo_and_the_quickstart_run_from_the_wheel(env, tmp_path):
    """As a user who ran ``pip install prebake``: the demo, then every quickstart block, in the demo's folder."""
    bin_dir = env / "bin"
    shell = _clean_env(str(bin_dir))
    out = _run([bin_dir / "prebake", "demo", "--workdir", tmp_path / "prebake-demo", "--bench-seconds", "0.05"],
               tmp_path, shell)
    assert "verify ok" in out and "prebake.Loader" in out and "FAILED" not in out
    for lang, code in quickstart_blocks()[1:]:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [bin_dir / "python", "-c", code]
        _run(cmd, tmp_path / "prebake-demo", shell)
    assert (tmp_path / "prebake-demo" / "cache" / "cifar10" / "train" / "manifest.json").is_file()
