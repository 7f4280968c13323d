#!/usr/bin/env python3
"""Generate the gradient / optimizer golden fixtures under ``tests/fixtures/``.

How to run (from the repository root)::

    /work/venv/bin/python tools/make_grad_fixtures.py

Requirements: torch, timm, safetensors, numpy (CPU only). The script reads
the backbone checkpoints written by ``tools/make_fixtures.py``
(``tests/fixtures/timm_cls`` and ``tests/fixtures/timm_avg_bf16``) and never
modifies them. It is deterministic (fixed seeds with private generators,
single thread, CPU) and idempotent: each run deletes and rebuilds its own case
folders (``grad_*`` and ``optim``) and nothing else.

What it computes
----------------
A pure-PyTorch reference ViT forward (timm math: pre-norm blocks, fused qkv
with rows ordered q,k,v and head h owning rows h*hd..(h+1)*hd, scale hd^-0.5,
exact erf GELU, LayerNorm eps 1e-6, final ``norm`` + CLS pooling or
``fc_norm`` + average pooling, linear head) with a parameter-efficient tuning
method injected, then the mean cross-entropy loss over a batch of N = 3
images (no label smoothing, no dropout) and, by autograd, the gradient of
every trainable tensor. Methods: linear, bitfit, vpt-shallow, vpt-deep, lora,
adaptformer, convpass, ssf, full, and vpt-deep and ssf on the average-pooled
LayerScale backbone (cases ``vpt-deep-avg``, ``ssf-avg``).

Every trainable tensor starts from deterministic random values that are NOT
the method's usual init (LoRA B, adapter up-projections, biases are random)
so that every gradient is non-trivial; the exceptions are bitfit / full,
whose backbone tensors start at the checkpoint values. The classification
head is always a NEW random head (``head.weight`` normal(0, 0.2),
``head.bias`` normal(0, 0.1)), never the checkpoint's.

Per case, ``tests/fixtures/grad_<method>/``:

* ``tuned.safetensors``    - starting value of every trainable tensor (F32)
* ``input.safetensors``    - ``pixels`` F32 [3,3,32,32], ``labels`` I64 [3]
* ``expected.safetensors`` - ``loss`` F32 with shape [] (0-d scalar) and the
  gradient of every trainable tensor under the same name as in tuned
* ``meta.json``            - method, options, backbone folder, versions, ...

plus ``tests/fixtures/optim/optim.safetensors`` + ``meta.json`` (SGD with
momentum and AdamW reference trajectories, see ``make_optim``).

Checks performed before the script reports ``ok``:

* the reference forward (no method, checkpoint head) matches timm's own
  VisionTransformer logits within 1e-5 on both backbones, and matches the
  ``logits`` stored in the backbone fixtures' expected.safetensors;
* linear / bitfit / full gradients match autograd through timm's own model;
* vpt-shallow / vpt-deep / vpt-deep-avg / adaptformer / convpass logits match
  an implementation that runs timm's own Block modules with the method glued
  around them (convpass via a module that mirrors JieShibo/PETL-ViT), and
  lora logits match timm with the LoRA update merged into qkv.weight;
* for EVERY case, the reference is re-run in float64 and, for every trainable
  tensor, the entry with the largest |grad| and one random entry are checked
  against a central finite difference (h = 1e-6) in float64; the float32
  gradients stored in the fixtures are checked against the float64 ones;
* every stored gradient is non-trivial (no all-zero tensor).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors
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
GRID = IMG // PATCH          # 4
NPATCH = GRID * GRID         # 16
DIM = 48
DEPTH = 2
MLP_RATIO = 4
HEADS = 3
NUM_CLASSES = 5
BATCH = 3
EPS = 1e-6
LABELS = [0, 3, 1]

ST_META = {"format": "pt"}

INPUT_SEED = 4242

# method options (the contract with the Rust side)
VPT_P = 3
LORA_R = 4
LORA_ALPHA = 8.0
ADAPT_B = 8
# Scales other than the methods' defaults (0.1 and 1), so a scale option the Rust side ignored would fail.
ADAPT_S = 0.4
CONV_DIM = 8
CONV_S = 0.6

CASES = {
    # name: (method, backbone folder, seed)
    "linear": ("linear", "timm_cls", 5001),
    "bitfit": ("bitfit", "timm_cls", 5002),
    "vpt-shallow": ("vpt-shallow", "timm_cls", 5003),
    "vpt-deep": ("vpt-deep", "timm_cls", 5004),
    "lora": ("lora", "timm_cls", 5005),
    "adaptformer": ("adaptformer", "timm_cls", 5006),
    "convpass": ("convpass", "timm_cls", 5007),
    "full": ("full", "timm_cls", 5008),
    "ssf": ("ssf", "timm_cls", 5010),
    "vpt-deep-avg": ("vpt-deep", "timm_avg_bf16", 5009),
    "ssf-avg": ("ssf", "timm_avg_bf16", 5011),
}

OPTIM_SEED = 6001


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fresh_dir(name: str) -> Path:
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def versions():
    return {
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "safetensors_version": safetensors.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
    }


def load_backbone(folder: str):
    """Checkpoint tensors as f32 (bf16 upcast exactly), plus pooling info."""
    sd = load_file(str(OUT / folder / "model.safetensors"))
    meta = json.loads((OUT / folder / "meta.json").read_text())
    sd = {k: v.float().contiguous() for k, v in sd.items()}
    pooling = meta["pooling"]
    assert meta["heads"] == HEADS and meta["eps"] == EPS, meta
    assert pooling in ("token", "avg")
    return sd, meta


def backbone_names(sd):
    return [k for k in sd if not k.startswith("head.")]


def randn(g, shape, std, mean=0.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * std + mean).float()


def new_head(g):
    return {
        "head.weight": randn(g, (NUM_CLASSES, DIM), 0.2),
        "head.bias": randn(g, (NUM_CLASSES,), 0.1),
    }


def bitfit_names(sd):
    names = ["patch_embed.proj.bias"]
    for i in range(DEPTH):
        b = f"blocks.{i}."
        names += [b + "norm1.bias", b + "attn.qkv.bias", b + "attn.proj.bias",
                  b + "norm2.bias", b + "mlp.fc1.bias", b + "mlp.fc2.bias"]
    names.append("norm.bias" if "norm.bias" in sd else "fc_norm.bias")
    assert all(n in sd for n in names)
    # every *.bias of the backbone is in the list
    assert sorted(names) == sorted(k for k in backbone_names(sd) if k.endswith(".bias")), names
    return names


def init_trainable(method: str, sd, seed: int):
    """Starting values of the trainable tensors (ordered dict, F32)."""
    g = torch.Generator().manual_seed(seed)
    t = {}
    if method == "linear":
        pass
    elif method == "bitfit":
        for n in bitfit_names(sd):
            t[n] = sd[n].clone()
    elif method == "full":
        for n in backbone_names(sd):
            t[n] = sd[n].clone()
    elif method == "vpt-shallow":
        t["prompt_embeddings"] = randn(g, (1, VPT_P, DIM), 0.5)
    elif method == "vpt-deep":
        t["prompt_embeddings"] = randn(g, (1, VPT_P, DIM), 0.5)
        t["deep_prompt_embeddings"] = randn(g, (DEPTH - 1, VPT_P, DIM), 0.5)
    elif method == "lora":
        for i in range(DEPTH):
            b = f"blocks.{i}.attn."
            for w in ("q", "v"):
                t[b + f"{w}_lora_A"] = randn(g, (LORA_R, DIM), 0.2)
                t[b + f"{w}_lora_B"] = randn(g, (DIM, LORA_R), 0.1)
    elif method == "adaptformer":
        for i in range(DEPTH):
            b = f"blocks.{i}.adaptmlp."
            t[b + "down_proj.weight"] = randn(g, (ADAPT_B, DIM), 0.2)
            t[b + "down_proj.bias"] = randn(g, (ADAPT_B,), 0.1)
            t[b + "up_proj.weight"] = randn(g, (DIM, ADAPT_B), 0.2)
            t[b + "up_proj.bias"] = randn(g, (DIM,), 0.1)
    elif method == "convpass":
        for i in range(DEPTH):
            for which in ("adapter_attn", "adapter_mlp"):
                b = f"blocks.{i}.{which}."
                t[b + "adapter_down.weight"] = randn(g, (CONV_DIM, DIM), 0.2)
                t[b + "adapter_down.bias"] = randn(g, (CONV_DIM,), 0.1)
                t[b + "adapter_conv.weight"] = randn(g, (CONV_DIM, CONV_DIM, 3, 3), 0.2)
                t[b + "adapter_conv.bias"] = randn(g, (CONV_DIM,), 0.1)
                t[b + "adapter_up.weight"] = randn(g, (DIM, CONV_DIM), 0.2)
                t[b + "adapter_up.bias"] = randn(g, (DIM,), 0.1)
    elif method == "ssf":
        # gamma around 1 and beta around 0, wider than the paper's init (std 0.02) so every gradient is clear
        for m in ssf_modules(sd):
            w = ssf_width(m)
            t[m + ".ssf_scale"] = randn(g, (w,), 0.2, mean=1.0)
            t[m + ".ssf_shift"] = randn(g, (w,), 0.1)
    else:
        raise ValueError(method)
    t.update(new_head(g))
    return {k: v.contiguous() for k, v in t.items()}


def ssf_modules(sd):
    """The modules SSF scales and shifts the output of (Lian et al. 2022), in forward order."""
    final = "fc_norm" if "fc_norm.weight" in sd else "norm"
    mods = ["patch_embed"]
    for i in range(DEPTH):
        b = f"blocks.{i}."
        mods += [b + "norm1", b + "attn.qkv", b + "attn.proj", b + "norm2", b + "mlp.fc1", b + "mlp.fc2"]
    return mods + [final]


def ssf_width(module):
    if module.endswith("attn.qkv"):
        return 3 * DIM
    if module.endswith("mlp.fc1"):
        return int(DIM * MLP_RATIO)
    return DIM


def ssf(P, module, y):
    """SSF's y <- gamma * y + beta per channel (identity for other methods)."""
    if module + ".ssf_scale" not in P:
        return y
    return y * P[module + ".ssf_scale"] + P[module + ".ssf_shift"]


