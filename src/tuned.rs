//! The tuned file: safetensors with the method's tensors (names as in `tuning`) and `__metadata__` saying what
//! they are for — method and options, class names, the backbone's identity, input size and normalisation, where
//! the initial values came from, and the vitune version. Written atomically; read back with checks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Backbone, HostTensor};
use crate::tuning::{Method, MethodOptions, Tuning};

/// Everything a tuned file says besides its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunedMeta {
    pub method: Method,
    pub options: MethodOptions,
    pub classes: Vec<String>,
    pub backbone_file: String,
    pub backbone_sha256: String,
    /// The hub name and commit the backbone came from (`hf-hub:ORG/NAME@<commit>`), when it came from the hub.
    pub backbone_source: Option<String>,
    pub backbone_dim: usize,
    pub backbone_depth: usize,
    /// The backbone's layout family in words (`vitune info`'s), e.g. "DINOv3-style ViT, RoPE dinov3 (…)"; empty
    /// in files written before vitune recorded it.
    pub backbone_family: String,
    pub image_size: (usize, usize),
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop_pct: f32,
    /// Where the trainable tensors started: the method's init, `spt-…`, or `pvp:<file>`.
    pub init: String,
    pub vitune_version: String,
    /// The search that chose the learning rate and weight decay, when one ran (`train --auto`).
    pub selection: Option<crate::records::Selection>,
    /// The run diverged after this file's epoch (it stopped there).
    pub diverged: Option<crate::records::Divergence>,
}

impl TunedMeta {
    /// Metadata for `tuning` on `backbone`, with the backbone's own input size and normalisation.
    pub fn new(tuning: &Tuning, backbone: &Backbone, classes: Vec<String>, init: &str) -> Self {
        let c = &backbone.config;
        Self {
            method: tuning.method,
            options: tuning.options.clone(),
            classes,
            backbone_file: backbone.file_name(),
            backbone_sha256: backbone.sha256.clone(),
            backbone_source: backbone.source.clone(),
            backbone_dim: c.dim,
            backbone_depth: c.depth,
            backbone_family: c.family(),
            image_size: c.image_size,
            mean: c.mean,
            std: c.std,
            crop_pct: c.crop_pct,
            init: init.to_string(),
            vitune_version: env!("CARGO_PKG_VERSION").to_string(),
            selection: None,
            diverged: None,
        }
    }

    fn to_map(&self) -> Result<HashMap<String, String>> {
        let j = |v: &dyn erased::Json| v.json();
        let mut m = HashMap::new();
        m.insert("format".into(), "vitune-tuned".into());
        m.insert("method".into(), self.method.name().into());
        m.insert("options".into(), j(&self.options)?);
        m.insert("classes".into(), j(&self.classes)?);
        m.insert("backbone_file".into(), self.backbone_file.clone());
        m.insert("backbone_sha256".into(), self.backbone_sha256.clone());
        if let Some(source) = &self.backbone_source {
            m.insert("backbone_source".into(), source.clone());
        }
        m.insert("backbone_dim".into(), self.backbone_dim.to_string());
        m.insert("backbone_depth".into(), self.backbone_depth.to_string());
        m.insert("backbone_family".into(), self.backbone_family.clone());
        m.insert("image_size".into(), j(&self.image_size)?);
        m.insert("mean".into(), j(&self.mean)?);
        m.insert("std".into(), j(&self.std)?);
        m.insert("crop_pct".into(), self.crop_pct.to_string());
        m.insert("init".into(), self.init.clone());
        m.insert("vitune_version".into(), self.vitune_version.clone());
        if let Some(sel) = &self.selection {
            m.insert("selection".into(), j(sel)?);
        }
        if let Some(d) = &self.diverged {
            m.insert("diverged".into(), j(d)?);
        }
        Ok(m)
    }

    fn from_map(m: &HashMap<String, String>, path: &Path) -> Result<Self> {
        let get = |k: &str| {
            m.get(k).ok_or_else(|| {
                Error::Input(format!(
                    "{}: the tuned file's metadata lacks `{k}`",
                    path.display()
                ))
            })
        };
        fn parse<T: serde::de::DeserializeOwned>(path: &Path, k: &str, v: &str) -> Result<T> {
            serde_json::from_str(v).map_err(|e| {
                Error::Input(format!(
                    "{}: metadata `{k}` is not valid: {e}",
                    path.display()
                ))
            })
        }
        Ok(Self {
            method: Method::from_name(get("method")?)?,
            options: parse(path, "options", get("options")?)?,
            classes: parse(path, "classes", get("classes")?)?,
            backbone_file: get("backbone_file")?.clone(),
            backbone_sha256: get("backbone_sha256")?.clone(),
            backbone_source: m.get("backbone_source").cloned(),
            backbone_dim: parse(path, "backbone_dim", get("backbone_dim")?)?,
            backbone_depth: parse(path, "backbone_depth", get("backbone_depth")?)?,
            backbone_family: m.get("backbone_family").cloned().unwrap_or_default(),
            image_size: parse(path, "image_size", get("image_size")?)?,
            mean: parse(path, "mean", get("mean")?)?,
            std: parse(path, "std", get("std")?)?,
            crop_pct: parse(path, "crop_pct", get("crop_pct")?)?,
            init: m.get("init").cloned().unwrap_or_default(),
            vitune_version: m.get("vitune_version").cloned().unwrap_or_default(),
            selection: m
                .get("selection")
                .map(|v| parse(path, "selection", v))
                .transpose()?,
            diverged: m
                .get("diverged")
                .map(|v| parse(path, "diverged", v))
                .transpose()?,
        })
    }
}

