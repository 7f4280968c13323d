//! Element-wise activations (forward and backward), scaled residual add and fill.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::matmul::Act;
use crate::ops::{elementwise_groups, shaders, u};

pub static ACTIVATION: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "activation_forward",
};
pub static ACTIVATION_BACKWARD: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "activation_backward",
};
pub static ADD_INTO: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "add_into",
};
pub static FILL: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "fill",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    kind: u32,
    scale: f32,
    _p2: u32,
}

fn params(total: usize, act: Act, scale: f32) -> Params {
    let kind = match act {
        Act::Relu => 1,
        Act::QuickGelu => 2,
        Act::Gelu | Act::None => 0,
    };
    Params {
        total: u(total),
        kind,
        scale,
        _p2: 0,
    }
}

/// y = act(x).
pub fn activation(rec: &mut Recorder, x: &GpuTensor, act: Act) -> Result<GpuTensor, GpuError> {
    let y = rec.gpu().empty(&x.shape)?;
    let total = x.numel();
    rec.dispatch(
        &ACTIVATION,
        &params(total, act, 1.0),
        &[x, &y],
        elementwise_groups(total),
    );
    Ok(y)
}

pub fn gelu(rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    activation(rec, x, Act::Gelu)
}

/// dy ·= act'(pre), in place on the gradient.
pub fn activation_backward(rec: &mut Recorder, pre: &GpuTensor, dy: &GpuTensor, act: Act) {
    let total = dy.numel();
    rec.dispatch(
        &ACTIVATION_BACKWARD,
        &params(total, act, 1.0),
        &[pre, dy],
        elementwise_groups(total),
    );
}

/// y += scale · x (same number of elements).
pub fn add_scaled(rec: &mut Recorder, y: &GpuTensor, x: &GpuTensor, scale: f32) {
    let total = y.numel();
    rec.dispatch(
        &ADD_INTO,
        &params(total, Act::None, scale),
        &[x, y],
        elementwise_groups(total),
    );
}

/// y += x.
pub fn add_into(rec: &mut Recorder, y: &GpuTensor, x: &GpuTensor) {
    add_scaled(rec, y, x, 1.0);
}

/// Every element of `y` set to `value` (on the GPU timeline, ordered with the other kernels).
pub fn fill(rec: &mut Recorder, y: &GpuTensor, value: f32) {
    let total = y.numel();
    rec.dispatch(
        &FILL,
        &params(total, Act::None, value),
        &[y],
        elementwise_groups(total),
    );
}

/// A new tensor of zeros, zeroed inside the recording.
pub fn zeros(rec: &mut Recorder, shape: &[usize]) -> Result<GpuTensor, GpuError> {
    let t = rec.gpu().empty(shape)?;
    fill(rec, &t, 0.0);
    Ok(t)
}

pub static SWIGLU: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "swiglu_forward",
};
pub static SWIGLU_BACKWARD: Kernel = Kernel {
    family: "activation",
    source: shaders::ACTIVATION,
    entry: "swiglu_backward",
};

/// SwiGLU: h = silu(g)·x for up = [g | x] [.., 2H] → h [.., H].
pub fn swiglu(rec: &mut Recorder, up: &GpuTensor) -> Result<GpuTensor, GpuError> {
    let mut shape = up.shape.clone();
    let hidden = shape.last().copied().unwrap_or(0) / 2;
    if let Some(last) = shape.last_mut() {
        *last = hidden;
    }
    let h = rec.gpu().empty(&shape)?;
    let total = h.numel();
    let p = Params {
        total: u(total),
        kind: u(hidden),
        scale: 1.0,
        _p2: 0,
    };
    rec.dispatch(&SWIGLU, &p, &[up, &h], elementwise_groups(total));
    Ok(h)
}

/// The gradient of SwiGLU's input `up` [.., 2H] from the gradient of its output dh [.., H].
pub fn swiglu_backward(
    rec: &mut Recorder,
    up: &GpuTensor,
    dh: &GpuTensor,
) -> Result<GpuTensor, GpuError> {
    let du = rec.gpu().empty(&up.shape)?;
    let total = up.numel();
    let p = Params {
        total: u(total),
        kind: u(up.shape.last().copied().unwrap_or(0) / 2),
        scale: 1.0,
        _p2: 0,
    };
    rec.dispatch(
        &SWIGLU_BACKWARD,
        &p,
        &[up, &du, dh],
        elementwise_groups(total),
    );
    Ok(du)
}
