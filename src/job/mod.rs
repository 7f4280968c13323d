//! The jobs users come for, shared by the CLI and the app: train a method few-shot from class folders (or
//! samples in memory), evaluate a tuned file, predict classes of images.

mod attention;
mod predict;
mod tensors;
mod train;

pub use attention::*;
pub use predict::*;
pub use tensors::*;
pub use train::*;

pub use crate::train::{initial_tuning, Init, Recipe, Session};

use crate::model::Backbone;
use crate::preprocess::Transform;

/// The eval transform of a backbone at `size`.
pub fn eval_transform(b: &Backbone, size: Option<(usize, usize)>) -> Transform {
    let c = &b.config;
    Transform {
        size: size.unwrap_or(c.image_size),
        crop_pct: c.crop_pct,
        mean: c.mean,
        std: c.std,
    }
}
