#!/usr/bin/env python3
"""Generate the small golden fixtures under ``tests/fixtures/`` for vitune.

How to run (from the repository root)::

    /work/venv/bin/python tools/make_fixtures.py

Requirements: torch, timm, safetensors, numpy and transformers (CPU only).

The generated fixtures are committed to the repository, so ``cargo test``
never needs Python; this script only has to be re-run when the fixtures
themselves must change. It is deterministic (fixed seeds, single thread, CPU,
float32 math) and idempotent: every run rewrites the same files.

Every case is a tiny Vision Transformer (image 32x32, patch 8 -> 4x4 = 16
patches, T = 17 tokens, embed dim 48, depth 2, mlp_ratio 4, 5 classes, batch
N = 2). All parameters are overwritten with random values (timm's default init
leaves biases at 0 and LayerNorm weights at 1, which would make tests weak):

* weights with dim >= 2:      normal(0, 0.2)
* cls_token / pos_embed:      normal(0, 0.5)
* biases:                     normal(0, 0.1)
* LayerNorm weights:          1 + normal(0, 0.1)
* LayerScale gammas:          0.5 + normal(0, 0.2)

Each case lives in ``tests/fixtures/<case>/``:

* ``model.safetensors``    - checkpoint in the layout of the case
* ``config.json``          - only for the cases that have one
* ``input.safetensors``    - ``pixels`` f32 [N,3,H,W] (H,W = run size)
* ``expected.safetensors`` - ``pooled`` f32 [N,D] (features right before the
  head), ``logits`` f32 [N,C], ``attn.{l}`` f32 [N,heads,T,T] (post-softmax
  attention probabilities of layer l) and, for ``timm_resized``,
  ``pos_embed_resampled`` f32 [1,T,D]
* ``meta.json``            - case, heads, eps, image_size (run size),
  checkpoint_image_size, pooling, library versions, ...

Cases: timm_cls, timm_avg_bf16, hf_vit, timm_resized, timm_heads4.

After writing, the script reloads every file, checks shapes, and re-computes
the forward pass with an independent from-scratch implementation (plain
torch.nn.functional ops, reading only model.safetensors + meta.json) to make
sure the fixture semantics are what the Rust side expects.
"""

import inspect
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import timm
from timm.models import vision_transformer as tvit

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures"

IMG = 32
PATCH = 8
DIM = 48
DEPTH = 2
MLP_RATIO = 4
NUM_CLASSES = 5
BATCH = 2
TIMM_EPS = 1e-6
HF_EPS = 1e-12

SEEDS = {
    "timm_cls": 1001,
    "timm_avg_bf16": 1002,
    "hf_vit": 1003,
    "timm_resized": 1004,
    "timm_heads4": 1005,
}

ST_META = {"format": "pt"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@torch.no_grad()
def randomize_(model: nn.Module) -> None:
    """Overwrite EVERY parameter with random values (deterministic given the
    global torch seed; parameters are visited in named_parameters order)."""
    ln_params = set()
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                ln_params.add(id(m.weight))
    seen = 0
    for name, p in model.named_parameters():
        leaf = name.split(".")[-1]
        if leaf in ("cls_token", "pos_embed", "position_embeddings") or name.endswith(
            ("embeddings.cls_token", "embeddings.position_embeddings")
        ):
            p.normal_(0.0, 0.5)
        elif leaf == "gamma" or ".ls1." in name or ".ls2." in name:
            p.normal_(0.0, 0.2).add_(0.5)
        elif id(p) in ln_params:
            p.normal_(0.0, 0.1).add_(1.0)
        elif leaf == "bias":
            p.normal_(0.0, 0.1)
        elif p.dim() >= 2:
            p.normal_(0.0, 0.2)
        else:
            raise RuntimeError(f"don't know how to randomise parameter {name} {tuple(p.shape)}")
        seen += 1
    assert seen == len(list(model.parameters()))


def make_pixels(h: int, w: int) -> torch.Tensor:
    return torch.randn(BATCH, 3, h, w, dtype=torch.float32)


def plain_state_dict(sd: dict, dtype=torch.float32) -> dict:
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k] = v.detach().to(dtype).contiguous().clone()
    return out


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fresh_dir(case: str) -> Path:
    d = OUT / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def timm_vit(img_size: int, num_heads: int, global_pool: str, init_values=None):
    model = tvit.VisionTransformer(
        img_size=img_size,
        patch_size=PATCH,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=num_heads,
        mlp_ratio=MLP_RATIO,
        num_classes=NUM_CLASSES,
        global_pool=global_pool,
        init_values=init_values,
    )
    return model.eval()


