"""Builds that must not hang: torch, scipy and BLAS work in forked workers after the parent used its threads.

A fresh Python process bakes each variant (a per-item transform of one kind, with two forked
workers) cold, then does what a notebook or a training script does (``torch.set_num_threads``,
a multi-threaded matmul), then bakes each again. A variant fails when its second build does not
finish within the timeout (the fork-after-OpenMP deadlock), the process exits non-zero, or the
two builds' bytes differ. A Stage runs in the building process, at the thread count its caller set:
torch's CPU matmul splits its sums by that count, so a Stage's float output is compared to float32
rounding (:data:`ROUNDED`), and every column the workers make bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import prebake

from . import Row

#: The per-item transform of each variant: ``item["x"]`` is a float32 (4096,) signal.
VARIANTS = {
    "torch-outer": """
        def tf(item):  # the reported transform: any multi-threaded torch op in a worker
            t = torch.as_tensor(item["x"], dtype=torch.float32)
            item["y"] = (t[:, None] * t[None, :4000]).sum(0).numpy()
            return item
    """,
    "torch-conv3d": """
        def tf(item):  # a MONAI-style transform: a 3-D Gaussian smoothing by convolution in torch
            v = torch.as_tensor(item["x"][:4096].reshape(1, 1, 16, 16, 16))
            k = torch.ones(1, 1, 3, 3, 3) / 27
            item["y"] = torch.nn.functional.conv3d(v, k, padding=1)[0].numpy()
            return item
    """,
    "monai": """
        from monai.transforms import GaussianSmooth
        smooth = GaussianSmooth(sigma=1.0)
        def tf(item):  # a MONAI transform itself
            item["y"] = np.asarray(smooth(torch.as_tensor(item["x"][:4096].reshape(1, 16, 16, 16))))
            return item
    """,
    "scipy": """
        import scipy.ndimage, scipy.signal
        def tf(item):
            item["y"] = scipy.ndimage.gaussian_filter(item["x"].reshape(64, 64), 2.0)
            sos = scipy.signal.butter(4, 0.2, output="sos")
            item["z"] = scipy.signal.sosfiltfilt(sos, item["x"]).astype(np.float32)
            return item
    """,
    "matmul": """
        def tf(item):  # numpy's BLAS and torch's, on 200 x 200
            m = item["x"][:40000 // 10].reshape(20, 200)
            item["y"] = (m.T @ m).astype(np.float32)
            item["z"] = (torch.as_tensor(m).T @ torch.as_tensor(m)).numpy()
            return item
    """,
    "stage": """
        def tf(item):
            t = torch.as_tensor(item["x"], dtype=torch.float32)
            item["y"] = (t[:, None] * t[None, :4000]).sum(0).numpy()
            return item
        torch.manual_seed(0)
        layer = torch.nn.Linear(4000, 16)
        STAGES = [prebake.Stage(lambda b: {"emb": layer(b["y"])}, inputs=("y",), outputs=("emb",), batch_size=8,
                                device="cpu", name="linear")]
    """,
}

_HEADER = "import numpy as np, torch, prebake\nSTAGES = []\n"

#: Per variant, the columns its Stage computes in the building process, whose float sums follow the caller's torch
#: thread count (the warm build's 1 or 4 against the cold build's default 2: 1.1e-4 apart at most on values up to
#: 218, on an Intel Xeon): equal to float32 rounding, not bit for bit.
ROUNDED = {"stage": ("emb",)}

_SCRIPT = """
import importlib, json, sys
import numpy as np, torch, prebake
out, threads, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

class D(torch.utils.data.Dataset):
    def __len__(self):
        return 24
    def __getitem__(self, i):
        return {"x": np.random.default_rng(i).standard_normal(4096).astype(np.float32), "label": i % 2}
    def fingerprint(self):
        return "hangs-v1"

def bake(variant, when):
    m = importlib.import_module("variant_" + variant.replace("-", "_"))
    cache = prebake.build(D(), f"{out}/{variant}-{when}", [m.tf, *m.STAGES], workers=2, progress=False,
                          chunk_rows=4)
    sums = {n: {f: e["xxh3_64"] for f, e in c["files"].items()} for n, c in cache.manifest["columns"].items()}
    print(json.dumps({"variant": variant, "when": when, "sums": sums}), flush=True)

for v in variants:  # cold: this process has run no parallel region yet
    bake(v, "cold")
torch.set_num_threads(threads)  # what a notebook or a training script did before the build
x = torch.randn(1500, 1500)
(x @ x).sum()
a = np.random.default_rng(0).standard_normal((800, 800))
a @ a
for v in variants:
    bake(v, "warm")
"""


def run_variants(work: Path, variants: tuple[str, ...], threads: int = 2, timeout: float = 120) -> dict[str, str]:
    """Each variant baked cold, then again after ``threads`` parent threads ran, in one fresh process:
    ``{variant: "ok" | "hung" | "error: ..." | "the bytes differ"}``."""
    for v in variants:
        (work / f"variant_{v.replace('-', '_')}.py").write_text(_HEADER + textwrap.dedent(VARIANTS[v]))
    (work / "bake.py").write_text(_SCRIPT)
    cmd = [sys.executable, str(work / "bake.py"), str(work / "out"), str(threads), *variants]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=work,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(work), *sys.path])})
        stdout, failed = done.stdout, f"error: rc {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired as e:
        stdout, failed = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "hung"
    got = {(r["variant"], r["when"]): r["sums"] for r in map(json.loads, stdout.split("\n")[:-1])}
    return {v: failed if (v, "warm") not in got else "ok" if _same(work / "out", v, got[v, "cold"], got[v, "warm"])
            else "the bytes differ" for v in variants}


def _same(out: Path, variant: str, cold: dict, warm: dict) -> bool:
    """The two builds' columns equal: bit for bit, or to float32 rounding for those in :data:`ROUNDED`."""
    rounded = ROUNDED.get(variant, ())
    if {c: s for c, s in cold.items() if c not in rounded} != {c: s for c, s in warm.items() if c not in rounded}:
        return False
    for column in (c for c in rounded if cold.get(c) != warm.get(c)):
        a, b = (np.stack([np.asarray(item[column]) for item in prebake.open(out / f"{variant}-{when}")])
                for when in ("cold", "warm"))
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(a).max()))):
            return False
    return True


def parent_threads(work: Path, trials: int, variants: tuple[str, ...] = tuple(VARIANTS), timeout: float = 300) -> Row:
    """``trials`` processes, each baking every variant cold and then after 2, 4 or 1 parent threads ran."""
    row = Row("forked workers after the caller used torch's threads: a torch / MONAI / scipy / BLAS transform "
              "and a Stage finish with a cold build's bytes (a Stage's floats to float32 rounding)")
    for k in range(trials):
        threads = (2, 4, 1)[k % 3]
        (w := work / f"t{k}").mkdir()
        for variant, status in run_variants(w, variants, threads, timeout).items():
            row.check(status == "ok", f"{variant} after {threads} parent threads: {status}")
    row.notes["variants"] = len(variants)
    return row
