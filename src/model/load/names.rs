//! Other layouts' names mapped to timm's: Hugging Face ViT and DINOv3, timm's Eva (EVA-02), OpenAI CLIP, and
//! the distilled head of DeiT folded into one.

use super::*;

/// Maps a Hugging Face ViT tensor name (without `vit.`) to timm's; q/k/v are handled separately.
pub(super) fn timm_name_from_hf(name: &str) -> Option<String> {
    let direct = [
        ("embeddings.cls_token", "cls_token"),
        ("embeddings.position_embeddings", "pos_embed"),
        (
            "embeddings.patch_embeddings.projection.weight",
            "patch_embed.proj.weight",
        ),
        (
            "embeddings.patch_embeddings.projection.bias",
            "patch_embed.proj.bias",
        ),
        ("embeddings.register_tokens", "reg_token"),
        // DINOv3ViTModel's patch embedding and final norm.
        (
            "embeddings.patch_embeddings.weight",
            "patch_embed.proj.weight",
        ),
        ("embeddings.patch_embeddings.bias", "patch_embed.proj.bias"),
        ("norm.weight", "norm.weight"),
        ("norm.bias", "norm.bias"),
        ("layernorm.weight", "norm.weight"),
        ("layernorm.bias", "norm.bias"),
        ("classifier.weight", "head.weight"),
        ("classifier.bias", "head.bias"),
    ];
    if let Some((_, t)) = direct.iter().find(|(h, _)| *h == name) {
        return Some(t.to_string());
    }
    // `encoder.layer.{i}` (ViT, DINOv2), `layer.{i}` (DINOv3ViTModel).
    let rest = name
        .strip_prefix("encoder.layer.")
        .or_else(|| name.strip_prefix("layer."))?;
    let (idx, sub) = rest.split_once('.')?;
    let mapped = [
        ("layernorm_before.", "norm1."),
        ("attention.output.dense.", "attn.proj."),
        ("attention.o_proj.", "attn.proj."),
        ("layernorm_after.", "norm2."),
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
        // Dinov2Model's blocks.
        ("norm1.", "norm1."),
        ("norm2.", "norm2."),
        ("mlp.fc1.", "mlp.fc1."),
        ("mlp.fc2.", "mlp.fc2."),
        ("layer_scale1.lambda1", "ls1.gamma"),
        ("layer_scale2.lambda1", "ls2.gamma"),
        // DINOv3ViTModel's MLP: up and down, or gated (gate and up joined at load as fc1 = [gate | up]).
        ("mlp.up_proj.", "mlp.fc1."),
        ("mlp.down_proj.", "mlp.fc2."),
        ("mlp.gate_proj.", "mlp.fc1_g."),
    ];
    mapped
        .iter()
        .find_map(|(h, t)| sub.strip_prefix(h).map(|p| format!("blocks.{idx}.{t}{p}")))
}

