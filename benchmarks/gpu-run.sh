#!/usr/bin/env bash
# On a GPU machine, from the repo root with .whl/ carried (benchmarks/gpu-wheels.sh makes it):
#   bash benchmarks/gpu-run.sh a    # the CUDA tests and the loader benchmark
#   bash benchmarks/gpu-run.sh b    # the augment and federated benchmarks
# Two calls, each well inside the device tool's 10-minute limit. JSON results go to
# benchmarks/results/ (named after the GPU) and, when $OUT is set, are copied there too.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
SCRATCH="$(python3 -c "import tempfile; print(tempfile.gettempdir())")/prebake-gpu"  # wheels and benchmark data, outside the repo
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SCRATCH/site" .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$SCRATCH/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
if [ "${1:-a}" = a ]; then
    python3 -m pytest -q -p no:cacheprovider tests/test_loader.py tests/test_watch.py tests/test_augment_contract.py \
        tests/test_augment_image.py tests/test_augment_signal.py tests/test_federated.py 2>&1 | tail -15
    python3 benchmarks/loader.py --device cuda --seconds 3 --workdir "$SCRATCH/bench"
else
    python3 benchmarks/augment.py --device cuda
    python3 -m examples.federated.bench --device cuda --vit tiny --image_size 224 --local_ep 5 --samples_per_client 500
fi
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/ 2>/dev/null; fi
