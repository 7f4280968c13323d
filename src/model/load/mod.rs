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

mod infer;
mod names;

use infer::*;
use names::*;

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
