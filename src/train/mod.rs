//! Training: data sets and augmentation, the loss-and-gradients step with micro-batching, optimizers and
//! schedules, the training loop and evaluation metrics.

pub mod augment;
pub mod dataset;
pub mod metrics;
pub mod optim;
mod recipe;
mod session;
mod step;
pub mod trainer;

pub use augment::Augment;
pub use dataset::{k_shot, working_side, Dataset, Samples};
pub use metrics::{argmax_rows, softmax, Evaluation, Mistake};
pub use optim::{OptimConfig, Optimizer, OptimizerKind};
pub use recipe::{initial_tuning, Init, Recipe};
pub use session::Session;
pub use step::{
    compute_grads, compute_head_grads, train_activation_bytes, train_micro_batch, StepOptions,
    StepOutput,
};
pub use trainer::{
    diverged_above, predict_logits, train, Divergence, EpochStats, RecipeOverrides, TrainConfig,
    TrainEvent, TrainOutcome, DEFAULT_BATCH, DEFAULT_EPOCHS,
};
