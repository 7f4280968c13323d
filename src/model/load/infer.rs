//! The configuration read off a checkpoint: its tensors' shapes, config.json and the architecture's name.

use super::*;

/// Reads a JSON file beside the checkpoint, if there is one.
pub(super) fn sibling_json(path: &Path, name: &str) -> Result<Option<Value>, ModelError> {
    let p = path.with_file_name(name);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|reason| ModelError::Io {
        path: p.clone(),
        reason,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Config(format!("{} is not valid JSON: {e}", p.display())))
}

pub(super) fn json_usize(v: Option<&Value>) -> Option<usize> {
    v.and_then(Value::as_u64).map(|x| x as usize)
}

pub(super) fn json_triple(v: Option<&Value>) -> Option<[f32; 3]> {
    let a = v?.as_array()?;
    if a.len() != 3 {
        return None;
    }
    let mut out = [0.0; 3];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.as_f64()? as f32;
    }
    Some(out)
}

pub(super) fn shape_of<'a>(
    path: &Path,
    tensors: &'a BTreeMap<String, HostTensor>,
    name: &str,
) -> Result<&'a [usize], ModelError> {
    tensors
        .get(name)
        .map(|t| t.shape.as_slice())
        .ok_or_else(|| ModelError::MissingTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
        })
}

