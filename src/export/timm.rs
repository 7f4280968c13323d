//! The merged timm checkpoint: for methods whose result is a plain ViT (linear probe, BitFit, LoRA merged, SSF
//! merged, full fine-tuning), a timm-named state dict and the `config.json` timm reads beside it.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{input_size, merged_weights};
use crate::error::{Error, Result};
use crate::model::resample::resample_pos_embed;
use crate::model::{Backbone, HostTensor, MlpAct, Pooling, POS_EMBED_ANTIALIAS};
use crate::tuned::TunedFile;

/// What a timm export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimmReport {
    pub weights: PathBuf,
    pub config: PathBuf,
    pub architecture: String,
    /// What timm will not reproduce exactly, if anything.
    pub note: Option<String>,
}

/// Some of timm's registered ViT names. Any of them builds the checkpoint's ViT when config.json's `model_args`
/// (which override the name's own) carry the real shape; the exact one is named where the shape is standard.
const TIMM_VITS: [&str; 10] = [
    "vit_tiny_patch16_224",
    "vit_tiny_patch16_384",
    "vit_small_patch16_224",
    "vit_small_patch16_384",
    "vit_small_patch32_224",
    "vit_base_patch16_224",
    "vit_base_patch16_384",
    "vit_base_patch32_224",
    "vit_base_patch8_224",
    "vit_large_patch16_224",
];

/// timm's architecture name for this shape, else `vit_base_patch16_224` (its `model_args` then set the shape).
fn architecture(b: &Backbone, size: (usize, usize)) -> String {
    let c = &b.config;
    let width = match (c.dim, c.depth) {
        (192, 12) => "tiny",
        (384, 12) => "small",
        (768, 12) => "base",
        (1024, 24) => "large",
        _ => "",
    };
    // timm's CLIP entries build their LayerNorms with eps 1e-5; model_args override the rest.
    if c.pre_norm {
        return "vit_base_patch16_clip_224".into();
    }
    let name = format!("vit_{width}_patch{}_{}", c.patch, size.0);
    if size.0 == size.1 && TIMM_VITS.contains(&name.as_str()) {
        name
    } else {
        TIMM_VITS[5].to_string()
    }
}

/// `config.json` beside the weights, in the layout timm's hub loader reads (`architecture`, `num_classes`,
/// `label_names`, `model_args`, `pretrained_cfg`).
/// What the merged checkpoint's timm layout needs beyond the backbone's config.
#[derive(Clone, Copy)]
struct TimmLayout {
    qkv_bias: bool,
    no_embed_class: bool,
}

fn config_json(
    b: &Backbone,
    tuned: &TunedFile,
    size: (usize, usize),
    arch: &str,
    layout: TimmLayout,
) -> serde_json::Value {
    let c = &b.config;
    if c.eva_names.is_some() {
        // timm's Eva: the architecture's own definition (RoPE, registers, LayerScale, norms) with the shape here;
        // its MLP ratio counts the gated hidden once.
        let model_args = json!({
            "img_size": [size.0, size.1],
            "patch_size": c.patch,
            "embed_dim": c.dim,
            "depth": c.depth,
            "num_heads": c.heads,
            "mlp_ratio": c.mlp_inner() as f64 / c.dim as f64,
            "num_classes": tuned.tuning.num_classes,
            "global_pool": match c.pooling {
                Pooling::Token => "token",
                Pooling::Avg | Pooling::NormAvg => "avg",
                Pooling::Map => "map",
            },
        });
        return document(b, tuned, size, arch, model_args);
    }
    let mut model_args = json!({
        "img_size": [size.0, size.1],
        "patch_size": c.patch,
        "embed_dim": c.dim,
        "depth": c.depth,
        "num_heads": c.heads,
        "mlp_ratio": c.mlp_hidden as f64 / c.dim as f64,
        "num_classes": tuned.tuning.num_classes,
        "global_pool": match c.pooling {
            Pooling::Token => "token",
            Pooling::Avg | Pooling::NormAvg => "avg",
            Pooling::Map => "map",
        },
    });
    if c.pooling == Pooling::NormAvg {
        model_args["fc_norm"] = json!(false);
    }
    if !c.class_token {
        model_args["class_token"] = json!(false);
    }
    if c.pre_norm {
        model_args["pre_norm"] = json!(true);
    }
    if c.registers > 0 {
        model_args["reg_tokens"] = json!(c.registers);
    }
    if layout.no_embed_class {
        model_args["no_embed_class"] = json!(true);
    }
    if c.mlp_act == MlpAct::QuickGelu {
        model_args["act_layer"] = json!("quick_gelu");
    }
    if !layout.qkv_bias {
        model_args["qkv_bias"] = json!(false);
    }
    if c.layer_scale {
        // Any value creates the LayerScale modules; the checkpoint's γ replace it.
        model_args["init_values"] = json!(1e-5);
    }
    document(b, tuned, size, arch, model_args)
}

