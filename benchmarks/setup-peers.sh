#!/usr/bin/env bash
# Creates benchmarks/.venv-peers: prebake plus the peer libraries the benchmarks
# compare against (Hugging Face datasets, LitData, Kornia, torch-audiomentations).
# Peers are benchmark-only; the library never imports them.
#
# LitData and torch-audiomentations declare torchvision / torchaudio, which have
# no build matching the pinned CPU torch here and would pull a CUDA torch, so they
# are installed without their declared dependencies plus the ones they import.
# The benchmarks skip any peer that fails to import, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv-peers
PY=$VENV/bin/python
[ -x "$PY" ] || python3 -m venv "$VENV"
$PY -m pip install --quiet -c constraints.txt -e '.[dev,audio,plot]' datasets kornia
$PY -m pip install --quiet -c constraints.txt --no-deps litdata torch-audiomentations torch-pitch-shift
$PY -m pip install --quiet -c constraints.txt lightning-utilities boto3 requests tifffile obstore julius primePy
echo "peers installed in $VENV; run e.g. $PY -m prebake bench CACHE"
