//! The export's self-check: the written file, read back by a Rust ONNX runtime (tract), against vitune's own
//! forward on the same pixels.

use std::path::Path;

use serde::Serialize;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::model::HostTensor;

/// How the ONNX runtime's logits compare with vitune's.
#[derive(Debug, Clone, Serialize)]
pub struct SelfCheck {
    pub images: usize,
    /// Largest |logit difference|.
    pub max_abs_diff: f32,
    /// That, over the largest |logit| vitune gave.
    pub max_rel_diff: f32,
    /// Images whose top-1 class is the same in both.
    pub top1_agree: usize,
    /// The relative difference above which the export is refused.
    pub tolerance: f32,
}

impl SelfCheck {
    pub fn passed(&self) -> bool {
        self.top1_agree == self.images && self.max_rel_diff <= self.tolerance
    }

    pub fn describe(&self) -> String {
        format!(
            "the ONNX runtime (tract) agrees with vitune on {} of {} images' top class; largest logit difference {:.2e} ({:.2e} relative, tolerance {:.0e})",
            self.top1_agree, self.images, self.max_abs_diff, self.max_rel_diff, self.tolerance
        )
    }
}

/// Runs the ONNX file at `path` on `pixels` [N,3,H,W] with tract: its `logits` output [N, C].
pub fn run_onnx(path: &Path, pixels: &HostTensor) -> Result<HostTensor> {
    let fail = |e: TractError| {
        Error::Input(format!(
            "the ONNX runtime (tract) cannot run {}: {e:#}",
            path.display()
        ))
    };
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.with_input_fact(0, f32::fact(pixels.shape.clone()).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(fail)?;
    let input = Tensor::from_shape::<f32>(&pixels.shape, &pixels.data).map_err(fail)?;
    let outputs = model.run(tvec!(input.into())).map_err(fail)?;
    let logits = outputs
        .first()
        .ok_or_else(|| Error::Internal("the exported graph has no output".into()))?;
    let view = logits.to_plain_array_view::<f32>().map_err(fail)?;
    Ok(HostTensor::new(
        view.shape().to_vec(),
        view.iter().copied().collect(),
    ))
}

/// Compares the runtime's logits with vitune's (both [N, C]).
pub fn compare(vitune: &HostTensor, onnx: &HostTensor, tolerance: f32) -> Result<SelfCheck> {
    if vitune.shape != onnx.shape {
        return Err(Error::Internal(format!(
            "the exported model gives logits of shape {:?}; vitune gives {:?}",
            onnx.shape, vitune.shape
        )));
    }
    let classes = vitune.shape[1].max(1);
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
            .0
    };
    let max_abs_diff = vitune
        .data
        .iter()
        .zip(&onnx.data)
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        );
    // A near-tie (vitune's top two within twice the largest difference) may flip either way: it counts as agreed.
    let runner_up_gap = |row: &[f32]| {
        let best = row[argmax(row)];
        let second = row
            .iter()
            .copied()
            .filter(|&v| v < best)
            .fold(f32::NEG_INFINITY, f32::max);
        best - second
    };
    let top1_agree = vitune
        .data
        .chunks(classes)
        .zip(onnx.data.chunks(classes))
        .filter(|(a, b)| argmax(a) == argmax(b) || runner_up_gap(a) < 2.0 * max_abs_diff)
        .count();
    let scale = vitune.data.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    Ok(SelfCheck {
        images: vitune.shape[0],
        max_abs_diff,
        max_rel_diff: max_abs_diff / scale,
        top1_agree,
        tolerance,
    })
}
