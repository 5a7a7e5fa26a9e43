#!/usr/bin/env bash
# On a GPU machine, from the repo root with .whl/ carried (benchmarks/gpu-wheels.sh makes it), in ONE call:
#   bash benchmarks/gpu-run.sh
# the CUDA tests, then every GPU benchmark, each under its own time limit so the whole run stays
# under 8 minutes. JSON results go to benchmarks/results/ (named after the GPU) and, when $OUT is
# set, are copied there too, with the console log.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
SCRATCH="$(python3 -c "import tempfile; print(tempfile.gettempdir())")/prebake-gpu"  # wheels and benchmark data, outside the repo
LOG="$SCRATCH/gpu-run.log"
mkdir -p "$SCRATCH"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SCRATCH/site" .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$SCRATCH/site"
fi
step() {  # step SECONDS NAME COMMAND...: run one part, never past its limit, and say how it ended
    local limit=$1 name=$2; shift 2
    echo "=== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@"
    echo "=== $name: exit $? after $((SECONDS - t0)) s"
}
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step 155 "CUDA tests" python3 -m pytest -q -p no:cacheprovider -x tests/load tests/augment tests/bake/test_stages.py \
    tests/measure/test_watch.py
step 75 "augment (six signal ops at 64 and 1024 x 4000, image ops, ViT input)" \
    python3 benchmarks/augment.py --device cuda --repeat 1
step 45 "views (windows and elements, host and preload='device')" \
    python3 benchmarks/views.py --device cuda --seconds 1 --rounds 1 --workdir "$SCRATCH/views"
step 50 "heart-sound pretraining, data wait on the device" \
    python3 -m examples.pcg.bench --device cuda --data-epochs 2 --train-epochs 1 --paths original,viewcache,prebake
step 50 "federated rounds at 224 px" \
    python3 -m examples.federated.bench --device cuda --vit tiny --image_size 224 --local_ep 1 --samples_per_client 200
step 50 "talking-head bake: the encoders as Stages of 32, 8, 4 and 1 clips on the device in bf16" \
    python3 -m examples.talking_head.bench --device cuda --stage-dtype bf16 --bake-only --rounds 1 --threads 4
step 45 "a MONAI Compose: PersistentDataset against the baked prefix and the random rest as device ops" \
    python3 benchmarks/monai_pipeline.py --device cuda --rounds 5 --workers 4 --save
} 2>&1 | tee "$LOG"
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$LOG" "$OUT"/ 2>/dev/null; fi
