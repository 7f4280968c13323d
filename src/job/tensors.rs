//! Tensors in, tensors out: the forward and the gradients on a tensor of pixels, for checks against timm and
//! autograd.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Backbone, ForwardOptions, GpuViT, HostTensor};
use crate::tuning::GpuTuning;
use crate::tuning::Tuning;

/// `vitune forward`: the backbone (with `tuning`, if given) on `pixels` [N,3,H,W] at their size, as named tensors:
/// `pooled` [N,D], `logits` [N,C] where there is a head (the tuning's, else the checkpoint's), and with `attn`
/// every layer's post-softmax attention `attn.{l}` [N,heads,T,T].
pub fn forward_tensors(
    gpu: &Gpu,
    backbone: &Backbone,
    tuning: Option<&Tuning>,
    pixels: &HostTensor,
    attn: bool,
) -> Result<BTreeMap<String, HostTensor>> {
    check_pixels_shape(pixels)?;
    let vit = GpuViT::new(gpu, backbone, Some((pixels.shape[2], pixels.shape[3])))?;
    let gt = tuning.map(|t| GpuTuning::upload(gpu, t)).transpose()?;
    let r = vit.forward(
        gpu,
        pixels,
        &ForwardOptions {
            attn,
            tuning: gt.as_deref(),
            ..Default::default()
        },
    )?;
    let mut outs = BTreeMap::from([("pooled".to_string(), r.pooled)]);
    if let Some(l) = r.logits {
        outs.insert("logits".into(), l);
    }
    for (i, a) in r.attn.into_iter().enumerate() {
        outs.insert(format!("attn.{i}"), a);
    }
    Ok(outs)
}

/// `vitune grad`: the mean cross-entropy of `tuning` on `pixels` and `labels` (no dropout) and the gradient of
/// every trainable tensor, under the tuned file's names and shapes; `loss` is a 0-d tensor.
pub fn gradients(
    gpu: &Gpu,
    backbone: &Backbone,
    tuning: &Tuning,
    pixels: &HostTensor,
    labels: &HostTensor,
) -> Result<BTreeMap<String, HostTensor>> {
    check_pixels_shape(pixels)?;
    let labels: Vec<usize> = labels
        .data
        .iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(Error::Input(format!(
                    "label {v} is not a class index (a non-negative integer)"
                )))
            }
        })
        .collect::<Result<_>>()?;
    let vit = GpuViT::new(gpu, backbone, Some((pixels.shape[2], pixels.shape[3])))?;
    let gt = GpuTuning::upload(gpu, tuning)?;
    let grads = gt.zeros_like(gpu)?;
    let step = crate::train::compute_grads(
        gpu,
        &vit,
        &gt,
        &grads,
        pixels,
        &labels,
        Default::default(),
        None,
    )?;
    let mut outs = crate::model::download_named(gpu, &grads, &gt.shapes)?;
    outs.insert(
        "loss".into(),
        HostTensor::new(vec![], vec![step.loss as f32]),
    );
    Ok(outs)
}

fn check_pixels_shape(pixels: &HostTensor) -> Result<()> {
    if pixels.shape.len() != 4 || pixels.shape[1] != 3 {
        return Err(Error::Input(format!(
            "`pixels` has shape {:?}; expected [N, 3, H, W]",
            pixels.shape
        )));
    }
    Ok(())
}
