#!/usr/bin/env python3
"""Writes the images of BENCHMARKS.md's decoding table into a folder: a 40000x40000 one-colour PNG (a
decompression bomb, about 1.5 MB on disk, streamed row by row so this script stays small), a 20000x20000 JPEG,
and a 12-megapixel noisy JPEG (a phone photo's size). Needs Pillow. Never needed to build or test vitune."""
import os, struct, sys, zlib
from PIL import Image

out = sys.argv[1] if len(sys.argv) > 1 else "big-images"
os.makedirs(out, exist_ok=True)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


side = 40000
with open(os.path.join(out, "bomb-40000.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
    z = zlib.compressobj(9)
    row = b"\x00" + b"\x20\x80\xc0" * side
    parts = []
    for _ in range(side):
        parts.append(z.compress(row))
    parts.append(z.flush())
    f.write(chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))

big = Image.linear_gradient("L").resize((20000, 20000)).convert("RGB")
big.save(os.path.join(out, "scan-20000.jpg"), quality=85)
del big
noise = Image.merge("RGB", [Image.effect_noise((4000, 3000), 40 + 10 * i) for i in range(3)])
noise.save(os.path.join(out, "photo-12mp.jpg"), quality=90)
for n in sorted(os.listdir(out)):
    print(n, os.path.getsize(os.path.join(out, n)))
