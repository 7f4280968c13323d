//! Optimizer steps on the GPU: SGD with momentum and AdamW (decoupled weight decay).

use crate::gpu::{GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

pub static SGD: Kernel = Kernel {
    family: "optim",
    source: shaders::OPTIM,
    entry: "sgd_step",
};
pub static ADAMW: Kernel = Kernel {
    family: "optim",
    source: shaders::OPTIM,
    entry: "adamw_step",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    total: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    lr: f32,
    wd: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
}

/// PyTorch's SGD: d = g + wd·w; m = μ·m + d; w −= lr·m (m starts at zero, which equals PyTorch's first step).
pub fn sgd_step(
    rec: &mut Recorder,
    w: &GpuTensor,
    g: &GpuTensor,
    m: &GpuTensor,
    lr: f32,
    momentum: f32,
    wd: f32,
) {
    let total = w.numel();
    let params = Params {
        total: u(total),
        lr,
        wd,
        momentum,
        ..Default::default()
    };
    rec.dispatch(&SGD, &params, &[g, w, m], elementwise_groups(total));
}

/// PyTorch's AdamW at step `t` (1-based).
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    rec: &mut Recorder,
    w: &GpuTensor,
    g: &GpuTensor,
    m: &GpuTensor,
    v: &GpuTensor,
    lr: f32,
    (beta1, beta2, eps): (f32, f32, f32),
    wd: f32,
    t: u32,
) {
    let total = w.numel();
    let params = Params {
        total: u(total),
        lr,
        wd,
        beta1,
        beta2,
        eps,
        bc1: 1.0 - (beta1 as f64).powi(t as i32) as f32,
        bc2: 1.0 - (beta2 as f64).powi(t as i32) as f32,
        ..Default::default()
    };
    rec.dispatch(&ADAMW, &params, &[g, w, m, v], elementwise_groups(total));
}
