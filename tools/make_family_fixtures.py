#!/usr/bin/env python3
"""Fixtures for the ViT family's layout variants (tests/fixtures/), made by timm itself on random weights.

How to run (from the repository root)::

    python tools/make_family_fixtures.py

Requirements: torch, timm, safetensors (CPU). Deterministic and idempotent: each run rebuilds its own folders.

Forward cases (same files as tools/make_fixtures.py: model.safetensors, config.json, input.safetensors,
expected.safetensors with ``pooled``, ``logits``, ``attn.{l}``, meta.json), tiny ViTs (32x32, patch 8, width 48,
depth 2, 3 heads, 5 classes), every parameter random:

* ``timm_clip``: the CLIP vision tower's layout as timm builds it for ``vit_*_clip_quickgelu_*``:
  ``pre_norm=True`` (a ``norm_pre`` LayerNorm after the position embedding; timm then builds the patch
  embedding without a bias) and ``act_layer='quick_gelu'``.
* ``timm_reg``: DINOv2 with registers as timm builds ``vit_*_reg4_dinov2``: 4 ``reg_token`` after CLS, without
  position embedding, ``no_embed_class=True`` (``pos_embed`` has no CLS row), LayerScale.
* ``timm_gap``: ``qkv_bias=False`` and ``global_pool='avg'`` with ``fc_norm=False``: the final ``norm`` runs on
  every token, then the patch tokens are averaged.
* ``timm_nocls``: no class token (``class_token=False``), ``global_pool='avg'``, ``fc_norm=False``: the layout of
  ``vit_*_siglip_gap_*`` and timm's ``*_gap_*`` models; ``pos_embed`` has one row per patch.
* ``timm_reg_avg``: 4 registers (``no_embed_class=True``) with ``global_pool='avg'`` and ``fc_norm``: the average
  skips CLS and the registers.
* ``timm_siglip``: SigLIP as timm builds ``vit_*_siglip_*``: no class token, ``global_pool='map'`` (the final
  norm on every token, then ``attn_pool``: a latent query, q / kv / proj, a LayerNorm and an MLP on a residual).
* ``timm_distilled``: DeiT distilled (``VisionTransformerDistilled``: ``dist_token`` after CLS with its own
  position row, ``head_dist``). Its logits are timm's average of the two heads; ``pooled`` is CLS and the
  distillation token after the final norm side by side [N, 2D] (vitune's one head over both is
  ``[W/2 | W_dist/2]``).

``hf_clip``: Hugging Face's ``CLIPVisionModel`` (transformers; ``vision_model.*`` names, ``pre_layrnorm``,
``post_layernorm``, separate q/k/v projections, QuickGELU, eps 1e-5) with its config.json; expected ``pooled``
(the ``pooler_output``: post_layernorm of CLS) and ``attn.{l}`` (eager attention), no head.

``hf_dinov2`` and ``hf_dinov2_reg``: transformers' ``Dinov2Model`` and ``Dinov2WithRegistersModel`` (4 registers:
after CLS, without position embedding; CLS keeps its row), LayerScale, expected ``pooled`` (``pooler_output``:
the final layernorm of CLS) and ``attn.{l}``.

Gradient cases (same files as tools/make_grad_fixtures.py): on ``timm_clip``, ``clip-vpt-deep`` (3 prompts) and
``clip-lora`` (rank 2, alpha 4, q and v); on ``timm_gap``, ``gap-bitfit`` (every bias it has, the final norm's
through the norm-then-average pooling); on ``timm_reg``, ``reg-vpt-deep`` and ``reg-lora`` (prompts after CLS and
the registers); on ``timm_nocls``, ``nocls-vpt-deep`` and ``nocls-lora`` (prompts first; the average includes
them, as timm's pooling after its prefix tokens does); on ``timm_distilled``, ``distilled-vpt-deep`` and
``distilled-lora`` (prompts after CLS and the distillation token; the new head reads both, [C, 2D]); on
``timm_siglip``, ``siglip-vpt-deep``, ``siglip-lora``, ``siglip-bitfit`` (the pooling's biases too) and
``siglip-full`` (every tensor, the latent query included). Autograd runs through timm's own modules: VPT's prompts are inserted
after CLS before ``norm_pre`` (so the pre-norm normalises them, as CLIP prompt methods such as MaPLe do) and deep
prompts replace the prompt rows before blocks 1..; LoRA is W + (alpha/r)·B·A in qkv's q and v rows, through
``torch.func.functional_call``. The head is a new random one.
"""

