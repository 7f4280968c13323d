//! Convpass's 3×3 convolution over the patch grid of a token sequence, with its input and weight gradients.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

pub static CONV: Kernel = Kernel {
    family: "conv",
    source: shaders::CONV,
    entry: "conv_tokens",
};
pub static CONV_BACKWARD: Kernel = Kernel {
    family: "conv",
    source: shaders::CONV,
    entry: "conv_tokens_backward",
};
pub static CONV_WEIGHT_GRAD: Kernel = Kernel {
    family: "conv",
    source: shaders::CONV,
    entry: "conv_tokens_weight_grad",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    t: u32,
    c: u32,
    prefix: u32,
    gh: u32,
    gw: u32,
    total: u32,
    _p0: u32,
}

fn params(x: &GpuTensor, prefix: usize, grid: (usize, usize), total: usize) -> Params {
    Params {
        n: u(x.shape[0]),
        t: u(x.shape[1]),
        c: u(x.shape[2]),
        prefix: u(prefix),
        gh: u(grid.0),
        gw: u(grid.1),
        total: u(total),
        _p0: 0,
    }
}

/// x [N,T,c] → [N,T,c]: 3×3 conv (padding 1) over the (gh, gw) patch grid after `prefix` tokens, which are
/// convolved alone as 1×1 images.
pub fn conv_tokens(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: &GpuTensor,
    prefix: usize,
    grid: (usize, usize),
) -> Result<GpuTensor, GpuError> {
    let y = rec.gpu().empty(&x.shape)?;
    let total = x.numel();
    rec.dispatch(
        &CONV,
        &params(x, prefix, grid, total),
        &[x, w, b, &y],
        elementwise_groups(total),
    );
    Ok(y)
}

/// d x from d y (the transposed convolution).
pub fn conv_tokens_input_grad(
    rec: &mut Recorder,
    dy: &GpuTensor,
    w: &GpuTensor,
    prefix: usize,
    grid: (usize, usize),
) -> Result<GpuTensor, GpuError> {
    let dx = rec.gpu().empty(&dy.shape)?;
    let total = dy.numel();
    rec.dispatch(
        &CONV_BACKWARD,
        &params(dy, prefix, grid, total),
        &[dy, w, &dx],
        elementwise_groups(total),
    );
    Ok(dx)
}

/// dW [c,c,3,3] += the weight gradient given the layer input x and d y.
pub fn conv_tokens_weight_grad(
    rec: &mut Recorder,
    dy: &GpuTensor,
    x: &GpuTensor,
    dw: &GpuTensor,
    prefix: usize,
    grid: (usize, usize),
) {
    let total = dw.numel();
    rec.dispatch(
        &CONV_WEIGHT_GRAD,
        &params(dy, prefix, grid, total),
        &[dy, x, dw],
        [u(total.div_ceil(64)), 1, 1],
    );
}
