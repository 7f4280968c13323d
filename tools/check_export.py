"""Checks `vitune export` outputs with the Python libraries users deploy with (never needed to build or test vitune).

    python tools/check_export.py --pixels input.safetensors --expected forward.safetensors \
        [--onnx model.onnx] [--timm merged.safetensors]

`input.safetensors` holds `pixels` [N,3,H,W]; `forward.safetensors` is what `vitune forward --tuned T` wrote for
it (`logits`). With --onnx, onnxruntime runs the exported file (and `onnx.checker` validates it); with --timm,
timm builds the model from the config.json beside the merged weights, as the README says a user would, and loads
them. Prints the largest relative logit difference (max |a - b| / max |b|) and whether the top-1 classes agree.
"""

import argparse
import json
import os

import numpy as np
from safetensors.numpy import load_file


def compare(name, got, want):
    rel = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
    top1 = (got.argmax(1) == want.argmax(1)).mean()
    print(f"{name}: max relative logit difference {rel:.2e}, top-1 agreement {top1:.0%}")
    return rel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pixels", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--timm")
    a = ap.parse_args()
    pixels = load_file(a.pixels)["pixels"].astype(np.float32)
    want = load_file(a.expected)["logits"]
    worst = 0.0
    if a.onnx:
        import onnx
        import onnxruntime as ort

        onnx.checker.check_model(onnx.load(a.onnx), full_check=True)
        s = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
        meta = s.get_modelmeta().custom_metadata_map
        print("metadata:", {k: meta[k] for k in sorted(meta) if k != "options"})
        (logits,) = s.run(["logits"], {"pixels": pixels})
        worst = max(worst, compare("onnxruntime", logits, want))
    if a.timm:
        import timm
        import torch

        cfg = json.load(open(os.path.join(os.path.dirname(a.timm) or ".", "config.json")))
        m = timm.create_model(
            cfg["architecture"],
            pretrained=True,
            pretrained_cfg_overlay=dict(file=a.timm, num_classes=cfg["num_classes"]),
            **cfg["model_args"],
        ).eval()
        with torch.no_grad():
            logits = m(torch.from_numpy(pixels)).numpy()
        worst = max(worst, compare("timm", logits, want))
    raise SystemExit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
