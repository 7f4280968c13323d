//! Loading timm and Hugging Face ViT checkpoints from safetensors into timm-named f32 host tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::{
    heads_from_arch, heads_from_width, EvaNames, MlpAct, Pooling, ViTConfig, WeightFormat,
};
use super::HostTensor;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
const HALF: [f32; 3] = [0.5, 0.5, 0.5];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The operating system's reason is in the message, not a source: an error chain prints it once.
    #[error("cannot read {path}: {reason}")]
    Io {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{path} is not a valid safetensors file (or is truncated): {msg}")]
    NotSafetensors { path: PathBuf, msg: String },
    #[error("{path} does not look like a ViT checkpoint: no `cls_token` (timm) or `embeddings.cls_token` (Hugging Face) tensor")]
    UnknownLayout { path: PathBuf },
    #[error("{path} lacks the tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    #[error("tensor `{name}` in {path} has shape {got:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor `{name}` in {path} has dtype {dtype}; expected F32, F16 or BF16")]
    DType {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{0}")]
    Config(String),
    /// A ViT variant vitune does not run (yet), named by what it lacks support for.
    #[error("{path} is a ViT with {what}, which vitune does not support yet")]
    Unsupported { path: PathBuf, what: &'static str },
}

/// Tensor names that mark a variant vitune cannot run, and what to call it.
const UNSUPPORTED: [(&str, &str); 7] = [
    (
        "rope.freqs",
        "learned per-head rotary frequencies (timm's `rope_type='mixed'`); vitune runs DINOv3's and EVA-02's RoPE",
    ),
    (
        "attn.norm.weight",
        "a LayerNorm inside its attention (EVA's `scale_attn_inner`); vitune runs EVA-02 without it",
    ),
    (
        "attn.q_norm.weight",
        "query-key normalisation in its attention blocks",
    ),
    ("mlp.weights_in", "SwiGLU MLPs in the xformers layout (DINOv2 giant's original files; timm's load)"),
    (
        "attn_pool.q_norm",
        "query-key normalisation in its attention pooling",
    ),
    (
        "attn_pool.pos_embed",
        "a position embedding in its attention pooling",
    ),
    (
        "head.attention.in_proj",
        "Hugging Face SigLIP's attention-pooling head (timm's SigLIP checkpoints load)",
    ),
];

/// The linear biases a ViT may be built without (timm `qkv_bias=False`, CLIP's patch embedding): they load as
/// zeros and are recorded as absent.
fn optional_biases(depth: usize) -> Vec<String> {
    let mut v = vec!["patch_embed.proj.bias".to_string()];
    for i in 0..depth {
        for m in ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"] {
            v.push(format!("blocks.{i}.{m}.bias"));
        }
    }
    v
}

/// Values that override what the checkpoint and its config.json say.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub heads: Option<usize>,
    pub eps: Option<f32>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// The MLP activation, when neither config.json nor the architecture name tells it.
    pub act: Option<super::MlpAct>,
}

/// A loaded backbone: its configuration and every tensor under its timm name, as f32.
#[derive(Debug, Clone)]
pub struct Backbone {
    pub config: ViTConfig,
    pub tensors: BTreeMap<String, HostTensor>,
    pub path: PathBuf,
    /// SHA-256 of the file's tensor data (not its header), the backbone's identity for tuned files.
    pub sha256: String,
    /// Where the file came from when it is not just a path: `hf-hub:ORG/NAME@<commit>` for a hub model.
    pub source: Option<String>,
}

impl Backbone {
    pub fn get(&self, name: &str) -> Result<&HostTensor, ModelError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// Parameters of the backbone (head included).
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.numel()).sum()
    }

    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