import json
import shutil
from pathlib import Path

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

import timm
from timm.models import vision_transformer as tvit

import make_fixtures as mf

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
IMG, PATCH, DIM, DEPTH, HEADS, CLASSES = 32, 8, 48, 2, 3, 5
META = {"generator": "tools/make_family_fixtures.py"}

VARIANTS = {
    # timm's CLIP entries build LayerNorm(eps=1e-5), as here.
    "timm_clip": dict(pre_norm=True, act_layer="quick_gelu", global_pool="token",
                      norm_layer=partial(nn.LayerNorm, eps=1e-5)),
    "timm_gap": dict(qkv_bias=False, global_pool="avg", fc_norm=False),
    "timm_reg": dict(reg_tokens=4, no_embed_class=True, init_values=1e-5, global_pool="token"),
    "timm_nocls": dict(class_token=False, global_pool="avg", fc_norm=False),
    "timm_reg_avg": dict(reg_tokens=4, no_embed_class=True, global_pool="avg"),
    "timm_distilled": dict(global_pool="token", distilled=True),
    "timm_siglip": dict(class_token=False, global_pool="map"),
}


def build(args):
    if args.get("distilled"):
        from timm.models.deit import VisionTransformerDistilled

        rest = {k: v for k, v in args.items() if k != "distilled"}
        return VisionTransformerDistilled(
            img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=4.0,
            num_classes=CLASSES, **rest,
        ).eval()
    return tvit.VisionTransformer(
        img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=4.0,
        num_classes=CLASSES, **args,
    ).eval()


def fresh(case):
    d = OUT / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2) + "\n")


def forward_case(case, seed):
    torch.manual_seed(seed)
    args = VARIANTS[case]
    model = build(args)
    mf.randomize_(model)
    d = fresh(case)
    sd = mf.plain_state_dict(model.state_dict())
    save_file(sd, str(d / "model.safetensors"), metadata=META)
    json_args = {k: v for k, v in args.items() if k not in ("norm_layer", "distilled")}
    model_args = dict(img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, **json_args)
    arch = f"deit_fixture_{case}_distilled" if args.get("distilled") else f"vit_fixture_{case}"
    write_json(d / "config.json", {
        "architecture": arch,
        "num_classes": CLASSES,
        "num_features": DIM,
        "global_pool": args["global_pool"],
        "model_args": model_args,
        "pretrained_cfg": {"input_size": [3, IMG, IMG], "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.9},
    })
    pixels = torch.randn(2, 3, IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=META)
    if args.get("distilled"):
        pooled, logits, attns = run_distilled(model, pixels)
    else:
        pooled, logits, attns = mf.run_timm(model, pixels)
    mf.save_expected(d, pooled, logits, attns)
    write_json(d / "meta.json", {
        "case": case, "heads": HEADS, "image_size": [IMG, IMG], "timm_args": json_args,
        "eps": 1e-5 if "norm_layer" in args else 1e-6,
        "keys": sorted(sd), "timm_version": timm.__version__, "torch_version": torch.__version__,
    })
    return model, sd


def run_distilled(model, pixels):
    """timm's distilled DeiT: logits the average of its two heads; pooled CLS and dist side by side."""
    attns = []
    hooks = []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.attn.attn_drop.register_forward_hook(
            lambda _m, inp, _o, store=attns: store.append(inp[0].detach().clone())))
    feats = model.forward_features(pixels)
    logits = model.forward_head(feats)
    for h in hooks:
        h.remove()
    pooled = torch.cat([feats[:, 0], feats[:, 1]], -1)
    both = (model.head(feats[:, 0]) + model.head_dist(feats[:, 1])) / 2
    torch.testing.assert_close(both, logits, rtol=0, atol=0)
    torch.testing.assert_close(model(pixels), logits, rtol=1e-6, atol=1e-6)
    return pooled.float(), logits.float(), [a.float() for a in attns]


class Features(nn.Module):
    """A timm model's forward_features as a module's forward (for torch.func.functional_call)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.forward_features(x)


def head_logits(model, x, P):
    """From the final norm's output: timm's pooling (after every prefix token; CLS and dist side by side when
    distilled), then the tuning's head."""
    if hasattr(model, "dist_token"):
        pooled = torch.cat([x[:, 0], x[:, 1]], -1)
    else:
        pooled = model.forward_head(x, pre_logits=True)
    return F.linear(pooled, P["head.weight"], P["head.bias"])


