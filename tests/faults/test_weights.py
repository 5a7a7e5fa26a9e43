"""The weights of user code in the fingerprint: one walker (prebake/identity/weights.py) for stages and
per-item functions, digests pinned so existing caches do not rebuild, and no dependence on the hash seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from benchmarks.trials.weights import weights
from prebake import Stage
from prebake.identity.code import code_identity

#: Digests that caches built before the weight walkers were merged hold (computed by that code).
PINNED = {
    torch.float32: ({"Sequential.0.weight": "torch.float32(2, 3):7af1726b2355760e",
                     "Sequential.0.bias": "torch.float32(2,):8acaecf694587e0b",
                     "Sequential.1.num_batches_tracked": "torch.int64():8e03e9aa39aaa78c",
                     "Sequential.2.weight": "torch.float32(2, 0):2d06800538d394c2"},
                    "2a5b818d02dde759fc892f99f44ce147c112379504ea47345f4eb389cf062e70"),
    torch.bfloat16: ({"Sequential.0.weight": "torch.bfloat16(2, 3):ce744c6f205cc4ab",
                      "Sequential.0.bias": "torch.bfloat16(2,):776ffa67b349d854",
                      "Sequential.1.num_batches_tracked": "torch.int64():8e03e9aa39aaa78c",
                      "Sequential.2.weight": "torch.bfloat16(2, 0):2d06800538d394c2"},
                     "626782e9075d8eb43679c5c384258dc3dcf90f7e97c70d43dacfef1c8e7d141a"),
}


def pinned_module(dtype: torch.dtype) -> torch.nn.Module:
    """Linear, BatchNorm (an int64 buffer) and a zero-size weight, filled with fixed values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op"
        m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(0, 2))
    with torch.no_grad():
        for t in m.state_dict().values():
            t.copy_(torch.arange(t.numel()).reshape(t.shape) / 8 if t.is_floating_point() else torch.full_like(t, 5))
    return m.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_weight_digests_are_those_existing_caches_hold(dtype):
    m = pinned_module(dtype)

    def run(batch):
        return m(batch)

    stage = Stage(run, inputs=("x",), outputs=("y",), device="cpu").describe()["weights"]
    per_tensor, per_module = PINNED[dtype]
    assert {k: stage[k] for k in per_tensor} == per_tensor
    assert list(code_identity(run)["weights"].values()) == [per_module]


USER = '''
import torch

torch.manual_seed(0)
AUDIO = torch.nn.Linear(2, 2)
MOTION = torch.nn.Linear(2, 2)
FACE = torch.nn.Linear(2, 2)


def encode(batch):
    return {"y": AUDIO(batch["x"]) + MOTION(batch["x"]) + FACE(batch["x"])}
'''
SHOW = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import prebake, user_enc
stage = prebake.Stage(user_enc.encode, inputs=("x",), outputs=("y",), device="cpu")
print(json.dumps(stage.describe()["weights"], sort_keys=True))
'''


def test_a_stage_of_several_global_modules_has_one_fingerprint_under_every_hash_seed(tmp_path):
    """Its modules were found in the order of a set of names, so the digests' keys changed with
    PYTHONHASHSEED, and each new process could rebuild the cache ("3 weight tensors changed")."""
    (tmp_path / "user_enc.py").write_text(USER)
    (tmp_path / "show.py").write_text(SHOW)
    seen = []
    for seed in ("1", "2"):  # two seeds that ordered the three names differently
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, str(tmp_path / "show.py"), str(tmp_path)], env=env,
                             capture_output=True, text=True, check=True).stdout
        seen.append(json.loads(out))
    assert len(seen[0]) == 6 and seen[0] == seen[1]


def test_the_trial_finds_no_failure(tmp_path):
    row = weights(tmp_path, trials=150, seed=0)
    assert row.failures == 0, row.examples
