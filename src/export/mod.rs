//! Taking a tuned model out of vitune: one self-contained ONNX file (checked, before it is kept, against vitune's
//! own forward by a Rust ONNX runtime), or, for methods whose result is a plain ViT, a merged timm checkpoint.
//!
//! Every method exports through its own file: `MethodSpec::merge` folds what it changes into the backbone's
//! weights, and `MethodSpec::onnx` writes what cannot be folded (prompts, bypass branches) as ONNX ops.

pub mod check;
pub mod timm;
mod vit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use serde::Serialize;
use tract_onnx::pb::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Backbone, ForwardOptions, GpuViT, HostTensor};
use crate::tuned::TunedFile;
use crate::tuning::{GpuTuning, Tuning};
pub use check::SelfCheck;

/// Largest relative logit difference an f32 export may show against vitune's f32 forward (both land near 1e-6;
/// this leaves room for the GPU's own summation order, not for a wrong graph).
pub const TOLERANCE_F32: f32 = 1e-3;
/// The same with the GPU's frozen weights in f16 (`VITUNE_WEIGHTS=f16`): vitune's side is then the rougher one.
pub const TOLERANCE_F16_WEIGHTS: f32 = 3e-2;

/// Images the self-check runs unless the caller gives its own.
pub const CHECK_IMAGES: usize = 4;

/// What an ONNX export wrote and how its self-check went.
#[derive(Debug, Clone, Serialize)]
pub struct OnnxReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub input_size: (usize, usize),
    pub check: SelfCheck,
}

/// The backbone's weights (timm names) with the tuning in them: the tuning's head, its tensors that carry
/// backbone names (BitFit, full fine-tuning), and what its method folds in (LoRA, SSF).
pub fn merged_weights(
    backbone: &Backbone,
    tuning: &Tuning,
) -> Result<BTreeMap<String, HostTensor>> {
    let mut w: BTreeMap<String, HostTensor> = backbone
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("head."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, t) in &tuning.tensors {
        if k.starts_with("head.") || w.contains_key(k) {
            w.insert(k.clone(), t.clone());
        }
    }
    tuning
        .method
        .spec()
        .merge(&tuning.options, &backbone.config, &tuning.tensors, &mut w)?;
    Ok(w)
}

/// The input size a tuned model runs at: the one it was tuned at, else the backbone's.
pub fn input_size(backbone: &Backbone, tuned: &TunedFile) -> (usize, usize) {
    tuned
        .meta
        .as_ref()
        .map(|m| m.image_size)
        .unwrap_or(backbone.config.image_size)
}

/// The key → value pairs an exported file carries: enough to preprocess an image with nothing else at hand.
pub fn metadata(
    backbone: &Backbone,
    tuned: &TunedFile,
    size: (usize, usize),
) -> Vec<(String, String)> {
    let c = &backbone.config;
    let t = &tuned.tuning;
    vec![
        ("classes".into(), json(&tuned.classes)),
        ("image_size".into(), json(&[size.0, size.1])),
        ("crop_pct".into(), c.crop_pct.to_string()),
        (
            "resize".into(),
            if c.crop_pct >= 1.0 {
                "resize to image_size (bicubic), then normalise".into()
            } else {
                "resize the shorter side to floor(min(image_size) / crop_pct) (bicubic), center-crop to image_size, then normalise"
                    .into()
            },
        ),
        ("mean".into(), json(&c.mean)),
        ("std".into(), json(&c.std)),
        (
            "input".into(),
            "pixels: f32 [N, 3, H, W], RGB in 0..1, then (x - mean) / std".into(),
        ),
        ("method".into(), t.method.name().into()),
        ("options".into(), json(&t.options)),
        ("method_settings".into(), t.options.describe(t.method)),
        ("backbone_file".into(), backbone.file_name()),
        ("backbone_sha256".into(), backbone.sha256.clone()),
        (
            "backbone_source".into(),
            backbone.source.clone().unwrap_or_default(),
        ),
        ("vitune_version".into(), env!("CARGO_PKG_VERSION").into()),
    ]
}

