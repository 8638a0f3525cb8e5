#!/usr/bin/env bash
# The trainer's device check, run on a lent GPU machine from the repository root:
#   MFU of the ~2B preset in bf16 (bench/train/mfu_gpu.py), then the trainer tests on CUDA
#   (bf16 autocast path; the gloo FSDP and Ray tests are CPU-only and skipped here).
# Wheels the image lacks travel in .whl-trainer/ (pydantic, webdataset, the pinned transformers).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl-trainer/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 240 python3 bench/train/mfu_gpu.py "$@" 2>&1 | grep -v -i warn | tee "$OUT/mfu.log"
timeout 150 python3 -m pytest tests/trainer -q -p no:cacheprovider -k "not fsdp and not ray" 2>&1 | tail -25 | tee "$OUT/tests.log"
