//! LayerNorm over the channel dimension.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{row_launch, shaders, u};

pub static LAYERNORM: Kernel = Kernel {
    family: "layernorm",
    source: shaders::LAYERNORM,
    entry: "layernorm",
};
pub static LAYERNORM_SERIAL: Kernel = Kernel {
    family: "layernorm",
    source: shaders::LAYERNORM,
    entry: "layernorm_serial",
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
    let (kernel, groups) = row_launch(rec.gpu(), [&LAYERNORM, &LAYERNORM_SERIAL], rows);
    rec.dispatch(kernel, &params, &[x, gamma, beta, &y, &stats], groups);
    rec.declare_work(crate::gpu::Work {
        flops: 0.0,
        bytes: 4.0 * (rows * (2 * d + 2) + 2 * d) as f64,
    });
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

pub static LAYERNORM_BACKWARD: Kernel = Kernel {
    family: "layernorm",
    source: shaders::LAYERNORM,
    entry: "layernorm_backward",
};
pub static LAYERNORM_BACKWARD_SERIAL: Kernel = Kernel {
    family: "layernorm",
    source: shaders::LAYERNORM,
    entry: "layernorm_backward_serial",
};
pub static LAYERNORM_PARAM_GRADS: Kernel = Kernel {
    family: "layernorm",
    source: shaders::LAYERNORM,
    entry: "layernorm_param_grads",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackParams {
    rows: u32,
    d: u32,
    x_off: u32,
    x_stride: u32,
    flags: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ParamGradParams {
    rows: u32,
    d: u32,
    x_off: u32,
    x_stride: u32,
}

/// Where the normalised rows of a LayerNorm came from: `rows` rows at `off + r*stride` of `x`.
#[derive(Clone, Copy)]
pub struct Rows {
    pub rows: usize,
    pub off: usize,
    pub stride: usize,
}

impl Rows {
    pub fn all(x: &GpuTensor) -> Self {
        let d = *x.shape.last().unwrap_or(&1);
        Self {
            rows: x.numel() / d,
            off: 0,
            stride: d,
        }
    }
}

/// dx (at the same strided rows as x) = residual + LayerNorm backward of dy [rows, d]. `dx` must not alias
/// `residual`; rows not named are left untouched.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    rec: &mut Recorder,
    x: &GpuTensor,
    rows: Rows,
    stats: &GpuTensor,
    gamma: &GpuTensor,
    dy: &GpuTensor,
    residual: Option<&GpuTensor>,
    dx: &GpuTensor,
) {
    let d = gamma.numel();
    let params = BackParams {
        rows: u(rows.rows),
        d: u(d),
        x_off: u(rows.off),
        x_stride: u(rows.stride),
        flags: residual.is_some() as u32,
        _p0: 0,
        _p1: 0,
        _p2: 0,
    };
    let res = residual.unwrap_or(rec.gpu().dummy());
    let pair = [&LAYERNORM_BACKWARD, &LAYERNORM_BACKWARD_SERIAL];
    let (kernel, groups) = row_launch(rec.gpu(), pair, rows.rows);
    rec.dispatch(kernel, &params, &[x, stats, gamma, dy, res, dx], groups);
}

/// dγ += Σ dy·x̂, dβ += Σ dy over the rows.
pub fn layernorm_param_grads(
    rec: &mut Recorder,
    x: &GpuTensor,
    rows: Rows,
    stats: &GpuTensor,
    dy: &GpuTensor,
    dgamma: &GpuTensor,
    dbeta: &GpuTensor,
) {
    let d = dgamma.numel();
    let params = ParamGradParams {
        rows: u(rows.rows),
        d: u(d),
        x_off: u(rows.off),
        x_stride: u(rows.stride),
    };
    rec.dispatch(
        &LAYERNORM_PARAM_GRADS,
        &params,
        &[x, stats, dy, dgamma, dbeta],
        [u(d.div_ceil(64)), 1, 1],
    );
}
