"""Makes a TFJS graph model loadable by TensorFlow 2.21 for tf2onnx.

The TFJS converter drops node attributes that TensorFlow fills in itself
when it builds a graph. tf2onnx re-imports the nodes through TensorFlow,
which then refuses them. This restores them, touching no weight:

* `_FusedConv2D` (and the other fused ops) lose `TArgs`, the types of their
  extra inputs: one `T` per `num_args`.
* Any attribute an op registers with a default value is written out with
  that default when the node lacks it (e.g. `TopKV2.index_type`).

Usage: python patch_graph.py IN.json OUT.json
"""

import json
import sys

from google.protobuf import json_format
from tensorflow.python.framework import op_def_registry


def patch(graph):
    filled = 0
    for node in graph["modelTopology"]["node"]:
        attrs = node.setdefault("attr", {})
        op = op_def_registry.get(node["op"])
        if op is None:
            continue
        names = {a.name for a in op.attr}
        if "TArgs" in names and "TArgs" not in attrs and "num_args" in attrs:
            n = int(attrs["num_args"].get("i", 0))
            t = attrs.get("T", {}).get("type", "DT_FLOAT")
            attrs["TArgs"] = {"list": {"type": [t] * n}}
            filled += 1
        for a in op.attr:
            if a.name not in attrs and a.HasField("default_value"):
                attrs[a.name] = json_format.MessageToDict(a.default_value)
                filled += 1
    return filled


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        graph = json.load(f)
    filled = patch(graph)
    with open(dst, "w") as f:
        json.dump(graph, f)
    print(f"patched {filled} attributes")


if __name__ == "__main__":
    main()
