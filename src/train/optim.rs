//! Optimizers on the GPU (SGD with momentum, AdamW), parameter groups, and the learning-rate schedule
//! (linear warmup, then cosine decay to zero).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::gpu::{Gpu, GpuTensor, Recorder};
use crate::ops::optim::{adamw_step, sgd_step};
pub use crate::records::OptimizerKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f32,
    pub weight_decay: f32,
    /// Weight decay of `head.weight`; the general one when unset.
    pub head_weight_decay: Option<f32>,
    pub momentum: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    /// Steps of linear warmup from 0 to `lr`.
    pub warmup_steps: u32,
    /// Steps after which the cosine reaches 0; 0 keeps the learning rate constant after warmup.
    pub total_steps: u32,
}

impl OptimConfig {
    pub fn new(kind: OptimizerKind, lr: f32, weight_decay: f32) -> Self {
        Self {
            kind,
            lr,
            weight_decay,
            head_weight_decay: None,
            momentum: 0.9,
            betas: (0.9, 0.999),
            eps: 1e-8,
            warmup_steps: 0,
            total_steps: 0,
        }
    }

    /// Learning rate at 0-based step `step`: linear warmup, then cosine decay to zero at `total_steps`.
    pub fn lr_at(&self, step: u32) -> f32 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        if self.total_steps == 0 || self.total_steps <= self.warmup_steps {
            return self.lr;
        }
        let t = (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64;
        (self.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())) as f32
    }

    /// Weight decay of a parameter: none on biases and 1-D tensors, the head's own for `head.weight`.
    pub fn decay_for(&self, name: &str, shape: &[usize]) -> f32 {
        if name.ends_with("bias") || shape.len() <= 1 {
            0.0
        } else if name == "head.weight" {
            self.head_weight_decay.unwrap_or(self.weight_decay)
        } else {
            self.weight_decay
        }
    }
}

/// Optimizer state per parameter, on the GPU.
pub struct Optimizer {
    pub config: OptimConfig,
    first: BTreeMap<String, GpuTensor>,
    second: BTreeMap<String, GpuTensor>,
    /// Steps taken so far.
    pub step: u32,
}

impl Optimizer {
    pub fn new(
        gpu: &Gpu,
        params: &BTreeMap<String, GpuTensor>,
        config: OptimConfig,
    ) -> Result<Self> {
        let mut first = BTreeMap::new();
        let mut second = BTreeMap::new();
        for (k, p) in params {
            first.insert(k.clone(), gpu.zeros(&p.shape)?);
            if config.kind == OptimizerKind::Adamw {
                second.insert(k.clone(), gpu.zeros(&p.shape)?);
            }
        }
        Ok(Self {
            config,
            first,
            second,
            step: 0,
        })
    }

    /// The learning rate the next step uses.
    pub fn current_lr(&self) -> f32 {
        self.config.lr_at(self.step)
    }

    /// Records one update of every parameter from its gradient (`shapes` gives each tensor's file shape, which
    /// decides its decay group).
    pub fn record_step(
        &mut self,
        rec: &mut Recorder,
        params: &BTreeMap<String, GpuTensor>,
        grads: &BTreeMap<String, GpuTensor>,
        shapes: &BTreeMap<String, Vec<usize>>,
    ) {
        let lr = self.current_lr();
        self.step += 1;
        for (k, w) in params {
            let (Some(g), Some(m)) = (grads.get(k), self.first.get(k)) else {
                continue;
            };
            let shape = shapes.get(k).map(Vec::as_slice).unwrap_or(&w.shape);
            let wd = self.config.decay_for(k, shape);
            match self.config.kind {
                OptimizerKind::Sgd => sgd_step(rec, w, g, m, lr, self.config.momentum, wd),
                OptimizerKind::Adamw => {
                    if let Some(v) = self.second.get(k) {
                        let (b1, b2) = self.config.betas;
                        adamw_step(
                            rec,
                            w,
                            g,
                            m,
                            v,
                            lr,
                            (b1, b2, self.config.eps),
                            wd,
                            self.step,
                        );
                    }
                }
            }
        }
    }
}
