#!/usr/bin/env python3
"""Pre-train the small ViT backbone that ships with vitune's embedded demo.

How to run (from the repository root)::

    /work/venv/bin/python tools/pretrain_demo_backbone.py [--vitune /tmp/vitune-bin]

Requirements: torch, timm, safetensors, numpy, Pillow (CPU only) and an already
built ``vitune`` binary (its ``demo-data`` command renders the glyph images).

Its outputs are committed to the repository, so neither ``cargo build`` nor
``cargo test`` needs Python; re-run this script only when the demo backbone
itself must change.

What it does
------------
1. Renders the demo's *source* glyph classes (52 classes: 0-9, A-Z and 16
   lowercase letters; 32x32 RGB PNGs in class folders) with
   ``vitune demo-data --split source``: a training pool (``--per-class`` images
   per class for each of the ``--train-seeds``; more seeds = more rendering
   variety instead of heavier augmentation) and a validation set (seed 2,
   ``--val-per-class`` per class), into a temporary directory.
2. Trains ``timm.models.vision_transformer.VisionTransformer(img_size=32,
   patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4,
   num_classes=52, global_pool='token', class_token=True)`` (timm defaults:
   pre-norm, qkv bias, exact GELU, LayerNorm eps 1e-6) from scratch with AdamW,
   linear warm-up + cosine decay, label smoothing, and a batched
   RandomResizedCrop(32, scale=(0.6, 1), ratio=(3/4, 4/3)); no flips
   (characters are not mirror-symmetric). Inputs: PNG -> [0,1] -> normalise
   with mean = std = (0.5, 0.5, 0.5).
3. Writes ``assets/demo/backbone/model.safetensors`` (timm's own state_dict
   layout and key names, F32, head included) and ``config.json`` (timm hub
   format plus ``label_names`` in class-index order).
4. Reloads that file into a fresh timm model and measures its accuracy on a
   fresh source sample (``--per-class 5 --seed 12345``; folders sorted by name
   = class index; plain eval transform).
5. Writes the parity fixture ``tests/fixtures/demo_backbone/``:
   ``input.safetensors`` (``pixels`` f32 [2,3,32,32]: the first two images, in
   sorted order, of that fresh sample, normalised), ``expected.safetensors``
   (``pooled`` [2,96], ``logits`` [2,52], ``attn.{l}`` [2,3,17,17] post-softmax)
   and ``meta.json``.
6. Writes ``assets/demo/backbone/TRAINING.md`` with the command, settings and
   the measured numbers.

``--eval-only`` skips rendering the training data and training, and redoes
steps 4-5 from the committed ``model.safetensors`` + ``config.json``
(TRAINING.md is left untouched).

Determinism: every random choice comes from fixed seeds (torch generators),
and ``torch.use_deterministic_algorithms(True)`` is on. Bit-identical weights
across machines are not guaranteed (CPU kernels and thread counts can change
float summation order), but the fixture is always computed from the file
that was actually written, so it is self-consistent.
"""

import os

# Two cores shared with a compiler: a spinning OpenMP barrier makes steps take
# 10x longer whenever a core is taken away, so let idle worker threads sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

import safetensors
import timm
from timm.models.vision_transformer import VisionTransformer

ROOT = Path(__file__).resolve().parent.parent
BACKBONE_DIR = ROOT / "assets" / "demo" / "backbone"
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "demo_backbone"

