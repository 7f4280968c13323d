//! The jobs users come for, shared by the CLI and the app: train a method few-shot from class folders (or
//! samples in memory), evaluate a tuned file, predict classes of images.

mod attention;
mod compare;
mod predict;
mod tensors;
mod train;

pub use attention::*;
pub use compare::*;
pub use predict::*;
pub use tensors::*;
pub use train::*;

pub use crate::train::{initial_tuning, Init, Recipe, Session};

use crate::model::Backbone;
use crate::preprocess::Transform;
use crate::train::{Augment, RecipeOverrides, TrainConfig};
use crate::tuning::Method;

/// What a run's schedule is made of besides the method's recipe: epochs, batch, seed, augmentation, and the
/// user's overrides of the recipe (none under a search, which chooses them).
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    pub augment: Augment,
    pub overrides: RecipeOverrides,
}

impl RunPlan {
    /// The papers' recipe for `method` over `train_images` images a epoch, with this plan.
    pub fn config(&self, method: Method, train_images: usize) -> TrainConfig {
        let steps = train_images.div_ceil(self.batch.max(1));
        let mut config = TrainConfig::defaults(method, self.epochs, self.batch, steps)
            .overridden(&self.overrides);
        config.seed = self.seed;
        config.augment = self.augment.clone();
        config
    }
}

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
