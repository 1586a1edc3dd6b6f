"""Builds sightline's test dual encoder: a CLIP-shaped pair of ONNX graphs
whose two halves share an embedding space by construction.

    python3 make_model.py OUT_DIR     (needs numpy and onnx; no weights, no network)
    python3 make_model.py --mismatched-text OUT_DIR   (a 256-wide text half, for tests)

Image half, `image.onnx`: float32 [N,3,224,224] normalised with CLIP's
mean/std -> float32 [N,512]. It undoes the normalisation, averages the
picture's colour, and describes its hue by how close it lies to 12 hue
directions 30 degrees apart (only those within 40 degrees count), weighted
by saturation, plus one constant "scene" component.

Text half, `text.onnx`: int64 [N,77] CLIP token ids -> float32 [N,512]. A
colour word (one OpenAI BPE token each, ids below) contributes the same hue
description as a saturated picture of that colour; every other word adds to
the "scene" component. So "a red object" lies close to a red frame, far
from a blue one, and background prompts ("a photo of an empty scene") lie
closest to grey frames.

Both halves end in the same fixed rotation into 512 dimensions (seeded), so
embeddings do not give the construction away and have a real export's size.
The output is deterministic: running this twice gives identical files.
"""
import colorsys
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 224
DIM = 512
CONTEXT = 77
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
HUES = np.arange(12) * 30.0
CUTOFF = np.cos(np.radians(40.0))
SCENE_IMAGE = 0.5  # the constant component of every picture
SCENE_WORD = 0.25  # what each non-colour word adds to it
# OpenAI CLIP BPE ids (word-final tokens) and the hue each colour word means.
WORDS = {
    "red": (736, 0.0), "orange": (4287, 30.0), "yellow": (4481, 60.0),
    "green": (1901, 120.0), "blue": (1746, 240.0), "purple": (5496, 280.0),
    "violet": (16118, 270.0), "magenta": (38091, 300.0), "pink": (3360, 330.0),
    "teal": (22821, 180.0),
}
START, END = 49406, 49407

# Chroma plane: a colour minus its grey level, in an orthonormal 2-D basis.
PLANE = np.array([[2, -1, -1], [0, 1, -1]], dtype=np.float64).T
PLANE /= np.linalg.norm(PLANE, axis=0)


def direction(rgb):
    c = np.asarray(rgb, dtype=np.float64)
    v = (c - c.mean()) @ PLANE
    return v / np.linalg.norm(v)


ANCHORS = np.stack([direction(colorsys.hsv_to_rgb(h / 360.0, 1, 1)) for h in HUES], axis=1)
FULL_SAT = np.linalg.norm((np.array([1, 0, 0]) - 1 / 3) @ PLANE)


def hue_features(d):
    f = np.maximum(d @ ANCHORS - CUTOFF, 0)
    return f / np.linalg.norm(f)


def rotation():
    rng = np.random.default_rng(20261123)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    return q[: len(HUES) + 1].astype(np.float32)  # orthonormal rows


