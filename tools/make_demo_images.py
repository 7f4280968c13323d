"""Makes the small demo images under assets/demo/ (shapes on noise) and an EXIF-rotated JPEG used by the
preprocessing test. Deterministic. Run: /work/venv/bin/python tools/make_demo_images.py (needs Pillow)."""
import os
import random

from PIL import Image, ImageDraw

OUT = os.path.join(os.path.dirname(__file__), "..", "assets", "demo")
os.makedirs(OUT, exist_ok=True)
rng = random.Random(7)


def canvas(w, h):
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            v = rng.randint(90, 140)
            px[x, y] = (v, v, v)
    return img


for name, draw_fn in [
    ("circle.png", lambda d: d.ellipse((12, 10, 52, 50), fill=(220, 60, 40))),
    ("square.png", lambda d: d.rectangle((14, 14, 50, 50), fill=(40, 90, 220))),
    ("triangle.png", lambda d: d.polygon([(32, 8), (58, 54), (6, 54)], fill=(40, 180, 70))),
]:
    img = canvas(64, 64)
    draw_fn(ImageDraw.Draw(img))
    img.save(os.path.join(OUT, name))

# A 40x20 JPEG whose EXIF orientation (6 = rotate 90° clockwise) makes it 20x40 when shown.
img = canvas(40, 20)
ImageDraw.Draw(img).rectangle((0, 0, 9, 19), fill=(250, 0, 0))
exif = Image.Exif()
exif[0x0112] = 6
img.save(os.path.join(OUT, "rotated_exif.jpg"), exif=exif.tobytes(), quality=95)
print("wrote", sorted(os.listdir(OUT)))