/// A metadata value as JSON (every value written here serialises).
fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The tuned model as an ONNX model at `size`: `pixels` [N,3,H,W] in, `logits`, `probabilities` [N,C] and
/// `pooled` [N,D] out.
pub fn onnx_model(
    backbone: &Backbone,
    tuned: &TunedFile,
    size: (usize, usize),
) -> Result<ModelProto> {
    let c = &backbone.config;
    c.check_input_size(size)?;
    let t = &tuned.tuning;
    let weights = merged_weights(backbone, t)?;
    let hooks = t.method.hooks(&t.options);
    let onnx_hooks = t.method.spec().onnx(&t.options);
    let grid = (size.0 / c.patch, size.1 / c.patch);
    let export = vit::VitExport {
        config: c,
        weights: &weights,
        input_size: size,
        hooks: hooks.as_ref(),
        onnx: onnx_hooks.as_deref(),
        cx: crate::onnx::ExportCtx {
            tensors: &t.tensors,
            config: c,
            layout: crate::model::hooks::TokenLayout {
                prefix: c.prefix_tokens(),
                registers: c.registers,
                prompts: hooks.prompts(),
                patches: grid.0 * grid.1,
            },
            grid,
        },
    };
    let graph = export.graph()?;
    Ok(ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: crate::onnx::OPSET,
        }],
        producer_name: "vitune".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} on {}: {}",
            t.method,
            backbone.file_name(),
            t.method.description()
        ),
        graph: Some(graph),
        metadata_props: metadata(backbone, tuned, size)
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    })
}

/// A file's metadata_props, read back.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    let m = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::Input(format!("{} is not an ONNX model: {e}", path.display())))?;
    Ok(m.metadata_props
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

/// Seeded stand-ins for normalised images [n,3,H,W], for the self-check when the caller has none.
pub fn check_pixels(n: usize, size: (usize, usize), seed: u64) -> HostTensor {
    let mut rng = crate::rng::Rng::new(seed);
    let shape = vec![n, 3, size.0, size.1];
    let data = rng.normal_vec(shape.iter().product(), 1.0);
    HostTensor::new(shape, data)
}

/// A file beside `out` to write into before the self-check passes; removed if it does not.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Exports `tuned` as one ONNX file at `out` and checks it: the ONNX runtime's logits on `pixels` (default: a
/// few seeded stand-ins) against vitune's GPU forward. A failed check is an error and leaves no file at `out`.
pub fn export_onnx(
    gpu: &Gpu,
    backbone: &Backbone,
    tuned: &TunedFile,
    out: &Path,
    pixels: Option<HostTensor>,
) -> Result<OnnxReport> {
    let size = input_size(backbone, tuned);
    let model = onnx_model(backbone, tuned, size)?;
    let bytes = model.encode_to_vec();
    if bytes.len() as u64 >= 2 << 30 {
        return Err(Error::Input(format!(
            "the model is {} MiB; a single ONNX file holds at most 2 GiB",
            bytes.len() >> 20
        )));
    }
    let pixels = pixels.unwrap_or_else(|| check_pixels(CHECK_IMAGES, size, 0x0_77e1));
    // What the file must reproduce: vitune's own forward of the tuned model on the same pixels.
    let vit = GpuViT::new(gpu, backbone, Some((pixels.shape[2], pixels.shape[3])))?;
    let gt = GpuTuning::upload(gpu, &tuned.tuning)?;
    let forward = ForwardOptions {
        tuning: Some(&gt),
        ..Default::default()
    };
    let expected = vit
        .forward(gpu, &pixels, &forward)?
        .logits
        .ok_or_else(|| Error::Internal("vitune's forward gave no logits".into()))?;
    let partial = partial_path(out);
    std::fs::write(&partial, &bytes).map_err(|e| {
        std::fs::remove_file(&partial).ok();
        Error::io("write", out)(e)
    })?;
    let checked = check::run_onnx(&partial, &pixels).and_then(|got| {
        let tolerance = if gpu.f16_weights() {
            TOLERANCE_F16_WEIGHTS
        } else {
            TOLERANCE_F32
        };
        check::compare(&expected, &got, tolerance)
    });
    let check = match checked {
        Ok(c) if c.passed() => c,
        Ok(c) => {
            std::fs::remove_file(&partial).ok();
            return Err(Error::Internal(format!(
                "the exported model does not predict like vitune ({}); no file was written",
                c.describe()
            )));
        }
        Err(e) => {
            std::fs::remove_file(&partial).ok();
            return Err(e);
        }
    };
    std::fs::rename(&partial, out).map_err(|e| {
        std::fs::remove_file(&partial).ok();
        Error::io("write", out)(e)
    })?;
    Ok(OnnxReport {
        path: out.to_path_buf(),
        bytes: bytes.len() as u64,
        input_size: size,
        check,
    })
}
