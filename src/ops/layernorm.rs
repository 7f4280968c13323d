//! LayerNorm over the channel dimension.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{rows_groups, shaders, u};

pub static LAYERNORM: Kernel = Kernel {
    family: "layernorm",
    source: shaders::LAYERNORM,
    entry: "layernorm",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    in_off: u32,
    in_stride: u32,
    out_off: u32,
    out_stride: u32,
    eps: f32,
    _p0: u32,
}

/// The output of a LayerNorm and the per-row (mean, 1/std) its backward needs.
pub struct LayerNormOut {
    pub y: GpuTensor,
    pub stats: GpuTensor,
}

/// Normalises `rows` rows of width `d` read from `x` at `x_off + r*x_stride`; writes a compact [rows, d].
#[allow(clippy::too_many_arguments)]
pub fn layernorm_rows(
    rec: &mut Recorder,
    x: &GpuTensor,
    rows: usize,
    x_off: usize,
    x_stride: usize,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f32,
) -> Result<LayerNormOut, GpuError> {
    let d = gamma.numel();
    let y = rec.gpu().empty(&[rows, d])?;
    let stats = rec.gpu().empty(&[rows, 2])?;
    let params = Params {
        rows: u(rows),
        d: u(d),
        in_off: u(x_off),
        in_stride: u(x_stride),
        out_off: 0,
        out_stride: u(d),
        eps,
        _p0: 0,
    };
    rec.dispatch(
        &LAYERNORM,
        &params,
        &[x, gamma, beta, &y, &stats],
        rows_groups(rows),
    );
    Ok(LayerNormOut { y, stats })
}

/// LayerNorm of every row of `x` (last dimension = channels); the output keeps `x`'s shape.
pub fn layernorm(
    rec: &mut Recorder,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f32,
) -> Result<LayerNormOut, GpuError> {
    let d = gamma.numel();
    let rows = x.numel() / d;
    let mut out = layernorm_rows(rec, x, rows, 0, d, gamma, beta, eps)?;
    out.y.shape = x.shape.clone();
    Ok(out)
}