fn to_f32(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView,
) -> Result<HostTensor, ModelError> {
    let bytes = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(ModelError::DType {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    Ok(HostTensor::new(view.shape().to_vec(), data))
}

/// Reads a JSON file beside the checkpoint, if there is one.
fn sibling_json(path: &Path, name: &str) -> Result<Option<Value>, ModelError> {
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

fn json_usize(v: Option<&Value>) -> Option<usize> {
    v.and_then(Value::as_u64).map(|x| x as usize)
}

fn json_triple(v: Option<&Value>) -> Option<[f32; 3]> {
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

/// Maps a Hugging Face ViT tensor name (without `vit.`) to timm's; q/k/v are handled separately.
fn timm_name_from_hf(name: &str) -> Option<String> {
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
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// One tensor of the file as f32.
fn read_f32(st: &SafeTensors, path: &Path, name: &str) -> Result<HostTensor, ModelError> {
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
fn eva_to_vit(
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
fn fuse_qkv(
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
fn clip_tensors(
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

/// Loads a checkpoint file; config.json (and preprocessor_config.json) beside it fill in what shapes can't tell.
pub fn load_backbone(path: &Path, opts: &LoadOptions) -> Result<Backbone, ModelError> {
    let file = std::fs::File::open(path).map_err(|reason| ModelError::Io {
        path: path.to_path_buf(),
        reason,
    })?;
    // SAFETY: the file is opened read-only; a concurrent writer could change the bytes under us, which
    // at worst yields wrong numbers or a parse error, never memory unsafety in safe code reading a &[u8].
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|reason| ModelError::Io {
        path: path.to_path_buf(),
        reason,
    })?;
    let cfg = sibling_json(path, "config.json")?;
    let pre = sibling_json(path, "preprocessor_config.json")?;
    load_backbone_bytes(&mmap, path, cfg.as_ref(), pre.as_ref(), opts)
}

/// Loads a checkpoint held in memory; `path` names it in messages, `config` / `preprocessor` are the JSON
/// documents that would sit beside it.
pub fn load_backbone_bytes(
    bytes: &[u8],
    path: &Path,
    config: Option<&Value>,
    preprocessor: Option<&Value>,
    opts: &LoadOptions,
) -> Result<Backbone, ModelError> {
    let mmap = bytes;
    let st = SafeTensors::deserialize(mmap).map_err(|e| ModelError::NotSafetensors {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let (header_len, _) =
        SafeTensors::read_metadata(mmap).map_err(|e| ModelError::NotSafetensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    let sha256 = {
        let mut h = Sha256::new();
        h.update(&mmap[8 + header_len..]);
        format!("{:x}", h.finalize())
    };

    let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    if let Some((_, what)) = UNSUPPORTED
        .iter()
        .find(|(key, _)| names.iter().any(|n| n.contains(key)))
    {
        return Err(ModelError::Unsupported {
            path: path.to_path_buf(),
            what,
        });
    }
    // Hugging Face's CLIP vision tower (`CLIPVisionModel`, or the `vision_model` of a `CLIPModel`).
    let clip = ["vision_model.", ""].into_iter().find(|p| {
        names
            .iter()
            .any(|n| *n == format!("{p}embeddings.class_embedding"))
    });
    if let Some(prefix) = clip {
        let tensors = clip_tensors(&st, path, &names, prefix)?;
        // A CLIPModel's config.json keeps the tower's settings under `vision_config`; OpenAI CLIP's defaults fill
        // what a missing config.json would have said.
        let mut cfg = serde_json::json!({"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5});
        if let Some(Value::Object(given)) = config.map(|c| c.get("vision_config").unwrap_or(c)) {
            for (k, v) in given {
                cfg[k] = v.clone();
            }
        }
        let clip_norm = serde_json::json!({"image_mean": CLIP_MEAN, "image_std": CLIP_STD});
        let pre = preprocessor.unwrap_or(&clip_norm);
        let layout = Layout {
            format: WeightFormat::HuggingFace,
            eva: None,
        };
        return finish(path, sha256, layout, tensors, (Some(&cfg), Some(pre)), opts);
    }
    let hf_prefix = if names.iter().any(|n| n == "cls_token") {
        None
    } else if names.iter().any(|n| n == "vit.embeddings.cls_token") {
        Some("vit.")
    } else if names.iter().any(|n| n == "embeddings.cls_token") {
        Some("")
    } else if names.iter().any(|n| n == "patch_embed.proj.weight")
        && names.iter().any(|n| n == "blocks.0.norm1.weight")
    {
        // timm without a class token (`class_token=False`: SigLIP, `*_gap_*` models) or without an absolute
        // position embedding (RoPE ViTs).
        None
    } else {
        return Err(ModelError::UnknownLayout {
            path: path.to_path_buf(),
        });
    };

    let mut tensors = BTreeMap::new();
    let mut eva = None;
    let format = match hf_prefix {
        None => {
            for n in &names {
                let view = st.tensor(n).map_err(|e| ModelError::NotSafetensors {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                })?;
                tensors.insert(n.clone(), to_f32(path, n, &view)?);
            }
            eva = eva_to_vit(path, &mut tensors)?;
            WeightFormat::Timm
        }
        Some(prefix) => {
            let mut qkv: BTreeMap<(String, String), [Option<HostTensor>; 3]> = BTreeMap::new();
            for n in &names {
                let Some(short) = n.strip_prefix(prefix) else {
                    // classifier.* sits outside the `vit.` prefix.
                    if let Some(t) = timm_name_from_hf(n) {
                        let view = st.tensor(n).map_err(|e| ModelError::NotSafetensors {
                            path: path.to_path_buf(),
                            msg: e.to_string(),
                        })?;
                        tensors.insert(t, to_f32(path, n, &view)?);
                    }
                    continue;
                };
                let view = st.tensor(n).map_err(|e| ModelError::NotSafetensors {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                })?;
                if let Some(rest) = short
                    .strip_prefix("encoder.layer.")
                    .or_else(|| short.strip_prefix("layer."))
                {
                    // `attention.attention.{query,key,value}` (hub checkpoints), or transformers 5's
                    // `attention.{q,k,v}_proj`.
                    let split = rest
                        .split_once(".attention.attention.")
                        .or_else(|| rest.split_once(".attention."));
                    if let Some((idx, sub)) = split {
                        if let Some((which, param)) = sub.split_once('.') {
                            let slot = match which {
                                "query" | "q_proj" => 0,
                                "key" | "k_proj" => 1,
                                "value" | "v_proj" => 2,
                                _ => {
                                    if let Some(t) = timm_name_from_hf(short) {
                                        tensors.insert(t, to_f32(path, n, &view)?);
                                    }
                                    continue;
                                }
                            };
                            qkv.entry((idx.to_string(), param.to_string())).or_default()[slot] =
                                Some(to_f32(path, n, &view)?);
                            continue;
                        }
                    }
                }
                if let Some(t) = timm_name_from_hf(short) {
                    tensors.insert(t, to_f32(path, n, &view)?);
                }
            }
            fuse_qkv(path, qkv, &mut tensors, |idx, which, param| {
                let which = ["query", "key", "value"][which];
                format!("{prefix}encoder.layer.{idx}.attention.attention.{which}.{param}")
            })?;
            // A gated MLP's up projection is the x half beside the gate.
            let gated: Vec<String> = tensors
                .keys()
                .filter(|k| k.contains(".mlp.fc1_g."))
                .map(|k| k.replace(".mlp.fc1_g.", ".mlp.fc1."))
                .collect();
            for k in gated {
                if let Some(t) = tensors.remove(&k) {
                    tensors.insert(k.replace(".mlp.fc1.", ".mlp.fc1_x."), t);
                }
            }
            eva_to_vit(path, &mut tensors)?;
            WeightFormat::HuggingFace
        }
    };

    let layout = Layout { format, eva };
    finish(path, sha256, layout, tensors, (config, preprocessor), opts)
}

/// What the file's names said about its layout: the naming, and whether it was timm's `Eva` class (whose
/// pooling defaults to the average after the prefix tokens).
#[derive(Debug, Clone, Copy)]
struct Layout {
    format: WeightFormat,
    eva: Option<EvaNames>,
}

/// DeiT distilled: timm averages `head(CLS)` and `head_dist(dist)`; as one linear layer over the two tokens side
/// by side that is `[W/2 | W_dist/2]` with bias `(b + b_dist)/2`.
fn fold_distilled_head(
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

/// The configuration from tensors and JSON, absent biases as zeros, every tensor checked.
fn finish(
    path: &Path,
    sha256: String,
    layout: Layout,
    mut tensors: BTreeMap<String, HostTensor>,
    (config, preprocessor): (Option<&Value>, Option<&Value>),
    opts: &LoadOptions,
) -> Result<Backbone, ModelError> {
    let mut config = infer_config(path, layout, &tensors, config, preprocessor, opts)?;
    let k = config.prefix_tokens();
    if config.no_embed_class && k > 0 {
        // CLS (and the distillation token) get zero positions: the rows vitune adds are then timm's.
        if let Some(p) = tensors.get_mut("pos_embed") {
            let d = config.dim;
            p.data.splice(0..0, std::iter::repeat_n(0.0, k * d));
            p.shape[1] += k;
        }
    }
    if config.distilled {
        if config.pooling != Pooling::Token || !config.class_token {
            return Err(ModelError::Unsupported {
                path: path.to_path_buf(),
                what: "a distillation token without CLS-token pooling",
            });
        }
        fold_distilled_head(path, &mut tensors)?;
    }
    for name in optional_biases(config.depth) {
        let weight = name.replace(".bias", ".weight");
        if let (false, Some(w)) = (tensors.contains_key(&name), tensors.get(&weight)) {
            let zeros = HostTensor::zeros(&[w.shape.first().copied().unwrap_or(0)]);
            tensors.insert(name.clone(), zeros);
            config.absent_biases.push(name);
        }
    }
    let backbone = Backbone {
        config,
        tensors,
        path: path.to_path_buf(),
        sha256,
        source: None,
    };
    validate(&backbone)?;
    Ok(backbone)
}

fn shape_of<'a>(
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

fn infer_config(
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
fn rope_config(
    path: &Path,
    arch: Option<&str>,
    model_args: Option<&Value>,
    cfg: Option<&Value>,
    abs_pos: bool,
    class_token: bool,
) -> Result<Option<super::Rope>, ModelError> {
    use super::{Rope, RopeKind};
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

/// Every tensor the forward pass reads must exist with its expected shape.
fn validate(b: &Backbone) -> Result<(), ModelError> {
    let c = &b.config;
    let (d, h, inner) = (c.dim, c.mlp_hidden, c.mlp_inner());
    let (gh, gw) = c.grid();
    let mut expect: Vec<(String, Vec<usize>)> = vec![
        (
            "patch_embed.proj.weight".into(),
            vec![d, 3, c.patch, c.patch],
        ),
        ("patch_embed.proj.bias".into(), vec![d]),
    ];
    if c.abs_pos {
        expect.push(("pos_embed".into(), vec![1, c.prefix_tokens() + gh * gw, d]));
    }
    if c.rope.is_some() && !(d / c.heads).is_multiple_of(4) {
        return Err(ModelError::Config(format!(
            "{}: rotary position embeddings need a head size divisible by 4, not {}",
            b.path.display(),
            d / c.heads
        )));
    }
    if c.class_token {
        expect.push(("cls_token".into(), vec![1, 1, d]));
    }
    if c.distilled {
        expect.push(("dist_token".into(), vec![1, 1, d]));
    }
    let norm = c.final_norm();
    expect.push((format!("{norm}.weight"), vec![d]));
    expect.push((format!("{norm}.bias"), vec![d]));
    if c.registers > 0 {
        expect.push(("reg_token".into(), vec![1, c.registers, d]));
    }
    if c.pooling == Pooling::Map {
        let hidden = b
            .get("attn_pool.mlp.fc1.weight")?
            .shape
            .first()
            .copied()
            .unwrap_or(0);
        let p = |s: &str| format!("attn_pool.{s}");
        expect.extend([
            (p("latent"), vec![1, 1, d]),
            (p("q.weight"), vec![d, d]),
            (p("q.bias"), vec![d]),
            (p("kv.weight"), vec![2 * d, d]),
            (p("kv.bias"), vec![2 * d]),
            (p("proj.weight"), vec![d, d]),
            (p("proj.bias"), vec![d]),
            (p("norm.weight"), vec![d]),
            (p("norm.bias"), vec![d]),
            (p("mlp.fc1.weight"), vec![hidden, d]),
            (p("mlp.fc1.bias"), vec![hidden]),
            (p("mlp.fc2.weight"), vec![d, hidden]),
            (p("mlp.fc2.bias"), vec![d]),
        ]);
    }
    if c.pre_norm {
        expect.push(("norm_pre.weight".into(), vec![d]));
        expect.push(("norm_pre.bias".into(), vec![d]));
    }
    for i in 0..c.depth {
        let p = format!("blocks.{i}");
        expect.extend([
            (format!("{p}.norm1.weight"), vec![d]),
            (format!("{p}.norm1.bias"), vec![d]),
            (format!("{p}.attn.qkv.weight"), vec![3 * d, d]),
            (format!("{p}.attn.qkv.bias"), vec![3 * d]),
            (format!("{p}.attn.proj.weight"), vec![d, d]),
            (format!("{p}.attn.proj.bias"), vec![d]),
            (format!("{p}.norm2.weight"), vec![d]),
            (format!("{p}.norm2.bias"), vec![d]),
            (format!("{p}.mlp.fc1.weight"), vec![h, d]),
            (format!("{p}.mlp.fc1.bias"), vec![h]),
            (format!("{p}.mlp.fc2.weight"), vec![d, inner]),
            (format!("{p}.mlp.fc2.bias"), vec![d]),
        ]);
        if c.mlp_norm {
            expect.push((format!("{p}.mlp.norm.weight"), vec![inner]));
            expect.push((format!("{p}.mlp.norm.bias"), vec![inner]));
        }
        if c.layer_scale {
            expect.push((format!("{p}.ls1.gamma"), vec![d]));
            expect.push((format!("{p}.ls2.gamma"), vec![d]));
        }
    }
    if c.num_classes > 0 {
        expect.push(("head.weight".into(), vec![c.num_classes, c.pooled_dim()]));
        expect.push(("head.bias".into(), vec![c.num_classes]));
    }
    for (name, shape) in expect {
        let t = b.get(&name)?;
        if t.shape != shape {
            return Err(ModelError::Shape {
                path: b.path.clone(),
                name,
                expected: shape,
                got: t.shape.clone(),
            });
        }
    }
    Ok(())
}

/// Class names from a config.json beside the checkpoint (`label_names` as timm writes it, or Hugging Face's
/// `id2label`), when there is one.
pub fn class_names(path: &Path) -> Option<Vec<String>> {
    class_names_from(&sibling_json(path, "config.json").ok()??)
}

/// Class names from a config.json document.
pub fn class_names_from(cfg: &Value) -> Option<Vec<String>> {
    if let Some(names) = cfg.get("label_names").and_then(Value::as_array) {
        return names
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect();
    }
    let map = cfg.get("id2label")?.as_object()?;
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    pairs.sort();
    Some(pairs.into_iter().map(|(_, v)| v).collect())
}