/// OpenAI CLIP's normalisation.
pub(super) const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub(super) const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// One tensor of the file as f32.
pub(super) fn read_f32(
    st: &SafeTensors,
    path: &Path,
    name: &str,
) -> Result<HostTensor, ModelError> {
    let view = st.tensor(name).map_err(|e| ModelError::NotSafetensors {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    to_f32(path, name, &view)
}

/// timm's `Eva` names (DINOv3, EVA-02, the `vit_*_rope_*` models) → the `VisionTransformer` names the graph
/// reads: `gamma_1/2` are LayerScale's `ls1/ls2.gamma`; q/k/v projections (EVA-02) or `q_bias`/`v_bias` beside a
/// bias-free fused `qkv` are one `attn.qkv` whose k bias is zero (timm's Eva has none); SwiGLU's `fc1_g` and
/// `fc1_x` are one `fc1` with the gate rows first, as timm's `SwiGLUPacked` keeps them.
pub(super) fn eva_to_vit(
    path: &Path,
    tensors: &mut BTreeMap<String, HostTensor>,
) -> Result<Option<EvaNames>, ModelError> {
    let has = |name: &str| tensors.contains_key(&format!("blocks.0.{name}"));
    let names = EvaNames {
        separate_qkv: has("attn.q_proj.weight"),
        qv_bias: has("attn.q_bias"),
        split_fc1: has("mlp.fc1_g.weight"),
        gammas: has("gamma_1"),
    };
    let eva = names.separate_qkv
        || names.qv_bias
        || names.split_fc1
        || names.gammas
        || !tensors.contains_key("pos_embed");
    let depth = (0..)
        .take_while(|i| tensors.contains_key(&format!("blocks.{i}.norm1.weight")))
        .count();
    let missing = |name: String| ModelError::MissingTensor {
        path: path.to_path_buf(),
        name,
    };
    for i in 0..depth {
        let b = format!("blocks.{i}");
        for (from, to) in [("gamma_1", "ls1.gamma"), ("gamma_2", "ls2.gamma")] {
            if let Some(t) = tensors.remove(&format!("{b}.{from}")) {
                tensors.insert(format!("{b}.{to}"), t);
            }
        }
        let q_proj = format!("{b}.attn.q_proj.weight");
        if tensors.contains_key(&q_proj) {
            let mut w = Vec::new();
            for part in ["q", "k", "v"] {
                let t = tensors
                    .remove(&format!("{b}.attn.{part}_proj.weight"))
                    .ok_or_else(|| missing(format!("{b}.attn.{part}_proj.weight")))?;
                w.push(t);
            }
            let d = w[0].shape[0];
            let data: Vec<f32> = w.iter().flat_map(|t| t.data.iter().copied()).collect();
            tensors.insert(
                format!("{b}.attn.qkv.weight"),
                HostTensor::new(vec![3 * d, w[0].shape[1]], data),
            );
            let biases: Vec<Option<HostTensor>> = ["q", "k", "v"]
                .iter()
                .map(|p| tensors.remove(&format!("{b}.attn.{p}_proj.bias")))
                .collect();
            if biases.iter().any(Option::is_some) {
                let data = biases
                    .iter()
                    .flat_map(|t| match t {
                        Some(t) => t.data.clone(),
                        None => vec![0.0; d],
                    })
                    .collect();
                tensors.insert(
                    format!("{b}.attn.qkv.bias"),
                    HostTensor::new(vec![3 * d], data),
                );
            }
        }
        if let Some(q) = tensors.remove(&format!("{b}.attn.q_bias")) {
            let v = tensors
                .remove(&format!("{b}.attn.v_bias"))
                .ok_or_else(|| missing(format!("{b}.attn.v_bias")))?;
            let d = q.numel();
            let data = q
                .data
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, d))
                .chain(v.data.iter().copied())
                .collect();
            tensors.insert(
                format!("{b}.attn.qkv.bias"),
                HostTensor::new(vec![3 * d], data),
            );
        }
        for param in ["weight", "bias"] {
            let g = tensors.remove(&format!("{b}.mlp.fc1_g.{param}"));
            let x = tensors.remove(&format!("{b}.mlp.fc1_x.{param}"));
            match (g, x) {
                (Some(g), Some(x)) => {
                    let mut shape = g.shape.clone();
                    shape[0] *= 2;
                    let data = g.data.iter().chain(&x.data).copied().collect();
                    tensors.insert(format!("{b}.mlp.fc1.{param}"), HostTensor::new(shape, data));
                }
                (None, None) => {}
                (Some(_), None) => return Err(missing(format!("{b}.mlp.fc1_x.{param}"))),
                (None, Some(_)) => return Err(missing(format!("{b}.mlp.fc1_g.{param}"))),
            }
        }
    }
    Ok(eva.then_some(names))
}

/// Separate q, k and v projections ((block, weight|bias) → [q, k, v]) stacked into timm's fused
/// `blocks.{i}.attn.qkv.*`; `name` says which file tensor is missing (block, 0/1/2, param).
pub(super) fn fuse_qkv(
    path: &Path,
    parts: BTreeMap<(String, String), [Option<HostTensor>; 3]>,
    tensors: &mut BTreeMap<String, HostTensor>,
    name: impl Fn(&str, usize, &str) -> String,
) -> Result<(), ModelError> {
    for ((idx, param), parts) in parts {
        let mut shape = None;
        let mut data = Vec::new();
        // A bias may lack its key part (EVA-02, DINOv3ViTModel's `key_bias=False`): zeros, as those models add.
        let width = parts
            .iter()
            .flatten()
            .map(HostTensor::numel)
            .next()
            .unwrap_or(0);
        for (slot, part) in parts.into_iter().enumerate() {
            let t = match part {
                Some(t) => t,
                None if param == "bias" => HostTensor::zeros(&[width]),
                None => {
                    return Err(ModelError::MissingTensor {
                        path: path.to_path_buf(),
                        name: name(&idx, slot, &param),
                    })
                }
            };
            shape.get_or_insert(t.shape.clone());
            data.extend_from_slice(&t.data);
        }
        let mut shape = shape.unwrap_or_default();
        if let Some(first) = shape.first_mut() {
            *first *= 3;
        }
        tensors.insert(
            format!("blocks.{idx}.attn.qkv.{param}"),
            HostTensor::new(shape, data),
        );
    }
    Ok(())
}

