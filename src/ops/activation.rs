//! Element-wise GELU and residual add (unfused forms; the matmul epilogue fuses both on the hot path).

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

pub static GELU: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "gelu_forward",
};
pub static ADD_INTO: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "add_into",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

fn params(total: usize) -> Params {
    Params {
        total: u(total),
        _p0: 0,
        _p1: 0,
        _p2: 0,
    }
}

pub fn gelu(rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    let y = rec.gpu().empty(&x.shape)?;
    let total = x.numel();
    rec.dispatch(&GELU, &params(total), &[x, &y], elementwise_groups(total));
    Ok(y)
}

/// y += x (same shapes).
pub fn add_into(rec: &mut Recorder, y: &GpuTensor, x: &GpuTensor) {
    let total = y.numel();
    rec.dispatch(
        &ADD_INTO,
        &params(total),
        &[x, y],
        elementwise_groups(total),
    );
}
