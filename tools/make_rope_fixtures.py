#!/usr/bin/env python3
"""Fixtures for the 2025-26 ViT families (RoPE, SwiGLU, registers), made by timm / transformers on random weights.

How to run (from the repository root)::

    python tools/make_rope_fixtures.py

Requirements: torch, timm, transformers, safetensors (CPU). Deterministic and idempotent: each run deletes and
rebuilds its own folders (listed in ``FORWARD`` and ``GRADIENT`` below) and nothing else; it reuses the helpers of
``tools/make_fixtures.py`` (``mf``), ``tools/make_grad_fixtures.py``
(``mg``) by importing them.

Every model is tiny: image 32x32, patch 8 (a 4x4 grid, 16 patches), width 48, depth 2, 3 heads (head dim 16),
5 classes, eval mode. Each timm model is built by ``timm.create_model(<real architecture name>, img_size=32,
patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5, ...)``, so every other kwarg is the real
definition's (the full kwargs are recorded in each meta.json as ``timm_kwargs``). Every parameter is then
overwritten with random values (as make_fixtures.py does): matrices N(0, 0.2), biases (q_bias / v_bias too)
N(0, 0.1), LayerNorm weights 1 + N(0, 0.1), layer-scale gammas 0.5 + N(0, 0.2), cls / register tokens and pos_embed
N(0, 0.5).

Forward cases (files as in tools/make_fixtures.py: model.safetensors with timm's own state_dict names, config.json
as timm's ``save_config_for_hf`` writes it for a Hub checkpoint, input.safetensors ``pixels`` [2,3,32,32],
expected.safetensors ``pooled`` (``forward_head(x, pre_logits=True)``), ``logits``, ``attn.{l}`` (post-softmax
[N,heads,T,T], from timm's eager attention path), meta.json; plus ``rope.safetensors`` with the ``sin`` and ``cos``
tables [16, 16] (patch x head dim) exactly as the library applies them to q and k):

* ``timm_dinov3``: ``vit_small_patch16_dinov3`` (timm ``Eva``) with ``global_pool='token'`` (upstream DINOv3 pools
  CLS). CLS + 4 registers (``reg_token``), no absolute pos_embed, fused qkv without bias, layer scale
  (``gamma_1``/``gamma_2``), GELU MLP, LayerNorm eps 1e-5, final ``norm``; RoPE 'dinov3' (temperature 100,
  rotate-half layout, coordinates of patch centres normalised to [-1, 1]) on the patch tokens only.
* ``timm_dinov3_qkvb_avg``: ``vit_small_patch16_dinov3_qkvb`` at timm's default pooling: ``global_pool='avg'`` with
  ``use_fc_norm=False``: the final ``norm`` on every token, then the mean of the 16 patch tokens (after CLS and the
  registers), no ``fc_norm``. q and v biases are the parameters ``attn.q_bias`` / ``attn.v_bias`` (k has none: a
  zero non-persistent buffer), next to the fused ``attn.qkv.weight``.
* ``hf_dinov3``: transformers ``DINOv3ViTModel`` (hidden 48, 2 layers, 3 heads, patch 8, image 32, 4 registers,
  intermediate 192, q/v biases, no k bias, rope_theta 100, eps 1e-5); model.safetensors and config.json as
  ``save_pretrained`` writes them (the Hub layout ``layer.N.*``; in memory transformers 5 calls them
  ``model.layer.N.*``); expected ``pooled`` = ``pooler_output`` (final norm of CLS) and ``attn.{l}`` (eager), no
  ``logits`` (no head).
* ``hf_dinov3_gated``: the same tiny ``DINOv3ViTModel`` with ``use_gated_mlp=True`` and ``hidden_act='silu'`` (the
  layout of the H+ and 7B DINOv3 releases, as transformers' convert_dinov3_vit_to_hf.py configures them),
  intermediate 96 (= 2 x 48, the 7B's 8192/4096 ratio; vitune's joined fc1 [gate; up] has 192 = 4 x 48 rows):
  per block ``mlp.gate_proj`` / ``mlp.up_proj`` [96, 48] (+ bias [96]) and ``mlp.down_proj`` [48, 96] (+ bias
  [48]); transformers computes ``down_proj(silu(gate_proj(x)) * up_proj(x))`` (gate_proj through SiLU). Same files
  as ``hf_dinov3`` but no non-square input; meta.json records ``use_gated_mlp``, ``hidden_act``,
  ``intermediate_size``. Its weights and input come from its own seed (2107), drawn after every other case (it is
  built last), so nothing else's draws move. Extra checks: the reload through ``from_pretrained`` reports no
  missing / unexpected keys, builds ``DINOv3ViTGatedMLP`` with SiLU and gives bit-identical hidden states and
  attentions; the reference forward with SiLU on up_proj instead of gate_proj misses the output by > 1e-2.
* ``timm_eva02``: ``eva02_base_patch14_224`` (the EVA-02 layout with separate ``q_proj`` (bias) / ``k_proj`` (no
  bias) / ``v_proj`` (bias), SwiGLU with separate ``fc1_g`` / ``fc1_x`` and the sub-LayerNorm ``mlp.norm``
  (scale_mlp), absolute ``pos_embed`` incl. a CLS row AND RoPE 'cat' (interleaved layout, temperature 10000,
  integer grid positions rescaled by ref_feat_shape (16,16) / grid (4,4) = 4), no layer scale, eps 1e-6,
  ``global_pool='avg'`` with ``fc_norm`` (mean of the patch tokens after CLS)).
* ``timm_rope_reg_avg``: ``vit_base_patch16_rope_reg1_gap_256`` (timm's SBB RoPE ViT): no class token, 1 register,
  no absolute pos_embed, RoPE 'cat' as EVA-02's, fused qkv with ``q_bias``/``v_bias``, layer scale, GELU MLP,
  ``global_pool='avg'`` with ``fc_norm`` (mean of the 16 patch tokens after the register).
* ``timm_dinov2g_reg``: timm ``VisionTransformer`` ``vit_giant_patch14_reg4_dinov2``: SwiGLUPacked MLP (one ``fc1``
  of 2H = 256 rows whose FIRST half goes through SiLU and gates the second, the real mlp_ratio 2.66667*2 gives
  int(48 * 5.33334) = 256), 4 registers, ``no_embed_class`` (pos_embed has only patch rows), ``ls1``/``ls2``
  LayerScale, fused qkv with bias, CLS pooling after ``norm``, eps 1e-6, ImageNet mean/std.

Non-square input (``timm_dinov3`` and ``hf_dinov3`` only; their meta.json has ``"resized_input": [40, 24]``): the
SAME model (same model.safetensors, no resampling of any weight) run on a 40x24 (H x W) input, a grid of 5 rows x 3
columns at patch 8 (15 patches, T = 1 + 4 + 15 = 20 tokens, row-major). timm rebuilds its RoPE table for the input
grid (``dynamic_img_size``: ``rope.get_embed(shape=(5, 3))``), transformers from ``pixel_values``' shape; the
coordinates are normalised per axis (y = 2*(r+0.5)/5 - 1, x = 2*(c+0.5)/3 - 1). Three more files in each folder:

* ``input_40x24.safetensors``: ``pixels`` F32 [2,3,40,24], N(0, 1) from its own generator (seed 2111 for
  ``timm_dinov3``, 2113 for ``hf_dinov3``);
* ``expected_40x24.safetensors``: ``pooled`` [2,48], ``logits`` [2,5] (timm only; hf has no head), ``attn.{l}``
  post-softmax [2,3,20,20], as for the square input;
* ``rope_40x24.safetensors``: ``sin``, ``cos`` [15,16], captured from the library during that forward (timm's
  ``rope.get_embed`` return value split in halves; transformers' ``rope_embeddings`` output).

Checks made before writing: the captured tables equal the stated formula on the 5x3 grid (< 1e-5), the outputs are
bit-identical on a second evaluation, the independent plain-torch reference forward reproduces them (< 1e-4), and
every output (pooled, logits, each attn) moves by more than 1e-2 with RoPE disabled (timm ``model.rope = None``;
transformers cos = 1, sin = 0).

Gradient cases (``grad_<case>``, files as tools/make_grad_fixtures.py: tuned.safetensors, input.safetensors
``pixels`` [3,3,32,32] + ``labels`` I64 [3], expected.safetensors ``loss`` (0-d) + the gradient of every trainable
tensor under vitune's names, meta.json), autograd through timm's own modules with the method glued on (as
make_family_fixtures.py does), a new random head [5, 48], then a float64 re-run (the model cast to double) and
central finite differences (h = 1e-6) on two entries of every trainable tensor:

* on ``timm_dinov3``: ``dinov3-vpt-deep`` (3 prompts), ``dinov3-lora`` (rank 2, alpha 4, on qkv's q and v rows),
  ``dinov3-ssf``, ``dinov3-adaptformer``, ``dinov3-linear`` (the linear probe: only ``head.weight`` /
  ``head.bias``), ``dinov3-vpt-shallow`` (3 prompts, ``prompt_embeddings`` [1,3,D] + head, no deep prompts),
  ``dinov3-full`` (below);
* on ``timm_dinov2g_reg``: ``dinov2g-vpt-deep``, ``dinov2g-lora``, ``dinov2g-bitfit`` (every ``*.bias``),
  ``dinov2g-full`` (below);
* on ``timm_eva02``: ``eva02-vpt-deep``, ``eva02-lora``, ``eva02-ssf``, ``eva02-convpass``, ``eva02-bitfit``,
  ``eva02-full`` (below);
* on ``timm_rope_reg_avg`` (no CLS, 1 register, average pool + ``fc_norm``): ``rope-vpt-deep`` (3 prompts after
  the register; the average includes the prompts, as ``nocls-vpt-deep`` / ``vpt-deep-avg`` do).

``eva02-bitfit`` and ``eva02-full`` train EVA-02 under vitune's names after its load-time joining
(src/model/load.rs ``eva_to_vit``): ``blocks.{i}.attn.qkv.weight`` [3D, D] = [q_proj; k_proj; v_proj] (rows
q,k,v), ``blocks.{i}.attn.qkv.bias`` [3D] = [q_proj.bias | k | v_proj.bias] whose k third starts at ZERO (timm's
k_proj has no bias) and is trained as one tensor with the rest (its gradient is NOT zero under RoPE: the rotation
makes a constant key offset position dependent), ``blocks.{i}.mlp.fc1.weight`` [2H, D] / ``.bias`` [2H] =
[fc1_g; fc1_x] (gate rows first); every other name is timm's. Autograd runs through timm's own Eva
(``torch.func.functional_call``, the joined tensors cut into q_proj/k_proj/v_proj and fc1_g/fc1_x; the k bias added
to k_proj's output by a forward hook). BitFit's list is vitune's fixed one (src/tuning/bitfit.rs ``names()``):
patch_embed.proj.bias, per block norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2 biases, then
``fc_norm.bias``; NOT the SwiGLU sub-LayerNorm's ``mlp.norm.bias``. Full fine-tuning trains every tensor of the
joined backbone (``cls_token``, ``pos_embed`` [1,17,D], patch_embed, norms, joined qkv/fc1, ``mlp.norm.*``,
``mlp.fc2.*``, ``fc_norm.*``) plus the new head. Backbone tensors start at the checkpoint's values (the k bias at 0).
Extra checks for these two: the start values equal model.safetensors joined as vitune does and give timm's own
logits; the gradients equal autograd through the independent plain-torch ``ref_forward`` written on the joined
layout (every tensor, k bias included) and, cut apart, timm's own parameters' gradients; the k bias's largest
gradient entry per block passes a float64 finite difference too. ``dinov3-linear``'s head gradient is also checked
against the closed form from timm's pooled feature; ``rope-vpt-deep`` checks that its logits are fc_norm of the mean
over every token after the register (prompts included) and differ from the mean over the patches only.

``dinov3-full`` and ``dinov2g-full`` (full fine-tuning; drawn after every other case, hf_dinov3_gated included:
heads from their own generator, seed 2201, dinov3's first; case seeds 2317 / 2318) train every tensor of the
backbone AS VITUNE LOADS IT (src/model/load.rs; src/tuning/full.rs trains every loaded tensor but the head) plus a
new random head [5, D]; backbone tensors start at model.safetensors' values:

* ``dinov3-full`` (timm Eva): ``blocks.{i}.gamma_1`` / ``gamma_2`` are ``blocks.{i}.ls1.gamma`` / ``ls2.gamma``
  (trained); the checkpoint has no qkv bias, so ``blocks.{i}.attn.qkv.bias`` [3D] (rows q,k,v) is one of vitune's
  absent biases (``optional_biases``: patch_embed.proj, per block attn.qkv / attn.proj / mlp.fc1 / mlp.fc2, where
  the checkpoint lacks them): zero at the start and trained (each of its thirds, k included, has a non-zero
  gradient under RoPE); no ``pos_embed`` (vitune adds none); ``cls_token``, ``reg_token``, patch_embed, norms,
  qkv/proj/fc1/fc2, ``norm.*``.
* ``dinov2g-full`` (timm VisionTransformer, timm's own names, no absent biases) with ``pos_embed`` as vitune loads a
  ``no_embed_class`` one (``finish``): [1, 1+16, D], a ZERO row for CLS in front of the checkpoint's 16 patch rows
  (the registers get no position), trained too: it is added to CLS, so its gradient equals ``cls_token``'s.

Autograd runs through timm's own modules (``torch.func.functional_call``: the gammas under Eva's names, each absent
bias added to its bias-free nn.Linear's output by a forward hook, the CLS row of pos_embed added to timm's
cls_token and the other rows as timm's patch-only pos_embed). Extra checks: the tensor list is vitune's for the
backbone and the start values are model.safetensors' as vitune loads them (absent biases and the CLS row zero), at
which the glue gives timm's own logits; the gradients equal autograd through ``ref_forward`` (on vitune's layout)
and timm's own parameters' gradients; every absent bias (each third of a qkv bias apart) has a non-zero gradient
whose largest entry passes a float64 finite difference, as does the largest entry of dinov2g's CLS row.

Conventions (as in make_family_fixtures.py): VPT prompts go after CLS and the registers (after every prefix token:
the one register of ``timm_rope_reg_avg``), before the patches, get no position embedding and are NOT rotated (each
block's ``attn.num_prefix_tokens`` is raised by the prompt count, so timm's rope skips them); deep prompts replace
the prompt rows before blocks 1..L-1 (VPT-shallow: none); the head reads timm's pooled feature, so an average pool
(EVA-02, ``timm_rope_reg_avg``) averages every token after CLS/registers, the prompts included (as timm's
``global_pool_nlc`` after its prefix tokens does). LoRA: W += (alpha/r) B A on q's and v's weight (the fused qkv's
rows 0..D and 2D..3D; EVA-02's ``q_proj``/``v_proj``, which vitune fuses into ``attn.qkv`` rows q,k,v). SSF (names
as grad_ssf): the output of patch_embed, norm1, attn.qkv (3D wide; EVA-02: the q/k/v projections' outputs, rows
q,k,v), attn.proj, norm2, mlp.fc1 (the 2H-wide fc1 output before the gating; EVA-02: [fc1_g | fc1_x] outputs, gate
rows first, as vitune fuses them), mlp.fc2, and the final norm (``norm``, or ``fc_norm`` after the average); not on
EVA-02's sub-LN ``mlp.norm``. AdaptFormer: parallel to the MLP, input the residual stream before norm2, scale 0.4,
bottleneck 8, ReLU, outside the layer scale. Convpass (EVA-02: CLS + 16 patches): JieShibo/PETL-ViT's module
(``mg.PetlConvpass``) on norm1's and norm2's outputs, scale 0.6, dim 8.
"""

