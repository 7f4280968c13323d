//! Training: the loss-and-gradients step with micro-batching, and (next) data sets, optimizers and the loop.

mod step;

pub use step::{compute_grads, train_micro_batch, StepOutput};