/// Hugging Face CLIP vision-tower names (after `prefix`) → timm's: `pre_layrnorm` is `norm_pre`,
/// `post_layernorm` the final `norm` (CLIP pools the CLS token), q/k/v fused; the text tower and
/// `visual_projection` are left out.
pub(super) fn clip_tensors(
    st: &SafeTensors,
    path: &Path,
    names: &[String],
    prefix: &str,
) -> Result<BTreeMap<String, HostTensor>, ModelError> {
    let mut tensors = BTreeMap::new();
    let mut qkv: BTreeMap<(String, String), [Option<HostTensor>; 3]> = BTreeMap::new();
    for n in names {
        let Some(short) = n.strip_prefix(prefix) else {
            continue;
        };
        let direct = match short {
            "embeddings.class_embedding" => Some("cls_token"),
            "embeddings.patch_embedding.weight" => Some("patch_embed.proj.weight"),
            "embeddings.position_embedding.weight" => Some("pos_embed"),
            "pre_layrnorm.weight" => Some("norm_pre.weight"),
            "pre_layrnorm.bias" => Some("norm_pre.bias"),
            "post_layernorm.weight" => Some("norm.weight"),
            "post_layernorm.bias" => Some("norm.bias"),
            _ => None,
        };
        if let Some(t) = direct {
            let mut x = read_f32(st, path, n)?;
            if t == "cls_token" || t == "pos_embed" {
                // [D] and [T, D] in CLIP; [1, 1, D] and [1, T, D] in timm.
                x.shape.insert(0, 1);
                if t == "cls_token" {
                    x.shape.insert(0, 1);
                }
            }
            tensors.insert(t.to_string(), x);
            continue;
        }
        let Some((idx, sub)) = short
            .strip_prefix("encoder.layers.")
            .and_then(|r| r.split_once('.'))
        else {
            continue;
        };
        if let Some((which, param)) = sub
            .strip_prefix("self_attn.")
            .and_then(|r| r.split_once("_proj."))
        {
            let slot = match which {
                "q" => Some(0),
                "k" => Some(1),
                "v" => Some(2),
                _ => None,
            };
            match slot {
                Some(slot) => {
                    qkv.entry((idx.to_string(), param.to_string())).or_default()[slot] =
                        Some(read_f32(st, path, n)?);
                }
                None if which == "out" => {
                    let t = read_f32(st, path, n)?;
                    tensors.insert(format!("blocks.{idx}.attn.proj.{param}"), t);
                }
                None => {}
            }
            continue;
        }
        let mapped = [
            ("layer_norm1.", "norm1."),
            ("layer_norm2.", "norm2."),
            ("mlp.fc1.", "mlp.fc1."),
            ("mlp.fc2.", "mlp.fc2."),
        ];
        if let Some(t) = mapped
            .iter()
            .find_map(|(h, t)| sub.strip_prefix(h).map(|p| format!("blocks.{idx}.{t}{p}")))
        {
            tensors.insert(t, read_f32(st, path, n)?);
        }
    }
    fuse_qkv(path, qkv, &mut tensors, |idx, slot, param| {
        let which = ["q", "k", "v"][slot];
        format!("{prefix}encoder.layers.{idx}.self_attn.{which}_proj.{param}")
    })?;
    Ok(tensors)
}

/// DeiT distilled: timm averages `head(CLS)` and `head_dist(dist)`; as one linear layer over the two tokens side
/// by side that is `[W/2 | W_dist/2]` with bias `(b + b_dist)/2`.
pub(super) fn fold_distilled_head(
    path: &Path,
    tensors: &mut BTreeMap<String, HostTensor>,
) -> Result<(), ModelError> {
    match (
        tensors.contains_key("head.weight"),
        tensors.contains_key("head_dist.weight"),
    ) {
        // Headless (a backbone export): nothing to fold.
        (false, false) => {
            tensors.remove("head_dist.bias");
            return Ok(());
        }
        (true, true) => {}
        (has_head, _) => {
            return Err(ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: if has_head {
                    "head_dist.weight"
                } else {
                    "head.weight"
                }
                .into(),
            })
        }
    }
    let (Some(w), Some(wd)) = (
        tensors.remove("head.weight"),
        tensors.remove("head_dist.weight"),
    ) else {
        return Ok(());
    };
    if w.shape != wd.shape || w.shape.len() != 2 {
        return Err(ModelError::Shape {
            path: path.to_path_buf(),
            name: "head_dist.weight".into(),
            expected: w.shape.clone(),
            got: wd.shape.clone(),
        });
    }
    let (c, d) = (w.shape[0], w.shape[1]);
    let mut data = Vec::with_capacity(2 * c * d);
    for r in 0..c {
        data.extend(w.data[r * d..(r + 1) * d].iter().map(|v| v / 2.0));
        data.extend(wd.data[r * d..(r + 1) * d].iter().map(|v| v / 2.0));
    }
    tensors.insert("head.weight".into(), HostTensor::new(vec![c, 2 * d], data));
    let b = tensors.remove("head.bias");
    let bd = tensors.remove("head_dist.bias");
    let bias = match (b, bd) {
        (Some(b), Some(bd)) => b
            .data
            .iter()
            .zip(&bd.data)
            .map(|(x, y)| (x + y) / 2.0)
            .collect(),
        (Some(b), None) | (None, Some(b)) => b.data.iter().map(|x| x / 2.0).collect(),
        (None, None) => vec![0.0; c],
    };
    tensors.insert("head.bias".into(), HostTensor::new(vec![c], bias));
    Ok(())
}