import copy
import json
import math
import shutil
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import timm
import timm.models.eva as teva
import timm.models.vision_transformer as tvit
from timm.models._hub import save_config_for_hf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
import make_grad_fixtures as mg  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
IMG, PATCH, DIM, DEPTH, HEADS, CLASSES = 32, 8, 48, 2, 3, 5
HD = DIM // HEADS
GRID = IMG // PATCH
NPATCH = GRID * GRID
META = {"generator": "tools/make_rope_fixtures.py"}
SIZE = dict(img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_classes=CLASSES)

VPT_P, LORA_R, LORA_ALPHA = 3, 2, 4.0
ADAPT_B, ADAPT_S = 8, 0.4
CONV_DIM, CONV_S = 8, 0.6
LABELS = [0, 3, 1]

# case: (real timm architecture, extra kwargs beyond SIZE, seed)
TIMM_CASES = {
    "timm_dinov3": ("vit_small_patch16_dinov3", dict(global_pool="token"), 2101),
    "timm_dinov3_qkvb_avg": ("vit_small_patch16_dinov3_qkvb", {}, 2102),
    "timm_eva02": ("eva02_base_patch14_224", {}, 2104),
    "timm_rope_reg_avg": ("vit_base_patch16_rope_reg1_gap_256", {}, 2105),
    "timm_dinov2g_reg": ("vit_giant_patch14_reg4_dinov2", {}, 2106),
}
HF_SEED = 2103
# hf_dinov3_gated: the gated (SwiGLU) DINOv3ViTModel of the H+ / 7B releases; its own seed, drawn after every other
# case (main() builds it last), so that nothing else's random draws move
HF_GATED_SEED = 2107
HF_GATED_INTER = 2 * DIM             # intermediate_size 96: 96/48 = 2 (the 7B's 8192/4096), fused [gate; up] 192 = 4*48

# the non-square input of the DINOv3 forward cases (dynamic size: the rope grid is rebuilt for it)
RH, RW = 40, 24                      # 5 x 3 patches
RGRID = (RH // PATCH, RW // PATCH)
RESIZED_SEEDS = {"timm_dinov3": 2111, "hf_dinov3": 2113}


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------

def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2) + "\n")


def versions():
    import transformers
    return {"timm_version": timm.__version__, "torch_version": torch.__version__,
            "transformers_version": transformers.__version__}


def fresh(case):
    d = OUT / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def jsonable(v):
    """A kwarg value as JSON (partials and classes by name)."""
    if isinstance(v, partial):
        inner = jsonable(v.func)
        args = ", ".join(f"{k}={jsonable(x)}" for k, x in v.keywords.items())
        return f"{inner}({args})"
    if isinstance(v, type) or callable(v):
        return f"{getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', repr(v))}"
    if isinstance(v, tuple):
        return [jsonable(x) for x in v]
    return v


def create_timm(arch, extra):
    """timm.create_model(arch, **SIZE, **extra), and the full kwargs its factory passed on (the real definition's
    model_args updated with ours)."""
    captured = {}
    mod, fn_name = (teva, "_create_eva") if arch in teva.__dict__ else (tvit, "_create_vision_transformer")
    orig = getattr(mod, fn_name)

    def spy(variant, pretrained=False, **kw):
        captured.update(kw)
        return orig(variant, pretrained, **kw)

    setattr(mod, fn_name, spy)
    try:
        model = timm.create_model(arch, pretrained=False, **SIZE, **extra)
    finally:
        setattr(mod, fn_name, orig)
    assert captured, arch
    plumbing = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")  # create_model's own, all None here
    assert all(captured.get(k) is None for k in plumbing), captured
    return model.eval(), {k: jsonable(v) for k, v in captured.items() if k not in plumbing}


@torch.no_grad()
def randomize_(model):
    """Every parameter random (mf.randomize_'s distributions, extended to Eva's names and register tokens)."""
    ln = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm) and m.weight is not None}
    for name, p in model.named_parameters():
        leaf = name.split(".")[-1]
        if leaf in ("cls_token", "reg_token", "pos_embed", "register_tokens", "mask_token"):
            p.normal_(0.0, 0.5)
        elif leaf in ("gamma_1", "gamma_2", "gamma", "lambda1"):
            p.normal_(0.0, 0.2).add_(0.5)
        elif id(p) in ln:
            p.normal_(0.0, 0.1).add_(1.0)
        elif leaf in ("bias", "q_bias", "v_bias"):
            p.normal_(0.0, 0.1)
        elif p.dim() >= 2:
            p.normal_(0.0, 0.2)
        else:
            raise RuntimeError(f"don't know how to randomise {name} {tuple(p.shape)}")


def randn(g, shape, std, mean=0.0):
    return torch.randn(*shape, generator=g) * std + mean


def new_head(g):
    return {"head.weight": randn(g, (CLASSES, DIM), 0.2), "head.bias": randn(g, (CLASSES,), 0.1)}


def is_eva(model):
    return isinstance(model, teva.Eva)


# --------------------------------------------------------------------------------------------------------------
# rope facts and an independent reference forward (checks that the facts in meta.json / the report are right)
# --------------------------------------------------------------------------------------------------------------

def rope_tables(kind, temperature, ref=None, grid=GRID, hd=HD):
    """(sin, cos) [gh*gw, hd] from the formulas stated in meta.json (float64, cast to float32); grid is an int
    (square) or (gh, gw) (rows, columns)."""
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    ry = torch.arange(gh, dtype=torch.float64)
    rx = torch.arange(gw, dtype=torch.float64)
    nb = hd // 4
    j = torch.arange(nb, dtype=torch.float64)
    if kind == "dinov3":
        cy = 2.0 * (ry + 0.5) / gh - 1.0                      # patch centres in [-1, 1], per axis
        cx = 2.0 * (rx + 0.5) / gw - 1.0
        periods = temperature ** (4.0 * j / hd)               # = temperature ** (2j / (hd/2))
        freq = 2 * math.pi / periods
    else:  # 'cat' (EVA-02, timm RoPE ViT)
        cy = ry * (ref / gh)                                 # integer index rescaled to the reference grid
        cx = rx * (ref / gw)
        freq = temperature ** (-j / nb)                      # 1 / temperature ** (j / (hd/4))
    yy, xx = torch.meshgrid(cy, cx, indexing="ij")           # row-major: token t = row*gw + col
    ang = torch.cat([yy.reshape(-1, 1) * freq, xx.reshape(-1, 1) * freq], 1)   # [P, hd/2]: y bands, x bands
    if kind == "dinov3":
        ang = torch.cat([ang, ang], 1)                       # rotate-half layout
    else:
        ang = ang.repeat_interleave(2, 1)                    # interleaved layout
    return ang.sin().float(), ang.cos().float()


