//! Backbones with random weights for the published configurations, for benchmarks and tests.

use std::collections::BTreeMap;

use super::{Backbone, HostTensor, Pooling, ViTConfig, WeightFormat};
use crate::rng::Rng;

/// A published configuration by name: vit-ti16, vit-s16, vit-b16, vit-l16, `demo` (the embedded demo
/// backbone's shape) or `tiny` (a CI-sized model).
pub fn standard_config(name: &str) -> Option<ViTConfig> {
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
    })
}

/// Random weights (normal, std 0.02 for matrices; LayerNorm near 1) in timm's layout.
pub fn random_backbone(config: &ViTConfig, seed: u64) -> Backbone {
    let mut rng = Rng::new(seed);
    let c = config;
    let (d, h) = (c.dim, c.mlp_hidden);
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
    put("pos_embed".into(), vec![1, 1 + gh * gw, d], 0.02, 0.0);
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
        put(format!("{p}.mlp.fc2.weight"), vec![d, h], 0.02, 0.0);
        put(format!("{p}.mlp.fc2.bias"), vec![d], 0.02, 0.0);
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
