//! One forward + loss + backward over a batch, split into micro-batches whose gradients accumulate on the GPU.
//! Each micro-batch is one recording and one submit; only the per-image losses and logits come back.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, KernelTimes, Recorder};
use crate::model::graph_api::{train_bytes_per_image, Graph};
use crate::model::hooks::Grads;
use crate::model::{GpuViT, HostTensor};
use crate::ops::activation::fill;
use crate::ops::loss::cross_entropy;
use crate::tuning::GpuTuning;

/// Default budget for a micro-batch's saved activations and backward working set when `VITUNE_MEMORY_MB` is not
/// set.
const DEFAULT_BUDGET_MB: usize = 1024;

/// Bytes of activations (and working space) one image keeps through a training step of `tuning`: what the
/// micro-batch is sized against. Frozen layers' inputs are counted only where a weight reading them is trained.
pub fn train_activation_bytes(gpu: &Gpu, vit: &GpuViT, tuning: &GpuTuning) -> usize {
    train_bytes_per_image(
        &vit.config,
        vit.tokens(tuning.prompts()),
        &|name| tuning.params.contains_key(name),
        gpu.attention_kernel().is_fused(),
        tuning.hooks.as_ref(),
    )
}

/// Images per training micro-batch of `tuning`: within the binding limit and the activation budget
/// (`VITUNE_MEMORY_MB`).
pub fn train_micro_batch(gpu: &Gpu, vit: &GpuViT, tuning: &GpuTuning, wanted: usize) -> usize {
    let budget_mb = std::env::var("VITUNE_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_BUDGET_MB);
    let by_memory = (budget_mb << 20) / train_activation_bytes(gpu, vit, tuning).max(1);
    vit.micro_batch(gpu, tuning.prompts(), wanted)
        .min(by_memory.max(1))
}

/// The mean loss over the batch and its logits.
#[derive(Debug, Clone)]
pub struct StepOutput {
    pub loss: f64,
    pub logits: HostTensor,
    /// Kernel times and work over every micro-batch, when timing was asked for.
    pub times: Option<KernelTimes>,
}

/// How a step runs: the micro-batch (None = chosen from the limits) and, for training, the dropout seed (None =
/// no dropout, as `vitune grad` and the gradient tests want).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOptions {
    pub micro_batch: Option<usize>,
    pub dropout_seed: Option<u32>,
    /// Per-kernel timestamps (for `vitune bench`; each dispatch then runs in its own pass).
    pub timing: bool,
}