@torch.no_grad()
def run_timm(model, pixels):
    """Return pooled, logits, [attn per layer] for a timm VisionTransformer."""
    attns = []
    hooks = []
    for blk in model.blocks:
        blk.attn.fused_attn = False

        def hook(_mod, inp, _out, store=attns):
            store.append(inp[0].detach().clone())

        hooks.append(blk.attn.attn_drop.register_forward_hook(hook))
    feats = model.forward_features(pixels)
    pooled = model.forward_head(feats, pre_logits=True)
    logits = model.forward_head(feats)
    for h in hooks:
        h.remove()
    assert len(attns) == len(model.blocks), (len(attns), len(model.blocks))
    # sanity: pooled -> head gives logits; forward() gives the same logits
    torch.testing.assert_close(model.head(pooled), logits, rtol=0, atol=0)
    full = model(pixels)
    torch.testing.assert_close(full, logits, rtol=1e-6, atol=1e-6)
    for a in attns:
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)), rtol=0, atol=1e-5)
    return pooled.float(), logits.float(), [a.float() for a in attns]


def timm_config(arch: str, num_heads: int, global_pool: str, img: int):
    return {
        "architecture": arch,
        "num_classes": NUM_CLASSES,
        "num_features": DIM,
        "global_pool": global_pool,
        "model_args": {
            "img_size": img,
            "patch_size": PATCH,
            "embed_dim": DIM,
            "depth": DEPTH,
            "num_heads": num_heads,
        },
        "pretrained_cfg": {
            "input_size": [3, img, img],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "crop_pct": 0.9,
            "interpolation": "bicubic",
        },
    }


