#!/usr/bin/env bash
# Install everything vlmix needs into ./.venv (Python 3.11), plus the few Debian packages the demo and
# tests use (a CJK font for the demo's Chinese text images, strace for the network test, g++ for
# torch.compile's CPU code in the trainer's --compile test). Idempotent:
# a second run checks and installs nothing new. VLMIX_EXTRAS picks the extras (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${VLMIX_EXTRAS:-download,ocr,pdf,translate,quality,decontam,train,mix,dev}"

source scripts/lib.sh  # pick_python

install_debian_packages() {
  local missing=()
  for package in fonts-wqy-microhei fonts-wqy-zenhei fonts-dejavu-core fonts-liberation2 strace g++; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: install ${missing[*]} with your package manager (a CJK font, strace, g++)" >&2
    return 0
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
}

install_debian_packages
python=$(pick_python)
[ -x .venv/bin/python ] || "$python" -m venv .venv
export NO_ALBUMENTATIONS_UPDATE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q -e ".[${extras}]"
# img2dataset drags in the `dataclasses` backport, which shadows the standard library module and
# breaks Prefect's server; img2dataset works with the standard one.
.venv/bin/python -m pip uninstall -q -y dataclasses 2>/dev/null || true
# PaddleOCR 3.x pins numpy, PyYAML and OpenCV against the pipeline's: it gets its own environment,
# used by the `paddleocr` OCR engine (the default `onnx` engine runs the same PP-OCR models in .venv).
if [ "${VLMIX_PADDLEOCR:-1}" = "1" ]; then
  [ -x .venv-paddleocr/bin/python ] || "$python" -m venv .venv-paddleocr
  .venv-paddleocr/bin/python -m pip install -q -r ocr/paddleocr-requirements.txt
fi
# vLLM is a server with pins of its own (torch 2.13.0+cpu here): it gets its own environment too.
if [ "${VLMIX_VLLM:-1}" = "1" ]; then
  PYTHON="$python" bash scripts/setup_vllm.sh
fi
echo "vlmix installed in $(pwd)/.venv"
