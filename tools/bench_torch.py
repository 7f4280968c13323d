#!/usr/bin/env python3
"""PyTorch side of `vitune bench`: the same forward and training step, on the same configuration and batch,
so that both can be measured on one machine in one sitting.

    python tools/bench_torch.py --config demo --batch 32 --method vpt-deep            # CPU or the first CUDA GPU
    python tools/bench_torch.py --config vit-b16 --batch 32 --method vpt-deep --compile
    cargo run --release -- bench train --config demo --method vpt-deep --batch 32     # vitune's figures

What is timed matches `vitune bench forward` / `vitune bench train`:
- forward: the frozen backbone with random weights (std 0.02), no tuning, batch of N(0,1) images, under
  torch.inference_mode; one call = one forward of the whole batch.
- step: the method's forward, mean cross-entropy over 10 classes, backward, AdamW update (lr 1e-3, decay 1e-4),
  for vpt-deep (10 prompts, dropout 0.1 on the prompts as in vitune's default), vpt-shallow, linear or lora
  (rank 8 on q and v); the backbone frozen (requires_grad False) so only input gradients flow through it.
Timings are the mean over --iters calls after --warmup calls, with torch.cuda.synchronize on a GPU.
The configurations are vitune's `standard_config` ones (timm VisionTransformer, token pooling, eps 1e-6).
Needs torch and timm (not needed by vitune itself).
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import timm

CONFIGS = {
    # name: (width, depth, heads, patch, image size), as vitune's model::random::standard_config
    "vit-ti16": (192, 12, 3, 16, 224),
    "vit-s16": (384, 12, 6, 16, 224),
    "vit-b16": (768, 12, 12, 16, 224),
    "vit-l16": (1024, 24, 16, 16, 224),
    "tiny": (48, 2, 3, 8, 32),
    "demo": (96, 4, 3, 8, 32),
}


def backbone(name):
    d, depth, heads, patch, size = CONFIGS[name]
    m = timm.models.vision_transformer.VisionTransformer(
        img_size=size, patch_size=patch, embed_dim=d, depth=depth, num_heads=heads, mlp_ratio=4.0,
        num_classes=0, global_pool="token", class_token=True, qkv_bias=True)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m, size


class Tuned(nn.Module):
    """The frozen backbone with a method's trainable tensors, as in vitune's graph."""

    def __init__(self, vit, method, prompts=10, dropout=0.1, rank=8, classes=10):
        super().__init__()
        self.vit, self.method = vit, method
        d = vit.embed_dim
        depth = len(vit.blocks)
        patch = vit.patch_embed.patch_size[0]
        self.p = prompts if method.startswith("vpt") else 0
        if self.p:
            bound = (6.0 / (3 * patch * patch + d)) ** 0.5
            self.prompt = nn.Parameter(torch.empty(1, self.p, d).uniform_(-bound, bound))
            if method == "vpt-deep":
                self.deep = nn.Parameter(torch.empty(depth - 1, self.p, d).uniform_(-bound, bound))
        self.drop = nn.Dropout(dropout if method == "vpt-deep" else 0.0)
        if method == "lora":
            self.lora = nn.ParameterList()
            for blk in vit.blocks:
                a_q, a_v = (nn.Parameter(torch.randn(rank, d) * 0.02) for _ in range(2))
                b_q, b_v = (nn.Parameter(torch.zeros(d, rank)) for _ in range(2))
                self.lora.extend([a_q, b_q, a_v, b_v])
                blk.attn.qkv.register_forward_hook(self._lora_hook(a_q, b_q, a_v, b_v, d))
        self.head = nn.Linear(d, classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @staticmethod
    def _lora_hook(a_q, b_q, a_v, b_v, d):
        def hook(mod, inp, out):
            x = inp[0]
            dq = x @ a_q.t() @ b_q.t()
            dv = x @ a_v.t() @ b_v.t()
            return out + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)
        return hook

    def forward(self, x):
        v = self.vit
        x = v._pos_embed(v.patch_embed(x))
        n = x.shape[0]
        if self.p:
            x = torch.cat([x[:, :1], self.drop(self.prompt.expand(n, -1, -1)), x[:, 1:]], dim=1)
        for i, blk in enumerate(v.blocks):
            if i > 0 and self.method == "vpt-deep":
                x = torch.cat([x[:, :1], self.drop(self.deep[i - 1].expand(n, -1, -1)), x[:, 1 + self.p:]], dim=1)
            x = blk(x)
        return self.head(v.norm(x)[:, 0])


def timed(fn, iters, warmup, cuda):
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="demo", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--method", default="vpt-deep", choices=["vpt-deep", "vpt-shallow", "linear", "lora"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd versions")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    vit, size = backbone(a.config)
    vit.to(dev)
    x = torch.randn(a.batch, 3, size, size, device=dev)
    y = torch.randint(0, 10, (a.batch,), device=dev)
    tuned = Tuned(vit, a.method).to(dev)
    trainable = [p for p in tuned.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=1e-4)

    def forward_with(model):
        def run():
            with torch.inference_mode():
                model(x)
        return run

    def step_with(model):
        def run():
            tuned.train()
            vit.eval()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    name = torch.cuda.get_device_name(dev) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device        {name}; torch {torch.__version__}, timm {timm.__version__}")
    print(f"config        {a.config} method {a.method} batch {a.batch}")
    print(f"trainable     {sum(p.numel() for p in trainable)} parameters")
    variants = [("eager", vit, tuned)]
    if a.compile:
        variants.append(("compile", torch.compile(vit), torch.compile(tuned)))
    for label, fwd_model, step_model in variants:
        f = timed(forward_with(fwd_model), a.iters, a.warmup, cuda)
        s = timed(step_with(step_model), a.iters, a.warmup, cuda)
        print(f"{label:<8} forward {f * 1e3:9.2f} ms  {a.batch / f:8.1f} images/s   "
              f"step {s * 1e3:9.2f} ms  {a.batch / s:8.1f} images/s   step / forward {s / f:.2f}")


if __name__ == "__main__":
    main()
