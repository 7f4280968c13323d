//! Attention heat-maps over an image, drawn at the image's own size.

use std::path::Path;

use super::*;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::Backbone;

/// What attention map to draw, as the CLI and the app name things.
#[derive(Debug, Clone)]
pub struct AttentionRequest {
    /// cls, prompt, rollout or grad-rollout.
    pub mode: String,
    pub layer: Option<usize>,
    /// mean, max, min, or a head index.
    pub head: String,
    pub prompt: Option<usize>,
    pub class: Option<usize>,
    pub discard: f32,
    pub colormap: String,
    pub alpha: f32,
}

impl AttentionRequest {
    pub fn mode(&self, depth: usize) -> Result<crate::viz::MapMode> {
        use crate::viz::MapMode;
        let layer = self.layer.unwrap_or(depth.saturating_sub(1));
        if layer >= depth {
            return Err(Error::Input(format!(
                "--layer {layer} does not exist; the model has {depth} layers (0–{})",
                depth - 1
            )));
        }
        Ok(match self.mode.as_str() {
            "cls" => MapMode::Cls { layer },
            "prompt" => MapMode::Prompt {
                layer,
                prompt: self.prompt,
            },
            "rollout" => MapMode::Rollout {
                discard: self.discard.clamp(0.0, 0.999),
            },
            "grad-rollout" => MapMode::GradRollout,
            m => {
                return Err(Error::Input(format!(
                    "--mode `{m}`: expected cls, prompt, rollout or grad-rollout"
                )))
            }
        })
    }
}

/// The heat-map overlay of the first prepared image, at the size of the original `image_path`, and the class a
/// grad-rollout explained.
pub fn attention_overlay(
    gpu: &Gpu,
    backbone: &Backbone,
    input: &PredictInput,
    image_path: &Path,
    req: &AttentionRequest,
) -> Result<(image::RgbImage, Option<usize>)> {
    use crate::viz::{heat_map, Colormap, HeadFusion, MapMode, MapStyle};
    let style = MapStyle {
        mode: req.mode(backbone.config.depth)?,
        fusion: HeadFusion::from_name(&req.head)?,
        colormap: Colormap::from_name(&req.colormap).ok_or_else(|| {
            Error::Input(format!(
                "--colormap `{}`: expected inferno, viridis or jet",
                req.colormap
            ))
        })?,
        alpha: req.alpha,
        class: req.class,
    };
    let (vit, gt) = input.upload(gpu, backbone)?;
    let img = crate::preprocess::load_rgb(image_path)?;
    let (drawn, att) = heat_map(
        gpu,
        &vit,
        gt.as_ref(),
        &input.transform,
        (&img, &img),
        &style,
    )?;
    let explained = (style.mode == MapMode::GradRollout)
        .then_some(att.class)
        .flatten();
    Ok((drawn, explained))
}
