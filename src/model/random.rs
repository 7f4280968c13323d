//! Backbones with random weights for the published configurations, for benchmarks and tests.

use std::collections::BTreeMap;

use super::{Backbone, HostTensor, Pooling, ViTConfig, WeightFormat};
use crate::rng::Rng;

/// A published configuration by name: vit-ti16, vit-s16, vit-b16, vit-l16, `demo` (the embedded demo
/// backbone's shape) or `tiny` (a CI-sized model); `-dinov3` after any of them gives DINOv3's layout at that
/// size (RoPE instead of absolute positions, 4 registers, LayerScale), `-swiglu` a packed SwiGLU MLP of the
/// same parameter count (DINOv2-giant's form).
pub fn standard_config(name: &str) -> Option<ViTConfig> {
    if let Some(base) = name.strip_suffix("-dinov3") {
        let mut c = standard_config(base)?;
        c.rope = Some(super::Rope {
            kind: super::RopeKind::DinoV3,
            temperature: 100.0,
            rotate_half: true,
            grid_offset: 0.0,
            xy: false,
            ref_grid: None,
        });
        c.abs_pos = false;
        c.registers = 4;
        c.layer_scale = true;
        c.eps = 1e-5;
        c.heads_source = format!("configuration {name}");
        return Some(c);
    }
    if let Some(base) = name.strip_suffix("-swiglu") {
        let mut c = standard_config(base)?;
        // fc1 of 2·H rows and fc2 of H columns hold 3·H·D weights: H = 8D/3 keeps GELU's 8·D² (rounded to 8).
        let inner = (8 * c.dim / 3).div_ceil(8) * 8;
        c.mlp_hidden = 2 * inner;
        c.swiglu = true;
        c.heads_source = format!("configuration {name}");
        return Some(c);
    }
    let (dim, depth, heads, patch, size) = match name {
        "vit-ti16" => (192, 12, 3, 16, 224),
        "vit-s16" => (384, 12, 6, 16, 224),
        "vit-b16" => (768, 12, 12, 16, 224),
        "vit-l16" => (1024, 24, 16, 16, 224),
        "tiny" => (48, 2, 3, 8, 32),
        "demo" => (96, 4, 3, 8, 32),
        _ => return None,
    };
    Some(ViTConfig {
        format: WeightFormat::Timm,
        dim,
        depth,
        heads,
        mlp_hidden: 4 * dim,
        patch,
        image_size: (size, size),
        num_classes: 10,
        pooling: Pooling::Token,
        eps: 1e-6,
        mean: [0.5; 3],
        std: [0.5; 3],
        crop_pct: 0.9,
        layer_scale: false,
        pre_norm: false,
        class_token: true,
        distilled: false,
        registers: 0,
        no_embed_class: false,
        mlp_act: super::MlpAct::Gelu,
        absent_biases: Vec::new(),
        heads_source: format!("configuration {name}"),
        rope: None,
        abs_pos: true,
        swiglu: false,
        mlp_norm: false,
        eva_names: None,
        architecture: None,
    })
}

/// Random weights (normal, std 0.02 for matrices; LayerNorm near 1) in timm's layout.
pub fn random_backbone(config: &ViTConfig, seed: u64) -> Backbone {
    let mut rng = Rng::new(seed);
    let c = config;
    let (d, h, inner) = (c.dim, c.mlp_hidden, c.mlp_inner());
    let (gh, gw) = c.grid();
    let mut t = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, std: f64, mean: f32| {
        let n = shape.iter().product();
        let data = rng
            .normal_vec(n, std)
            .into_iter()
            .map(|v| v + mean)
            .collect();
        t.insert(name, HostTensor::new(shape, data));
    };
    put("cls_token".into(), vec![1, 1, d], 0.02, 0.0);
    if c.abs_pos {
        put("pos_embed".into(), vec![1, 1 + gh * gw, d], 0.02, 0.0);
    }
    if c.registers > 0 {
        put("reg_token".into(), vec![1, c.registers, d], 0.02, 0.0);
    }
    put(
        "patch_embed.proj.weight".into(),
        vec![d, 3, c.patch, c.patch],
        0.02,
        0.0,
    );
    put("patch_embed.proj.bias".into(), vec![d], 0.02, 0.0);
    for i in 0..c.depth {
        let p = format!("blocks.{i}");
        put(format!("{p}.norm1.weight"), vec![d], 0.1, 1.0);
        put(format!("{p}.norm1.bias"), vec![d], 0.1, 0.0);
        put(format!("{p}.attn.qkv.weight"), vec![3 * d, d], 0.02, 0.0);
        put(format!("{p}.attn.qkv.bias"), vec![3 * d], 0.02, 0.0);
        put(format!("{p}.attn.proj.weight"), vec![d, d], 0.02, 0.0);
        put(format!("{p}.attn.proj.bias"), vec![d], 0.02, 0.0);
        put(format!("{p}.norm2.weight"), vec![d], 0.1, 1.0);
        put(format!("{p}.norm2.bias"), vec![d], 0.1, 0.0);
        put(format!("{p}.mlp.fc1.weight"), vec![h, d], 0.02, 0.0);
        put(format!("{p}.mlp.fc1.bias"), vec![h], 0.02, 0.0);
        put(format!("{p}.mlp.fc2.weight"), vec![d, inner], 0.02, 0.0);
        put(format!("{p}.mlp.fc2.bias"), vec![d], 0.02, 0.0);
        if c.mlp_norm {
            put(format!("{p}.mlp.norm.weight"), vec![inner], 0.1, 1.0);
            put(format!("{p}.mlp.norm.bias"), vec![inner], 0.1, 0.0);
        }
        if c.layer_scale {
            put(format!("{p}.ls1.gamma"), vec![d], 0.1, 1.0);
            put(format!("{p}.ls2.gamma"), vec![d], 0.1, 1.0);
        }
    }
    put("norm.weight".into(), vec![d], 0.1, 1.0);
    put("norm.bias".into(), vec![d], 0.1, 0.0);
    if c.num_classes > 0 {
        put("head.weight".into(), vec![c.num_classes, d], 0.02, 0.0);
        put("head.bias".into(), vec![c.num_classes], 0.02, 0.0);
    }
    Backbone {
        config: c.clone(),
        tensors: t,
        path: format!("random-{}", c.heads_source).into(),
        sha256: String::new(),
        source: None,
    }
}
