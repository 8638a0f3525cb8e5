#!/usr/bin/env bash
# PaddleOCR images/s on a lent GPU machine (no internet there). Prepared, not run by the tests.
#
# Where things stand: PaddleOCR 3.x needs paddlepaddle 3.x for its own GPU backend, and PyPI has
# only paddlepaddle-gpu 2.6.2; onnxruntime-gpu (its other GPU path) is a ~250 MB wheel, over
# the 64 MiB the device tool carries. So this script runs the real PaddleOCR pipeline with
# engine="onnxruntime" on the machine's CPU cores, and on the GPU too wherever that machine's
# onnxruntime has the CUDA provider; it prints which providers it found.
#
# 1. Here (this machine), from the repo root, once:
#      bash bench/ocr/gpu_paddleocr.sh prepare
#    fills .whl/ (paddleocr, paddlex and the small packages it imports, for Python 3.12) and
#    .ocrmodels/ (PP-OCRv6 small/tiny as PaddleOCR model directories); both ignored by git.
# 2. With the device tool:  run(command="bash bench/ocr/gpu_paddleocr.sh run", carry=[".whl", ".ocrmodels"],
#    timeout_s=420, plus ".ocrpages" in carry). It prints images/s per model and device and writes $OUT/gpu_paddleocr.log.
set -euo pipefail
cd "$(dirname "$0")/../.."

WHEELS=(paddleocr==3.7.0 paddlex==3.7.2 pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0
  typing_inspection==0.4.5 pyclipper==1.4.0 shapely==2.2.0 imagesize==2.0.1 python-bidi==0.6.12
  prettytable==3.18.0 wcwidth==0.9.4 "ruamel.yaml==0.19.1" ujson==6.1.0 chardet==7.7.0 colorlog==6.12.0
  py-cpuinfo==9.0.0 aistudio_sdk==0.3.9 modelscope==1.40.2 modelscope_hub==0.5.1 pypdfium2==5.15.2 loguru==0.7.3
  cryptography cffi pycparser)

if [[ "${1:-}" == "prepare" ]]; then
  grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  grep -qx '/.ocrmodels/' .git/info/exclude || echo '/.ocrmodels/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${WHEELS[@]}"
  .venv/bin/python - <<'PY'
import shutil
from pathlib import Path
from ocr.engines.models import export_paddle_model_dirs
for model in ("PP-OCRv6_small", "PP-OCRv6_tiny"):
    for d in export_paddle_model_dirs(model, ".ocrmodels"):
        link = d / "inference.onnx"
        real = link.resolve()
        link.unlink()
        shutil.copyfile(real, link)  # the device tool carries files, not links out of the repo
PY
  grep -qx '/.ocrpages/' .git/info/exclude || echo '/.ocrpages/' >> .git/info/exclude
  .venv/bin/python - <<'PY'
import pathlib, sys
sys.path.insert(0, "tests/ocr")
from ocr_synth import heldout_set
out = pathlib.Path(".ocrpages"); out.mkdir(exist_ok=True)
for lang in ("en", "zh"):
    for cond in ("clean", "hard"):
        for i, page in enumerate(heldout_set(lang, cond, pages=8)):
            page.image.save(out / f"{lang}-{cond}-{i}.png")
PY
  du -sh .whl .ocrmodels .ocrpages
  exit 0
fi

OUT="${OUT:-/tmp/gpu_paddleocr_out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK=True
python3 - <<'PY' 2>&1 | tee "$OUT/gpu_paddleocr.log"
import json, subprocess, sys, tempfile, pathlib
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers(), flush=True)
pages = pathlib.Path(".ocrpages")  # rendered here by `prepare`: the device machine has no CJK fonts
paths = sorted(str(p) for p in pages.glob("*.png"))
devices = ["cpu"] + (["gpu:0"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])
for model in ("PP-OCRv6_small", "PP-OCRv6_tiny"):
    for device in devices:
        settings = {"engine": "paddleocr", "model": model, "device": device,
                    "det_model_dir": f".ocrmodels/{model}_det", "rec_model_dir": f".ocrmodels/{model}_rec"}
        r = subprocess.run([sys.executable, "-m", "ocr.engines", "--repeat", "3", "--settings", json.dumps(settings), *paths],
                           capture_output=True, text=True, timeout=300)
        speed = [l for l in r.stderr.splitlines() if "images_per_s" in l]
        print(model, device, speed[-1] if speed else r.stderr[-1500:], flush=True)
PY
