//! Training: the loss-and-gradients step with micro-batching, optimizers and schedules, and (next) data sets
//! and the loop.

pub mod optim;
mod step;

pub use optim::{OptimConfig, Optimizer, OptimizerKind};
pub use step::{compute_grads, train_micro_batch, StepOutput};
