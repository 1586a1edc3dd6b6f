#!/usr/bin/env bash
# Runs models/quantize.py in a cached virtual environment (onnxruntime,
# onnx, opencv-python-headless from PyPI, about 150 MB). sightline never
# runs this: the int8 files it writes are committed. Usage:
#   models/quantize.sh ssdlite-person [--check-only]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SIGHTLINE_CACHE:-$HOME/.cache/sightline}/quant-venv"
stamp="$venv/.ort-1.31.1-onnx-1.23.2"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.31.1 onnx==1.23.2 opencv-python-headless==5.0.0.93
  touch "$stamp"
fi
cd "$root"
"$venv/bin/python" models/quantize.py "$@"
