#!/usr/bin/env bash
# Install vlmix and run the main job on the embedded default: local Ray, local disk, the demo
# sources generated and served on loopback. Arguments go to `vlmix demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vlmix demo --config configs/demo.yaml "$@"