ARCH = "vit_demo_glyphs_patch8_32"
IMG = 32
MODEL_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3, "mlp_ratio": 4.0}
NUM_CLASSES = 52
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
EPS = 1e-6
VAL_SEED = 2
FRESH_SEED = 12345
FRESH_PER_CLASS = 5
ST_META = {"format": "pt"}


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def render(vitune: str, split: str, per_class: int, seed: int, out: Path) -> None:
    cmd = [vitune, "demo-data", "--split", split, "--per-class", str(per_class),
           "--seed", str(seed), "--size", str(IMG), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def load_folders(root: Path):
    """Class folders sorted by name (= class index) -> uint8 [N,3,H,W], int64 labels, names, paths."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels, paths = [], [], []
    for ci, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() != ".png":
                continue
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            assert a.shape == (IMG, IMG, 3), (f, a.shape)
            images.append(a)
            labels.append(ci)
            paths.append(f"{name}/{f.name}")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64), classes, paths


def normalise(x_u8: torch.Tensor) -> torch.Tensor:
    x = x_u8.float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, scale=(0.6, 1.0),
                        ratio=(3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """Batched torchvision-style RandomResizedCrop to the input size (float [N,C,H,W]).

    Crop boxes are drawn exactly like torchvision's ``RandomResizedCrop.get_params``
    (integer box, up to ``attempts`` tries, centre-crop fallback); the box is then
    resized back to HxW with bilinear interpolation (align_corners=False), done
    with one affine_grid/grid_sample call for the whole batch. The box is never
    larger than the image, so this is always an up-sampling and anti-aliasing
    would not change anything.
    """
    n, _, H, W = x.shape
    area = H * W
    t_area = area * torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    ar = torch.exp(log_r)
    w = torch.round(torch.sqrt(t_area * ar))
    h = torch.round(torch.sqrt(t_area / ar))
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    # first valid attempt per sample
    idx = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    cw = torch.where(idx >= 0, w[rows, idx.clamp(min=0)], torch.tensor(float(W)))
    ch = torch.where(idx >= 0, h[rows, idx.clamp(min=0)], torch.tensor(float(H)))
    # fallback (never hit for these scale/ratio ranges): whole image, clamped ratio
    u_i = torch.rand(n, generator=gen)
    u_j = torch.rand(n, generator=gen)
    i = torch.floor(u_i * (H - ch + 1))
    j = torch.floor(u_j * (W - cw + 1))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cw / W
    theta[:, 0, 2] = (2 * j + cw) / W - 1
    theta[:, 1, 1] = ch / H
    theta[:, 1, 2] = (2 * i + ch) / H - 1
    grid = F.affine_grid(theta, (n, x.shape[1], H, W), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

def make_model() -> VisionTransformer:
    m = VisionTransformer(
        img_size=MODEL_ARGS["img_size"], patch_size=MODEL_ARGS["patch_size"],
        embed_dim=MODEL_ARGS["embed_dim"], depth=MODEL_ARGS["depth"],
        num_heads=MODEL_ARGS["num_heads"], mlp_ratio=MODEL_ARGS["mlp_ratio"],
        num_classes=NUM_CLASSES, global_pool="token", class_token=True,
    )
    # sanity: timm defaults the Rust side relies on
    blk = m.blocks[0]
    assert isinstance(blk.norm1, torch.nn.LayerNorm) and blk.norm1.eps == EPS
    assert blk.attn.qkv.bias is not None
    assert isinstance(blk.mlp.act, torch.nn.GELU) and blk.mlp.act.approximate == "none"
    assert isinstance(m.fc_norm, torch.nn.Identity) and isinstance(m.norm, torch.nn.LayerNorm)
    return m


@torch.no_grad()
def evaluate(model, x_u8, y, batch=512):
    model.eval()
    preds = []
    for s in range(0, len(x_u8), batch):
        preds.append(model(normalise(x_u8[s:s + batch])).argmax(1))
    p = torch.cat(preds)
    return (p == y).float().mean().item(), p


@torch.no_grad()
def run_with_attn(model, pixels):
    attns, hooks = [], []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.attn.attn_drop.register_forward_hook(
            lambda _m, inp, _o, store=attns: store.append(inp[0].detach().clone())))
    feats = model.forward_features(pixels)
    pooled = model.forward_head(feats, pre_logits=True)
    logits = model.forward_head(feats)
    for h in hooks:
        h.remove()
    assert len(attns) == len(model.blocks)
    torch.testing.assert_close(model.head(pooled), logits, rtol=0, atol=0)
    torch.testing.assert_close(model(pixels), logits, rtol=1e-6, atol=1e-6)
    for a in attns:
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)), rtol=0, atol=1e-5)
    return pooled, logits, attns


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def confusions(pred, y, names, top=8):
    pairs = {}
    for p, t in zip(pred.tolist(), y.tolist()):
        if p != t:
            k = (names[t], names[p])
            pairs[k] = pairs.get(k, 0) + 1
    return sorted(pairs.items(), key=lambda kv: -kv[1])[:top]


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vitune", default="/tmp/vitune-bin", help="built vitune binary (for demo-data)")
    ap.add_argument("--train-seeds", default="1,3,4,5", help="comma-separated demo-data seeds of the training pool (2 and 12345 are held out)")
    ap.add_argument("--per-class", type=int, default=400, help="training images per class per seed")
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=7, help="passes over the whole training pool")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup-steps", type=int, default=300)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="torch seed (init, shuffling, augmentation)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-only", action="store_true", help="skip training; redo the evaluation and fixture from the committed model")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_seeds = [int(s) for s in args.train_seeds.split(",")]
    assert VAL_SEED not in train_seeds and FRESH_SEED not in train_seeds
    command = "/work/venv/bin/python tools/pretrain_demo_backbone.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    BACKBONE_DIR.mkdir(parents=True, exist_ok=True)
    model_path = BACKBONE_DIR / "model.safetensors"
    config_path = BACKBONE_DIR / "config.json"

    with tempfile.TemporaryDirectory(prefix="vitune-demo-") as tmp:
        tmp = Path(tmp)
        t_start = time.time()

        # ---------------- fresh sample (needed in both modes) ----------------
        render(args.vitune, "source", FRESH_PER_CLASS, FRESH_SEED, tmp / "fresh")
        x_fresh, y_fresh, names_fresh, paths_fresh = load_folders(tmp / "fresh")
        assert len(names_fresh) == NUM_CLASSES, names_fresh

        if not args.eval_only:
            # ---------------- data ----------------
            t0 = time.time()
            xs, ys = [], []
            names = None
            for s in train_seeds:
                render(args.vitune, "source", args.per_class, s, tmp / f"train_s{s}")
                x, y, n, _ = load_folders(tmp / f"train_s{s}")
                assert names is None or n == names
                names = n
                xs.append(x)
                ys.append(y)
            x_tr, y_tr = torch.cat(xs), torch.cat(ys)
            render(args.vitune, "source", args.val_per_class, VAL_SEED, tmp / "val")
            x_val, y_val, names_val, _ = load_folders(tmp / "val")
            assert names_val == names == names_fresh and len(names) == NUM_CLASSES
            t_data = time.time() - t0
            print(f"data: train {tuple(x_tr.shape)} val {tuple(x_val.shape)} fresh {tuple(x_fresh.shape)} "
                  f"({t_data:.1f}s)", flush=True)

            # ---------------- model / optimiser ----------------
            torch.manual_seed(args.seed)
            model = make_model()
            n_params = sum(p.numel() for p in model.parameters())
            decay, no_decay = [], []
            skip = model.no_weight_decay()  # {'pos_embed', 'cls_token', 'dist_token'}
            for name, p in model.named_parameters():
                (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                                     {"params": no_decay, "weight_decay": 0.0}],
                                    lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
            steps_per_epoch = len(x_tr) // args.batch  # drop the last partial batch
            total_steps = steps_per_epoch * args.epochs

            def lr_at(step):
                if step < args.warmup_steps:
                    return args.lr * (step + 1) / args.warmup_steps
                t = (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps)
                return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * t))

            gen = torch.Generator().manual_seed(args.seed + 1)
            print(f"params {n_params}, {steps_per_epoch} steps/epoch, {total_steps} steps", flush=True)

            # ---------------- train ----------------
            t_train0 = time.time()
            step = 0
            history = []
            for epoch in range(args.epochs):
                model.train()
                perm = torch.randperm(len(x_tr), generator=gen)
                run_loss, run_n, ep_loss, ep_n = 0.0, 0, 0.0, 0
                te = time.time()
                for b in range(steps_per_epoch):
                    idx = perm[b * args.batch:(b + 1) * args.batch]
                    xb = random_resized_crop(x_tr[idx].float() / 255.0, gen)
                    xb = (xb - 0.5) / 0.5
                    for g in opt.param_groups:
                        g["lr"] = lr_at(step)
                    loss = F.cross_entropy(model(xb), y_tr[idx], label_smoothing=args.label_smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    run_loss += loss.item(); run_n += 1
                    ep_loss += loss.item(); ep_n += 1
                    if step % 100 == 0:
                        print(f"  ep {epoch + 1} step {step}/{total_steps} loss {run_loss / run_n:.4f} "
                              f"lr {lr_at(step - 1):.2e} ({time.time() - t_train0:.0f}s)", flush=True)
                        run_loss, run_n = 0.0, 0
                val_acc, _ = evaluate(model, x_val, y_val)
                history.append({"epoch": epoch + 1, "train_loss": ep_loss / ep_n, "val_acc": val_acc,
                                 "epoch_s": time.time() - te})
                print(f"epoch {epoch + 1}/{args.epochs}: train loss {ep_loss / ep_n:.4f} "
                      f"val acc {val_acc * 100:.2f}% ({time.time() - te:.0f}s, total {time.time() - t_train0:.0f}s)",
                      flush=True)
            t_train = time.time() - t_train0
            # final train loss: mean (label-smoothed, augmented) loss over the last epoch
            final_loss = ep_loss / ep_n
            val_acc, val_pred = evaluate(model, x_val, y_val)
            val_conf = confusions(val_pred, y_val, names)

            # ---------------- save ----------------
            sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
            assert "head.weight" in sd and sd["head.weight"].shape == (NUM_CLASSES, MODEL_ARGS["embed_dim"])
            save_file(sd, str(model_path), metadata=ST_META)
            write_json(config_path, {
                "architecture": ARCH,
                "num_classes": NUM_CLASSES,
                "num_features": MODEL_ARGS["embed_dim"],
                "global_pool": "token",
                "model_args": MODEL_ARGS,
                "pretrained_cfg": {
                    "input_size": [3, IMG, IMG],
                    "mean": list(MEAN),
                    "std": list(STD),
                    "crop_pct": 1.0,
                    "interpolation": "bicubic",
                },
                "label_names": names,
            })

        # ---------------- reload + fresh evaluation ----------------
        cfg = json.loads(config_path.read_text())
        assert cfg["label_names"] == names_fresh, "class order of config.json differs from the rendered folders"
        ma = cfg["model_args"]
        fresh_model = VisionTransformer(num_classes=cfg["num_classes"], global_pool=cfg["global_pool"],
                                        class_token=True, **ma)
        stored = load_file(str(model_path))
        assert all(v.dtype == torch.float32 for v in stored.values())
        fresh_model.load_state_dict(stored, strict=True)
        fresh_model.eval()
        fresh_acc, fresh_pred = evaluate(fresh_model, x_fresh, y_fresh)
        fresh_conf = confusions(fresh_pred, y_fresh, names_fresh)
        print(f"fresh sample (seed {FRESH_SEED}, {FRESH_PER_CLASS}/class, {len(y_fresh)} images): "
              f"acc {fresh_acc * 100:.2f}%", flush=True)
        if fresh_conf:
            print("  confusions (true -> predicted: count):", fresh_conf)

        # ---------------- parity fixture ----------------
        FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
        pixels = normalise(x_fresh[:2]).contiguous()
        pooled, logits, attns = run_with_attn(fresh_model, pixels)
        save_file({"pixels": pixels}, str(FIXTURE_DIR / "input.safetensors"), metadata=ST_META)
        exp = {"pooled": pooled.float().contiguous(), "logits": logits.float().contiguous()}
        for l, a in enumerate(attns):
            exp[f"attn.{l}"] = a.float().contiguous()
        save_file(exp, str(FIXTURE_DIR / "expected.safetensors"), metadata=ST_META)
        write_json(FIXTURE_DIR / "meta.json", {
            "case": "demo_backbone",
            "backbone": "assets/demo/backbone/model.safetensors",
            "heads": ma["num_heads"],
            "eps": EPS,
            "image_size": [IMG, IMG],
            "pooling": "token",
            "patch_size": ma["patch_size"],
            "embed_dim": ma["embed_dim"],
            "depth": ma["depth"],
            "mlp_ratio": ma["mlp_ratio"],
            "num_classes": cfg["num_classes"],
            "batch": 2,
            "tokens": 1 + (IMG // ma["patch_size"]) ** 2,
            "mean": list(MEAN),
            "std": list(STD),
            "input_source": (f"vitune demo-data --split source --per-class {FRESH_PER_CLASS} "
                             f"--seed {FRESH_SEED} --size {IMG}: first two images in sorted order"),
            "input_images": paths_fresh[:2],
            "input_labels": y_fresh[:2].tolist(),
            "predicted": logits.argmax(1).tolist(),
            "timm_version": timm.__version__,
            "torch_version": torch.__version__,
            "safetensors_version": safetensors.__version__,
            "numpy_version": np.__version__,
        })

        for f in FIXTURE_DIR.iterdir():
            f.chmod(0o644)

        # ---------------- TRAINING.md ----------------
        size = model_path.stat().st_size
        n_params = sum(v.numel() for v in stored.values())
        conf_txt = ", ".join(f"{t}->{p} x{c}" for (t, p), c in fresh_conf) or "none"
        if args.eval_only:
            print(f"eval-only: TRAINING.md left as is (fresh acc {fresh_acc * 100:.2f}%, {size} bytes)")
            return
        hist_rows = "\n".join(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_acc'] * 100:.2f}% | {h['epoch_s']:.0f} |"
            for h in history)
        val_conf_txt = ", ".join(f"{t}->{p} x{c}" for (t, p), c in val_conf) or "none"
        wall = time.time() - t_start
        q_hit = 1 - args.label_smoothing + args.label_smoothing / NUM_CLASSES
        q_miss = args.label_smoothing / NUM_CLASSES
        ls_floor = -q_hit * math.log(q_hit) - (NUM_CLASSES - 1) * (q_miss * math.log(q_miss) if q_miss > 0 else 0.0)
        md = f"""# Demo backbone: training record

`model.safetensors` + `config.json` in this folder are the small ViT that vitune's
embedded demo uses as its frozen backbone. They were produced by
`tools/pretrain_demo_backbone.py` (CPU, PyTorch + timm) and are committed, so
neither the build nor the tests need Python. Everything below was written by
that script from the run that produced the committed files.

## Command

```
{command}
```

(`--vitune` = a built `vitune` binary; its `demo-data` command renders the images.)

## Model

- `timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=96,
  depth=4, num_heads=3, mlp_ratio=4, num_classes=52, global_pool='token', class_token=True)`;
  timm defaults: pre-norm blocks, qkv bias, exact (erf) GELU, LayerNorm eps 1e-6, no layer scale,
  final `norm` then the class token goes to `head`.
- Architecture name in `config.json`: `{ARCH}`; 4x4 = 16 patches + class token = 17 tokens.
- Parameters: {n_params:,} (head included: 96x52 + 52).
- `model.safetensors`: {size:,} bytes, F32, timm state_dict key names, {len(stored)} tensors.
- `label_names` in `config.json` = the 52 source class folder names sorted by name = class index.

## Data

All images come from `vitune demo-data --split source --size 32` (52 classes: 0-9, A-Z and
16 lowercase letters; 32x32 RGB PNG).

- Training pool: `--per-class {args.per_class}` for each seed in {train_seeds}
  = {len(x_tr):,} images ({len(x_tr) // NUM_CLASSES} per class).
- Validation: `--per-class {args.val_per_class} --seed {VAL_SEED}` = {len(x_val):,} images.
- Fresh test sample: `--per-class {FRESH_PER_CLASS} --seed {FRESH_SEED}` = {len(x_fresh)} images.
- Input transform: PNG -> RGB float in [0,1] -> (x - 0.5) / 0.5 per channel.
- Augmentation (training only): RandomResizedCrop(32, scale=(0.6, 1.0), ratio=(3/4, 4/3)),
  torchvision's box sampling, bilinear resize; no flips (characters), nothing else.
  Extra variety comes from rendering several seeds instead of heavier augmentation.

## Optimisation

- AdamW, lr {args.lr:g}, betas (0.9, 0.999), eps 1e-8, weight decay {args.wd:g} on weight
  matrices only (no decay on biases, LayerNorm, `pos_embed`, `cls_token`).
- Schedule per step: linear warm-up over {args.warmup_steps} steps, then cosine from {args.lr:g} to {args.min_lr:g}.
- Batch {args.batch} (last partial batch of each epoch dropped), {args.epochs} epochs x
  {steps_per_epoch} steps = {total_steps} steps ({total_steps * args.batch:,} augmented samples).
- Cross-entropy with label smoothing {args.label_smoothing:g}; no dropout, no drop-path.
- Init: timm's default init with `torch.manual_seed({args.seed})`; shuffling and augmentation use a
  `torch.Generator` seeded with {args.seed + 1}; `torch.use_deterministic_algorithms(True)`,
  {args.threads} threads (OMP_WAIT_POLICY=PASSIVE).
- Machine: {platform.machine()}, {os.cpu_count()} logical CPUs (shared with a running cargo build), CPU only.
- Versions: torch {torch.__version__}, timm {timm.__version__}, safetensors {safetensors.__version__},
  numpy {np.__version__}, Python {platform.python_version()}.

## Results (measured)

| epoch | train loss (mean over epoch, smoothed CE, augmented) | val acc (seed {VAL_SEED}) | seconds |
|---:|---:|---:|---:|
{hist_rows}

- Wall time: {t_train:.0f} s training ({t_train / 60:.1f} min), {wall:.0f} s for the whole script
  (rendering + decoding the data took {t_data:.0f} s).
- Final train loss (last epoch mean, label-smoothed CE on augmented crops; its floor, the
  entropy of the smoothed target, is {ls_floor:.3f}): {final_loss:.4f}.
- Source validation accuracy (seed {VAL_SEED}, {args.val_per_class} per class, {len(x_val)} images):
  **{val_acc * 100:.2f}%**. Most frequent confusions (true->predicted): {val_conf_txt}.
- Fresh-sample accuracy of the saved file, reloaded into a fresh timm model (seed {FRESH_SEED},
  {FRESH_PER_CLASS} per class, {len(x_fresh)} images, eval transform only): **{fresh_acc * 100:.2f}%**
  ({int(round(fresh_acc * len(x_fresh)))}/{len(x_fresh)}). Confusions: {conf_txt}.

## Parity fixture

`tests/fixtures/demo_backbone/` holds the first two images (sorted order: {paths_fresh[0]},
{paths_fresh[1]}) of the fresh sample, normalised (`input.safetensors`: `pixels` [2,3,32,32]),
and timm's outputs for them (`expected.safetensors`: `pooled` [2,96], `logits` [2,52],
`attn.0..3` [2,3,17,17] post-softmax), plus `meta.json`.
"""
        (BACKBONE_DIR / "TRAINING.md").write_text(md)
        for f in [model_path, config_path, BACKBONE_DIR / "TRAINING.md"]:
            f.chmod(0o644)  # safetensors writes 0600
        print(f"wrote {model_path} ({size} bytes), {config_path}, TRAINING.md, fixture in {FIXTURE_DIR}")
        print(f"val acc {val_acc * 100:.2f}%  fresh acc {fresh_acc * 100:.2f}%  train {t_train:.0f}s  wall {wall:.0f}s")


if __name__ == "__main__":
    main()
