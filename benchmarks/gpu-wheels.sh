#!/usr/bin/env bash
# Downloads, into .whl/ (ignored by git), the wheels the GPU machine lacks for benchmarks/gpu-run.sh:
# the peer libraries. That machine has torch (CUDA), peft, scipy, xxhash, filelock, tqdm, pytest,
# hypothesis, matplotlib, nvidia-ml-py and torchaudio, runs Python 3.12, and reaches no registry.
set -euo pipefail
cd "$(dirname "$0")/.."
# .whl/ is in .gitignore; the device tool carries it when a call names it in carry
mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl \
    kornia kornia_rs datasets dill multiprocess litdata obstore boto3 botocore s3transfer jmespath \
    PyYAML soundfile nibabel pydicom h5py monai av \
    torch-audiomentations julius torch-pitch-shift primePy
du -sh .whl