pub(super) fn infer_config(
    path: &Path,
    Layout { format, eva }: Layout,
    tensors: &BTreeMap<String, HostTensor>,
    cfg: Option<&Value>,
    pre: Option<&Value>,
    opts: &LoadOptions,
) -> Result<ViTConfig, ModelError> {
    let class_token = tensors.contains_key("cls_token");
    let distilled = tensors.contains_key("dist_token");
    let dim = shape_of(path, tensors, "patch_embed.proj.weight")?[0];
    let depth = (0..)
        .take_while(|i| tensors.contains_key(&format!("blocks.{i}.norm1.weight")))
        .count();
    if depth == 0 {
        return Err(ModelError::MissingTensor {
            path: path.to_path_buf(),
            name: "blocks.0.norm1.weight".into(),
        });
    }
    let pw = shape_of(path, tensors, "patch_embed.proj.weight")?;
    if pw.len() != 4 || pw[1] != 3 || pw[2] != pw[3] {
        return Err(ModelError::Shape {
            path: path.to_path_buf(),
            name: "patch_embed.proj.weight".into(),
            expected: vec![dim, 3, 16, 16],
            got: pw.to_vec(),
        });
    }
    let patch = pw[2];
    let mlp_hidden = shape_of(path, tensors, "blocks.0.mlp.fc1.weight")?[0];
    let num_classes = tensors.get("head.weight").map(|t| t.shape[0]).unwrap_or(0);
    let layer_scale = tensors.contains_key("blocks.0.ls1.gamma");

    let cfg_ref = cfg;
    let model_args = cfg_ref.and_then(|c| c.get("model_args"));
    let pretrained = cfg_ref.and_then(|c| c.get("pretrained_cfg"));
    let arch = cfg_ref
        .and_then(|c| c.get("architecture"))
        .and_then(Value::as_str)
        .map(str::to_string);

    let global_pool = cfg_ref
        .and_then(|c| {
            c.get("global_pool")
                .or_else(|| model_args?.get("global_pool"))
        })
        .and_then(Value::as_str);
    let pooling = if tensors.contains_key("attn_pool.latent") {
        Pooling::Map
    } else if tensors.contains_key("fc_norm.weight") {
        Pooling::Avg
    } else if global_pool == Some("avg") || !class_token || (eva.is_some() && global_pool.is_none())
    {
        // timm's Eva (DINOv3, EVA-02, the RoPE ViTs) averages after the prefix tokens unless told otherwise.
        // timm's average pooling without fc_norm applies the final norm first.
        Pooling::NormAvg
    } else {
        Pooling::Token
    };
    let pre_norm = tensors.contains_key("norm_pre.weight");
    let arch_is_clip = arch
        .as_deref()
        .is_some_and(|a| a.to_lowercase().contains("clip"));
    // timm builds DINOv3 with LayerNorm(eps=1e-5).
    let arch_is_dinov3 = arch
        .as_deref()
        .is_some_and(|a| a.to_lowercase().contains("dinov3"));
    let quick = |v: Option<&Value>| v.and_then(Value::as_str).map(|a| a == "quick_gelu");
    let mlp_act = opts
        .act
        .or_else(|| {
            quick(model_args.and_then(|a| a.get("act_layer")))
                .or_else(|| quick(cfg_ref.and_then(|c| c.get("hidden_act"))))
                .map(|q| if q { MlpAct::QuickGelu } else { MlpAct::Gelu })
        })
        .unwrap_or(
            if arch.as_deref().is_some_and(|a| a.contains("quickgelu")) {
                MlpAct::QuickGelu
            } else {
                MlpAct::Gelu
            },
        );

    let abs_pos = tensors.contains_key("pos_embed");
    let k = usize::from(class_token) + usize::from(distilled);
    let cfg_size = pretrained
        .and_then(|p| p.get("input_size"))
        .and_then(Value::as_array)
        .and_then(|a| Some((a.get(1)?.as_u64()? as usize, a.get(2)?.as_u64()? as usize)))
        .or_else(|| {
            let s = model_args
                .and_then(|a| a.get("img_size"))
                .or_else(|| cfg_ref?.get("image_size"))?;
            match s {
                Value::Array(a) => {
                    Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize))
                }
                v => v.as_u64().map(|x| (x as usize, x as usize)),
            }
        });
    let (image_size, no_embed_class) = if abs_pos {
        let pos = shape_of(path, tensors, "pos_embed")?;
        let rows = pos.get(1).copied().unwrap_or(0);
        // timm's `no_embed_class`: a square grid of rows and none for CLS (or the distillation token).
        let square = |n: usize| {
            let s = (n as f64).sqrt().round() as usize;
            s * s == n
        };
        // config.json says it where it can; the row count decides otherwise.
        let no_embed_class = k > 0
            && model_args
                .and_then(|a| a.get("no_embed_class"))
                .and_then(Value::as_bool)
                .unwrap_or(rows > k && square(rows) && !square(rows - k));
        let tokens = if no_embed_class {
            rows
        } else {
            rows.saturating_sub(k)
        };
        let side = (tokens as f64).sqrt().round() as usize;
        let image_size = if side * side == tokens {
            (side * patch, side * patch)
        } else {
            match cfg_size {
                Some((h, w)) if (h / patch) * (w / patch) == tokens => (h, w),
                _ => {
                    return Err(ModelError::Config(format!(
                        "{}: pos_embed holds {tokens} patch positions, which is not a square grid; \
                         put `pretrained_cfg.input_size` in a config.json beside it",
                        path.display()
                    )))
                }
            }
        };
        (image_size, no_embed_class)
    } else {
        // RoPE alone places the patches: the input size is the config's, else the common 224.
        let size = cfg_size.unwrap_or((224, 224));
        if !size.0.is_multiple_of(patch)
            || !size.1.is_multiple_of(patch)
            || size.0 == 0
            || size.1 == 0
        {
            return Err(ModelError::Config(format!(
                "{}: the input size {}x{} in config.json is not a multiple of the patch size {patch}",
                path.display(),
                size.0,
                size.1
            )));
        }
        (size, false)
    };
    let rope = rope_config(
        path,
        arch.as_deref(),
        model_args,
        cfg_ref,
        abs_pos,
        class_token,
    )?;
    let swiglu = {
        let fc2_in = shape_of(path, tensors, "blocks.0.mlp.fc2.weight")?
            .get(1)
            .copied()
            .unwrap_or(0);
        fc2_in * 2 == mlp_hidden
    };
    let mlp_norm = tensors.contains_key("blocks.0.mlp.norm.weight");
    // A gated MLP is SiLU-gated in every layout vitune knows (timm's SwiGLU, DINOv3ViTModel's `use_gated_mlp`
    // with `hidden_act='silu'`); transformers would gate with whatever `hidden_act` says.
    if let Some(act) = cfg_ref
        .and_then(|c| c.get("hidden_act"))
        .and_then(Value::as_str)
        .filter(|a| swiglu && !["silu", "swish"].contains(a))
    {
        return Err(ModelError::Config(format!(
            "{}: a gated MLP with the activation `{act}`; vitune runs SiLU-gated MLPs (SwiGLU)",
            path.display()
        )));
    }

    let (heads, heads_source) = if let Some(h) = opts.heads {
        (h, "--heads".to_string())
    } else if let Some(h) = json_usize(model_args.and_then(|a| a.get("num_heads")))
        .or_else(|| json_usize(cfg_ref.and_then(|c| c.get("num_attention_heads"))))
        .or_else(|| json_usize(cfg_ref.and_then(|c| c.get("num_heads"))))
    {
        (h, "config.json".to_string())
    } else if let Some(h) = arch.as_deref().and_then(heads_from_arch) {
        (
            h,
            format!("architecture name {}", arch.clone().unwrap_or_default()),
        )
    } else if let Some(h) = heads_from_width(dim) {
        (h, format!("standard ViT width {dim}"))
    } else {
        return Err(ModelError::Config(format!(
            "cannot tell the attention head count of {} (width {dim} is not a standard ViT width): \
             pass --heads N or put a config.json with `num_heads` / `num_attention_heads` beside it",
            path.display()
        )));
    };
    if heads == 0 || dim % heads != 0 {
        return Err(ModelError::Config(format!(
            "{heads} attention heads do not divide the width {dim} of {}",
            path.display()
        )));
    }

    let eps = opts.eps.unwrap_or_else(|| {
        cfg_ref
            .and_then(|c| c.get("layer_norm_eps"))
            .and_then(Value::as_f64)
            .map(|e| e as f32)
            .unwrap_or(match format {
                // timm builds its CLIP towers with LayerNorm(eps=1e-5), its other ViTs with 1e-6.
                WeightFormat::Timm if pre_norm || arch_is_clip || arch_is_dinov3 => 1e-5,
                WeightFormat::Timm => 1e-6,
                WeightFormat::HuggingFace => 1e-12,
            })
    });

    let arch_l = arch.clone().unwrap_or_default().to_lowercase();
    let model_type = cfg_ref
        .and_then(|c| c.get("model_type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let family_default = if (format == WeightFormat::Timm
        && ["dino", "mae", "mocov3", "deit"]
            .iter()
            .any(|k| arch_l.contains(k)))
        || model_type.starts_with("dinov2")
        || model_type.starts_with("dinov3")
    {
        (IMAGENET_MEAN, IMAGENET_STD)
    } else if arch_l.starts_with("eva02") {
        (CLIP_MEAN, CLIP_STD)
    } else {
        (HALF, HALF)
    };
    let mean = opts
        .mean
        .or_else(|| json_triple(pretrained.and_then(|p| p.get("mean"))))
        .or_else(|| json_triple(pre.and_then(|p| p.get("image_mean"))))
        .unwrap_or(family_default.0);
    let std = opts
        .std
        .or_else(|| json_triple(pretrained.and_then(|p| p.get("std"))))
        .or_else(|| json_triple(pre.and_then(|p| p.get("image_std"))))
        .unwrap_or(family_default.1);
    let crop_pct = pretrained
        .and_then(|p| p.get("crop_pct"))
        .and_then(Value::as_f64)
        .map(|c| c as f32)
        .unwrap_or(match format {
            WeightFormat::Timm => 0.9,
            WeightFormat::HuggingFace => 1.0,
        });

    Ok(ViTConfig {
        format,
        dim,
        depth,
        heads,
        mlp_hidden,
        patch,
        image_size,
        num_classes,
        pooling,
        eps,
        mean,
        std,
        crop_pct,
        layer_scale,
        pre_norm,
        mlp_act,
        class_token,
        distilled,
        registers: tensors
            .get("reg_token")
            .and_then(|t| t.shape.get(1).copied())
            .unwrap_or(0),
        no_embed_class,
        absent_biases: Vec::new(),
        heads_source,
        rope,
        abs_pos,
        swiglu,
        mlp_norm,
        eva_names: eva,
        architecture: arch.clone(),
    })
}