def vpt_deep_logits(model, P, pixels, p):
    """Prompts after every prefix token (CLS, the distillation token, registers; none without a class
    token)."""
    n = pixels.shape[0]
    k = model.num_prefix_tokens
    x = model._pos_embed(model.patch_embed(pixels))
    x = torch.cat([x[:, :k], P["prompt_embeddings"].expand(n, -1, -1), x[:, k:]], 1)
    x = model.norm_pre(x)
    for i, blk in enumerate(model.blocks):
        if i >= 1:
            deep = P["deep_prompt_embeddings"][i - 1].unsqueeze(0).expand(n, -1, -1)
            x = torch.cat([x[:, :k], deep, x[:, k + p:]], 1)
        x = blk(x)
    return head_logits(model, model.norm(x), P)


def lora_logits(model, P, pixels, scale):
    overrides = {}
    for i, blk in enumerate(model.blocks):
        w = blk.attn.qkv.weight
        zero = torch.zeros(DIM, DIM)
        q = scale * P[f"blocks.{i}.attn.q_lora_B"] @ P[f"blocks.{i}.attn.q_lora_A"]
        v = scale * P[f"blocks.{i}.attn.v_lora_B"] @ P[f"blocks.{i}.attn.v_lora_A"]
        overrides[f"blocks.{i}.attn.qkv.weight"] = w + torch.cat([q, zero, v], 0)
    feats = torch.func.functional_call(Features(model), {f"m.{k}": v for k, v in overrides.items()}, (pixels,))
    return head_logits(model, feats, P)


def grad_case(case, method, backbone, model, tuned, logits_fn, options):
    g = torch.Generator().manual_seed(len(case))
    pixels = torch.randn(3, 3, IMG, IMG, generator=g)
    labels = torch.tensor([0, 3, 1], dtype=torch.int64)
    params = {k: v.clone().requires_grad_(True) for k, v in tuned.items()}
    for blk in model.blocks:
        blk.attn.fused_attn = False
    logits = logits_fn(model, params, pixels)
    loss = F.cross_entropy(logits, labels)
    names = list(params)
    grads = torch.autograd.grad(loss, [params[k] for k in names])
    for k, gr in zip(names, grads):
        assert gr.abs().max() > 0, (case, k)
    d = fresh(f"grad_{case}")
    save_file({k: v.contiguous() for k, v in tuned.items()}, str(d / "tuned.safetensors"), metadata=META)
    save_file({"pixels": pixels, "labels": labels}, str(d / "input.safetensors"), metadata=META)
    exp = {k: gr.contiguous() for k, gr in zip(names, grads)}
    exp["loss"] = loss.detach().reshape(())
    save_file(exp, str(d / "expected.safetensors"), metadata=META)
    write_json(d / "meta.json", {
        "case": case, "method": method, "options": options, "backbone": backbone,
        "loss_value": loss.item(), "labels": labels.tolist(),
        "timm_version": timm.__version__, "torch_version": torch.__version__,
    })
    print(f"  grad_{case}: loss {loss.item():.6f}, {len(names)} tensors")


def randn(g, shape, std):
    return torch.randn(*shape, generator=g) * std


def head(g, width=DIM):
    return {"head.weight": randn(g, (CLASSES, width), 0.2), "head.bias": randn(g, (CLASSES,), 0.1)}


def write_hf_case(case, model, extra_meta):
    """A transformers vision tower's fixture: its float tensors, config.json, input, and expected `pooled` (its
    pooler_output) and `attn.{l}`."""
    import transformers

    d = fresh(case)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if v.dtype == torch.float32}
    save_file(sd, str(d / "model.safetensors"), metadata=META)
    model.config.save_pretrained(str(d))
    pixels = torch.randn(2, 3, IMG, IMG)
    save_file({"pixels": pixels}, str(d / "input.safetensors"), metadata=META)
    with torch.no_grad():
        out = model(pixel_values=pixels, output_attentions=True)
    exp = {"pooled": out.pooler_output.contiguous()}
    for i, a in enumerate(out.attentions):
        exp[f"attn.{i}"] = a.contiguous()
    save_file(exp, str(d / "expected.safetensors"), metadata=META)
    write_json(d / "meta.json", {"case": case, "heads": HEADS, "image_size": [IMG, IMG], **extra_meta,
                                 "transformers_version": transformers.__version__, "keys": sorted(sd)})
    print(f"  {case}: {len(sd)} tensors")


