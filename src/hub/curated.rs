//! Backbones vitune loads, with what a person needs to choose one. Parameter counts and input sizes are those of
//! timm's model cards; the download size is the f32 checkpoint (4 bytes a parameter), the exact figure comes from
//! the hub when it is pulled.

/// One entry of `vitune models` and the app's backbone picker.
#[derive(Clone, Copy, Debug)]
pub struct CuratedModel {
    /// The hub repo (timm's names).
    pub repo: &'static str,
    /// The revision pulled. `main` until a commit is pinned from a machine that reaches the hub; the tuned file
    /// records the commit actually used either way.
    pub revision: &'static str,
    pub title: &'static str,
    /// vitune's family name, as `vitune info` prints it.
    pub family: &'static str,
    /// Millions of parameters, head included.
    pub params_m: f32,
    /// The checkpoint's input size (pixels a side).
    pub input: u32,
    pub licence: &'static str,
    /// When to pick it, in one line.
    pub pick: &'static str,
}

impl CuratedModel {
    pub fn spec(&self) -> String {
        format!("{}{}@{}", super::PREFIX, self.repo, self.revision)
    }

    /// Bytes of its snapshot in the cache, `None` when the cache lacks it (no request is made).
    pub fn cached_bytes(&self, cfg: &super::HubConfig) -> Option<u64> {
        let name = super::HubName::parse(&self.spec()).ok()?;
        super::find_cached(cfg, &name).map(|(s, _)| super::snapshot_bytes(&s.dir))
    }

    /// Approximate download size in bytes (f32).
    pub fn download_bytes(&self) -> u64 {
        (self.params_m as f64 * 4e6) as u64
    }
}

pub fn curated() -> &'static [CuratedModel] {
    &CURATED
}

const CURATED: [CuratedModel; 11] = [
    CuratedModel {
        repo: "timm/vit_small_patch14_reg4_dinov2.lvd142m",
        revision: "main",
        title: "DINOv2 ViT-S/14 with registers",
        family: "DINOv2 with registers",
        params_m: 22.1,
        input: 518,
        licence: "Apache-2.0",
        pick: "the first choice for few shots of photos: strong self-supervised features, small and quick",
    },
    CuratedModel {
        repo: "timm/vit_base_patch14_dinov2.lvd142m",
        revision: "main",
        title: "DINOv2 ViT-B/14",
        family: "DINOv2",
        params_m: 86.6,
        input: 518,
        licence: "Apache-2.0",
        pick: "more accurate than ViT-S when the GPU has the memory and the classes are fine-grained",
    },
    CuratedModel {
        repo: "timm/vit_base_patch16_clip_224.openai",
        revision: "main",
        title: "CLIP ViT-B/16 (OpenAI)",
        family: "CLIP",
        params_m: 86.2,
        input: 224,
        licence: "MIT",
        pick: "broad, web-scale concepts (objects, scenes, styles, text in images); what most prompt papers tune",
    },
    CuratedModel {
        repo: "timm/vit_base_patch16_siglip_224.webli",
        revision: "main",
        title: "SigLIP ViT-B/16 224",
        family: "SigLIP",
        params_m: 92.9,
        input: 224,
        licence: "Apache-2.0",
        pick: "like CLIP, often stronger for linear probing; attention pooling instead of a class token",
    },
    CuratedModel {
        repo: "timm/deit_small_patch16_224.fb_in1k",
        revision: "main",
        title: "DeiT-S/16 (ImageNet-1k)",
        family: "supervised ViT",
        params_m: 22.1,
        input: 224,
        licence: "Apache-2.0",
        pick: "small and fast at 224 px; for everyday objects close to ImageNet's classes, and slow GPUs",
    },
    CuratedModel {
        repo: "timm/vit_base_patch16_224.augreg_in21k",
        revision: "main",
        title: "ViT-B/16 AugReg (ImageNet-21k)",
        family: "supervised ViT",
        params_m: 102.6,
        input: 224,
        licence: "Apache-2.0",
        pick: "the backbone of the VPT, SPT and Convpass papers: to compare with their tables",
    },
    CuratedModel {
        repo: "timm/vit_small_patch16_dinov3.lvd1689m",
        revision: "main",
        title: "DINOv3 ViT-S/16 (gated)",
        family: "DINOv3",
        params_m: 21.6,
        input: 256,
        licence: "DINOv3 License (accept it on the hub page, then set HF_TOKEN)",
        pick: "the strongest small self-supervised features of 2025 for few shots and linear probes; RoPE, any input size",
    },
    CuratedModel {
        repo: "timm/vit_base_patch16_dinov3.lvd1689m",
        revision: "main",
        title: "DINOv3 ViT-B/16 (gated)",
        family: "DINOv3",
        params_m: 85.7,
        input: 256,
        licence: "DINOv3 License (accept it on the hub page, then set HF_TOKEN)",
        pick: "DINOv3 with more capacity, for fine-grained classes when the GPU has a few GB to spare",
    },
    CuratedModel {
        repo: "timm/vit_large_patch16_dinov3.lvd1689m",
        revision: "main",
        title: "DINOv3 ViT-L/16 (gated)",
        family: "DINOv3",
        params_m: 303.1,
        input: 256,
        licence: "DINOv3 License (accept it on the hub page, then set HF_TOKEN)",
        pick: "the most accurate DINOv3 a desktop GPU tunes comfortably; slow on integrated graphics",
    },
    CuratedModel {
        repo: "timm/eva02_base_patch14_224.mim_in22k",
        revision: "main",
        title: "EVA-02 ViT-B/14 (MIM, ImageNet-22k)",
        family: "EVA-02",
        params_m: 85.8,
        input: 224,
        licence: "MIT",
        pick: "masked-image pre-training distilled from EVA-CLIP: strong when the task is far from ImageNet",
    },
    CuratedModel {
        repo: "timm/vit_giant_patch14_reg4_dinov2.lvd142m",
        revision: "main",
        title: "DINOv2 ViT-g/14 with registers",
        family: "DINOv2-giant (SwiGLU)",
        params_m: 1136.5,
        input: 518,
        licence: "Apache-2.0",
        pick: "the largest DINOv2: 4.5 GB of weights; only for GPUs with 12 GB or more",
    },
];
