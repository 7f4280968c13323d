"""Classify images with a model exported by `vitune export` — onnxruntime, Pillow and NumPy, nothing from vitune.

    pip install onnxruntime pillow numpy
    python examples/predict_onnx.py model.onnx photo.jpg [more.jpg ...]

The preprocessing comes from the model's own metadata (image_size, crop_pct, mean, std), as vitune does it:
resize the shorter side to floor(min(size) / crop_pct) with bicubic filtering, center-crop to the size, scale to
0..1 and normalise (a crop_pct of 1 or more resizes straight to the size). Pillow's bicubic filter is close to,
not bit-identical with, vitune's antialiased bicubic, so probabilities may differ slightly from `vitune predict`.
"""

import json
import math
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def preprocess(path, meta):
    h, w = json.loads(meta["image_size"])
    crop_pct = float(meta["crop_pct"])
    mean = np.array(json.loads(meta["mean"]), dtype=np.float32)
    std = np.array(json.loads(meta["std"]), dtype=np.float32)
    img = Image.open(path).convert("RGB")
    if crop_pct >= 1.0:
        img = img.resize((w, h), Image.BICUBIC)
    else:
        short = math.floor(min(h, w) / crop_pct)
        iw, ih = img.size
        if ih <= iw:
            nh, nw = short, int(short * iw / ih)
        else:
            nh, nw = int(short * ih / iw), short
        nh, nw = max(nh, h), max(nw, w)
        img = img.resize((nw, nh), Image.BICUBIC)
        top, left = round((nh - h) / 2), round((nw - w) / 2)
        img = img.crop((left, top, left + w, top + h))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - mean) / std
    return x.transpose(2, 0, 1)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["classes"])
    pixels = np.stack([preprocess(p, meta) for p in sys.argv[2:]])
    (probabilities,) = session.run(["probabilities"], {"pixels": pixels})
    for path, row in zip(sys.argv[2:], probabilities):
        top = np.argsort(row)[::-1][:5]
        print(path)
        for i in top:
            print(f"  {row[i]:6.1%}  {classes[i]}")


if __name__ == "__main__":
    main()
