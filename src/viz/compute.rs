//! Attention (and its gradient) of one image on the GPU, and the map a person asked for.

use std::cell::RefCell;

use super::{attention_map_in, HeadFusion, MapMode};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::model::graph_api::Graph;
use crate::model::{GpuViT, HostTensor};
use crate::tuning::GpuTuning;

/// One image's attention: per layer [heads·T·T], the class the map explains, and the logits.
pub struct ImageAttention {
    pub attn: Vec<Vec<f32>>,
    /// ∂ logit[class] / ∂ attention, per layer (for grad-rollout).
    pub grads: Option<Vec<Vec<f32>>>,
    pub heads: usize,
    pub tokens: usize,
    pub prompts: usize,
    /// Where CLS, registers, prompts and patches lie.
    pub layout: crate::model::hooks::TokenLayout,
    pub grid: (usize, usize),
    pub logits: Vec<f32>,
    pub class: Option<usize>,
    /// Attention pooling's query attention over the pooled tokens, heads averaged (SigLIP).
    pub pool_weights: Option<Vec<f32>>,
}

impl ImageAttention {
    pub fn map(&self, mode: MapMode, fusion: HeadFusion) -> Result<Vec<f32>> {
        attention_map_in(
            &self.attn,
            self.grads.as_deref(),
            self.heads,
            self.layout,
            self.pool_weights.as_deref(),
            mode,
            fusion,
        )
    }
}

/// Runs `pixels` [1,3,H,W]; with `with_grads`, also backpropagates logit[class] (class: given, or the
/// predicted one) to every layer's attention.
pub fn image_attention(
    gpu: &Gpu,
    vit: &GpuViT,
    tuning: Option<&GpuTuning>,
    pixels: &HostTensor,
    with_grads: bool,
    class: Option<usize>,
) -> Result<ImageAttention> {
    let mut graph = Graph::new(vit, tuning.map(|t| &t.attached))?;
    let c = &vit.config;
    let px = gpu.upload(&pixels.shape, &pixels.data)?;
    let mut rec = Recorder::new(gpu);
    let f = graph.forward(&mut rec, &px, None, true, false)?;
    let ha: Vec<_> = f.attn.iter().map(|a| rec.read(a)).collect();
    let hl = f.logits.as_ref().map(|l| rec.read(l));
    let hp = f.pool_attention().map(|p| rec.read(p));
    let t = f.attn.first().map(|a| a.shape[2]).unwrap_or(0);
    drop(f);
    let (mut outs, _) = rec.finish()?;
    // [1, H, 1, T'] → the heads' mean [T'].
    let pool_weights = hp.map(|h| {
        let p = &outs[h.0];
        let pooled = p.len() / c.heads;
        (0..pooled)
            .map(|j| (0..c.heads).map(|k| p[k * pooled + j]).sum::<f32>() / c.heads as f32)
            .collect()
    });
    let attn: Vec<Vec<f32>> = ha.iter().map(|h| std::mem::take(&mut outs[h.0])).collect();
    let logits = hl
        .map(|h| std::mem::take(&mut outs[h.0]))
        .unwrap_or_default();
    let predicted = crate::train::argmax_rows(&logits, logits.len().max(1))
        .first()
        .copied();
    let class = class.or(predicted);
    let grads = if with_grads {
        let k = class.ok_or_else(|| {
            Error::Input("grad-rollout needs a head (a tuned file or the backbone's)".into())
        })?;
        if k >= logits.len() {
            return Err(Error::Input(format!(
                "class {k} does not exist; the head has {}",
                logits.len()
            )));
        }
        graph.attn_grads = Some(RefCell::new(Vec::new()));
        let mut rec = Recorder::new(gpu);
        let input_grads_only = Default::default();
        let f = graph.forward(&mut rec, &px, Some(&input_grads_only), false, false)?;
        let mut onehot = vec![0.0f32; logits.len()];
        onehot[k] = 1.0;
        let dlogits = gpu.upload(&[1, logits.len()], &onehot)?;
        let grads = crate::model::hooks::Grads::new(&input_grads_only);
        graph.backward(&mut rec, &f, &dlogits, &grads)?;
        let captured = graph
            .attn_grads
            .take()
            .map(|c| c.into_inner())
            .unwrap_or_default();
        let hs: Vec<_> = captured.iter().rev().map(|g| rec.read(g)).collect();
        drop(f);
        let (mut outs, _) = rec.finish()?;
        Some(hs.iter().map(|h| std::mem::take(&mut outs[h.0])).collect())
    } else {
        None
    };
    Ok(ImageAttention {
        attn,
        grads,
        heads: c.heads,
        tokens: t,
        prompts: tuning.map(|t| t.prompts()).unwrap_or(0),
        layout: vit.layout(tuning.map(|t| t.prompts()).unwrap_or(0)),
        grid: vit.grid(),
        logits,
        class,
        pool_weights,
    })
}

/// Which map to draw, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapStyle {
    pub mode: MapMode,
    pub fusion: HeadFusion,
    pub colormap: super::Colormap,
    pub alpha: f32,
    /// The class a grad-rollout explains (the predicted one when unset).
    pub class: Option<usize>,
}

/// The heat-map of `img` over `shown`, the image as it is displayed (`img` itself, or a copy enlarged by a whole
/// factor): the image goes through `transform`, the map covers the transform's crop of it. Returns the overlay and
/// the attention it came from (its logits give the prediction). The CLI's `attention` and the app share it.
pub fn heat_map(
    gpu: &Gpu,
    vit: &GpuViT,
    tuning: Option<&GpuTuning>,
    transform: &crate::preprocess::Transform,
    (img, shown): (&image::RgbImage, &image::RgbImage),
    style: &MapStyle,
) -> Result<(image::RgbImage, ImageAttention)> {
    let (h, w) = transform.size;
    let px = HostTensor::new(vec![1, 3, h, w], transform.apply(img));
    let grads = style.mode == MapMode::GradRollout;
    let att = image_attention(gpu, vit, tuning, &px, grads, style.class)?;
    let map = att.map(style.mode, style.fusion)?;
    let r = transform.crop_box(img.width() as usize, img.height() as usize);
    let f = (shown.width() / img.width().max(1)).max(1);
    let region = (r.0 * f, r.1 * f, r.2 * f, r.3 * f);
    let drawn = super::overlay(
        shown,
        &map,
        att.grid,
        region,
        style.colormap,
        style.alpha.clamp(0.0, 1.0),
    );
    Ok((drawn, att))
}
