#!/usr/bin/env bash
# Install vlmix and run the main job on the embedded default: local Ray, local disk, the demo
# sources generated and served on loopback, run as the Prefect deployment build-pretrain-mix/local
# through a local Prefect server and worker, followed stage by stage in this terminal.
# Arguments go to `python -m flows.local run` (e.g. --keep-server to browse the run in the UI).
# Exit status: 0 the run completed, 1 it failed (the stage and its error are printed), 2 invalid config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m flows.local run --config configs/demo.yaml "$@"