mod erased {
    /// Object-safe JSON serialisation for the metadata writer.
    pub trait Json {
        fn json(&self) -> crate::error::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> crate::error::Result<String> {
            serde_json::to_string(self)
                .map_err(|e| crate::error::Error::Input(format!("metadata: {e}")))
        }
    }
}

/// A tuned file read back: its tuning, class names and (for vitune's own files) metadata.
#[derive(Debug, Clone)]
pub struct TunedFile {
    pub tuning: Tuning,
    pub classes: Vec<String>,
    pub meta: Option<TunedMeta>,
}

/// Writes the tuned file atomically (temporary file, then rename).
pub fn write(path: &Path, tuning: &Tuning, meta: &TunedMeta) -> Result<()> {
    crate::io::write_tensors(path, &tuning.tensors, Some(meta.to_map()?))
}

/// Which method a plain safetensors file (no metadata) holds, from its tensor names; an error when no method
/// (or more than one) recognises them.
pub fn infer_method(tensors: &BTreeMap<String, HostTensor>) -> Result<Method> {
    let found: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| m.spec().recognises(tensors))
        .collect();
    match found.as_slice() {
        [m] => Ok(*m),
        [] => Err(Error::Input(
            "no tuning method uses these tensor names (is it a tuned file?)".into(),
        )),
        many => Err(Error::Input(format!(
            "these tensors fit more than one method ({})",
            many.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The metadata of a vitune tuned file, without a backbone to check it against.
pub fn read_meta(path: &Path) -> Result<TunedMeta> {
    let (_, metadata) = crate::io::read_tensors_with_metadata(path)?;
    match metadata {
        Some(m) if m.get("format").map(String::as_str) == Some("vitune-tuned") => {
            TunedMeta::from_map(&m, path)
        }
        _ => Err(Error::Input(format!(
            "{} is not a vitune tuned file (its metadata has no `format: vitune-tuned`)",
            path.display()
        ))),
    }
}

/// Reads a tuned file for `backbone`. vitune's own files must name this backbone: width and depth always, the
/// tensor hash unless `force`. A plain safetensors file is accepted too: its method comes from its tensor names,
/// its classes are numbered.
pub fn read(path: &Path, backbone: &Backbone, force: bool) -> Result<TunedFile> {
    let (tensors, metadata) = crate::io::read_tensors_with_metadata(path)?;
    let meta = match metadata {
        Some(m) if m.get("format").map(String::as_str) == Some("vitune-tuned") => {
            Some(TunedMeta::from_map(&m, path)?)
        }
        _ => None,
    };
    let c = &backbone.config;
    if let Some(m) = &meta {
        if m.backbone_dim != c.dim || m.backbone_depth != c.depth {
            return Err(Error::Input(format!(
                "{} was tuned for {} (width {}, depth {}), not for {} (width {}, depth {})",
                path.display(),
                m.backbone_file,
                m.backbone_dim,
                m.backbone_depth,
                backbone.file_name(),
                c.dim,
                c.depth
            )));
        }
        if !force && m.backbone_sha256 != backbone.sha256 {
            return Err(Error::Input(format!(
                "{} was tuned for backbone {} (sha256 {}…), but {} has sha256 {}…; pass --force to use it anyway",
                path.display(),
                m.backbone_file,
                &m.backbone_sha256.get(..12).unwrap_or(&m.backbone_sha256),
                backbone.file_name(),
                &backbone.sha256.get(..12).unwrap_or(&backbone.sha256)
            )));
        }
    }
    let (method, options) = match &meta {
        Some(m) => (m.method, m.options.clone()),
        None => {
            let m = infer_method(&tensors)
                .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
            (m, MethodOptions::defaults(m))
        }
    };
    let tuning = Tuning::from_tensors(method, options, backbone, tensors)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let classes = match &meta {
        Some(m) if m.classes.len() == tuning.num_classes => m.classes.clone(),
        _ => (0..tuning.num_classes)
            .map(|i| format!("class {i}"))
            .collect(),
    };
    Ok(TunedFile {
        tuning,
        classes,
        meta,
    })
}