def make_inputs():
    g = torch.Generator().manual_seed(INPUT_SEED)
    pixels = torch.randn(BATCH, 3, IMG, IMG, generator=g, dtype=torch.float32)
    labels = torch.tensor(LABELS, dtype=torch.int64)
    return pixels, labels


# --------------------------------------------------------------------------
# reference forward
# --------------------------------------------------------------------------

def quick_gelu(u):
    return u * torch.sigmoid(1.702 * u)


def convpass_ref(z, P, pre):
    """JieShibo/PETL-ViT Convpass on LN output z [N,T,D] (T = 1 + 16)."""
    N, T, _ = z.shape
    assert T == 1 + NPATCH
    w_conv, b_conv = P[pre + "adapter_conv.weight"], P[pre + "adapter_conv.bias"]
    d = quick_gelu(F.linear(z, P[pre + "adapter_down.weight"], P[pre + "adapter_down.bias"]))
    patch = d[:, 1:].reshape(N, GRID, GRID, CONV_DIM).permute(0, 3, 1, 2)
    patch = F.conv2d(patch, w_conv, b_conv, stride=1, padding=1)
    patch = patch.permute(0, 2, 3, 1).reshape(N, NPATCH, CONV_DIM)
    cls = d[:, :1].reshape(N, 1, 1, CONV_DIM).permute(0, 3, 1, 2)
    cls = F.conv2d(cls, w_conv, b_conv, stride=1, padding=1)
    cls = cls.permute(0, 2, 3, 1).reshape(N, 1, CONV_DIM)
    d = quick_gelu(torch.cat([cls, patch], 1))
    return F.linear(d, P[pre + "adapter_up.weight"], P[pre + "adapter_up.bias"])


