//! Token pooling.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

pub static MEAN_TOKENS: Kernel = Kernel {
    family: "reduce",
    source: shaders::REDUCE,
    entry: "mean_tokens",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    t: u32,
    d: u32,
    _p0: u32,
}

/// x [N,T,D] → mean over tokens 1..T (everything after CLS) → [N,D].
pub fn mean_tokens(rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    let (n, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
    let out = rec.gpu().empty(&[n, d])?;
    let params = Params {
        n: u(n),
        t: u(t),
        d: u(d),
        _p0: 0,
    };
    rec.dispatch(&MEAN_TOKENS, &params, &[x, &out], elementwise_groups(n * d));
    Ok(out)
}
