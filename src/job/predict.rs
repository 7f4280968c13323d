//! Predicting and evaluating: a tuned file (or the backbone's own head) on images or class folders.

use std::path::{Path, PathBuf};

use super::eval_transform;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Backbone, ForwardOptions, GpuViT};
use crate::preprocess::Transform;
use crate::train::{predict_logits, Dataset, Evaluation, Samples};
use crate::tuned::{self};
use crate::tuning::GpuTuning;

/// Evaluates a tuned file on class folders (classes matched by name).
pub fn evaluate(
    gpu: &Gpu,
    backbone: &Backbone,
    tuned_path: &Path,
    data: &Path,
    force: bool,
) -> Result<(Evaluation, Vec<String>)> {
    let tf = tuned::read(tuned_path, backbone, force)?;
    let mut ds = Dataset::from_folder(data)?;
    ds.relabel(&tf.classes)?;
    let size = tf.meta.as_ref().map(|m| m.image_size);
    let transform = eval_transform(backbone, size);
    let (samples, problems) =
        Samples::decode(&ds.items, crate::train::working_side(transform.size));
    let vit = GpuViT::new(gpu, backbone, Some(transform.size))?;
    let gt = GpuTuning::upload(gpu, &tf.tuning)?;
    let logits = predict_logits(gpu, &vit, &transform, &gt, &samples, 32)?;
    Ok((
        Evaluation::from_logits(tf.classes, &logits.data, &samples.labels, &samples.paths),
        problems,
    ))
}

/// Everything a prediction needs before the GPU: the tuned file (if any), the transform and decoded pixels.
pub struct PredictInput {
    pub tuned: Option<tuned::TunedFile>,
    pub transform: Transform,
    /// The images that decoded, in the order given, and their pixels.
    pub images: Vec<PathBuf>,
    pub pixels: crate::model::HostTensor,
    /// The images that did not decode, each with its reason: the others go on without them.
    pub failed: Vec<(PathBuf, String)>,
}

impl PredictInput {
    /// The backbone at this input's size, and the tuned tensors when there is a tuned file.
    pub(super) fn upload(
        &self,
        gpu: &Gpu,
        backbone: &Backbone,
    ) -> Result<(GpuViT, Option<GpuTuning>)> {
        let vit = GpuViT::new(gpu, backbone, Some(self.transform.size))?;
        let gt = self
            .tuned
            .as_ref()
            .map(|t| GpuTuning::upload(gpu, &t.tuning))
            .transpose()?;
        Ok((vit, gt))
    }
}

/// Reads the tuned file and decodes the images (bad input fails here, before any GPU work).
pub fn prepare_predict(
    backbone: &Backbone,
    tuned_path: Option<&Path>,
    images: &[PathBuf],
    force: bool,
) -> Result<PredictInput> {
    let tf = tuned_path
        .map(|p| tuned::read(p, backbone, force))
        .transpose()?;
    let size = tf
        .as_ref()
        .and_then(|t| t.meta.as_ref())
        .map(|m| m.image_size);
    let transform = eval_transform(backbone, size);
    let (pixels, good, failed) = transform.batch_readable(images);
    let good: Vec<PathBuf> = good.into_iter().map(|i| images[i].clone()).collect();
    let failed: Vec<(PathBuf, String)> = failed
        .into_iter()
        .map(|(i, e)| (images[i].clone(), e.to_string()))
        .collect();
    if good.is_empty() {
        let reasons: Vec<&str> = failed.iter().map(|f| f.1.as_str()).collect();
        return Err(Error::Input(format!(
            "no image could be read: {}",
            reasons.join("; ")
        )));
    }
    Ok(PredictInput {
        tuned: tf,
        transform,
        images: good,
        pixels,
        failed,
    })
}

/// Class probabilities of the prepared images under the tuned file (or the backbone's own head):
/// (class names, one row of probabilities per image).
pub fn predict(
    gpu: &Gpu,
    backbone: &Backbone,
    input: &PredictInput,
) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    let (vit, gt) = input.upload(gpu, backbone)?;
    let out = vit.forward(
        gpu,
        &input.pixels,
        &ForwardOptions {
            tuning: gt.as_deref(),
            ..Default::default()
        },
    )?;
    let logits = out.logits.ok_or_else(|| {
        Error::Input(format!(
            "{} has no classification head; give a tuned file (--tuned) made by `vitune train`",
            backbone.path.display()
        ))
    })?;
    let nc = logits.shape[1];
    let classes = match &input.tuned {
        Some(t) => t.classes.clone(),
        None => crate::model::class_names(&backbone.path)
            .filter(|n| n.len() == nc)
            .unwrap_or_else(|| (0..nc).map(|i| format!("class {i}")).collect()),
    };
    let rows = logits.data.chunks(nc).map(softmax).collect();
    Ok((classes, rows))
}

/// Classes with their probabilities, most probable first.
pub fn ranked(classes: &[String], probs: &[f32]) -> Vec<(String, f32)> {
    let mut r: Vec<(String, f32)> = classes.iter().cloned().zip(probs.iter().copied()).collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1));
    r
}

pub use crate::train::softmax;