def ref_logits(P, method, pixels, pooling):
    """P: merged dict backbone + trainable (trainable ones override)."""
    N = pixels.shape[0]
    D, H = DIM, HEADS
    hd = D // H
    x = F.conv2d(pixels, P["patch_embed.proj.weight"], P["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)                      # [N,16,D] row-major grid
    x = ssf(P, "patch_embed", x)
    pos = P["pos_embed"]
    cls = (P["cls_token"] + pos[:, :1]).expand(N, -1, -1)
    x = x + pos[:, 1:]
    vpt = method in ("vpt-shallow", "vpt-deep")
    if vpt:
        prompts = P["prompt_embeddings"].expand(N, -1, -1)   # no position embedding
        x = torch.cat([cls, prompts, x], 1)
    else:
        x = torch.cat([cls, x], 1)
    for i in range(DEPTH):
        b = f"blocks.{i}."
        if method == "vpt-deep" and i >= 1:
            deep = P["deep_prompt_embeddings"][i - 1].unsqueeze(0).expand(N, -1, -1)
            x = torch.cat([x[:, :1], deep, x[:, 1 + VPT_P:]], 1)
        T = x.shape[1]
        h = ssf(P, b + "norm1", F.layer_norm(x, (D,), P[b + "norm1.weight"], P[b + "norm1.bias"], EPS))
        qkv = ssf(P, b + "attn.qkv", F.linear(h, P[b + "attn.qkv.weight"], P[b + "attn.qkv.bias"]))
        q, k, v = qkv.split(D, dim=-1)
        if method == "lora":
            sc = LORA_ALPHA / LORA_R
            a = b + "attn."
            q = q + sc * F.linear(F.linear(h, P[a + "q_lora_A"]), P[a + "q_lora_B"])
            v = v + sc * F.linear(F.linear(h, P[a + "v_lora_A"]), P[a + "v_lora_B"])
        q, k, v = (t.reshape(N, T, H, hd).transpose(1, 2) for t in (q, k, v))
        att = ((q * hd ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(N, T, D)
        o = ssf(P, b + "attn.proj", F.linear(o, P[b + "attn.proj.weight"], P[b + "attn.proj.bias"]))
        if b + "ls1.gamma" in P:
            o = o * P[b + "ls1.gamma"]
        if method == "convpass":
            o = o + CONV_S * convpass_ref(h, P, b + "adapter_attn.")
        x = x + o
        y = x
        h = ssf(P, b + "norm2", F.layer_norm(y, (D,), P[b + "norm2.weight"], P[b + "norm2.bias"], EPS))
        m = ssf(P, b + "mlp.fc1", F.linear(h, P[b + "mlp.fc1.weight"], P[b + "mlp.fc1.bias"]))
        m = F.gelu(m)  # exact erf GELU
        m = ssf(P, b + "mlp.fc2", F.linear(m, P[b + "mlp.fc2.weight"], P[b + "mlp.fc2.bias"]))
        if b + "ls2.gamma" in P:
            m = m * P[b + "ls2.gamma"]
        if method == "convpass":
            m = m + CONV_S * convpass_ref(h, P, b + "adapter_mlp.")
        x = y + m
        if method == "adaptformer":
            a = b + "adaptmlp."
            ad = F.relu(F.linear(y, P[a + "down_proj.weight"], P[a + "down_proj.bias"]))
            x = x + ADAPT_S * F.linear(ad, P[a + "up_proj.weight"], P[a + "up_proj.bias"])
    if pooling == "avg":
        pooled = F.layer_norm(x[:, 1:].mean(1), (D,), P["fc_norm.weight"], P["fc_norm.bias"], EPS)
        pooled = ssf(P, "fc_norm", pooled)
    else:
        pooled = ssf(P, "norm", F.layer_norm(x, (D,), P["norm.weight"], P["norm.bias"], EPS))[:, 0]
    return F.linear(pooled, P["head.weight"], P["head.bias"])


def loss_and_grads(sd, tuned, method, pixels, labels, pooling, dtype):
    params = {k: v.to(dtype).clone().requires_grad_(True) for k, v in tuned.items()}
    P = {k: v.to(dtype) for k, v in sd.items()}
    P.update(params)
    logits = ref_logits(P, method, pixels.to(dtype), pooling)
    loss = F.cross_entropy(logits, labels)
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    return loss.detach(), {n: g.detach() for n, g in zip(names, grads)}, logits.detach()


def loss_only(sd, tuned, method, pixels, labels, pooling):
    P = dict(sd)
    P.update(tuned)
    with torch.no_grad():
        return F.cross_entropy(ref_logits(P, method, pixels, pooling), labels).item()


# --------------------------------------------------------------------------
# independent checks against timm
# --------------------------------------------------------------------------

def timm_model(sd, pooling):
    model = tvit.VisionTransformer(
        img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
        mlp_ratio=MLP_RATIO, num_classes=NUM_CLASSES, global_pool=pooling,
        init_values=0.1 if "blocks.0.ls1.gamma" in sd else None,
    )
    model.load_state_dict(sd, strict=True)
    model.eval()
    for blk in model.blocks:
        blk.attn.fused_attn = False
    return model


def check_forward_vs_timm(folder):
    sd, meta = load_backbone(folder)
    pooling = meta["pooling"]
    model = timm_model(sd, pooling)
    pixels, _ = make_inputs()
    with torch.no_grad():
        want = model(pixels)
        got = ref_logits(sd, "none", pixels, pooling)
        err = (got - want).abs().max().item()
        assert err <= 1e-5, (folder, err)
        # also against the backbone fixture's own stored logits (its own input)
        bin_ = load_file(str(OUT / folder / "input.safetensors"))["pixels"]
        bexp = load_file(str(OUT / folder / "expected.safetensors"))["logits"]
        err2 = (ref_logits(sd, "none", bin_, pooling) - bexp).abs().max().item()
        assert err2 <= 1e-5, (folder, err2)
    print(f"  reference forward vs timm ({folder}, {pooling}): max|dlogits| = {err:.2e}, "
          f"vs stored fixture logits {err2:.2e}")
    return err


def timm_glued_logits(sd, tuned, method, pixels, pooling):
    """Logits computed with timm's own modules, the method glued around them."""
    full = dict(sd)
    full.update({k: v for k, v in tuned.items() if k in sd or k.startswith("head.")})
    if method == "lora":
        sc = LORA_ALPHA / LORA_R
        for i in range(DEPTH):
            a = f"blocks.{i}.attn."
            w = full[a + "qkv.weight"].clone()
            w[:DIM] += sc * tuned[a + "q_lora_B"] @ tuned[a + "q_lora_A"]
            w[2 * DIM:] += sc * tuned[a + "v_lora_B"] @ tuned[a + "v_lora_A"]
            full[a + "qkv.weight"] = w
    model = timm_model(full, pooling)
    if method in ("linear", "bitfit", "full", "lora"):
        with torch.no_grad():
            return model(pixels)
    if method == "ssf":
        # as dongzelian/SSF places them: on the output of each module, fc1's before the activation module
        handles = []
        for m in ssf_modules(sd):
            gamma, beta = tuned[m + ".ssf_scale"], tuned[m + ".ssf_shift"]
            handles.append(model.get_submodule(m).register_forward_hook(
                lambda _mod, _inp, out, gamma=gamma, beta=beta: out * gamma + beta))
        with torch.no_grad():
            out = model(pixels)
        for h in handles:
            h.remove()
        return out

    N = pixels.shape[0]
    with torch.no_grad():
        x = model.patch_embed(pixels)
        x = model._pos_embed(x)                       # [N,17,D]
        if method in ("vpt-shallow", "vpt-deep"):
            pr = tuned["prompt_embeddings"].expand(N, -1, -1)
            x = torch.cat([x[:, :1], pr, x[:, 1:]], 1)
        if method == "convpass":
            adapters = {}
            for i in range(DEPTH):
                for which in ("adapter_attn", "adapter_mlp"):
                    m = PetlConvpass(CONV_DIM, DIM, GRID)
                    pre = f"blocks.{i}.{which}."
                    m.load_state_dict({k[len(pre):]: v for k, v in tuned.items() if k.startswith(pre)})
                    adapters[(i, which)] = m.eval()
        for i, blk in enumerate(model.blocks):
            if method == "vpt-deep" and i >= 1:
                deep = tuned["deep_prompt_embeddings"][i - 1].expand(N, -1, -1)
                x = torch.cat([x[:, :1], deep, x[:, 1 + VPT_P:]], 1)
            if method in ("vpt-shallow", "vpt-deep"):
                x = blk(x)
            elif method == "adaptformer":
                x = x + blk.ls1(blk.attn(blk.norm1(x)))
                pre = f"blocks.{i}.adaptmlp."
                ad = nn.Sequential(nn.Linear(DIM, ADAPT_B), nn.ReLU(), nn.Linear(ADAPT_B, DIM))
                ad.load_state_dict({
                    "0.weight": tuned[pre + "down_proj.weight"], "0.bias": tuned[pre + "down_proj.bias"],
                    "2.weight": tuned[pre + "up_proj.weight"], "2.bias": tuned[pre + "up_proj.bias"]})
                x = x + blk.ls2(blk.mlp(blk.norm2(x))) + ADAPT_S * ad(x)
            elif method == "convpass":
                x = (x + blk.ls1(blk.attn(blk.norm1(x)))
                     + CONV_S * adapters[(i, "adapter_attn")](blk.norm1(x)))
                x = (x + blk.ls2(blk.mlp(blk.norm2(x)))
                     + CONV_S * adapters[(i, "adapter_mlp")](blk.norm2(x)))
            else:
                raise ValueError(method)
        if pooling == "avg":
            assert isinstance(model.norm, nn.Identity)
            pooled = model.fc_norm(x[:, 1:].mean(1))
        else:
            pooled = model.norm(x)[:, 0]
        return model.head(pooled)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class PetlConvpass(nn.Module):
    """Mirror of JieShibo/PETL-ViT convpass/convpass.py ``Convpass`` (dropout off),
    with 768 -> dim_in and 14 -> grid."""

    def __init__(self, dim, dim_in, grid):
        super().__init__()
        self.adapter_conv = nn.Conv2d(dim, dim, 3, 1, 1)
        self.adapter_down = nn.Linear(dim_in, dim)
        self.adapter_up = nn.Linear(dim, dim_in)
        self.act = QuickGELU()
        self.dim = dim
        self.grid = grid

    def forward(self, x):
        B, N, C = x.shape
        g = self.grid
        x_down = self.adapter_down(x)
        x_down = self.act(x_down)
        x_patch = x_down[:, 1:].reshape(B, g, g, self.dim).permute(0, 3, 1, 2)
        x_patch = self.adapter_conv(x_patch)
        x_patch = x_patch.permute(0, 2, 3, 1).reshape(B, g * g, self.dim)
        x_cls = x_down[:, :1].reshape(B, 1, 1, self.dim).permute(0, 3, 1, 2)
        x_cls = self.adapter_conv(x_cls)
        x_cls = x_cls.permute(0, 2, 3, 1).reshape(B, 1, self.dim)
        x_down = torch.cat([x_cls, x_patch], dim=1)
        x_down = self.act(x_down)
        return self.adapter_up(x_down)


def timm_autograd_grads(sd, tuned, pixels, labels, pooling):
    """For linear / bitfit / full: gradients through timm's own model."""
    full = dict(sd)
    full.update(tuned)
    model = timm_model(full, pooling)
    named = dict(model.named_parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for n in tuned:
        named[n].requires_grad_(True)
    loss = F.cross_entropy(model(pixels), labels)
    grads = torch.autograd.grad(loss, [named[n] for n in tuned])
    return loss.detach(), dict(zip(tuned, grads))


def fd_check(sd, tuned, method, pixels, labels, pooling, seed):
    """Float64 central finite differences on two entries of every trainable tensor."""
    sd64 = {k: v.double() for k, v in sd.items()}
    tuned64 = {k: v.double() for k, v in tuned.items()}
    px = pixels.double()
    _, g64, _ = loss_and_grads(sd64, tuned64, method, px, labels, pooling, torch.float64)
    gen = torch.Generator().manual_seed(seed)
    h = 1e-6
    worst = 0.0
    n_checked = 0
    for name, g in g64.items():
        flat = g.reshape(-1)
        idxs = [int(flat.abs().argmax()), int(torch.randint(flat.numel(), (1,), generator=gen))]
        for idx in idxs:
            vals = []
            for sgn in (1.0, -1.0):
                t = dict(tuned64)
                pert = t[name].clone()
                pert.view(-1)[idx] += sgn * h
                t[name] = pert
                vals.append(loss_only(sd64, t, method, px, labels, pooling))
            fd = (vals[0] - vals[1]) / (2 * h)
            an = flat[idx].item()
            err = abs(fd - an)
            assert err <= 1e-7 + 1e-5 * abs(an), (method, name, idx, fd, an)
            worst = max(worst, err / max(abs(an), 1e-3))
            n_checked += 1
    return g64, worst, n_checked


# --------------------------------------------------------------------------
# gradient cases
# --------------------------------------------------------------------------

def method_options(method):
    o = {}
    if method.startswith("vpt"):
        o["p"] = VPT_P
        o["prompts_get_pos_embed"] = False
        o["deep"] = method == "vpt-deep"
    if method == "lora":
        o.update(r=LORA_R, alpha=LORA_ALPHA, scale=LORA_ALPHA / LORA_R, targets=["q", "v"])
    if method == "adaptformer":
        o.update(bottleneck=ADAPT_B, scale=ADAPT_S, placement="parallel to MLP, input = residual before norm2",
                 activation="relu", adapter_layernorm=False)
    if method == "convpass":
        o.update(dim=CONV_DIM, scale=CONV_S, activation="quick_gelu (u*sigmoid(1.702u))",
                 conv="3x3 padding 1 on the 4x4 patch grid; CLS as 1x1 image with the same conv")
    return o


def make_case(case, method, folder, seed, pixels, labels):
    sd, bmeta = load_backbone(folder)
    pooling = bmeta["pooling"]
    d = fresh_dir(f"grad_{case}")
    tuned = init_trainable(method, sd, seed)

    loss, grads, logits = loss_and_grads(sd, tuned, method, pixels, labels, pooling, torch.float32)
    assert list(grads) == list(tuned)
    for n, g in grads.items():
        assert g.shape == tuned[n].shape and g.dtype == torch.float32
        assert torch.isfinite(g).all(), n
        assert g.abs().max().item() > 1e-6, (case, n, "trivial gradient")

    # independent checks
    glued = timm_glued_logits(sd, tuned, method, pixels, pooling)
    ferr = (glued - logits).abs().max().item()
    assert ferr <= 2e-5, (case, ferr)
    terr = None
    if method in ("linear", "bitfit", "full"):
        tl, tg = timm_autograd_grads(sd, tuned, pixels, labels, pooling)
        assert abs(tl.item() - loss.item()) <= 1e-5
        terr = max(((tg[n] - grads[n]).abs().max() / grads[n].abs().max().clamp_min(1e-6)).item()
                   for n in tuned)
        assert terr <= 1e-4, (case, terr)
    g64, fd_worst, n_fd = fd_check(sd, tuned, method, pixels, labels, pooling, seed + 100)
    e32 = max(((g64[n].float() - grads[n]).abs().max() / g64[n].abs().max()).item() for n in grads)
    assert e32 <= 1e-4, (case, e32)

    save_file(tuned, str(d / "tuned.safetensors"), metadata=ST_META)
    save_file({"pixels": pixels.contiguous(), "labels": labels.contiguous()},
              str(d / "input.safetensors"), metadata=ST_META)
    exp = {"loss": loss.reshape(()).float().contiguous()}
    for n, g in grads.items():
        exp[n] = g.contiguous()
    save_file(exp, str(d / "expected.safetensors"), metadata=ST_META)

    meta = {
        "case": case,
        "method": method,
        "options": method_options(method),
        "backbone": folder,
        "backbone_pooling": pooling,
        "backbone_dtype": "bf16 (upcast to f32)" if folder == "timm_avg_bf16" else "f32",
        "heads": HEADS,
        "eps": EPS,
        "image_size": [IMG, IMG],
        "patch_size": PATCH,
        "embed_dim": DIM,
        "depth": DEPTH,
        "num_classes": NUM_CLASSES,
        "batch": BATCH,
        "tokens": 1 + (VPT_P if method.startswith("vpt") else 0) + NPATCH,
        "labels": LABELS,
        "loss": "mean cross-entropy, no label smoothing, no dropout",
        "loss_value": loss.item(),
        "loss_storage": "F32 0-d tensor (shape [])",
        "head": "new random head (head.weight ~ N(0,0.2), head.bias ~ N(0,0.1)); checkpoint head unused",
        "init_note": ("bitfit/full backbone tensors start at the checkpoint values; every other trainable "
                      "tensor is deterministic random (not the method's usual init)"),
        "trainable": {n: list(t.shape) for n, t in tuned.items()},
        "seed": seed,
        "input_seed": INPUT_SEED,
        "checks": {
            "glued_timm_logits_max_abs_err": ferr,
            "timm_autograd_grad_max_rel_err": terr,
            "fd_float64_entries_checked": n_fd,
            "fd_float64_worst_rel_err": fd_worst,
            "f32_vs_f64_grad_max_rel_err": e32,
        },
        **versions(),
    }
    write_json(d / "meta.json", meta)
    print(f"  {case:<13} loss {loss.item():.6f}  timm-glued {ferr:.1e}  "
          f"timm-grad {'-' if terr is None else f'{terr:.1e}'}  fd({n_fd}) {fd_worst:.1e}  f32/f64 {e32:.1e}")
    return loss.item()


# --------------------------------------------------------------------------
# optimizer fixture
# --------------------------------------------------------------------------

SGD_HP = dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay_w=1e-2, weight_decay_b=0.0)
ADAMW_HP = dict(lr=0.01, betas=[0.9, 0.999], eps=1e-8, amsgrad=False, weight_decay_w=0.05, weight_decay_b=0.0)
OPT_STEPS = 4


def run_torch_opt(kind, w0, b0, grads):
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    if kind == "sgd":
        hp = SGD_HP
        opt = torch.optim.SGD(
            [{"params": [w], "weight_decay": hp["weight_decay_w"]},
             {"params": [b], "weight_decay": hp["weight_decay_b"]}],
            lr=hp["lr"], momentum=hp["momentum"], dampening=hp["dampening"],
            nesterov=hp["nesterov"], foreach=False)
    else:
        hp = ADAMW_HP
        opt = torch.optim.AdamW(
            [{"params": [w], "weight_decay": hp["weight_decay_w"]},
             {"params": [b], "weight_decay": hp["weight_decay_b"]}],
            lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"], amsgrad=hp["amsgrad"], foreach=False)
    out = []
    for gw, gb in grads:
        w.grad = gw.clone()
        b.grad = gb.clone()
        opt.step()
        out.append((w.detach().clone(), b.detach().clone()))
    return out


def manual_opt(kind, w0, b0, grads):
    """float64 textbook formulas, for verification."""
    res = []
    state = {}
    params = {"w": w0.double().clone(), "b": b0.double().clone()}
    for t, (gw, gb) in enumerate(grads, start=1):
        for n, g in (("w", gw.double()), ("b", gb.double())):
            p = params[n]
            if kind == "sgd":
                wd = SGD_HP["weight_decay_w"] if n == "w" else SGD_HP["weight_decay_b"]
                g = g + wd * p
                buf = g.clone() if t == 1 else SGD_HP["momentum"] * state[n] + g
                state[n] = buf
                params[n] = p - SGD_HP["lr"] * buf
            else:
                lr, (b1, b2), eps = ADAMW_HP["lr"], ADAMW_HP["betas"], ADAMW_HP["eps"]
                wd = ADAMW_HP["weight_decay_w"] if n == "w" else ADAMW_HP["weight_decay_b"]
                p = p * (1 - lr * wd)
                m, v = state.get(n, (torch.zeros_like(p), torch.zeros_like(p)))
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                state[n] = (m, v)
                mhat = m / (1 - b1 ** t)
                vhat = v / (1 - b2 ** t)
                params[n] = p - lr * mhat / (vhat.sqrt() + eps)
        res.append((params["w"].clone(), params["b"].clone()))
    return res


def make_optim():
    d = fresh_dir("optim")
    g = torch.Generator().manual_seed(OPTIM_SEED)
    w0 = torch.randn(7, 5, generator=g) * 0.5
    b0 = torch.randn(5, generator=g) * 0.5
    grads = [(torch.randn(7, 5, generator=g), torch.randn(5, generator=g)) for _ in range(OPT_STEPS)]
    t = {"w": w0, "b": b0}
    for s, (gw, gb) in enumerate(grads):
        t[f"grad.{s}.w"] = gw
        t[f"grad.{s}.b"] = gb
    for kind in ("sgd", "adamw"):
        traj = run_torch_opt(kind, w0, b0, grads)
        ref = manual_opt(kind, w0, b0, grads)
        for s, ((w, b), (rw, rb)) in enumerate(zip(traj, ref)):
            err = max((w.double() - rw).abs().max().item(), (b.double() - rb).abs().max().item())
            assert err <= 1e-6, (kind, s, err)
            t[f"{kind}.{s}.w"] = w
            t[f"{kind}.{s}.b"] = b
    # the parameters really move and weight decay matters
    assert (t["sgd.3.w"] - w0).abs().max() > 0.1 and (t["adamw.3.w"] - w0).abs().max() > 0.01
    save_file({k: v.float().contiguous() for k, v in t.items()}, str(d / "optim.safetensors"), metadata=ST_META)
    meta = {
        "case": "optim",
        "steps": OPT_STEPS,
        "step_indexing": ("0-based: grad.{s}.* is the gradient fed at the (s+1)-th optimizer step; "
                          "sgd.{s}.* / adamw.{s}.* are the parameters right AFTER that step. "
                          "w / b are the initial values; optimizer state starts empty (SGD momentum "
                          "buffer = first gradient incl. weight decay; AdamW m = v = 0, bias correction "
                          "with t = s+1)"),
        "param_groups": [{"params": ["w"], "shape": [7, 5]}, {"params": ["b"], "shape": [5]}],
        "sgd": {**SGD_HP, "weight_decay_note": "L2 added to the gradient (torch.optim.SGD)",
                "foreach": False},
        "adamw": {**ADAMW_HP, "weight_decay_note": "decoupled: p *= 1 - lr*wd before the Adam update "
                  "(torch.optim.AdamW)", "foreach": False},
        "dtype": "F32 (torch f32 math; verified against float64 textbook formulas within 1e-6)",
        "seed": OPTIM_SEED,
        **versions(),
    }
    write_json(d / "meta.json", meta)
    print(f"  optim: {len(t)} tensors")


# --------------------------------------------------------------------------

def summarise():
    total = 0
    dirs = [OUT / f"grad_{c}" for c in CASES] + [OUT / "optim"]
    print()
    for d in dirs:
        for f in sorted(d.iterdir()):
            sz = f.stat().st_size
            total += sz
            print(f"  {f.relative_to(ROOT)}  {sz}")
    print(f"total bytes: {total}")
    assert total < 1.2 * 1000 * 1000, total
    for c in CASES:
        d = OUT / f"grad_{c}"
        tuned = load_file(str(d / "tuned.safetensors"))
        exp = load_file(str(d / "expected.safetensors"))
        inp = load_file(str(d / "input.safetensors"))
        assert set(exp) == set(tuned) | {"loss"}
        assert exp["loss"].shape == () and exp["loss"].dtype == torch.float32
        assert inp["labels"].dtype == torch.int64 and inp["pixels"].shape == (BATCH, 3, IMG, IMG)
        for n, v in tuned.items():
            assert v.dtype == torch.float32 and exp[n].shape == v.shape


def main():
    os.umask(0o022)
    print(f"torch {torch.__version__}, timm {timm.__version__}, python {sys.version.split()[0]}")
    print("forward checks:")
    check_forward_vs_timm("timm_cls")
    check_forward_vs_timm("timm_avg_bf16")
    pixels, labels = make_inputs()
    print("gradient cases:")
    losses = {}
    for case, (method, folder, seed) in CASES.items():
        losses[case] = make_case(case, method, folder, seed, pixels, labels)
    print("optimizer:")
    make_optim()
    for d in [OUT / f"grad_{c}" for c in CASES] + [OUT / "optim"]:
        for f in d.iterdir():
            f.chmod(0o644)  # safetensors writes 0600
    summarise()
    print("ok")


if __name__ == "__main__":
    main()