#[allow(clippy::too_many_arguments)]
/// Zeroes `grads`, then accumulates d(mean cross-entropy)/d(every tensor in `grads`) over the batch.
/// `after` records extra work (an optimizer step) into the last micro-batch's submit.
pub fn compute_grads(
    gpu: &Gpu,
    vit: &GpuViT,
    tuning: &GpuTuning,
    grads: &BTreeMap<String, GpuTensor>,
    pixels: &HostTensor,
    labels: &[usize],
    options: StepOptions,
    after: Option<&mut dyn FnMut(&mut Recorder)>,
) -> Result<StepOutput> {
    vit.check_pixels(pixels)?;
    let n = pixels.shape[0];
    if labels.len() != n {
        return Err(Error::Input(format!(
            "{} labels for {n} images",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= tuning.num_classes) {
        return Err(Error::Input(format!(
            "label {bad} is out of range for a head of {} classes",
            tuning.num_classes
        )));
    }
    let mut graph = Graph::new(vit, Some(tuning))?;
    let chunk = options
        .micro_batch
        .unwrap_or_else(|| train_micro_batch(gpu, vit, tuning, n));
    let per: usize = pixels.shape[1..].iter().product();
    let mut loss = 0.0f64;
    let mut logits = Vec::with_capacity(n * tuning.num_classes);
    let mut after = after;
    let starts: Vec<usize> = (0..n).step_by(chunk.max(1)).collect();
    let mut times: Option<KernelTimes> = None;
    for (i, &start) in starts.iter().enumerate() {
        let end = (start + chunk).min(n);
        let mut rec = Recorder::new(gpu).with_timing(options.timing);
        if i == 0 {
            for g in grads.values() {
                fill(&mut rec, g, 0.0);
            }
        }
        let px = gpu.upload(
            &[end - start, 3, pixels.shape[2], pixels.shape[3]],
            &pixels.data[start * per..end * per],
        )?;
        let lab: Vec<f32> = labels[start..end].iter().map(|&l| l as f32).collect();
        let lab = gpu.upload(&[end - start], &lab)?;
        graph.dropout_key = options.dropout_seed.map(|seed| (seed, start));
        let train = graph.keeps_activations(grads).then_some(grads);
        let f = graph.forward(&mut rec, &px, train, false, false)?;
        let lg = f
            .logits
            .clone()
            .ok_or_else(|| Error::Input("training needs a head".into()))?;
        let (row_loss, dlogits) = cross_entropy(&mut rec, &lg, &lab, n)?;
        let reached = Grads::new(grads);
        graph.backward(&mut rec, &f, &dlogits, &reached)?;
        drop(f);
        if let Some(name) = reached.unreached().first() {
            return Err(Error::Internal(format!(
                "`{name}` is trained but the backward gives it no gradient: method {} does not reach it",
                tuning.method
            )));
        }
        let hl = rec.read(&row_loss);
        let hg = rec.read(&lg);
        if i + 1 == starts.len() {
            if let Some(a) = after.as_mut() {
                a(&mut rec);
            }
        }
        let (outs, t) = rec.finish()?;
        if let Some(t) = t {
            times.get_or_insert_with(KernelTimes::default).add(&t);
        }
        loss += outs[hl.0].iter().map(|v| *v as f64).sum::<f64>();
        logits.extend_from_slice(&outs[hg.0]);
    }
    Ok(StepOutput {
        loss: loss / n.max(1) as f64,
        logits: HostTensor::new(vec![n, tuning.num_classes], logits),
        times,
    })
}

/// The linear probe's step on cached backbone features [n, D] (the backbone is frozen and, without
/// augmentation, its features never change): zeroes `grads`, accumulates the head's gradients, runs `after`.
pub fn compute_head_grads(
    gpu: &Gpu,
    tuning: &GpuTuning,
    grads: &BTreeMap<String, GpuTensor>,
    features: &HostTensor,
    labels: &[usize],
    after: Option<&mut dyn FnMut(&mut Recorder)>,
) -> Result<StepOutput> {
    use crate::ops::matmul::{linear, linear_weight_grad, Act};
    use crate::ops::reduce::column_sum_into;
    let n = features.shape[0];
    let (hw, hb) = match (
        tuning.params.get("head.weight"),
        tuning.params.get("head.bias"),
    ) {
        (Some(w), Some(b)) => (w, b),
        _ => {
            return Err(Error::Input(
                "the linear probe needs head.weight and head.bias".into(),
            ))
        }
    };
    let mut rec = Recorder::new(gpu);
    for g in grads.values() {
        fill(&mut rec, g, 0.0);
    }
    let f = gpu.upload(&features.shape, &features.data)?;
    let lab: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let lab = gpu.upload(&[n], &lab)?;
    let logits = linear(&mut rec, &f, hw, Some(hb), Act::None, None)?;
    let (row_loss, dlogits) = cross_entropy(&mut rec, &logits, &lab, n)?;
    if let Some(g) = grads.get("head.weight") {
        linear_weight_grad(&mut rec, &dlogits, &f, g, 1.0);
    }
    if let Some(g) = grads.get("head.bias") {
        column_sum_into(&mut rec, &dlogits, g, 1.0);
    }
    let hl = rec.read(&row_loss);
    let hg = rec.read(&logits);
    if let Some(a) = after {
        a(&mut rec);
    }
    let (outs, _) = rec.finish()?;
    Ok(StepOutput {
        loss: outs[hl.0].iter().map(|v| *v as f64).sum::<f64>() / n.max(1) as f64,
        logits: HostTensor::new(vec![n, tuning.num_classes], outs[hg.0].clone()),
        times: None,
    })
}