def base_meta(case, heads, eps, image_size, ckpt_size, pooling):
    return {
        "case": case,
        "heads": heads,
        "eps": eps,
        "image_size": list(image_size),
        "checkpoint_image_size": list(ckpt_size),
        "pooling": pooling,
        "patch_size": PATCH,
        "embed_dim": DIM,
        "depth": DEPTH,
        "mlp_ratio": MLP_RATIO,
        "num_classes": NUM_CLASSES,
        "batch": BATCH,
        "tokens": 1 + (image_size[0] // PATCH) * (image_size[1] // PATCH),
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
    }


def save_expected(d: Path, pooled, logits, attns, extra=None):
    t = {"pooled": pooled.contiguous(), "logits": logits.contiguous()}
    for i, a in enumerate(attns):
        t[f"attn.{i}"] = a.contiguous()
    if extra:
        t.update({k: v.contiguous() for k, v in extra.items()})
    save_file(t, str(d / "expected.safetensors"), metadata=ST_META)


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def case_timm_basic(case: str, arch: str, num_heads: int):
    torch.manual_seed(SEEDS[case])
    d = fresh_dir(case)
    model = timm_vit(IMG, num_heads, "token")
    randomize_(model)
    sd = plain_state_dict(model.state_dict())
    assert "norm.weight" in sd and not any(k.startswith("fc_norm") for k in sd)
    save_file(sd, str(d / "model.safetensors"), metadata=ST_META)
    write_json(d / "config.json", timm_config(arch, num_heads, "token", IMG))
    pixels = make_pixels(IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=ST_META)
    pooled, logits, attns = run_timm(model, pixels)
    save_expected(d, pooled, logits, attns)
    write_json(d / "meta.json", base_meta(case, num_heads, TIMM_EPS, (IMG, IMG), (IMG, IMG), "token"))


def case_timm_avg_bf16():
    case = "timm_avg_bf16"
    torch.manual_seed(SEEDS[case])
    d = fresh_dir(case)
    heads = 3
    model = timm_vit(IMG, heads, "avg", init_values=0.1)
    randomize_(model)
    sd_bf16 = plain_state_dict(model.state_dict(), torch.bfloat16)
    assert any(k.startswith("fc_norm.") for k in sd_bf16), sorted(sd_bf16)
    assert not any(k.startswith("norm.") for k in sd_bf16), sorted(sd_bf16)
    assert "blocks.0.ls1.gamma" in sd_bf16 and "blocks.1.ls2.gamma" in sd_bf16
    assert isinstance(model.norm, nn.Identity)
    save_file(sd_bf16, str(d / "model.safetensors"), metadata=ST_META)
    # round-trip: reload the stored bf16 values as f32 into the model
    stored = load_file(str(d / "model.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in stored.values())
    model.load_state_dict({k: v.float() for k, v in stored.items()}, strict=True)
    pixels = make_pixels(IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=ST_META)
    pooled, logits, attns = run_timm(model, pixels)
    save_expected(d, pooled, logits, attns)
    meta = base_meta(case, heads, TIMM_EPS, (IMG, IMG), (IMG, IMG), "avg")
    meta["checkpoint_dtype"] = "bf16"
    meta["layer_scale"] = True
    meta["note"] = ("no config.json on purpose: heads must come from the caller/fallback; "
                    "expected values were computed with the bf16 weights upcast to f32")
    write_json(d / "meta.json", meta)


def case_hf_vit():
    import transformers
    from transformers import ViTConfig, ViTForImageClassification

    case = "hf_vit"
    torch.manual_seed(SEEDS[case])
    d = fresh_dir(case)
    heads = 4
    cfg = ViTConfig(
        hidden_size=DIM,
        num_hidden_layers=DEPTH,
        num_attention_heads=heads,
        intermediate_size=DIM * MLP_RATIO,
        image_size=IMG,
        patch_size=PATCH,
        num_channels=3,
        num_labels=NUM_CLASSES,
        layer_norm_eps=HF_EPS,
        hidden_act="gelu",
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    cfg._attn_implementation = "eager"
    model = ViTForImageClassification(cfg).eval()
    model.config._attn_implementation = "eager"
    assert model.vit.pooler is None, "ViTForImageClassification must not have a pooler"
    randomize_(model)
    # transformers >= 5 renames the ViT modules in memory (vit.layers.N.attention.q_proj, ...)
    # but save_pretrained() converts back to the classic Hub checkpoint layout
    # (vit.encoder.layer.N.attention.attention.query, ...), which is what real checkpoints use.
    # So let save_pretrained write the checkpoint + config.json and copy them over.
    tmp = d / "_hf_tmp"
    model.save_pretrained(str(tmp), safe_serialization=True)
    stored = load_file(str(tmp / "model.safetensors"))
    sd = plain_state_dict(stored)
    assert set(sd) == set(stored)
    assert "vit.embeddings.cls_token" in sd and "classifier.weight" in sd
    assert "vit.encoder.layer.0.attention.attention.query.weight" in sd, sorted(sd)
    assert not any("pooler" in k for k in sd)
    assert len(sd) == 4 + 16 * DEPTH + 2 + 2, len(sd)
    save_file(sd, str(d / "model.safetensors"), metadata=ST_META)
    cfg_json = json.loads((tmp / "config.json").read_text())
    cfg_json.pop("_attn_implementation", None)
    write_json(d / "config.json", cfg_json)
    shutil.rmtree(tmp)
    pixels = make_pixels(IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=ST_META)
    with torch.no_grad():
        out = model.vit(pixels, output_attentions=True, return_dict=True)
        seq = out.last_hidden_state  # already passed through vit.layernorm
        pooled = seq[:, 0]
        logits = model.classifier(pooled)
        full = model(pixel_values=pixels).logits
        torch.testing.assert_close(full, logits, rtol=0, atol=1e-6)
        attns = [a.detach().clone() for a in out.attentions]
    assert len(attns) == DEPTH and all(a is not None for a in attns)
    # round-trip: the stored legacy-layout checkpoint loads back into transformers unchanged
    reloaded = ViTForImageClassification.from_pretrained(str(d), attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, logits, rtol=0, atol=0)
    save_expected(d, pooled.float(), logits.float(), attns)
    meta = base_meta(case, heads, HF_EPS, (IMG, IMG), (IMG, IMG), "token")
    meta["transformers_version"] = transformers.__version__
    meta["format"] = "hf_vit"
    write_json(d / "meta.json", meta)


def _aa_cubic_weights(in_size: int, out_size: int, a: float = -0.5) -> torch.Tensor:
    """[out,in] weights of torch's antialiased bicubic resize (PIL-style separable filter)."""

    def cubic(t):
        t = abs(t)
        if t < 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        if t < 2:
            return (((t - 5) * t + 8) * t - 4) * a
        return 0.0

    scale = in_size / out_size
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    w = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        row = torch.tensor([cubic((j - center + 0.5) * inv) for j in range(lo, hi)], dtype=torch.float64)
        w[i, lo:hi] = row / row.sum()
    return w


def resample_note() -> str:
    from timm.layers import resample_abs_pos_embed
    sig_f = inspect.signature(tvit.checkpoint_filter_fn)
    sig_r = inspect.signature(resample_abs_pos_embed)
    src = inspect.getsource(resample_abs_pos_embed)
    assert "F.interpolate(posemb, size=new_size, mode=interpolation, align_corners=align_corners, antialias=antialias)" in src
    interp = sig_f.parameters["interpolation"].default
    aa = sig_f.parameters["antialias"].default
    ac = sig_f.parameters["align_corners"].default if "align_corners" in sig_f.parameters else None
    assert (interp, aa, ac) == ("bicubic", True, None), (interp, aa, ac)
    return (
        f"timm {timm.__version__}: checkpoint_filter_fn(interpolation={interp!r}, antialias={aa}, "
        f"align_corners={ac}) -> resample_abs_pos_embed(pos_embed, new_size=model.patch_embed.grid_size, "
        f"num_prefix_tokens=1, ...) (its own defaults: interpolation={sig_r.parameters['interpolation'].default!r}, "
        f"antialias={sig_r.parameters['antialias'].default}, align_corners={sig_r.parameters['align_corners'].default}). "
        f"The cls token is kept as-is; the {IMG // PATCH}x{IMG // PATCH} grid (token order row-major, reshaped to "
        f"[1,D,gh,gw]) goes through F.interpolate(size=new_size, mode='bicubic', align_corners=None (=False, "
        f"half-pixel centres), antialias=True) in float32, is flattened back row-major and appended after the cls "
        f"token. NB: antialias=True selects torch's separable PIL-style filter: cubic kernel a=-0.5 (not the "
        f"a=-0.75 of plain bicubic), taps outside the image dropped and weights renormalised to sum 1 (no edge "
        f"clamping); for upsampling the support is 2 input pixels around centre=(i+0.5)*in/out. "
        f"This differs from antialias=False by up to ~0.17 on unit-variance data."
    )


def case_timm_resized():
    case = "timm_resized"
    torch.manual_seed(SEEDS[case])
    d = fresh_dir(case)
    heads = 3
    run_img = 48
    model32 = timm_vit(IMG, heads, "token")
    randomize_(model32)
    sd = plain_state_dict(model32.state_dict())
    save_file(sd, str(d / "model.safetensors"), metadata=ST_META)
    write_json(d / "config.json", timm_config("vit_tiny_custom", heads, "token", IMG))

    model48 = timm_vit(run_img, heads, "token")
    filtered = tvit.checkpoint_filter_fn(load_file(str(d / "model.safetensors")), model48)
    model48.load_state_dict(filtered, strict=True)
    model48.eval()
    pos = model48.pos_embed.detach().clone().float()
    T = 1 + (run_img // PATCH) ** 2
    assert tuple(pos.shape) == (1, T, DIM), pos.shape
    # independent check of how the pos_embed was resampled
    g = IMG // PATCH
    grid = sd["pos_embed"][:, 1:].reshape(1, g, g, DIM).permute(0, 3, 1, 2)
    ng = run_img // PATCH
    manual = F.interpolate(grid, size=(ng, ng), mode="bicubic", antialias=True, align_corners=False)
    manual = torch.cat([sd["pos_embed"][:, :1], manual.permute(0, 2, 3, 1).reshape(1, ng * ng, DIM)], 1)
    torch.testing.assert_close(manual, pos, rtol=0, atol=1e-6)
    # ... and the explicit PIL-style separable formula described in resample_note reproduces it
    w = _aa_cubic_weights(g, ng)
    sep = torch.einsum("oh,ndhw,pw->ndop", w, grid.double(), w).float()
    sep = torch.cat([sd["pos_embed"][:, :1], sep.permute(0, 2, 3, 1).reshape(1, ng * ng, DIM)], 1)
    torch.testing.assert_close(sep, pos, rtol=0, atol=1e-5)

    pixels = make_pixels(run_img, run_img)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=ST_META)
    pooled, logits, attns = run_timm(model48, pixels)
    save_expected(d, pooled, logits, attns, extra={"pos_embed_resampled": pos})
    meta = base_meta(case, heads, TIMM_EPS, (run_img, run_img), (IMG, IMG), "token")
    meta["resample_interpolation"] = "bicubic"
    meta["resample_antialias"] = True
    meta["resample_align_corners"] = False
    meta["resample_note"] = resample_note()
    write_json(d / "meta.json", meta)


# --------------------------------------------------------------------------
# independent reference forward (for verification only)
# --------------------------------------------------------------------------

HF_MAP = [
    ("vit.embeddings.cls_token", "cls_token"),
    ("vit.embeddings.position_embeddings", "pos_embed"),
    ("vit.embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("vit.layernorm.", "norm."),
    ("classifier.", "head."),
]


def hf_to_timm(sd):
    out = {}
    for k, v in sd.items():
        nk = k
        for a, b in HF_MAP:
            if k.startswith(a):
                nk = b + k[len(a):]
        if k.startswith("vit.encoder.layer."):
            rest = k[len("vit.encoder.layer."):]
            i, sub = rest.split(".", 1)
            sub = (sub.replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
                      .replace("attention.output.dense", "attn.proj")
                      .replace("intermediate.dense", "mlp.fc1")
                      .replace("output.dense", "mlp.fc2"))
            nk = f"blocks.{i}.{sub}"
        out[nk] = v
    # fuse q,k,v
    for i in range(DEPTH):
        p = f"blocks.{i}.attention.attention."
        for t in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{t}"] = torch.cat(
                [out.pop(p + f"{n}.{t}") for n in ("query", "key", "value")], 0)
    return out


def ref_forward(sd, meta, pixels):
    sd = {k: v.float() for k, v in sd.items()}
    if meta["case"] == "hf_vit":
        sd = hf_to_timm(sd)
    eps, H = meta["eps"], meta["heads"]
    x = F.conv2d(pixels, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    N = x.shape[0]
    x = torch.cat([sd["cls_token"].expand(N, -1, -1), x], 1)
    pos = sd["pos_embed"]
    if pos.shape[1] != x.shape[1]:
        g = int(math.isqrt(pos.shape[1] - 1))
        ng = int(math.isqrt(x.shape[1] - 1))
        grid = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(ng, ng), mode="bicubic", antialias=True, align_corners=False)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, ng * ng, -1)], 1)
    x = x + pos
    T, D = x.shape[1], x.shape[2]
    hd = D // H
    attns = []
    for i in range(DEPTH):
        b = f"blocks.{i}."
        h = F.layer_norm(x, (D,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps)
        qkv = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(N, T, 3, H, hd).permute(2, 0, 3, 1, 4)
        a = ((q * hd ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        attns.append(a)
        o = (a @ v).transpose(1, 2).reshape(N, T, D)
        o = F.linear(o, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        if b + "ls1.gamma" in sd:
            o = o * sd[b + "ls1.gamma"]
        x = x + o
        h = F.layer_norm(x, (D,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps)
        h = F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        h = F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        if b + "ls2.gamma" in sd:
            h = h * sd[b + "ls2.gamma"]
        x = x + h
    if meta["pooling"] == "avg":
        pooled = F.layer_norm(x[:, 1:].mean(1), (D,), sd["fc_norm.weight"], sd["fc_norm.bias"], eps)
    else:
        pooled = F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], eps)[:, 0]
    logits = F.linear(pooled, sd["head.weight"], sd["head.bias"])
    return pooled, logits, attns


def verify_and_summarise():
    rows = []
    total = 0
    for case in SEEDS:
        d = OUT / case
        meta = json.loads((d / "meta.json").read_text())
        H, W = meta["image_size"]
        T = 1 + (H // PATCH) * (W // PATCH)
        heads = meta["heads"]
        inp = load_file(str(d / "input.safetensors"))
        exp = load_file(str(d / "expected.safetensors"))
        sd = load_file(str(d / "model.safetensors"))
        assert set(inp) == {"pixels"}
        assert tuple(inp["pixels"].shape) == (BATCH, 3, H, W) and inp["pixels"].dtype == torch.float32
        want = {"pooled": (BATCH, DIM), "logits": (BATCH, NUM_CLASSES)}
        for l in range(DEPTH):
            want[f"attn.{l}"] = (BATCH, heads, T, T)
        if case == "timm_resized":
            want["pos_embed_resampled"] = (1, T, DIM)
        got = {k: tuple(v.shape) for k, v in exp.items()}
        assert got == want, (case, got, want)
        assert all(v.dtype == torch.float32 for v in exp.values())
        want_dtype = torch.bfloat16 if case == "timm_avg_bf16" else torch.float32
        assert all(v.dtype == want_dtype for v in sd.values()), case
        has_cfg = (d / "config.json").exists()
        assert has_cfg == (case != "timm_avg_bf16"), case
        # independent reference forward
        rp, rl, ra = ref_forward(sd, meta, inp["pixels"])
        err = max(
            (rp - exp["pooled"]).abs().max().item(),
            (rl - exp["logits"]).abs().max().item(),
            *[(ra[l] - exp[f"attn.{l}"]).abs().max().item() for l in range(DEPTH)],
        )
        assert err < 1e-4, (case, err)
        files = sorted(p.name for p in d.iterdir())
        size = sum((d / f).stat().st_size for f in files)
        total += size
        rows.append((case, files, size, exp["pooled"].abs().max().item(),
                     exp["logits"].abs().max().item(), err))
    print()
    print(f"{'case':<15} {'bytes':>8} {'max|pooled|':>12} {'max|logits|':>12} {'ref err':>9}  files")
    for case, files, size, mp, ml, err in rows:
        print(f"{case:<15} {size:>8} {mp:>12.4f} {ml:>12.4f} {err:>9.2e}  {', '.join(files)}")
    print(f"total fixture bytes: {total}")
    assert total < 1.5 * 1024 * 1024, total
    for case in SEEDS:
        for f in ("model", "input", "expected"):
            t = load_file(str(OUT / case / f"{f}.safetensors"))
            print(f"  {case}/{f}.safetensors: " + ", ".join(
                f"{k} {str(v.dtype).replace('torch.', '')}{list(v.shape)}" for k, v in sorted(t.items())))


def main():
    os.umask(0o022)
    print(f"torch {torch.__version__}, timm {timm.__version__}, python {sys.version.split()[0]}")
    OUT.mkdir(parents=True, exist_ok=True)
    case_timm_basic("timm_cls", "vit_tiny_custom", 3)
    case_timm_avg_bf16()
    case_hf_vit()
    case_timm_resized()
    case_timm_basic("timm_heads4", "vit_custom_heads4", 4)
    for f in OUT.rglob("*"):
        if f.is_file():
            f.chmod(0o644)  # safetensors writes 0600
    verify_and_summarise()
    print("ok")


if __name__ == "__main__":
    main()