/// The rotary embedding a checkpoint was trained with: timm's `model_args` where config.json has them, else
/// the published definitions its architecture name stands for (DINOv3: `dinov3`, temperature 100,
/// rotate-half; EVA-02 and `vit_*_rope_*`: `cat`, temperature 10000, interleaved, coordinates on the 16×16
/// pre-training grid); a file without an absolute position embedding and without a name is taken for DINOv3
/// (with a class token) or a timm RoPE ViT (without).
pub(super) fn rope_config(
    path: &Path,
    arch: Option<&str>,
    model_args: Option<&Value>,
    cfg: Option<&Value>,
    abs_pos: bool,
    class_token: bool,
) -> Result<Option<crate::model::Rope>, ModelError> {
    use crate::model::{Rope, RopeKind};
    let arg = |k: &str| model_args.and_then(|a| a.get(k));
    let arch = arch.unwrap_or_default().to_lowercase();
    let model_type = cfg
        .and_then(|c| c.get("model_type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let named = arch.contains("dinov3")
        || arch.starts_with("eva02")
        || arch.contains("_rope_")
        || model_type == "dinov3_vit";
    let used = arg("use_rot_pos_emb")
        .and_then(Value::as_bool)
        .unwrap_or(named || !abs_pos);
    if !used {
        return Ok(None);
    }
    let kind_name = arg("rope_type").and_then(Value::as_str).map(str::to_string);
    let kind = match kind_name.as_deref() {
        Some("dinov3") => RopeKind::DinoV3,
        Some("cat") => RopeKind::Cat,
        Some(other) => {
            return Err(ModelError::Config(format!(
                "{} uses timm's `rope_type='{other}'`; vitune runs the `dinov3` and `cat` kinds (DINOv3, EVA-02, \
                 timm's vit_*_rope_* models)",
                path.display()
            )))
        }
        None if arch.contains("rope_mixed") => {
            return Err(ModelError::Config(format!(
                "{} is a mixed-RoPE ViT (learned per-head frequencies); vitune runs the `dinov3` and `cat` kinds",
                path.display()
            )))
        }
        None if arch.contains("dinov3") || model_type == "dinov3_vit" => RopeKind::DinoV3,
        None if named => RopeKind::Cat,
        None if class_token => RopeKind::DinoV3,
        None => RopeKind::Cat,
    };
    let num = |k: &str| arg(k).and_then(Value::as_f64);
    let temperature = num("rope_temperature")
        .or_else(|| {
            cfg.and_then(|c| c.get("rope_theta"))
                .and_then(Value::as_f64)
        })
        .unwrap_or(match kind {
            RopeKind::DinoV3 => 100.0,
            RopeKind::Cat => 10000.0,
        });
    let ref_grid = match arg("ref_feat_shape") {
        Some(Value::Array(a)) => a
            .first()
            .and_then(Value::as_u64)
            .zip(a.get(1).and_then(Value::as_u64))
            .map(|(h, w)| (h as usize, w as usize)),
        Some(v) => v.as_u64().map(|x| (x as usize, x as usize)),
        None if kind == RopeKind::Cat && named => Some((16, 16)),
        None => None,
    };
    Ok(Some(Rope {
        kind,
        temperature,
        rotate_half: arg("rope_rotate_half")
            .and_then(Value::as_bool)
            .unwrap_or(kind == RopeKind::DinoV3),
        grid_offset: num("rope_grid_offset").unwrap_or(0.0),
        xy: arg("rope_grid_indexing").and_then(Value::as_str) == Some("xy"),
        ref_grid: ref_grid.filter(|_| kind == RopeKind::Cat),
    }))
}
