//! Row softmax (attention probabilities).

use crate::gpu::{GpuTensor, Kernel, Recorder};
use crate::ops::{rows_groups, shaders, u};

pub static SOFTMAX: Kernel = Kernel {
    family: "softmax",
    source: shaders::SOFTMAX,
    entry: "softmax",
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
    rec.dispatch(&SOFTMAX, &params, &[x], rows_groups(rows));
}
