#!/usr/bin/env bash
# Packing on a lent GPU machine (H100/H200), from the repository root, in one run of
# bench/train/packing_gpu.py: mini-internvl-2b in bf16, the same 48 demo-mixture samples a step,
# padded rows (the baseline) against packs (sdpa_packed; varlen flash where flash-attn is installed;
# sdpa with the block mask), eager then with --compile. Target: MFU >= 40% packed.
# Wheels the image lacks travel in .whl-trainer/ (see gpu_check.sh). About 5 minutes.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl-trainer/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
echo "== eager"
timeout 200 python3 bench/train/packing_gpu.py --steps 3 2>&1 | grep -v -i warn | tee "$OUT/packing_eager.log" | grep -v '^ '
echo "== compiled layers (sdpa_packed keeps its per-sample loop out of the graphs)"
timeout 200 python3 bench/train/packing_gpu.py --steps 3 --compile --variants padded:sdpa,packed:sdpa_packed,packed:flash_attention_2 \
    2>&1 | grep -v -i warn | tee "$OUT/packing_compile.log" | grep -v '^ '
