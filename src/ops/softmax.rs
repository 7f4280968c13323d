//! Row softmax (attention probabilities).

use crate::gpu::{GpuTensor, Kernel, Recorder};
use crate::ops::{row_launch, shaders, u};

pub static SOFTMAX: Kernel = Kernel {
    family: "softmax",
    source: shaders::SOFTMAX,
    entry: "softmax",
};
pub static SOFTMAX_SERIAL: Kernel = Kernel {
    family: "softmax",
    source: shaders::SOFTMAX,
    entry: "softmax_serial",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _p0: u32,
    _p1: u32,
}

/// Softmax of each row (last dimension) of `x`, in place.
pub fn softmax_inplace(rec: &mut Recorder, x: &GpuTensor) {
    let cols = *x.shape.last().unwrap_or(&1);
    let rows = x.numel() / cols.max(1);
    let params = Params {
        rows: u(rows),
        cols: u(cols),
        _p0: 0,
        _p1: 0,
    };
    let (kernel, groups) = row_launch(rec.gpu(), [&SOFTMAX, &SOFTMAX_SERIAL], rows);
    rec.dispatch(kernel, &params, &[x], groups);
    // Read and written in place.
    rec.declare_work(crate::gpu::Work {
        flops: 0.0,
        bytes: 8.0 * x.numel() as f64,
    });
}

pub static SOFTMAX_BACKWARD: Kernel = Kernel {
    family: "softmax",
    source: shaders::SOFTMAX,
    entry: "softmax_backward",
};
pub static SOFTMAX_BACKWARD_SERIAL: Kernel = Kernel {
    family: "softmax",
    source: shaders::SOFTMAX,
    entry: "softmax_backward_serial",
};

/// dy (in place) becomes d logits = y ⊙ (dy − Σ dy·y), row-wise, y being the softmax output.
pub fn softmax_backward_inplace(rec: &mut Recorder, y: &GpuTensor, dy: &GpuTensor) {
    let cols = *y.shape.last().unwrap_or(&1);
    let rows = y.numel() / cols.max(1);
    let params = Params {
        rows: u(rows),
        cols: u(cols),
        _p0: 0,
        _p1: 0,
    };
    let pair = [&SOFTMAX_BACKWARD, &SOFTMAX_BACKWARD_SERIAL];
    let (kernel, groups) = row_launch(rec.gpu(), pair, rows);
    rec.dispatch(kernel, &params, &[y, dy], groups);
    // y read, dy read and written.
    rec.declare_work(crate::gpu::Work {
        flops: 0.0,
        bytes: 12.0 * y.numel() as f64,
    });
}
