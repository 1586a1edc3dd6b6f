#!/usr/bin/env python3
"""Exports an OpenCLIP model to the folder layout sightline loads.

Run this on a machine that can download weights (sightline itself never
does): it writes image.onnx, text.onnx, the BPE vocabulary and a
model.toml that says how to feed and read them, then checks the ONNX
graphs against PyTorch on the same inputs. Copy the folder to the camera
box and point `[model] path` at it.

    python3 -m venv venv && venv/bin/pip install open_clip_torch onnx onnxruntime
    venv/bin/python models/export_clip.py --model ViT-B-32 \\
        --pretrained laion2b_s34b_b79k --out /tmp/clip-vit-b-32

`--pretrained ""` exports randomly initialised weights: useful only to check
the export path and the daemon's loader without a download.

Only models that use OpenAI's CLIP BPE tokenizer are accepted (OpenAI CLIP,
most OpenCLIP ViT and ConvNeXt models, MobileCLIP); SigLIP and others with
a different tokenizer are refused with a message.
"""
import argparse
import gzip
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch


class ImageHalf(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model.encode_image(image)


class TextHalf(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, text):
        return self.model.encode_text(text)


STEPS = 6
_began = time.time()


def step(n, what):
    """Says on stderr which of the export's steps runs now (loading and
    tracing a large model takes minutes)."""
    print(f"[{n}/{STEPS}] {what} ({time.time() - _began:.0f} s)", file=sys.stderr, flush=True)


def export(module, example, path, input_name, output_name, opset):
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="OpenCLIP model name, e.g. ViT-B-32")
    ap.add_argument("--pretrained", required=True,
                    help='OpenCLIP weights tag, e.g. laion2b_s34b_b79k or openai ("" for random)')
    ap.add_argument("--out", required=True, type=Path, help="folder to write")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--resize", choices=["stretch", "crop", "letterbox"], default="stretch",
                    help="how live frames are fitted to the square input: stretch keeps the "
                         "whole view; crop is CLIP's own preprocessing but ignores the sides")
    args = ap.parse_args()

    import open_clip
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    step(1, f"loading {args.model} ({args.pretrained or 'random weights'})")
    tokenizer = open_clip.get_tokenizer(args.model)
    if not isinstance(tokenizer, SimpleTokenizer):
        sys.exit(f"{args.model} uses {type(tokenizer).__name__}, not OpenAI's CLIP BPE; "
                 "sightline cannot tokenize for it")
    model, _, _ = open_clip.create_model_and_transforms(
        args.model, pretrained=args.pretrained or None)
    model.eval()
    visual = model.visual
    size = visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = [float(v) for v in getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN]
    std = [float(v) for v in getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD]
    context = int(getattr(model, "context_length", 77))

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    image = torch.rand(1, 3, size, size)
    text = tokenizer(["a photo of a cat"])
    if text.shape[1] != context:
        sys.exit(f"tokenizer context {text.shape[1]} differs from the model's {context}")
    started = time.time()
    step(2, "computing PyTorch's reference embeddings")
    with torch.no_grad():
        want_image = model.encode_image(image).numpy()
        want_text = model.encode_text(text).numpy()
    # Traced with autograd on: under no_grad, PyTorch's attention takes a
    # fused fast path that has no ONNX export.
    step(3, f"exporting the image encoder to {out / 'image.onnx'}")
    export(ImageHalf(model), image, out / "image.onnx", "image", "image_embedding", args.opset)
    step(4, f"exporting the text encoder to {out / 'text.onnx'}")
    export(TextHalf(model), text, out / "text.onnx", "text", "text_embedding", args.opset)
    step(5, "writing the vocabulary and model.toml")
    with gzip.open(default_bpe(), "rb") as src, open(out / "bpe_simple_vocab_16e6.txt", "wb") as dst:
        shutil.copyfileobj(src, dst)
    dim = want_image.shape[-1]
    if want_text.shape[-1] != dim:
        sys.exit(f"image embeddings have {dim} values, text ones {want_text.shape[-1]}")
    logit_scale = float(model.logit_scale.exp().item())

    (out / "model.toml").write_text(f'''# {args.model} ({args.pretrained or "random weights"}) exported by
# models/export_clip.py with open_clip {open_clip.__version__}, torch {torch.__version__}.
kind = "dual-encoder"
file = "image.onnx"
source = "open_clip {args.model} pretrained={args.pretrained!r}"

[input]
name = "image"
layout = "nchw"
dtype = "float32"
width = {size}
height = {size}
# CLIP was trained on centre crops ("crop"); "stretch" keeps the frame's sides.
resize = "{args.resize}"
mean = [{", ".join(f"{v:.8f}" for v in mean)}]
std = [{", ".join(f"{v:.8f}" for v in std)}]

[outputs]
embedding = "image_embedding"

[text]
file = "text.onnx"
input = "text"
output = "text_embedding"
context = {context}
vocabulary = "bpe_simple_vocab_16e6.txt"

[embedding]
size = {dim}
logit_scale = {logit_scale:.4f}
''')

    step(6, "checking the ONNX graphs against PyTorch with ONNX Runtime")
    import onnxruntime as ort
    got_image = ort.InferenceSession(str(out / "image.onnx")).run(None, {"image": image.numpy()})[0]
    got_text = ort.InferenceSession(str(out / "text.onnx")).run(
        None, {"text": text.numpy().astype(np.int64)})[0]
    err_i = float(np.abs(got_image - want_image).max())
    err_t = float(np.abs(got_text - want_text).max())
    print(f"wrote {out} in {time.time() - started:.0f} s: embedding {dim}, image {size}x{size}, "
          f"context {context}, logit scale {logit_scale:.1f}; "
          f"ONNX vs PyTorch max difference image {err_i:.2e}, text {err_t:.2e}")
    if err_i > 1e-3 or err_t > 1e-3:
        sys.exit("the ONNX graphs do not reproduce PyTorch; not using this export")


if __name__ == "__main__":
    main()
