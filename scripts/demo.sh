#!/usr/bin/env bash
# Install vlmix and run the main job on the embedded default: local Ray, local disk, the demo
# sources generated and served on loopback, run as the Prefect deployment build-pretrain-mix/local
# through a local Prefect server and worker. Arguments go to `python -m flows.local run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m flows.local run --config configs/demo.yaml "$@"
