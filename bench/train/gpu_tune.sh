#!/usr/bin/env bash
# The trainer's speed options on a lent GPU machine, from the repository root, one run each of
# bench/train/mfu_gpu.py (mini-internvl-2b, bf16, no activation checkpointing unless said):
#   foreach AdamW (the session-1 baseline) | fused AdamW | fused + compiled layers | the same with
#   activation checkpointing; then bench/tiling on that machine's CPU.
# Wheels the image lacks travel in .whl-trainer/ (see gpu_check.sh).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl-trainer/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
run() {  # name, timeout, args...
    local name=$1 limit=$2; shift 2
    echo "== $name"
    timeout "$limit" python3 bench/train/mfu_gpu.py --steps 5 "$@" 2>&1 | grep -v -i warn | tee "$OUT/$name.log" \
        | python3 -c 'import sys,json; t=sys.stdin.read(); i=t.find("{"); d=json.loads(t[i:]) if i>=0 else {}; print(json.dumps({k: v for k, v in d.items() if k in ("first_step_s",) or k.startswith("checkpointing")}))' \
        || tail -5 "$OUT/$name.log"
}
run foreach 90 --fused off --checkpointing off
run fused 90 --fused on --checkpointing off
run fused_compile 180 --fused on --compile --checkpointing off
run fused_compile_ckpt 120 --fused on --compile --checkpointing on
echo "== tiling (CPU, 1 thread)"
timeout 80 python3 bench/tiling/bench_tiling.py --rounds 2 2>&1 | tee "$OUT/tiling.log"