/// The config.json document around `model_args`.
fn document(
    b: &Backbone,
    tuned: &TunedFile,
    size: (usize, usize),
    arch: &str,
    model_args: serde_json::Value,
) -> serde_json::Value {
    let c = &b.config;
    json!({
        "architecture": arch,
        "num_classes": tuned.tuning.num_classes,
        "num_features": c.dim,
        "global_pool": model_args["global_pool"].clone(),
        "label_names": tuned.classes,
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": [3, size.0, size.1],
            "interpolation": "bicubic",
            "crop_pct": c.crop_pct,
            "mean": c.mean,
            "std": c.std,
            "num_classes": tuned.tuning.num_classes,
            "classifier": "head",
        },
        "vitune": {
            "method": tuned.tuning.method.name(),
            "method_settings": tuned.tuning.options.describe(tuned.tuning.method),
            "backbone_file": b.file_name(),
            "backbone_sha256": b.sha256,
            "backbone_source": b.source,
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// The loader's joins undone, under timm's Eva names: `ls1/ls2.gamma` → `gamma_1/2`; the joined qkv back to
/// `q_proj`/`k_proj`/`v_proj` or to `q_bias`/`v_bias` beside `qkv`; fc1 back to `fc1_g`/`fc1_x`. Eva has no key
/// bias: a tuning that made the joined bias's k third non-zero (SSF's shift, BitFit, full fine-tuning) is refused.
fn eva_names_from_vit(
    c: &crate::model::ViTConfig,
    names: crate::model::EvaNames,
    weights: &mut std::collections::BTreeMap<String, HostTensor>,
) -> Result<()> {
    let d = c.dim;
    let take = |w: &mut std::collections::BTreeMap<String, HostTensor>, name: &str| {
        w.remove(name)
            .ok_or_else(|| Error::Internal(format!("no `{name}` to export")))
    };
    let rows = |t: &HostTensor, from: usize, to: usize| -> HostTensor {
        let cols: usize = t.shape[1..].iter().product();
        let mut shape = t.shape.clone();
        shape[0] = to - from;
        HostTensor::new(shape, t.data[from * cols..to * cols].to_vec())
    };
    for l in 0..c.depth {
        let b = format!("blocks.{l}");
        if names.gammas {
            for (from, to) in [("ls1.gamma", "gamma_1"), ("ls2.gamma", "gamma_2")] {
                if let Some(t) = weights.remove(&format!("{b}.{from}")) {
                    weights.insert(format!("{b}.{to}"), t);
                }
            }
        }
        let bias = weights.remove(&format!("{b}.attn.qkv.bias"));
        if let Some(bias) = &bias {
            if bias.data[d..2 * d].iter().any(|&v| v != 0.0) {
                return Err(Error::Input(format!(
                    "the tuning gave `{b}.attn.qkv` a key bias, which timm's Eva does not have; export it as \
                     ONNX instead (--format onnx)"
                )));
            }
        }
        if names.separate_qkv {
            let w = take(weights, &format!("{b}.attn.qkv.weight"))?;
            for (i, part) in ["q", "k", "v"].into_iter().enumerate() {
                weights.insert(
                    format!("{b}.attn.{part}_proj.weight"),
                    rows(&w, i * d, (i + 1) * d),
                );
                if let (Some(bias), true) = (&bias, part != "k") {
                    weights.insert(
                        format!("{b}.attn.{part}_proj.bias"),
                        rows(bias, i * d, (i + 1) * d),
                    );
                }
            }
        } else if let Some(bias) = &bias {
            if !names.qv_bias {
                return Err(Error::Input(format!(
                    "the tuning gave `{b}.attn.qkv` biases, which this timm architecture does not have; export \
                     it as ONNX instead (--format onnx)"
                )));
            }
            weights.insert(format!("{b}.attn.q_bias"), rows(bias, 0, d));
            weights.insert(format!("{b}.attn.v_bias"), rows(bias, 2 * d, 3 * d));
        }
        if names.split_fc1 {
            let h = c.mlp_inner();
            for param in ["weight", "bias"] {
                if let Some(t) = weights.remove(&format!("{b}.mlp.fc1.{param}")) {
                    weights.insert(format!("{b}.mlp.fc1_g.{param}"), rows(&t, 0, h));
                    weights.insert(format!("{b}.mlp.fc1_x.{param}"), rows(&t, h, 2 * h));
                }
            }
        }
    }
    Ok(())
}

/// Writes the merged state dict to `out` (safetensors) and `config.json` beside it. Prompt and adapter methods
/// are refused: their result is not a plain ViT.
pub fn export_timm(backbone: &Backbone, tuned: &TunedFile, out: &Path) -> Result<TimmReport> {
    if let Some(part) = backbone.config.not_exported() {
        return Err(Error::Input(format!(
            "the merged timm checkpoint is not written for {part} yet: export with --format onnx (or run the \
             tuned file in vitune itself)"
        )));
    }
    let t = &tuned.tuning;
    if t.method.spec().onnx(&t.options).is_some() {
        return Err(Error::Input(format!(
            "{} adds {} to the ViT, so its result is not a plain timm ViT; export it as ONNX instead (--format onnx)",
            t.method,
            if t.method.uses_prompts() { "prompt tokens" } else { "branches" }
        )));
    }
    let c = &backbone.config;
    if c.distilled {
        return Err(Error::Input(
            "a distilled DeiT's merged timm checkpoint is not written yet (its two heads are one in vitune); export it as ONNX instead (--format onnx)".into(),
        ));
    }
    let size = input_size(backbone, tuned);
    let mut weights = merged_weights(backbone, t)?;
    let d = c.dim;
    let k = c.prefix_tokens();
    if size != c.image_size && c.abs_pos {
        let grid = (size.0 / c.patch, size.1 / c.patch);
        let pos = &weights["pos_embed"];
        let data = resample_pos_embed(&pos.data, d, k, c.grid(), grid, POS_EMBED_ANTIALIAS);
        weights.insert(
            "pos_embed".into(),
            HostTensor::new(vec![1, k + grid.0 * grid.1, d], data),
        );
    }
    // The zeros standing in for absent biases are not timm's tensors, unless the tuning made them non-zero (SSF's
    // shifts fold into them, full fine-tuning trains them): then qkv gets its biases back, and a patch-embedding
    // bias under CLIP's pre-norm (whose timm layer has none) moves into the patches' position embeddings.
    let changed: Vec<String> = c
        .absent_biases
        .iter()
        .filter(|k| {
            weights
                .get(*k)
                .is_some_and(|b| b.data.iter().any(|&v| v != 0.0))
        })
        .cloned()
        .collect();
    let trained = |k: &str| changed.iter().any(|c| c == k);
    let qkv_bias = (0..c.depth).all(|l| {
        !c.absent_biases
            .contains(&format!("blocks.{l}.attn.qkv.bias"))
    }) || (0..c.depth).any(|l| trained(&format!("blocks.{l}.attn.qkv.bias")));
    let patch_bias = "patch_embed.proj.bias";
    if c.absent_biases.iter().any(|n| n == patch_bias) && trained(patch_bias) {
        let bias = weights
            .remove(patch_bias)
            .map(|b| b.data)
            .unwrap_or_default();
        if let Some(pos) = weights.get_mut("pos_embed") {
            for row in pos.data.chunks_mut(d).skip(k) {
                row.iter_mut().zip(&bias).for_each(|(p, b)| *p += b);
            }
        }
    }
    for name in &c.absent_biases {
        let keep = name.ends_with("attn.qkv.bias") && qkv_bias;
        if !keep && trained(name) && name != patch_bias {
            return Err(Error::Input(format!(
                "the tuning changed `{name}`, which this backbone's timm layout does not have; export it as ONNX instead (--format onnx)"
            )));
        }
        if !keep {
            weights.remove(name);
        }
    }
    // Register tokens need timm's `no_embed_class` layout: the CLS row of pos_embed (zero for a checkpoint that
    // had none, unless fully fine-tuned) folds into the CLS token.
    let no_embed_class = c.no_embed_class || c.registers > 0;
    if no_embed_class && k > 0 && c.abs_pos && c.eva_names.is_none() {
        let pos = weights
            .get_mut("pos_embed")
            .ok_or_else(|| Error::Internal("no pos_embed to export".into()))?;
        let row: Vec<f32> = pos.data.drain(..d).collect();
        pos.shape[1] -= 1;
        if let Some(cls) = weights.get_mut("cls_token") {
            cls.data.iter_mut().zip(&row).for_each(|(v, r)| *v += r);
        }
    }
    if let Some(names) = c.eva_names {
        eva_names_from_vit(c, names, &mut weights)?;
    }
    let arch = match (&c.architecture, c.needs_own_architecture()) {
        // (`not_exported` above refused such a layout without its name.)
        (Some(a), true) => a.clone(),
        _ => architecture(backbone, size),
    };
    let config = out.with_file_name("config.json");
    if let Ok(existing) = std::fs::read_to_string(&config) {
        let ours = serde_json::from_str::<serde_json::Value>(&existing)
            .is_ok_and(|v| v.get("vitune").is_some());
        if !ours {
            return Err(Error::Input(format!(
                "{} exists and was not written by vitune (a backbone's own config?); export into another folder",
                config.display()
            )));
        }
    }
    let layout = TimmLayout {
        qkv_bias,
        no_embed_class,
    };
    let text = serde_json::to_string_pretty(&config_json(backbone, tuned, size, &arch, layout))
        .map_err(|e| Error::Internal(format!("config.json: {e}")))?;
    // Both files go to temporary names first: neither is left behind without the other.
    let config_tmp = config.with_extension("json.partial");
    std::fs::write(&config_tmp, text).map_err(Error::io("write", &config))?;
    if let Err(e) = crate::io::write_tensors(out, &weights, None) {
        std::fs::remove_file(&config_tmp).ok();
        return Err(e);
    }
    std::fs::rename(&config_tmp, &config).map_err(|e| {
        std::fs::remove_file(&config_tmp).ok();
        std::fs::remove_file(out).ok();
        Error::io("write", &config)(e)
    })?;
    // timm builds its CLIP towers with LayerNorm eps 1e-5, its other ViTs with 1e-6; config.json cannot say more.
    let timm_eps = if c.needs_own_architecture() {
        // The architecture's own definition builds its norms.
        c.eps
    } else if arch.contains("clip") {
        1e-5
    } else {
        1e-6
    };
    let note = (c.eps != timm_eps).then(|| {
        format!(
            "this backbone's LayerNorm eps is {:e}; timm's {arch} uses {timm_eps:e}, so its logits may differ slightly",
            c.eps
        )
    });
    Ok(TimmReport {
        weights: out.to_path_buf(),
        config,
        architecture: arch,
        note,
    })
}