def const(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def image_graph(rot):
    k = len(HUES)
    nodes = [
        helper.make_node("ReduceMean", ["image", "hw"], ["avg"], keepdims=0),
        helper.make_node("Mul", ["avg", "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["rgb"]),
        helper.make_node("MatMul", ["rgb", "centre_plane"], ["chroma"]),
        helper.make_node("Mul", ["chroma", "chroma"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "one"], ["sat2"], keepdims=1),
        helper.make_node("Sqrt", ["sat2"], ["sat"]),
        helper.make_node("Add", ["sat", "eps"], ["sat_eps"]),
        helper.make_node("Div", ["chroma", "sat_eps"], ["dir"]),
        helper.make_node("MatMul", ["dir", "anchors"], ["cos"]),
        helper.make_node("Sub", ["cos", "cutoff"], ["shifted"]),
        helper.make_node("Relu", ["shifted"], ["f"]),
        helper.make_node("Mul", ["f", "f"], ["f2"]),
        helper.make_node("ReduceSum", ["f2", "one"], ["fn2"], keepdims=1),
        helper.make_node("Sqrt", ["fn2"], ["fn"]),
        helper.make_node("Add", ["fn", "eps"], ["fn_eps"]),
        helper.make_node("Div", ["f", "fn_eps"], ["fhat"]),
        helper.make_node("Div", ["sat", "full_sat"], ["sat_rel"]),
        helper.make_node("Min", ["sat_rel", "unit"], ["sat_n"]),
        helper.make_node("Mul", ["fhat", "sat_n"], ["colour"]),
        helper.make_node("Mul", ["sat", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "scene"], ["scene_col"]),
        helper.make_node("Concat", ["colour", "scene_col"], ["z"], axis=1),
        helper.make_node("MatMul", ["z", "rotation"], ["image_embedding"]),
    ]
    centre = (np.eye(3) - 1 / 3) @ PLANE  # subtract grey, then project
    inits = [
        const("hw", [2, 3], np.int64), const("one", [1], np.int64),
        const("std", STD.reshape(1, 3)), const("mean", MEAN.reshape(1, 3)),
        const("centre_plane", centre), const("eps", [1e-6]),
        const("anchors", ANCHORS), const("cutoff", [CUTOFF]),
        const("full_sat", [FULL_SAT]), const("unit", [1.0]), const("zero", [0.0]),
        const("scene", [SCENE_IMAGE]), const("rotation", rot),
    ]
    return helper.make_graph(
        nodes, "colour_clip_image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("image_embedding", TensorProto.FLOAT, ["batch", DIM])],
        inits,
    )


def text_graph(rot):
    ids = np.array([v[0] for v in WORDS.values()], dtype=np.int64).reshape(1, 1, -1)
    table = np.stack([hue_features(direction(colorsys.hsv_to_rgb(h / 360.0, 1, 1)))
                      for _, h in WORDS.values()])
    nodes = [
        helper.make_node("Unsqueeze", ["text", "last"], ["ids3"]),
        helper.make_node("Equal", ["ids3", "colour_ids"], ["is_colour"]),
        helper.make_node("Cast", ["is_colour"], ["colour_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["colour_f", "one"], ["counts"], keepdims=0),
        helper.make_node("MatMul", ["counts", "hue_table"], ["colour"]),
        helper.make_node("Greater", ["text", "zero_i"], ["not_pad"]),
        helper.make_node("Less", ["text", "start"], ["not_special"]),
        helper.make_node("And", ["not_pad", "not_special"], ["word"]),
        helper.make_node("Cast", ["word"], ["word_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["word_f", "one"], ["words"], keepdims=1),
        helper.make_node("ReduceSum", ["counts", "one"], ["colours"], keepdims=1),
        helper.make_node("Sub", ["words", "colours"], ["others"]),
        helper.make_node("Mul", ["others", "scene_word"], ["scene_col"]),
        helper.make_node("Concat", ["colour", "scene_col"], ["z"], axis=1),
        helper.make_node("MatMul", ["z", "rotation"], ["text_embedding"]),
    ]
    inits = [
        const("last", [2], np.int64), const("one", [1], np.int64),
        const("colour_ids", ids, np.int64), const("hue_table", table),
        const("zero_i", 0, np.int64), const("start", START, np.int64),
        const("scene_word", [SCENE_WORD]), const("rotation", rot),
    ]
    return helper.make_graph(
        nodes, "colour_clip_text",
        [helper.make_tensor_value_info("text", TensorProto.INT64, ["batch", CONTEXT])],
        [helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, ["batch", DIM])],
        inits,
    )


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="sightline make_model.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main():
    args = sys.argv[1:]
    if args[:1] == ["--mismatched-text"]:
        # A text half whose embeddings are 256 long: for the test that a
        # model folder whose halves disagree is refused.
        global DIM
        DIM = 256
        out = Path(args[1])
        out.mkdir(parents=True, exist_ok=True)
        save(text_graph(rotation()), out / "text-256.onnx")
        print(f"wrote {out / 'text-256.onnx'}")
        return
    out = Path(args[0] if args else Path(__file__).parent)
    out.mkdir(parents=True, exist_ok=True)
    rot = rotation()
    save(image_graph(rot), out / "image.onnx")
    save(text_graph(rot), out / "text.onnx")
    print(f"wrote {out / 'image.onnx'} and {out / 'text.onnx'}")


if __name__ == "__main__":
    main()