def hf_clip_case(seed):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(
        hidden_size=DIM, intermediate_size=4 * DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
        image_size=IMG, patch_size=PATCH, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        attn_implementation="eager",
    )
    model = CLIPVisionModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("class_embedding") or "position_embedding" in name:
                p.normal_(0.0, 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(0.0, 0.1).add_(1.0)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.2)
    write_hf_case("hf_clip", model, {})


def hf_dinov2_case(case, seed, registers):
    import transformers
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    kw = dict(
        hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS, mlp_ratio=4, image_size=IMG,
        patch_size=PATCH, layer_norm_eps=1e-6, attn_implementation="eager",
    )
    if registers:
        from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=registers, **kw)).eval()
    else:
        model = Dinov2Model(Dinov2Config(**kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("cls_token", "position_embeddings", "register_tokens", "mask_token")):
                p.normal_(0.0, 0.5)
            elif "lambda1" in name:
                p.normal_(0.0, 0.2).add_(0.5)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(0.0, 0.1).add_(1.0)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.2)
    write_hf_case(case, model, {"registers": registers})


def main():
    hf_clip_case(1601)
    hf_dinov2_case("hf_dinov2", 1602, 0)
    hf_dinov2_case("hf_dinov2_reg", 1603, 4)
    models = {}
    for seed, case in enumerate(VARIANTS, start=1501):
        models[case], sd = forward_case(case, seed)
        print(f"  {case}: {len(sd)} tensors; no {sorted(set(mf_keys()) - set(sd))}")
    g = torch.Generator().manual_seed(7)
    p, rank, alpha = 3, 2, 4.0

    def vpt_and_lora(short, backbone, width=DIM):
        """``{short}-vpt-deep`` and ``{short}-lora`` on ``backbone``, a new head of ``width`` inputs."""
        model = models[backbone]
        tuned = {"prompt_embeddings": randn(g, (1, p, DIM), 0.5),
                 "deep_prompt_embeddings": randn(g, (DEPTH - 1, p, DIM), 0.5), **head(g, width)}
        grad_case(f"{short}-vpt-deep", "vpt-deep", backbone, model, tuned,
                  lambda m, P, x: vpt_deep_logits(m, P, x, p), {})
        tuned = head(g, width)
        for i in range(DEPTH):
            for s in "qv":
                tuned[f"blocks.{i}.attn.{s}_lora_A"] = randn(g, (rank, DIM), 0.2)
                tuned[f"blocks.{i}.attn.{s}_lora_B"] = randn(g, (DIM, rank), 0.2)
        grad_case(f"{short}-lora", "lora", backbone, model, tuned,
                  lambda m, P, x: lora_logits(m, P, x, alpha / rank), {"alpha": alpha})

    vpt_and_lora("clip", "timm_clip")
    vpt_and_lora("reg", "timm_reg")
    plain = lambda m, P, x: torch.func.functional_call(m, P, (x,))

    def backbone_tensors(model, keep):
        return {k: v.detach().clone() for k, v in model.state_dict().items() if keep(k) and not k.startswith("head.")}

    def is_bias(k):
        return k.endswith(".bias")

    gap = models["timm_gap"]
    grad_case("gap-bitfit", "bitfit", "timm_gap", gap, {**backbone_tensors(gap, is_bias), **head(g)}, plain, {})
    # Appended after the cases above, so that their random draws (and files) stay as they were.
    vpt_and_lora("nocls", "timm_nocls")
    vpt_and_lora("distilled", "timm_distilled", 2 * DIM)
    vpt_and_lora("siglip", "timm_siglip")
    siglip = models["timm_siglip"]
    grad_case("siglip-bitfit", "bitfit", "timm_siglip", siglip, {**backbone_tensors(siglip, is_bias), **head(g)},
              plain, {})
    grad_case("siglip-full", "full", "timm_siglip", siglip, {**backbone_tensors(siglip, lambda k: True), **head(g)},
              plain, {})


def mf_keys():
    """The classic layout's tensor names (to say what each variant lacks)."""
    return build(dict(global_pool="token")).state_dict().keys()


if __name__ == "__main__":
    main()