def apply_rope(x, sin, cos, half):
    if half:
        rot = torch.cat([-x[..., x.shape[-1] // 2:], x[..., :x.shape[-1] // 2]], -1)
    else:
        rot = torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)
    return x * cos + rot * sin


def canonical(sd, spec):
    """The checkpoint in one layout (what vitune fuses at load): fused qkv (rows q,k,v, zero k bias), fc1 of 2H
    rows with the SiLU-gated half first, per-block gammas."""
    c = {}
    pre = spec["block_prefix"]
    for i in range(DEPTH):
        b = f"{pre}{i}."
        o = f"blocks.{i}."
        if spec["src"] == "hf":
            a = b + "attention."
            W = torch.cat([sd[a + f"{n}_proj.weight"] for n in "qkv"], 0)
            bias = torch.cat([sd[a + "q_proj.bias"], torch.zeros(DIM), sd[a + "v_proj.bias"]])
            c.update({o + "proj.w": sd[a + "o_proj.weight"], o + "proj.b": sd[a + "o_proj.bias"],
                      o + "g1": sd[b + "layer_scale1.lambda1"], o + "g2": sd[b + "layer_scale2.lambda1"],
                      o + "fc1.w": sd[b + "mlp.up_proj.weight"], o + "fc1.b": sd[b + "mlp.up_proj.bias"],
                      o + "fc2.w": sd[b + "mlp.down_proj.weight"], o + "fc2.b": sd[b + "mlp.down_proj.bias"]})
            if b + "mlp.gate_proj.weight" in sd:         # gated (use_gated_mlp): fc1 = [gate_proj; up_proj]
                first, second = ("up", "gate") if spec.get("swap_gate") else ("gate", "up")
                for leaf in ("weight", "bias"):
                    c[o + f"fc1.{leaf[0]}"] = torch.cat([sd[b + f"mlp.{first}_proj.{leaf}"],
                                                        sd[b + f"mlp.{second}_proj.{leaf}"]], 0)
        else:
            a = b + "attn."
            if a + "q_proj.weight" in sd:
                W = torch.cat([sd[a + f"{n}_proj.weight"] for n in "qkv"], 0)
                bias = torch.cat([sd[a + "q_proj.bias"], torch.zeros(DIM), sd[a + "v_proj.bias"]])
            else:
                W = sd[a + "qkv.weight"]
                if a + "q_bias" in sd:
                    bias = torch.cat([sd[a + "q_bias"], torch.zeros(DIM), sd[a + "v_bias"]])
                else:
                    bias = sd.get(a + "qkv.bias", torch.zeros(3 * DIM))
            c.update({o + "proj.w": sd[a + "proj.weight"], o + "proj.b": sd[a + "proj.bias"]})
            for g, names in (("g1", ("gamma_1", "ls1.gamma")), ("g2", ("gamma_2", "ls2.gamma"))):
                for n in names:
                    if b + n in sd:
                        c[o + g] = sd[b + n]
            m = b + "mlp."
            if m + "fc1_g.weight" in sd:
                c[o + "fc1.w"] = torch.cat([sd[m + "fc1_g.weight"], sd[m + "fc1_x.weight"]], 0)
                c[o + "fc1.b"] = torch.cat([sd[m + "fc1_g.bias"], sd[m + "fc1_x.bias"]], 0)
            else:
                c[o + "fc1.w"], c[o + "fc1.b"] = sd[m + "fc1.weight"], sd[m + "fc1.bias"]
            c[o + "fc2.w"], c[o + "fc2.b"] = sd[m + "fc2.weight"], sd[m + "fc2.bias"]
            if m + "norm.weight" in sd:
                c[o + "mlpnorm.w"], c[o + "mlpnorm.b"] = sd[m + "norm.weight"], sd[m + "norm.bias"]
        c[o + "qkv.w"], c[o + "qkv.b"] = W, bias
        c[o + "n1.w"], c[o + "n1.b"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
        c[o + "n2.w"], c[o + "n2.b"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
    return c


def ref_forward(sd, spec, pixels, c=None):
    """Plain-torch forward from model.safetensors + the stated facts (spec) only; ``c`` the blocks' tensors in
    the joined layout of ``canonical`` (default: canonical(sd, spec))."""
    c = canonical(sd, spec) if c is None else c
    eps, hf = spec["eps"], spec["src"] == "hf"
    pw = sd["embeddings.patch_embeddings.weight" if hf else "patch_embed.proj.weight"]
    pb = sd["embeddings.patch_embeddings.bias" if hf else "patch_embed.proj.bias"]
    x = F.conv2d(pixels, pw, pb, stride=PATCH).flatten(2).transpose(1, 2)
    N = x.shape[0]
    pre = []
    cls = sd.get("embeddings.cls_token" if hf else "cls_token")
    reg = sd.get("embeddings.register_tokens" if hf else "reg_token")
    if cls is not None:
        pre.append(cls.expand(N, -1, -1))
    if reg is not None:
        pre.append(reg.expand(N, -1, -1))
    pos = sd.get("pos_embed")
    if pos is not None and pos.shape[1] == NPATCH:       # no_embed_class: patches only
        x = x + pos
        pos = None
    if pos is not None and cls is not None and reg is not None and pos.shape[1] == 1 + NPATCH:
        # vitune's layout of a no_embed_class pos_embed (src/model/load.rs finish): a CLS row prepended (zero at
        # load), added to CLS; the registers get no position; the other rows go to the patches
        pre[0] = pre[0] + pos[:, :1]
        x = x + pos[:, 1:]
        pos = None
    x = torch.cat(pre + [x], 1)
    if pos is not None:
        x = x + pos
    k = len(pre) and sum(t.shape[1] for t in pre)
    rope = spec.get("rope")
    if rope:
        grid = (pixels.shape[2] // PATCH, pixels.shape[3] // PATCH)
        sin, cos = rope_tables(rope["kind"], rope["temperature"], rope.get("ref"), grid)
    T = x.shape[1]
    attns = []
    for i in range(DEPTH):
        o = f"blocks.{i}."
        h = F.layer_norm(x, (DIM,), c[o + "n1.w"], c[o + "n1.b"], eps)
        q, kk, v = F.linear(h, c[o + "qkv.w"], c[o + "qkv.b"]).reshape(N, T, 3, HEADS, HD).permute(2, 0, 3, 1, 4)
        if rope:
            half = rope["kind"] == "dinov3"
            q = torch.cat([q[:, :, :k], apply_rope(q[:, :, k:], sin, cos, half)], 2)
            kk = torch.cat([kk[:, :, :k], apply_rope(kk[:, :, k:], sin, cos, half)], 2)
        a = ((q * HD ** -0.5) @ kk.transpose(-2, -1)).softmax(-1)
        attns.append(a)
        y = F.linear((a @ v).transpose(1, 2).reshape(N, T, DIM), c[o + "proj.w"], c[o + "proj.b"])
        x = x + (y * c[o + "g1"] if o + "g1" in c else y)
        h = F.layer_norm(x, (DIM,), c[o + "n2.w"], c[o + "n2.b"], eps)
        h = F.linear(h, c[o + "fc1.w"], c[o + "fc1.b"])
        if spec["mlp"] == "swiglu":
            g, u = h.chunk(2, -1)
            h = F.silu(g) * u
            if o + "mlpnorm.w" in c:
                h = F.layer_norm(h, (h.shape[-1],), c[o + "mlpnorm.w"], c[o + "mlpnorm.b"], eps)
        else:
            h = F.gelu(h)
        y = F.linear(h, c[o + "fc2.w"], c[o + "fc2.b"])
        x = x + (y * c[o + "g2"] if o + "g2" in c else y)
    if "norm.weight" in sd:
        x = F.layer_norm(x, (DIM,), sd["norm.weight"], sd["norm.bias"], eps)
    pooled = x[:, 0] if spec["pool"] == "token" else x[:, k:].mean(1)
    if "fc_norm.weight" in sd:
        pooled = F.layer_norm(pooled, (DIM,), sd["fc_norm.weight"], sd["fc_norm.bias"], eps)
    logits = F.linear(pooled, sd["head.weight"], sd["head.bias"]) if "head.weight" in sd else None
    return pooled, logits, attns


DINOV3_ROPE = {
    "type": "dinov3 (timm RotaryEmbeddingDinoV3 / transformers DINOv3ViTRopePositionEmbedding)",
    "temperature": 100.0,
    "head_dim": HD,
    "frequencies": "period_j = temperature ** (4*j/head_dim) (= temperature ** (2j/(head_dim/2))), "
                   "j = 0..head_dim/4-1; angle = 2*pi*coord/period_j",
    "coordinates": "patch (row r, col c) of an h x w grid (tokens row-major): y = 2*(r+0.5)/h - 1, "
                   "x = 2*(c+0.5)/w - 1 (patch centres normalised per axis to [-1, 1]; eval mode: no "
                   "shift/jitter/rescale)",
    "angles_per_token": "head_dim/2 angles: [2pi*y/period_0 .. 2pi*y/period_{hd/4-1}, "
                        "2pi*x/period_0 .. 2pi*x/period_{hd/4-1}]",
    "layout": "rotate-half: sin/cos = cat(sin(angles), sin(angles)), i.e. dims d and d+head_dim/2 share one angle "
              "(the two halves' sin/cos are equal); q' = q*cos + cat(-q[hd/2:], q[:hd/2])*sin",
    "rotated": "q and k (after the qkv bias, before the head_dim^-0.5 scale) of the patch tokens only; CLS and "
               "registers are not rotated; v never",
}


def cat_rope(ref):
    return {
        "type": "cat (timm RotaryEmbeddingCat, in_pixels=False, grid_type 'index')",
        "temperature": 10000.0,
        "head_dim": HD,
        "ref_feat_shape": [ref, ref],
        "frequencies": "band_j = 1 / temperature ** (j/(head_dim/4)), j = 0..head_dim/4-1 (no 2*pi); "
                       "angle = pos*band_j",
        "coordinates": f"patch (row r, col c) of an h x w grid (tokens row-major): y = r * ref_h / h, "
                       f"x = c * ref_w / w (integer indices rescaled to ref_feat_shape; here 4x4 grid, ref "
                       f"{ref}: y, x in {{0, {ref // GRID}, {2 * ref // GRID}, {3 * ref // GRID}}}); no centring, "
                       f"no normalisation, grid_offset 0",
        "angles_per_token": "head_dim/2 angles: [y*band_0 .. y*band_{hd/4-1}, x*band_0 .. x*band_{hd/4-1}]",
        "layout": "interleaved: angle m drives the pair (2m, 2m+1): q'[2m] = q[2m]cos - q[2m+1]sin, "
                  "q'[2m+1] = q[2m+1]cos + q[2m]sin (sin/cos tables = repeat_interleave(2))",
        "rotated": "q and k (after bias, before the head_dim^-0.5 scale) of the patch tokens only (after the "
                   "num_prefix_tokens CLS/register tokens); v never",
    }


# --------------------------------------------------------------------------------------------------------------
# forward cases
# --------------------------------------------------------------------------------------------------------------

def spec_of(case, model):
    """The facts the independent reference needs (also written into meta.json)."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, RotaryEmbeddingDinoV3

    eps = model.blocks[0].norm1.eps
    r = getattr(model, "rope", None)
    half = {blk.attn.rotate_half for blk in model.blocks} if r is not None else None
    if isinstance(r, RotaryEmbeddingDinoV3):
        assert (r.temperature, r.rotate_half, r.normalize_coords, r.grid_offset, r.grid_indexing, r.min_period,
                r.max_period, r.dim, half) == (100.0, True, "separate", 0.0, "ij", None, None, HD, {True}), vars(r)
        assert model.dynamic_img_size, "the rope table is rebuilt for every input grid"
        rope = {"kind": "dinov3", "temperature": 100.0}
    elif isinstance(r, RotaryEmbeddingCat):
        assert (r.temperature, r.in_pixels, r.grid_type, tuple(r.ref_feat_shape), r.rotate_half, r.grid_offset,
                r.grid_indexing, r.dim, half) == (10000.0, False, "index", (16, 16), False, 0.0, "ij", HD,
                                                  {False}), vars(r)
        rope = {"kind": "cat", "temperature": 10000.0, "ref": 16}
    else:
        assert r is None and not is_eva(model), type(r)
        rope = None
    mlp = "swiglu" if (hasattr(model.blocks[0].mlp, "fc1_g") or "dinov2g" in case) else "gelu"
    return {"src": "timm", "block_prefix": "blocks.", "eps": eps, "rope": rope, "mlp": mlp,
            "pool": model.global_pool}


def rope_of(model):
    """The (sin, cos) the timm model applies to its patch tokens."""
    if getattr(model, "rope", None) is None:
        return None
    emb = model.rope.get_embed(shape=model.patch_embed.grid_size) if model.dynamic_img_size else model.rope.get_embed()
    sin, cos = emb.chunk(2, -1)
    return sin.float().contiguous(), cos.float().contiguous()


@torch.no_grad()
def timm_forward_case(case):
    arch, extra, seed = TIMM_CASES[case]
    torch.manual_seed(seed)
    model, kwargs = create_timm(arch, extra)
    randomize_(model)
    d = fresh(case)
    sd = mf.plain_state_dict(model.state_dict())
    save_file(sd, str(d / "model.safetensors"), metadata=META)
    save_config_for_hf(model, str(d / "config.json"), data_config={"input_size": (3, IMG, IMG)})
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["pretrained_cfg"]["input_size"] == [3, IMG, IMG], cfg
    pixels = torch.randn(2, 3, IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=META)
    pooled, logits, attns = mf.run_timm(model, pixels)
    # determinism: a second evaluation is bit-identical
    p2, l2, a2 = mf.run_timm(model, pixels)
    assert torch.equal(p2, pooled) and torch.equal(l2, logits) and all(torch.equal(x, y) for x, y in zip(a2, attns))
    mf.save_expected(d, pooled, logits, attns)
    spec = spec_of(case, model)
    # the stated rope facts reproduce timm's tables, and the reference forward reproduces timm's outputs
    rope_note = None
    tables = rope_of(model)
    if tables is not None:
        mine = rope_tables(spec["rope"]["kind"], spec["rope"]["temperature"], spec["rope"].get("ref"))
        err = max((tables[0] - mine[0]).abs().max().item(), (tables[1] - mine[1]).abs().max().item())
        assert err < 1e-5, (case, err)
        save_file({"sin": tables[0], "cos": tables[1]}, str(d / "rope.safetensors"), metadata=META)
        # rope matters: the same weights without it give other outputs
        saved = model.rope
        model.rope = None
        pn, ln, _ = mf.run_timm(model, pixels)
        model.rope = saved
        delta = (ln - logits).abs().max().item()
        assert delta > 1e-2, (case, delta)
        rope_note = f"max|logits - logits without rope| = {delta:.4f}"
    rp, rl, ra = ref_forward(sd, spec, pixels)
    ref_err = max((rp - pooled).abs().max().item(), (rl - logits).abs().max().item(),
                  *[(x - y).abs().max().item() for x, y in zip(ra, attns)])
    assert ref_err < 1e-4, (case, ref_err)
    resized = timm_resized(case, model, d, sd, spec) if case in RESIZED_SEEDS else None
    k = model.num_prefix_tokens
    meta = {
        "case": case, "architecture": arch, "heads": HEADS, "eps": spec["eps"], "image_size": [IMG, IMG],
        **({"resized_input": [RH, RW]} if resized else {}),
        "patch_size": PATCH, "embed_dim": DIM, "depth": DEPTH, "num_classes": CLASSES, "batch": 2,
        "tokens": k + NPATCH,
        "class_token": getattr(model, "cls_token", None) is not None,
        "registers": 0 if model.reg_token is None else model.reg_token.shape[1],
        "num_prefix_tokens": k,
        "abs_pos_embed": None if model.pos_embed is None else (
            "patch rows only (no_embed_class)" if model.pos_embed.shape[1] == NPATCH else
            "rows for the prefix tokens and the patches"),
        "pooling": spec["pool"],
        "pooling_detail": pooling_detail(model),
        "mlp": mlp_detail(model),
        "layer_scale": any(n.endswith(("gamma_1", "ls1.gamma")) for n in sd),
        "rope": None if tables is None else (DINOV3_ROPE if spec["rope"]["kind"] == "dinov3" else cat_rope(16)),
        "rope_check": rope_note,
        "timm_kwargs": kwargs,
        "reference_forward_max_abs_err": ref_err,
        "keys": {n: list(v.shape) for n, v in sd.items()},
        **versions(),
    }
    write_json(d / "meta.json", meta)
    print(f"  {case}: {len(sd)} tensors, ref err {ref_err:.1e}" + (f", {rope_note}" if rope_note else "")
          + (f"; {RH}x{RW}: {resized}" if resized else ""))
    return model


def resized_pixels(case):
    return torch.randn(2, 3, RH, RW, generator=torch.Generator().manual_seed(RESIZED_SEEDS[case]))


def max_err(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def check_resized_tables(sin, cos):
    assert sin.shape == cos.shape == (RGRID[0] * RGRID[1], HD), (sin.shape, cos.shape)
    mine = rope_tables("dinov3", 100.0, grid=RGRID)
    err = max_err((sin, cos), mine)
    assert err < 1e-5, err
    square = rope_tables("dinov3", 100.0)                  # not merely the 4x4 table cut down
    assert (sin[:3] - square[0][:3]).abs().max() > 1e-2


def save_resized(d, pixels, expected, sin, cos):
    save_file({"pixels": pixels}, str(d / f"input_{RH}x{RW}.safetensors"), metadata=META)
    save_file({k: v.float().contiguous() for k, v in expected.items()}, str(d / f"expected_{RH}x{RW}.safetensors"),
              metadata=META)
    save_file({"sin": sin.float().contiguous(), "cos": cos.float().contiguous()},
              str(d / f"rope_{RH}x{RW}.safetensors"), metadata=META)


@torch.no_grad()
def timm_resized(case, model, d, sd, spec):
    """The same timm model (dynamic_img_size) on the non-square input: expected_40x24 and the rope table its
    _pos_embed built for the 5x3 grid (captured from rope.get_embed during the forward)."""
    pixels = resized_pixels(case)
    seen = []
    get_embed = model.rope.get_embed

    def spy(*a, **kw):
        out = get_embed(*a, **kw)
        seen.append((a, kw, out.detach().clone()))
        return out

    model.rope.get_embed = spy
    try:
        pooled, logits, attns = mf.run_timm(model, pixels)
    finally:
        del model.rope.get_embed
    assert seen and all(torch.equal(o, seen[0][2]) for _, _, o in seen), "one table for every call"
    assert tuple(seen[0][1].get("shape") or seen[0][0][0]) == RGRID, seen[0][:2]
    sin, cos = seen[0][2].chunk(2, -1)
    check_resized_tables(sin, cos)
    t = model.num_prefix_tokens + RGRID[0] * RGRID[1]
    assert all(a.shape == (2, HEADS, t, t) for a in attns), [a.shape for a in attns]
    p2, l2, a2 = mf.run_timm(model, pixels)
    assert torch.equal(p2, pooled) and torch.equal(l2, logits) and all(map(torch.equal, a2, attns))
    rp, rl, ra = ref_forward(sd, spec, pixels)
    ref_err = max_err([rp, rl, *ra], [pooled, logits, *attns])
    assert ref_err < 1e-4, (case, ref_err)
    saved = model.rope
    model.rope = None
    try:
        pn, ln, an = mf.run_timm(model, pixels)
    finally:
        model.rope = saved
    delta = min((pn - pooled).abs().max().item(), (ln - logits).abs().max().item(),
                *[(x - y).abs().max().item() for x, y in zip(an, attns)])
    assert delta > 1e-2, (case, delta)
    exp = {"pooled": pooled, "logits": logits, **{f"attn.{i}": a for i, a in enumerate(attns)}}
    save_resized(d, pixels, exp, sin, cos)
    return f"ref err {ref_err:.1e}, min over outputs of max|x - x without rope| {delta:.4f}"


def pooling_detail(model):
    norm = not isinstance(model.norm, nn.Identity)
    fcn = not isinstance(model.fc_norm, nn.Identity)
    k = model.num_prefix_tokens
    if model.global_pool == "token":
        return "final `norm` on every token, then token 0 (CLS)"
    assert model.global_pool == "avg"
    if norm:
        return f"final `norm` on every token, then the mean of tokens {k}.. (after the {k} prefix tokens), no fc_norm"
    assert fcn
    return f"mean of tokens {k}.. (after the {k} prefix tokens; no final norm), then `fc_norm`"


def mlp_detail(model):
    m = model.blocks[0].mlp
    if hasattr(m, "fc1_g"):
        return ("SwiGLU (timm SwiGLU): h = silu(fc1_g(x)) * fc1_x(x); h = mlp.norm(h) (LayerNorm over the hidden "
                f"{m.fc1_g.out_features}, same eps) ; fc2(h)" if not isinstance(m.norm, nn.Identity) else
                "SwiGLU: silu(fc1_g(x)) * fc1_x(x) -> fc2")
    if isinstance(m.act, nn.SiLU):
        return (f"SwiGLUPacked (timm GluMlp gate_last=False): u = fc1(x) ({m.fc1.out_features} rows); "
                f"a, b = u[..., :{m.fc1.out_features // 2}], u[..., {m.fc1.out_features // 2}:]; "
                "h = silu(a) * b (the FIRST half is the SiLU'd gate); fc2(h)")
    return "fc1 -> exact erf GELU -> fc2"


# case: (seed, use_gated_mlp, intermediate_size, hidden_act, also the non-square input)
HF_CASES = {
    "hf_dinov3": (HF_SEED, False, 4 * DIM, "gelu", True),
    # the H+ / 7B layout: transformers' conversion (convert_dinov3_vit_to_hf.py) sets use_gated_mlp=True with
    # hidden_act="silu" for vits16plus, vith16plus and vit7b16 (the config's default hidden_act is "gelu")
    "hf_dinov3_gated": (HF_GATED_SEED, True, HF_GATED_INTER, "silu", False),
}
GATED_MLP_NOTE = ("transformers DINOv3ViTGatedMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)) with act_fn = "
                  "ACT2FN[config.hidden_act] = ACT2FN['silu'] (F.silu, u * sigmoid(u)): gate_proj goes through SiLU, "
                  "up_proj is linear; the original DINOv3 SwiGLUFFN's w1 / w2 / w3 are gate_proj / up_proj / "
                  "down_proj. Joined as timm's SwiGLUPacked (vitune's load): fc1 = [gate_proj; up_proj] (2I rows, "
                  "gate rows first), fc2 = down_proj. hidden_act has to be read from config.json: DINOv3ViTConfig's "
                  "default is 'gelu', which with use_gated_mlp=True would gate with GELU instead.")


@torch.no_grad()
def hf_dinov3_case(case="hf_dinov3"):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    seed, gated, inter, act, resized_too = HF_CASES[case]
    torch.manual_seed(seed)
    cfg = DINOv3ViTConfig(
        hidden_size=DIM, intermediate_size=inter, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
        patch_size=PATCH, image_size=IMG, num_register_tokens=4, layer_norm_eps=1e-5, rope_theta=100.0,
        query_bias=True, key_bias=False, value_bias=True, proj_bias=True, layerscale_value=1.0,
        use_gated_mlp=gated, hidden_act=act, attn_implementation="eager",
    )
    model = DINOv3ViTModel(cfg).eval()
    model.config._attn_implementation = "eager"
    gated_mlp_check(model, gated, inter)
    randomize_(model)
    d = fresh(case)
    tmp = d / "_tmp"
    model.save_pretrained(str(tmp), safe_serialization=True)
    stored = load_file(str(tmp / "model.safetensors"))
    sd = mf.plain_state_dict(stored)
    save_file(sd, str(d / "model.safetensors"), metadata=META)
    cfgj = json.loads((tmp / "config.json").read_text())
    cfgj.pop("_attn_implementation", None)
    write_json(d / "config.json", cfgj)
    shutil.rmtree(tmp)
    mem = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(sd) == {k.replace("model.layer.", "layer.") for k in mem}, (sorted(sd), sorted(mem))
    pixels = torch.randn(2, 3, IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=META)
    out = model(pixel_values=pixels, output_attentions=True)
    pooled = out.pooler_output.float()
    attns = [a.float() for a in out.attentions]
    assert len(attns) == DEPTH
    again = model(pixel_values=pixels, output_attentions=True)
    assert torch.equal(again.pooler_output, out.pooler_output)
    exp = {"pooled": pooled.contiguous()}
    exp.update({f"attn.{i}": a.contiguous() for i, a in enumerate(attns)})
    save_file(exp, str(d / "expected.safetensors"), metadata=META)
    # the stored Hub-layout checkpoint reloads into transformers unchanged
    re, info = DINOv3ViTModel.from_pretrained(str(d), attn_implementation="eager", output_loading_info=True)
    re = re.eval()
    torch.testing.assert_close(re(pixel_values=pixels).pooler_output, out.pooler_output, rtol=0, atol=0)
    if gated:
        assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
        gated_mlp_check(re, gated, inter)
        ro = re(pixel_values=pixels, output_attentions=True)
        assert torch.equal(ro.last_hidden_state, out.last_hidden_state)
        assert all(map(torch.equal, ro.attentions, out.attentions))
    # rope tables as transformers applies them, vs the stated formula
    cos, sin = model.rope_embeddings(pixels)
    mine = rope_tables("dinov3", 100.0)
    err = max((sin - mine[0]).abs().max().item(), (cos - mine[1]).abs().max().item())
    assert err < 1e-5, err
    save_file({"sin": sin.float().contiguous(), "cos": cos.float().contiguous()}, str(d / "rope.safetensors"),
              metadata=META)
    # rope matters
    orig = model.rope_embeddings.forward
    model.rope_embeddings.forward = lambda px: (torch.ones_like(cos), torch.zeros_like(sin))
    delta = (model(pixel_values=pixels).pooler_output - out.pooler_output).abs().max().item()
    model.rope_embeddings.forward = orig
    assert delta > 1e-2, delta
    spec = {"src": "hf", "block_prefix": "layer.", "eps": 1e-5, "rope": {"kind": "dinov3", "temperature": 100.0},
            "mlp": "swiglu" if gated else "gelu", "pool": "token"}
    rp, _, ra = ref_forward(sd, spec, pixels)
    ref_err = max((rp - pooled).abs().max().item(), *[(x - y).abs().max().item() for x, y in zip(ra, attns)])
    assert ref_err < 1e-4, ref_err
    gated_meta = {}
    if gated:
        # which projection goes through the activation: SiLU on up_proj instead of gate_proj gives other outputs
        sp, _, _ = ref_forward(sd, {**spec, "swap_gate": True}, pixels)
        swap = (sp - pooled).abs().max().item()
        assert swap > 1e-2, swap
        gated_meta = {
            "use_gated_mlp": True, "hidden_act": act, "intermediate_size": inter,
            "mlp_detail": GATED_MLP_NOTE,
            "mlp_check": f"max|pooled - pooled with SiLU on up_proj instead of gate_proj| = {swap:.4f}",
        }
    resized = hf_resized(case, model, d, sd, spec) if resized_too else None
    write_json(d / "meta.json", {
        "case": case, "heads": HEADS, "eps": 1e-5, "image_size": [IMG, IMG],
        **({"resized_input": [RH, RW]} if resized_too else {}),
        "patch_size": PATCH,
        "embed_dim": DIM, "depth": DEPTH, "batch": 2, "tokens": 1 + 4 + NPATCH, "registers": 4,
        "pooling": "token", "pooling_detail": "final `norm` on every token, pooler_output = token 0 (CLS); no head",
        "mlp": ("down_proj(silu(gate_proj(x)) * up_proj(x))" if gated else "up_proj -> exact erf GELU -> down_proj"),
        **gated_meta,
        "layer_scale": True,
        "rope": DINOV3_ROPE, "rope_check": f"max|pooled - pooled without rope| = {delta:.4f}",
        "keys_note": "model.safetensors is save_pretrained's Hub layout (layer.N.*, as facebook/dinov3-* files); "
                     "transformers 5 names the blocks model.layer.N.* in memory and renames on load/save",
        "reference_forward_max_abs_err": ref_err,
        "keys": {n: list(v.shape) for n, v in sd.items()},
        **versions(),
    })
    print(f"  {case}: {len(sd)} tensors, ref err {ref_err:.1e}, rope delta {delta:.4f}"
          + (f"; {RH}x{RW}: {resized}" if resized else "") + (f"; {gated_meta['mlp_check']}" if gated else ""))


def gated_mlp_check(model, gated, inter):
    """The MLP transformers built: DINOv3ViTGatedMLP (gate/up/down, act from hidden_act) or DINOv3ViTMLP."""
    from transformers.activations import GELUActivation, SiLUActivation

    for lay in model.model.layer:
        m = lay.mlp
        if gated:
            assert type(m).__name__ == "DINOv3ViTGatedMLP" and isinstance(m.act_fn, SiLUActivation), m
            assert m.gate_proj.weight.shape == m.up_proj.weight.shape == (inter, DIM), m
        else:
            assert type(m).__name__ == "DINOv3ViTMLP" and isinstance(m.act_fn, GELUActivation), m
            assert not hasattr(m, "gate_proj") and m.up_proj.weight.shape == (inter, DIM), m
        assert m.down_proj.weight.shape == (DIM, inter), m


@torch.no_grad()
def hf_resized(case, model, d, sd, spec):
    """The same transformers model on the non-square input: expected_40x24 and the (cos, sin) its
    rope_embeddings produced for the 5x3 grid during the forward."""
    pixels = resized_pixels(case)
    seen = []
    h = model.rope_embeddings.register_forward_hook(lambda _m, _i, out: seen.append([t.clone() for t in out]))
    try:
        out = model(pixel_values=pixels, output_attentions=True)
    finally:
        h.remove()
    assert len(seen) == 1, len(seen)
    cos, sin = seen[0]
    check_resized_tables(sin, cos)
    pooled = out.pooler_output.float()
    attns = [a.float() for a in out.attentions]
    t = 1 + 4 + RGRID[0] * RGRID[1]
    assert len(attns) == DEPTH and all(a.shape == (2, HEADS, t, t) for a in attns), [a.shape for a in attns]
    again = model(pixel_values=pixels, output_attentions=True)
    assert torch.equal(again.pooler_output, out.pooler_output) and all(map(torch.equal, again.attentions,
                                                                           out.attentions))
    rp, _, ra = ref_forward(sd, spec, pixels)
    ref_err = max_err([rp, *ra], [pooled, *attns])
    assert ref_err < 1e-4, (case, ref_err)
    orig = model.rope_embeddings.forward
    model.rope_embeddings.forward = lambda px: (torch.ones_like(cos), torch.zeros_like(sin))
    try:
        off = model(pixel_values=pixels, output_attentions=True)
    finally:
        model.rope_embeddings.forward = orig
    delta = min((off.pooler_output - out.pooler_output).abs().max().item(),
                *[(x - y).abs().max().item() for x, y in zip(off.attentions, out.attentions)])
    assert delta > 1e-2, (case, delta)
    exp = {"pooled": pooled, **{f"attn.{i}": a for i, a in enumerate(attns)}}
    save_resized(d, pixels, exp, sin, cos)
    return f"ref err {ref_err:.1e}, min over outputs of max|x - x without rope| {delta:.4f}"


# --------------------------------------------------------------------------------------------------------------
# gradient cases: methods glued onto timm's own modules
# --------------------------------------------------------------------------------------------------------------

class PrefixPlus:
    """Raise every Eva block's attn.num_prefix_tokens by n for the duration (prompts are not rotated)."""

    def __init__(self, model, n):
        self.model, self.n = model, n

    def __enter__(self):
        if is_eva(self.model):
            for blk in self.model.blocks:
                blk.attn.num_prefix_tokens += self.n

    def __exit__(self, *exc):
        if is_eva(self.model):
            for blk in self.model.blocks:
                blk.attn.num_prefix_tokens -= self.n


def embed(model, pixels):
    """Tokens after the position embedding (+ rope table for Eva)."""
    x = model.patch_embed(pixels)
    if is_eva(model):
        return model._pos_embed(x)
    return model._pos_embed(x), None


def run_block(model, blk, x, rope):
    return blk(x, rope=rope) if is_eva(model) else blk(x)


def head_logits(model, x, P):
    """From the final norm's output: timm's pooling (and fc_norm), then the tuning's head."""
    return F.linear(model.forward_head(x, pre_logits=True), P["head.weight"], P["head.bias"])


def vpt_features(model, P, pixels, p=VPT_P):
    """The final norm's output with the prompts in (VPT-deep; VPT-shallow when P has no
    ``deep_prompt_embeddings``)."""
    n = pixels.shape[0]
    k = model.num_prefix_tokens
    x, rope = embed(model, pixels)
    x = torch.cat([x[:, :k], P["prompt_embeddings"].expand(n, -1, -1), x[:, k:]], 1)
    x = model.norm_pre(x)
    with PrefixPlus(model, p):
        for i, blk in enumerate(model.blocks):
            if i >= 1 and "deep_prompt_embeddings" in P:
                deep = P["deep_prompt_embeddings"][i - 1].unsqueeze(0).expand(n, -1, -1)
                x = torch.cat([x[:, :k], deep, x[:, k + p:]], 1)
            x = run_block(model, blk, x, rope)
    return model.norm(x)


def vpt_deep_logits(model, P, pixels, p=VPT_P):
    return head_logits(model, vpt_features(model, P, pixels, p), P)


class Features(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.forward_features(x)


def lora_logits(model, P, pixels, scale=LORA_ALPHA / LORA_R):
    over = {}
    for i, blk in enumerate(model.blocks):
        a = f"blocks.{i}.attn."
        dq = scale * P[a + "q_lora_B"] @ P[a + "q_lora_A"]
        dv = scale * P[a + "v_lora_B"] @ P[a + "v_lora_A"]
        if getattr(blk.attn, "qkv", None) is not None:
            w = blk.attn.qkv.weight
            over[a + "qkv.weight"] = w + torch.cat([dq, torch.zeros_like(dq), dv], 0)
        else:
            over[a + "q_proj.weight"] = blk.attn.q_proj.weight + dq
            over[a + "v_proj.weight"] = blk.attn.v_proj.weight + dv
    feats = torch.func.functional_call(Features(model), {f"m.{k}": v for k, v in over.items()}, (pixels,))
    return head_logits(model, feats, P)


def ssf_points(model):
    """vitune's SSF names -> [(timm module, slice of the scale/shift)] in forward order."""
    pts = {"patch_embed": [("patch_embed", None)]}
    for i, blk in enumerate(model.blocks):
        b = f"blocks.{i}."
        pts[b + "norm1"] = [(b + "norm1", None)]
        if getattr(blk.attn, "qkv", None) is not None:
            assert getattr(blk.attn, "q_bias", None) is None, "qkv hook would miss F.linear with q_bias/v_bias"
            pts[b + "attn.qkv"] = [(b + "attn.qkv", None)]
        else:
            pts[b + "attn.qkv"] = [(b + f"attn.{n}_proj", slice(j * DIM, (j + 1) * DIM)) for j, n in enumerate("qkv")]
        pts[b + "attn.proj"] = [(b + "attn.proj", None)]
        pts[b + "norm2"] = [(b + "norm2", None)]
        m = blk.mlp
        if hasattr(m, "fc1_g"):
            h = m.fc1_g.out_features
            pts[b + "mlp.fc1"] = [(b + "mlp.fc1_g", slice(0, h)), (b + "mlp.fc1_x", slice(h, 2 * h))]
        else:
            pts[b + "mlp.fc1"] = [(b + "mlp.fc1", None)]
        pts[b + "mlp.fc2"] = [(b + "mlp.fc2", None)]
    pts["fc_norm" if not isinstance(model.fc_norm, nn.Identity) else "norm"] = [
        ("fc_norm" if not isinstance(model.fc_norm, nn.Identity) else "norm", None)]
    return pts


def ssf_width(model, name):
    total = 0
    for mod, sl in ssf_points(model)[name]:
        m = model.get_submodule(mod)
        w = getattr(m, "out_features", None) or getattr(m, "normalized_shape", [None])[0] or DIM
        total += w
    return total


def ssf_logits(model, P, pixels):
    handles = []
    try:
        for name, pts in ssf_points(model).items():
            gamma, beta = P[name + ".ssf_scale"], P[name + ".ssf_shift"]
            for mod, sl in pts:
                g, b = (gamma, beta) if sl is None else (gamma[sl], beta[sl])
                handles.append(model.get_submodule(mod).register_forward_hook(
                    lambda _m, _i, out, g=g, b=b: out * g + b))
        return head_logits(model, model.forward_features(pixels), P)  # fc_norm's hook still on
    finally:
        for h in handles:
            h.remove()


def adaptformer_logits(model, P, pixels):
    x, rope = embed(model, pixels)
    x = model.norm_pre(x)
    for i, blk in enumerate(model.blocks):
        a = f"blocks.{i}.adaptmlp."
        y = blk.attn(blk.norm1(x), rope=rope)
        x = x + (blk.gamma_1 * y if blk.gamma_1 is not None else y)
        m = blk.mlp(blk.norm2(x))
        m = blk.gamma_2 * m if blk.gamma_2 is not None else m
        ad = F.linear(F.relu(F.linear(x, P[a + "down_proj.weight"], P[a + "down_proj.bias"])),
                      P[a + "up_proj.weight"], P[a + "up_proj.bias"])
        x = x + m + ADAPT_S * ad
    return head_logits(model, model.norm(x), P)


def convpass_ref(P, pre, z):
    """mg.PetlConvpass's forward (JieShibo/PETL-ViT) as a function of the trainable tensors."""
    return torch.func.functional_call(
        mg.PetlConvpass(CONV_DIM, DIM, GRID).to(z.dtype),
        {k[len(pre):]: v for k, v in P.items() if k.startswith(pre)}, (z,))


def convpass_logits(model, P, pixels):
    assert model.num_prefix_tokens == 1, "Convpass as in PETL-ViT: one CLS then the patch grid"
    x, rope = embed(model, pixels)
    x = model.norm_pre(x)
    for i, blk in enumerate(model.blocks):
        b = f"blocks.{i}."
        h = blk.norm1(x)
        y = blk.attn(h, rope=rope)
        x = x + (blk.gamma_1 * y if blk.gamma_1 is not None else y) + CONV_S * convpass_ref(P, b + "adapter_attn.", h)
        h = blk.norm2(x)
        y = blk.mlp(h)
        x = x + (blk.gamma_2 * y if blk.gamma_2 is not None else y) + CONV_S * convpass_ref(P, b + "adapter_mlp.", h)
    return head_logits(model, model.norm(x), P)


def plain_logits(model, P, pixels):
    return torch.func.functional_call(model, P, (pixels,))


def method_options(method):
    if method in ("vpt-deep", "vpt-shallow"):
        return {"p": VPT_P, "prompts_get_pos_embed": False, "prompts_rotated": False, "deep": method == "vpt-deep",
                "placement": "after CLS and the registers, before the patches"}
    if method == "lora":
        return {"alpha": LORA_ALPHA, "r": LORA_R, "scale": LORA_ALPHA / LORA_R, "targets": ["q", "v"]}
    if method == "adaptformer":
        return {"bottleneck": ADAPT_B, "scale": ADAPT_S, "placement": "parallel to MLP, input = residual before "
                "norm2, outside the layer scale", "activation": "relu", "adapter_layernorm": False}
    if method == "convpass":
        return {"dim": CONV_DIM, "scale": CONV_S, "activation": "quick_gelu (u*sigmoid(1.702u))",
                "conv": "3x3 padding 1 on the 4x4 patch grid; CLS as 1x1 image with the same conv"}
    if method == "ssf":
        return {"modules": "patch_embed, norm1, attn.qkv (3D, rows q,k,v), attn.proj, norm2, mlp.fc1 (its full "
                "output before any gating; EVA-02: [fc1_g | fc1_x]), mlp.fc2, final norm/fc_norm"}
    return {}


def loss_grads(model, tuned, logits_fn, pixels, labels, dtype):
    m = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    params = {k: v.to(dtype).clone().requires_grad_(True) for k, v in tuned.items()}
    loss = F.cross_entropy(logits_fn(m, params, pixels.to(dtype)), labels)
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.detach(), dict(zip(params, grads)), m


def fd_check(model64, tuned, logits_fn, pixels, labels, g64, seed):
    gen = torch.Generator().manual_seed(seed)
    h, worst, n = 1e-6, 0.0, 0
    base = {k: v.double() for k, v in tuned.items()}
    px = pixels.double()
    with torch.no_grad():
        for name, g in g64.items():
            flat = g.reshape(-1)
            for idx in (int(flat.abs().argmax()), int(torch.randint(flat.numel(), (1,), generator=gen))):
                vals = []
                for sgn in (1.0, -1.0):
                    t = dict(base)
                    t[name] = base[name].clone()
                    t[name].view(-1)[idx] += sgn * h
                    vals.append(F.cross_entropy(logits_fn(model64, t, px), labels).item())
                fd = (vals[0] - vals[1]) / (2 * h)
                an = flat[idx].item()
                err = abs(fd - an)
                assert err <= 1e-7 + 1e-5 * abs(an), (name, idx, fd, an)
                worst = max(worst, err / max(abs(an), 1e-3))
                n += 1
    return worst, n


def grad_case(case, method, backbone, model, tuned, logits_fn, seed, extra_check=None, note=None):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(3, 3, IMG, IMG, generator=g)
    labels = torch.tensor(LABELS, dtype=torch.int64)
    for blk in model.blocks:
        blk.attn.fused_attn = False
    loss, grads, _ = loss_grads(model, tuned, logits_fn, pixels, labels, torch.float32)
    for k, gr in grads.items():
        assert gr.shape == tuned[k].shape and torch.isfinite(gr).all(), k
        assert gr.abs().max() > 1e-6, (case, k, "trivial gradient")
    loss64, g64, model64 = loss_grads(model, tuned, logits_fn, pixels, labels, torch.float64)
    e32 = max(((g64[k].float() - grads[k]).abs().max() / g64[k].abs().max()).item() for k in grads)
    assert e32 <= 1e-4, (case, e32)
    assert abs(loss64.item() - loss.item()) <= 1e-5 * max(1.0, abs(loss.item())), (loss64, loss)
    worst, n_fd = fd_check(model64, tuned, logits_fn, pixels, labels, g64, seed + 100)
    checks = {"f32_vs_f64_grad_max_rel_err": e32, "fd_float64_entries_checked": n_fd,
              "fd_float64_worst_rel_err": worst}
    if extra_check:
        checks.update(extra_check(model, tuned, pixels))
    d = fresh(f"grad_{case}")
    save_file({k: v.contiguous() for k, v in tuned.items()}, str(d / "tuned.safetensors"), metadata=META)
    save_file({"pixels": pixels, "labels": labels}, str(d / "input.safetensors"), metadata=META)
    exp = {k: v.contiguous() for k, v in grads.items()}
    exp["loss"] = loss.reshape(()).float()
    save_file(exp, str(d / "expected.safetensors"), metadata=META)
    write_json(d / "meta.json", {
        "case": case, "method": method, "options": method_options(method), "backbone": backbone,
        "loss_value": loss.item(), "labels": LABELS,
        "loss": "mean cross-entropy, no label smoothing, no dropout",
        "head": "new random head (head.weight ~ N(0,0.2), head.bias ~ N(0,0.1)); checkpoint head unused",
        "trainable": {k: list(v.shape) for k, v in tuned.items()},
        **({"note": note} if note else {}),
        "seed": seed, "checks": checks, **versions(),
    })
    print(f"  grad_{case}: loss {loss.item():.6f}, {len(grads)} tensors, f32/f64 {e32:.1e}, fd({n_fd}) {worst:.1e}"
          + "".join(f", {k} {v:.1e}" for k, v in checks.items() if k.startswith("x_")))


def lora_merge_check(model, tuned, pixels):
    """LoRA logits equal timm's own model with the update merged into the weights."""
    m = copy.deepcopy(model)
    sc = LORA_ALPHA / LORA_R
    with torch.no_grad():
        for i, blk in enumerate(m.blocks):
            a = f"blocks.{i}.attn."
            dq = sc * tuned[a + "q_lora_B"] @ tuned[a + "q_lora_A"]
            dv = sc * tuned[a + "v_lora_B"] @ tuned[a + "v_lora_A"]
            if getattr(blk.attn, "qkv", None) is not None:
                blk.attn.qkv.weight[:DIM] += dq
                blk.attn.qkv.weight[2 * DIM:] += dv
            else:
                blk.attn.q_proj.weight += dq
                blk.attn.v_proj.weight += dv
        m.head.weight.copy_(tuned["head.weight"])
        m.head.bias.copy_(tuned["head.bias"])
        err = (m(pixels) - lora_logits(model, tuned, pixels)).abs().max().item()
    assert err < 2e-5, err
    return {"x_merged_timm_logits_max_abs_err": err}


def vpt_zero_check(model, tuned, pixels):
    """Sanity of the gluing: with the prompts removed (p = 0) the glue is timm's own forward."""
    with torch.no_grad():
        P = {k: v[:, :0] for k, v in tuned.items() if k.endswith("prompt_embeddings")}
        P.update({k: tuned[k] for k in ("head.weight", "head.bias")})
        got = vpt_deep_logits(model, P, pixels, p=0)
        want = F.linear(model.forward_head(model.forward_features(pixels), pre_logits=True),
                        tuned["head.weight"], tuned["head.bias"])
        err = (got - want).abs().max().item()
    assert err < 1e-5, err
    return {"x_p0_vs_timm_logits_max_abs_err": err}


def linear_check(model, tuned, pixels):
    """The linear probe's gradient in closed form from timm's pooled feature: dL/dW = (softmax - onehot)^T f / N,
    dL/db = sum_n (softmax - onehot) / N."""
    _, g, _ = loss_grads(model, tuned, plain_logits, pixels, torch.tensor(LABELS), torch.float32)
    with torch.no_grad():
        f = model.forward_head(model.forward_features(pixels), pre_logits=True).double()
        W, b = tuned["head.weight"].double(), tuned["head.bias"].double()
        r = (F.softmax(F.linear(f, W, b), -1) - F.one_hot(torch.tensor(LABELS), CLASSES).double()) / len(LABELS)
        err = max(((g["head.weight"].double() - r.T @ f).abs().max() / (r.T @ f).abs().max()).item(),
                  ((g["head.bias"].double() - r.sum(0)).abs().max() / r.sum(0).abs().max()).item())
    assert err < 1e-5, err
    return {"x_closed_form_head_grad_max_rel_err": err}


def vpt_avg_check(model, tuned, pixels):
    """p = 0 is timm's forward, and the average pool (after the prefix tokens) includes the prompts: the logits
    equal fc_norm(mean of every token after the prefix tokens, prompts included) and differ from the mean over
    the patch tokens only."""
    out = vpt_zero_check(model, tuned, pixels)
    k, p = model.num_prefix_tokens, tuned["prompt_embeddings"].shape[1]
    assert model.global_pool == "avg" and not isinstance(model.fc_norm, nn.Identity)
    with torch.no_grad():
        got = vpt_deep_logits(model, tuned, pixels)
        x = vpt_features(model, tuned, pixels)
        assert x.shape[1] == k + p + NPATCH, x.shape
        head = (tuned["head.weight"], tuned["head.bias"])
        incl = F.linear(model.fc_norm(x[:, k:].mean(1)), *head)
        excl = F.linear(model.fc_norm(x[:, k + p:].mean(1)), *head)
        e_in, e_ex = (got - incl).abs().max().item(), (got - excl).abs().max().item()
    assert e_in < 1e-6 and e_ex > 1e-2, (e_in, e_ex)
    out.update({"x_avg_with_prompts_max_abs_err": e_in, "x_avg_without_prompts_max_abs_diff": e_ex})
    return out


# EVA-02 as vitune loads it (src/model/load.rs eva_to_vit): q/k/v joined into attn.qkv (rows q,k,v; the bias
# [q | 0 | v], timm's k_proj having none) and fc1_g/fc1_x into mlp.fc1 (gate rows first).

def eva_joined_state(model):
    """The backbone's tensors under vitune's names after its load-time joining, in timm's order, head left out."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        b, _, leaf = k.rpartition(".")
        if b.endswith("attn.q_proj"):
            a = b[:-len("q_proj")]
            if leaf == "weight":
                out[a + "qkv.weight"] = torch.cat([sd[a + f"{s}_proj.weight"] for s in "qkv"], 0)
            else:
                assert a + "k_proj.bias" not in sd
                out[a + "qkv.bias"] = torch.cat([v, torch.zeros(DIM), sd[a + "v_proj.bias"]])
        elif b.endswith(("attn.k_proj", "attn.v_proj", "mlp.fc1_x")):
            continue
        elif b.endswith("mlp.fc1_g"):
            out[b[:-len("fc1_g")] + f"fc1.{leaf}"] = torch.cat([v, sd[b[:-len("fc1_g")] + f"fc1_x.{leaf}"]], 0)
        else:
            out[k] = v
    return out


def eva_joined_logits(model, P, pixels):
    """Logits through timm's own Eva with P under vitune's joined names: q_proj/k_proj/v_proj and fc1_g/fc1_x get
    their slices of the joined tensors; the k third of attn.qkv.bias (timm's k_proj has no bias) is added to
    k_proj's output by a forward hook; every other name is timm's own."""
    over, kbias = {}, {}
    for name, t in P.items():
        b, _, leaf = name.rpartition(".")
        if b.endswith("attn.qkv"):
            a = b[:-len("qkv")]
            assert getattr(model.get_submodule(a + "k_proj"), "bias", None) is None
            for j, s in enumerate("qkv"):
                if leaf == "bias" and s == "k":
                    kbias[a + "k_proj"] = t[DIM:2 * DIM]
                else:
                    over[a + f"{s}_proj.{leaf}"] = t[j * DIM:(j + 1) * DIM]
        elif b.endswith("mlp.fc1"):
            h = t.shape[0] // 2
            over[b + f"_g.{leaf}"], over[b + f"_x.{leaf}"] = t[:h], t[h:]
        else:
            over[name] = t
    params = dict(model.named_parameters())
    assert set(over) <= set(params), sorted(set(over) - set(params))
    assert all(over[k].shape == params[k].shape for k in over)
    handles = [model.get_submodule(m).register_forward_hook(lambda _m, _i, out, kb=kb: out + kb)
               for m, kb in kbias.items()]
    try:
        return torch.func.functional_call(model, over, (pixels,))
    finally:
        for h in handles:
            h.remove()


CANON = {"attn.qkv.weight": "qkv.w", "attn.qkv.bias": "qkv.b", "attn.proj.weight": "proj.w",
         "attn.proj.bias": "proj.b", "norm1.weight": "n1.w", "norm1.bias": "n1.b", "norm2.weight": "n2.w",
         "norm2.bias": "n2.b", "mlp.fc1.weight": "fc1.w", "mlp.fc1.bias": "fc1.b", "mlp.fc2.weight": "fc2.w",
         "mlp.fc2.bias": "fc2.b", "mlp.norm.weight": "mlpnorm.w", "mlp.norm.bias": "mlpnorm.b"}


def eva_joined_check(model, tuned, pixels, backbone="timm_eva02"):
    """Checks of the joined-name glue (float32 unless said):
    * the tuned start values are the checkpoint's, joined as vitune does (k bias zero), and at them the glue's
      logits are timm's own model's with the new head;
    * the stored gradients equal autograd through the independent plain-torch reference forward (ref_forward,
      written on the joined layout) for every tensor, the k bias included;
    * the gradients of the joined tensors, cut as vitune joined them, equal timm's own parameters' gradients
      (q_proj/k_proj/v_proj, fc1_g/fc1_x; the k bias, which timm lacks, is left to the other checks);
    * the k third of attn.qkv.bias has a non-zero gradient, and its largest entry passes a float64 central
      finite difference."""
    labels = torch.tensor(LABELS)
    joined = eva_joined_state(model)
    for k, v in tuned.items():
        if not k.startswith("head."):
            assert torch.equal(v, joined[k]), k
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.head.weight.copy_(tuned["head.weight"])
        m.head.bias.copy_(tuned["head.bias"])
        e_timm = (eva_joined_logits(model, tuned, pixels) - m(pixels)).abs().max().item()
    assert e_timm < 1e-6, e_timm
    _, grads, _ = loss_grads(model, tuned, eva_joined_logits, pixels, labels, torch.float32)
    # the reference forward on the joined layout
    spec = spec_of(backbone, model)
    P = {k: v.clone().requires_grad_(True) for k, v in tuned.items()}
    sd = {**{k: v for k, v in joined.items() if not k.startswith("blocks.")},
          "head.weight": model.head.weight.detach(), "head.bias": model.head.bias.detach()}
    c = {}
    for k, v in joined.items():
        if k.startswith("blocks."):
            i, rest = k[len("blocks."):].split(".", 1)
            c[f"blocks.{i}." + CANON[rest]] = v
    for k, v in P.items():
        if k.startswith("blocks."):
            i, rest = k[len("blocks."):].split(".", 1)
            c[f"blocks.{i}." + CANON[rest]] = v
        else:
            sd[k] = v
    assert len(c) == len(CANON) * DEPTH
    _, rl, _ = ref_forward(sd, spec, pixels, c)
    rg = dict(zip(P, torch.autograd.grad(F.cross_entropy(rl, labels), list(P.values()))))
    e_ref = max(((rg[k] - grads[k]).abs().max() / grads[k].abs().max()).item() for k in grads)
    assert e_ref < 1e-4, e_ref
    # timm's own parameters
    for q in m.parameters():
        q.requires_grad_(False)
    named = dict(m.named_parameters())
    want = {}
    for k in tuned:
        b, _, leaf = k.rpartition(".")
        if b.endswith("attn.qkv"):
            a = b[:-len("qkv")]
            want[k] = [a + f"{s}_proj.{leaf}" for s in ("qkv" if leaf == "weight" else "qv")]
        elif b.endswith("mlp.fc1"):
            want[k] = [b + f"_g.{leaf}", b + f"_x.{leaf}"]
        else:
            want[k] = [k]
    used = [n for v in want.values() for n in v]
    assert len(set(used)) == len(used) and set(used) <= set(named)
    if "pos_embed" in tuned:                 # full: every timm parameter is reached through a joined name
        assert set(used) == set(named), sorted(set(named) - set(used))
    for n in used:
        named[n].requires_grad_(True)
    tg = dict(zip(used, torch.autograd.grad(F.cross_entropy(m(pixels), labels), [named[n] for n in used])))
    e_own = 0.0
    for k, parts in want.items():
        g = grads[k]
        if k.endswith("attn.qkv.bias"):
            g = torch.cat([g[:DIM], g[2 * DIM:]])
        t = torch.cat([tg[n] for n in parts], 0)
        e_own = max(e_own, ((t - g).abs().max() / g.abs().max()).item())
    assert e_own < 1e-4, e_own
    # the k bias: non-zero gradient (RoPE makes a constant key offset position dependent), float64 FD
    kb = [k for k in tuned if k.endswith("attn.qkv.bias")]
    kmax = min(grads[k][DIM:2 * DIM].abs().max().item() for k in kb)
    assert kmax > 1e-6, kmax
    m64 = copy.deepcopy(model).double()
    base = {k: v.double() for k, v in tuned.items()}
    _, g64, _ = loss_grads(model, tuned, eva_joined_logits, pixels, labels, torch.float64)
    h, e_fd = 1e-6, 0.0
    with torch.no_grad():
        for k in kb:
            idx = DIM + int(g64[k][DIM:2 * DIM].abs().argmax())
            vals = []
            for sgn in (1.0, -1.0):
                t = dict(base)
                t[k] = base[k].clone()
                t[k][idx] += sgn * h
                vals.append(F.cross_entropy(eva_joined_logits(m64, t, pixels.double()), labels).item())
            fd, an = (vals[0] - vals[1]) / (2 * h), g64[k][idx].item()
            assert abs(fd - an) <= 1e-7 + 1e-5 * abs(an), (k, idx, fd, an)
            e_fd = max(e_fd, abs(fd - an) / abs(an))
    return {"x_start_vs_timm_logits_max_abs_err": e_timm, "x_ref_forward_grad_max_rel_err": e_ref,
            "x_timm_param_grad_max_rel_err": e_own, "x_k_bias_grad_min_over_blocks_max_abs": kmax,
            "x_k_bias_fd_float64_worst_rel_err": e_fd}


EVA_JOINED_NOTE = ("tensor names are vitune's after its load-time joining of EVA-02 (src/model/load.rs eva_to_vit): "
                   "blocks.{i}.attn.qkv = [q_proj; k_proj; v_proj] (rows q,k,v), its bias [q_proj.bias | k | "
                   "v_proj.bias] where the k third starts at ZERO (timm's k_proj has no bias) and is trained (its "
                   "gradient is not zero: the rotation makes a constant key offset position dependent); "
                   "blocks.{i}.mlp.fc1 = [fc1_g; fc1_x] (2H = 256 rows, gate rows first), its bias [fc1_g.bias | "
                   "fc1_x.bias]. Backbone tensors start at the checkpoint's values; the head is new and random.")


def grad_cases(models):
    g = torch.Generator().manual_seed(2200)

    def vpt(short, backbone, seed):
        tuned = {"prompt_embeddings": randn(g, (1, VPT_P, DIM), 0.5),
                 "deep_prompt_embeddings": randn(g, (DEPTH - 1, VPT_P, DIM), 0.5), **new_head(g)}
        grad_case(f"{short}-vpt-deep", "vpt-deep", backbone, models[backbone], tuned, vpt_deep_logits, seed,
                  vpt_zero_check)

    def lora(short, backbone, seed):
        tuned = new_head(g)
        for i in range(DEPTH):
            for s in "qv":
                tuned[f"blocks.{i}.attn.{s}_lora_A"] = randn(g, (LORA_R, DIM), 0.2)
                tuned[f"blocks.{i}.attn.{s}_lora_B"] = randn(g, (DIM, LORA_R), 0.2)
        grad_case(f"{short}-lora", "lora", backbone, models[backbone], tuned, lora_logits, seed, lora_merge_check)

    def ssf(short, backbone, seed):
        model = models[backbone]
        tuned = {}
        for name in ssf_points(model):
            w = ssf_width(model, name)
            tuned[name + ".ssf_scale"] = randn(g, (w,), 0.2, 1.0)
            tuned[name + ".ssf_shift"] = randn(g, (w,), 0.1)
        tuned.update(new_head(g))
        grad_case(f"{short}-ssf", "ssf", backbone, model, tuned, ssf_logits, seed)

    # a. DINOv3
    vpt("dinov3", "timm_dinov3", 2301)
    lora("dinov3", "timm_dinov3", 2302)
    # b. DINOv2-giant layout and EVA-02
    vpt("dinov2g", "timm_dinov2g_reg", 2303)
    lora("dinov2g", "timm_dinov2g_reg", 2304)
    vpt("eva02", "timm_eva02", 2305)
    lora("eva02", "timm_eva02", 2306)
    # c. more methods
    ssf("dinov3", "timm_dinov3", 2307)
    ssf("eva02", "timm_eva02", 2308)
    tuned = {}
    for i in range(DEPTH):
        b = f"blocks.{i}.adaptmlp."
        tuned[b + "down_proj.weight"] = randn(g, (ADAPT_B, DIM), 0.2)
        tuned[b + "down_proj.bias"] = randn(g, (ADAPT_B,), 0.1)
        tuned[b + "up_proj.weight"] = randn(g, (DIM, ADAPT_B), 0.2)
        tuned[b + "up_proj.bias"] = randn(g, (DIM,), 0.1)
    tuned.update(new_head(g))
    grad_case("dinov3-adaptformer", "adaptformer", "timm_dinov3", models["timm_dinov3"], tuned, adaptformer_logits,
              2309)
    tuned = {}
    for i in range(DEPTH):
        for which in ("adapter_attn", "adapter_mlp"):
            b = f"blocks.{i}.{which}."
            tuned[b + "adapter_down.weight"] = randn(g, (CONV_DIM, DIM), 0.2)
            tuned[b + "adapter_down.bias"] = randn(g, (CONV_DIM,), 0.1)
            tuned[b + "adapter_conv.weight"] = randn(g, (CONV_DIM, CONV_DIM, 3, 3), 0.2)
            tuned[b + "adapter_conv.bias"] = randn(g, (CONV_DIM,), 0.1)
            tuned[b + "adapter_up.weight"] = randn(g, (DIM, CONV_DIM), 0.2)
            tuned[b + "adapter_up.bias"] = randn(g, (DIM,), 0.1)
    tuned.update(new_head(g))
    grad_case("eva02-convpass", "convpass", "timm_eva02", models["timm_eva02"], tuned, convpass_logits, 2310)
    dg = models["timm_dinov2g_reg"]
    tuned = {k: v.detach().clone() for k, v in dg.state_dict().items()
             if k.endswith(".bias") and not k.startswith("head.")}
    tuned.update(new_head(g))
    grad_case("dinov2g-bitfit", "bitfit", "timm_dinov2g_reg", dg, tuned, plain_logits, 2311)
    # d. appended after the cases above, so that their random draws (and files) stay as they were
    grad_case("dinov3-linear", "linear", "timm_dinov3", models["timm_dinov3"], new_head(g), plain_logits, 2312,
              linear_check)
    tuned = {"prompt_embeddings": randn(g, (1, VPT_P, DIM), 0.5), **new_head(g)}
    grad_case("dinov3-vpt-shallow", "vpt-shallow", "timm_dinov3", models["timm_dinov3"], tuned, vpt_deep_logits,
              2313, vpt_zero_check)
    tuned = {"prompt_embeddings": randn(g, (1, VPT_P, DIM), 0.5),
             "deep_prompt_embeddings": randn(g, (DEPTH - 1, VPT_P, DIM), 0.5), **new_head(g)}
    grad_case("rope-vpt-deep", "vpt-deep", "timm_rope_reg_avg", models["timm_rope_reg_avg"], tuned, vpt_deep_logits,
              2314, vpt_avg_check)
    eva = models["timm_eva02"]
    joined = eva_joined_state(eva)
    names = ["patch_embed.proj.bias"]
    for i in range(DEPTH):
        names += [f"blocks.{i}.{m}.bias" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")]
    names.append("fc_norm.bias")
    # vitune's BitFit list (src/tuning/bitfit.rs names()): every bias of the joined backbone but the sub-LN's
    assert sorted(names) == sorted(k for k in joined if k.endswith(".bias") and ".mlp.norm." not in k), names
    tuned = {**{n: joined[n] for n in names}, **new_head(g)}
    grad_case("eva02-bitfit", "bitfit", "timm_eva02", eva, tuned, eva_joined_logits, 2315, eva_joined_check,
              EVA_JOINED_NOTE + " BitFit's list is vitune's fixed one (patch_embed.proj, norm1, attn.qkv, attn.proj, "
              "norm2, mlp.fc1, mlp.fc2 biases, the final fc_norm's): mlp.norm.bias (the SwiGLU sub-LayerNorm) is "
              "NOT trained.")
    tuned = {**joined, **new_head(g)}
    grad_case("eva02-full", "full", "timm_eva02", eva, tuned, eva_joined_logits, 2316, eva_joined_check,
              EVA_JOINED_NOTE + " Full fine-tuning trains every tensor of the joined backbone (mlp.norm.*, "
              "pos_embed incl. its CLS row, cls_token included) and the new head.")


# --------------------------------------------------------------------------------------------------------------
# full fine-tuning on DINOv3 (timm Eva) and the DINOv2-giant layout (timm VisionTransformer), under the names
# vitune's loader gives them; drawn after every other case (main() runs them last) from their own seeds
# --------------------------------------------------------------------------------------------------------------

FULL_HEAD_SEED = 2201                  # the generator of both new heads (dinov3-full's first)


def optional_biases():
    """The biases vitune loads as zeros where a checkpoint lacks them (src/model/load.rs optional_biases)."""
    names = ["patch_embed.proj.bias"]
    for i in range(DEPTH):
        names += [f"blocks.{i}.{m}.bias" for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    return names


def vitune_state(model):
    """The backbone as vitune loads it (src/model/load.rs; the head left out), in timm's order: Eva's gamma_1 /
    gamma_2 are ls1.gamma / ls2.gamma; each optional bias the checkpoint lacks is a zero vector (next after its
    weight); a no_embed_class pos_embed gets a zero row for CLS in front (the registers get none). Returns the
    tensors and the absent biases' names."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = set(optional_biases())
    k_cls = 0 if getattr(model, "cls_token", None) is None else 1
    out, absent = {}, []
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        b, _, leaf = k.rpartition(".")
        if is_eva(model) and leaf in ("gamma_1", "gamma_2"):
            k = f"{b}.ls{leaf[-1]}.gamma"
        elif k == "pos_embed" and getattr(model, "no_embed_class", False) and k_cls:
            v = torch.cat([torch.zeros(1, k_cls, DIM), v], 1)
        out[k] = v
        if leaf == "weight" and f"{b}.bias" in opt and f"{b}.bias" not in sd:
            out[f"{b}.bias"] = torch.zeros(v.shape[0])
            absent.append(f"{b}.bias")
    return out, absent


def timm_name(model, name):
    """The timm parameter a vitune name stands for (Eva's gamma_1/gamma_2; otherwise the same name)."""
    if is_eva(model) and name.endswith((".ls1.gamma", ".ls2.gamma")):
        return f"{name[:-len('.ls1.gamma')]}.gamma_{name[-len('1.gamma')]}"
    return name


def cls_row(model, P):
    """Whether P's pos_embed has vitune's extra CLS row (a no_embed_class model)."""
    return "pos_embed" in P and P["pos_embed"].shape[1] == model.pos_embed.shape[1] + 1


def vitune_full_logits(model, P, pixels):
    """Logits through timm's own model with P under vitune's names (torch.func.functional_call): ls1/ls2.gamma are
    Eva's gamma_1/gamma_2; an absent bias (timm's nn.Linear has none) is added to that Linear's output by a forward
    hook; a pos_embed with vitune's CLS row gives that row to CLS (timm's cls_token := cls_token + pos_embed[:, :1],
    what vitune adds) and its other rows to timm's patch-only pos_embed."""
    over, hooked = {}, {}
    for name, t in P.items():
        b, _, leaf = name.rpartition(".")
        if name == "pos_embed" and cls_row(model, P):
            assert model.no_embed_class and model.cls_token is not None
            over["pos_embed"] = t[:, 1:]
        elif leaf == "bias" and b and getattr(model.get_submodule(b), "bias", False) is None:
            assert isinstance(model.get_submodule(b), nn.Linear), b
            hooked[b] = t
        else:
            over[timm_name(model, name)] = t
    if cls_row(model, P):
        over["cls_token"] = P["cls_token"] + P["pos_embed"][:, :1]
    params = dict(model.named_parameters())
    assert set(over) <= set(params), sorted(set(over) - set(params))
    assert all(over[k].shape == params[k].shape for k in over)
    handles = [model.get_submodule(m).register_forward_hook(lambda _m, _i, out, bb=bb: out + bb)
               for m, bb in hooked.items()]
    try:
        return torch.func.functional_call(model, over, (pixels,))
    finally:
        for h in handles:
            h.remove()


def fd_points(model64, tuned, logits_fn, pixels, labels, g64, points):
    """Float64 central finite differences (h = 1e-6) at the given (name, flat index) entries; worst rel error."""
    h, worst = 1e-6, 0.0
    base = {k: v.double() for k, v in tuned.items()}
    with torch.no_grad():
        for name, idx in points:
            vals = []
            for sgn in (1.0, -1.0):
                t = dict(base)
                t[name] = base[name].clone()
                t[name].view(-1)[idx] += sgn * h
                vals.append(F.cross_entropy(logits_fn(model64, t, pixels.double()), labels).item())
            fd, an = (vals[0] - vals[1]) / (2 * h), g64[name].reshape(-1)[idx].item()
            assert abs(fd - an) <= 1e-7 + 1e-5 * abs(an), (name, idx, fd, an)
            worst = max(worst, abs(fd - an) / abs(an))
    return worst


def vitune_full_check(model, tuned, pixels, backbone):
    """Checks of full fine-tuning under vitune's names (float32 unless said):
    * the tensor list is vitune's for this backbone (every backbone tensor, its absent biases included), and the
      start values are model.safetensors' as vitune loads them: renamed gammas equal, absent biases zero (and
      absent from the file), the extra CLS row of a no_embed_class pos_embed zero; at them the glue gives timm's own
      logits with the new head;
    * the stored gradients equal autograd through the independent plain-torch reference forward (ref_forward, on
      vitune's layout) for every tensor;
    * the gradients of the tensors timm has equal timm's own parameters' gradients (pos_embed's patch rows for a
      no_embed_class model; there the CLS row's gradient equals cls_token's);
    * every absent bias (each third q, k, v of an absent qkv bias apart) has a non-zero gradient, and its largest
      entry (per third) passes a float64 central finite difference; so does the largest entry of the CLS row."""
    labels = torch.tensor(LABELS)
    file = load_file(str(OUT / backbone / "model.safetensors"))
    state, absent = vitune_state(model)
    names = {"cls_token", "reg_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    names |= {"pos_embed"} if "pos_embed" in file else set()
    for i in range(DEPTH):
        names |= {f"blocks.{i}.{n}" for n in (*CANON, "ls1.gamma", "ls2.gamma") if not n.startswith("mlp.norm.")}
    assert set(state) == names and set(tuned) == names | {"head.weight", "head.bias"}, sorted(set(state) ^ names)
    assert absent == [n for n in optional_biases() if n not in file and n[:-len("bias")] + "weight" in file], absent
    seen = set()
    for k, v in tuned.items():
        if k.startswith("head."):
            continue
        if k in absent:
            assert not v.any(), k
            continue
        src = timm_name(model, k)
        if k == "pos_embed" and v.shape != file[k].shape:
            assert v.shape[1] == file[k].shape[1] + 1 and not v[:, :1].any() and torch.equal(v[:, 1:], file[k])
        else:
            assert torch.equal(v, file[src]), k
        seen.add(src)
    assert seen == {k for k in file if not k.startswith("head.")}, sorted(seen ^ set(file))
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.head.weight.copy_(tuned["head.weight"])
        m.head.bias.copy_(tuned["head.bias"])
        e_timm = (vitune_full_logits(model, tuned, pixels) - m(pixels)).abs().max().item()
    assert e_timm < 1e-6, e_timm
    _, grads, _ = loss_grads(model, tuned, vitune_full_logits, pixels, labels, torch.float32)
    # the reference forward on vitune's layout
    spec = spec_of(backbone, model)
    P = {k: v.clone().requires_grad_(True) for k, v in tuned.items()}
    canon = {**CANON, "ls1.gamma": "g1", "ls2.gamma": "g2"}
    sd, c = {}, {}
    for k, v in P.items():
        if k.startswith("blocks."):
            i, rest = k[len("blocks."):].split(".", 1)
            c[f"blocks.{i}." + canon[rest]] = v
        else:
            sd[k] = v
    _, rl, _ = ref_forward(sd, spec, pixels, c)
    rg = dict(zip(P, torch.autograd.grad(F.cross_entropy(rl, labels), list(P.values()))))
    e_ref = max(((rg[k] - grads[k]).abs().max() / grads[k].abs().max()).item() for k in grads)
    assert e_ref < 1e-4, e_ref
    # timm's own parameters
    for q in m.parameters():
        q.requires_grad_(False)
    named = dict(m.named_parameters())
    want = {}
    for k, g in grads.items():
        if k in absent:
            continue
        want[timm_name(model, k)] = g[:, 1:] if k == "pos_embed" and cls_row(model, tuned) else g
    assert set(want) == set(named), sorted(set(want) ^ set(named))
    for n in want:
        named[n].requires_grad_(True)
    tg = dict(zip(want, torch.autograd.grad(F.cross_entropy(m(pixels), labels), [named[n] for n in want])))
    e_own = max(((tg[n] - g).abs().max() / g.abs().max()).item() for n, g in want.items())
    assert e_own < 1e-4, e_own
    out = {"x_start_vs_timm_logits_max_abs_err": e_timm, "x_ref_forward_grad_max_rel_err": e_ref,
           "x_timm_param_grad_max_rel_err": e_own}
    # absent biases (each third of a qkv bias apart) and the CLS row: non-zero, float64 FD at the largest entries
    _, g64, m64 = loss_grads(model, tuned, vitune_full_logits, pixels, labels, torch.float64)
    points, smallest = [], math.inf
    for n in absent:
        parts = 3 if n.endswith("attn.qkv.bias") else 1
        w = grads[n].numel() // parts
        for j in range(parts):
            smallest = min(smallest, grads[n][j * w:(j + 1) * w].abs().max().item())
            points.append((n, j * w + int(g64[n][j * w:(j + 1) * w].abs().argmax())))
    if absent:
        assert smallest > 1e-6, smallest
        out["x_absent_biases"] = len(absent)
        out["x_absent_bias_grad_min_over_parts_max_abs"] = smallest
    if cls_row(model, tuned):
        row = grads["pos_embed"][:, :1]
        e_row = ((row - grads["cls_token"]).abs().max() / grads["cls_token"].abs().max()).item()
        assert e_row < 1e-6 and row.abs().max() > 1e-6, e_row
        out["x_pos_cls_row_vs_cls_token_grad_max_rel_err"] = e_row
        points.append(("pos_embed", int(g64["pos_embed"][:, :1].reshape(-1).abs().argmax())))
    if points:
        out["x_extra_fd_float64_entries_checked"] = len(points)
        out["x_extra_fd_float64_worst_rel_err"] = fd_points(m64, tuned, vitune_full_logits, pixels, labels, g64,
                                                            points)
    return out


DINOV3_FULL_NOTE = ("tensor names are vitune's after its load (src/model/load.rs eva_to_vit, optional_biases): "
                    "timm Eva's blocks.{i}.gamma_1 / gamma_2 are blocks.{i}.ls1.gamma / ls2.gamma (LayerScale, "
                    "trained); the checkpoint has no qkv bias (qkv_bias=False), so blocks.{i}.attn.qkv.bias [3D] "
                    "(rows q,k,v) is one of vitune's absent biases: zero at load (its start value here) and trained "
                    "by full fine-tuning like every other tensor (its gradient is not zero, nor is its k third's: "
                    "RoPE makes a constant key offset position dependent). No pos_embed (RoPE only; vitune adds "
                    "none). Every other name is timm's; backbone tensors start at model.safetensors' values; the "
                    "head is new and random.")
DINOV2G_FULL_NOTE = ("tensor names are timm's (VisionTransformer: blocks.{i}.ls1.gamma / ls2.gamma, SwiGLUPacked "
                     "mlp.fc1 of 2H = 256 rows with the SiLU'd gate first, fused qkv with its bias: no absent "
                     "biases) except that pos_embed is as vitune loads a no_embed_class one (src/model/load.rs "
                     "finish): [1, 1+16, D], a ZERO row for CLS in front of the checkpoint's 16 patch rows (the 4 "
                     "registers get no position). Full fine-tuning trains that row too; it is added to CLS, so its "
                     "gradient equals cls_token's. Backbone tensors start at model.safetensors' values (the CLS row "
                     "at zero); the head is new and random.")


def full_cases(models):
    """dinov3-full and dinov2g-full: after every other case, from their own seeds (heads: FULL_HEAD_SEED)."""
    g = torch.Generator().manual_seed(FULL_HEAD_SEED)
    for short, backbone, seed, note in (("dinov3", "timm_dinov3", 2317, DINOV3_FULL_NOTE),
                                        ("dinov2g", "timm_dinov2g_reg", 2318, DINOV2G_FULL_NOTE)):
        model = models[backbone]
        state, _ = vitune_state(model)
        tuned = {**state, **new_head(g)}
        grad_case(f"{short}-full", "full", backbone, model, tuned, vitune_full_logits, seed,
                  partial(vitune_full_check, backbone=backbone), note)


GRADIENT = ["dinov3-vpt-deep", "dinov3-lora", "dinov2g-vpt-deep", "dinov2g-lora", "eva02-vpt-deep", "eva02-lora",
            "dinov3-ssf", "eva02-ssf", "dinov3-adaptformer", "eva02-convpass", "dinov2g-bitfit",
            "dinov3-linear", "dinov3-vpt-shallow", "rope-vpt-deep", "eva02-bitfit", "eva02-full",
            "dinov3-full", "dinov2g-full"]
FORWARD = list(TIMM_CASES) + ["hf_dinov3", "hf_dinov3_gated"]


def summarise():
    print()
    for case in FORWARD + [f"grad_{c}" for c in GRADIENT]:
        d = OUT / case
        files = sorted(d.iterdir())
        for f in files:
            f.chmod(0o644)
        print(f"  {case:<26} {sum(f.stat().st_size for f in files):>7} bytes  {', '.join(f.name for f in files)}")


def main():
    print(f"torch {torch.__version__}, timm {timm.__version__}, python {sys.version.split()[0]}")
    print("forward cases:")
    models = {case: timm_forward_case(case) for case in TIMM_CASES}
    hf_dinov3_case()
    print("gradient cases:")
    grad_cases(models)
    print("forward cases drawn after the gradient cases:")
    hf_dinov3_case("hf_dinov3_gated")
    print("gradient cases drawn after every other case:")
    full_cases(models)
    summarise()
    print("ok")


if __name__ == "__main__":
    main()
