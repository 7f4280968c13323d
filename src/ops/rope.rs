//! Rotary position embeddings on the q and k parts of a fused qkv, forward and backward (the transpose).

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

pub static ROPE: Kernel = Kernel {
    family: "rope",
    source: shaders::ROPE,
    entry: "rope",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    images: u32,
    tokens: u32,
    start: u32,
    count: u32,
    heads: u32,
    head_dim: u32,
    dim: u32,
    interleaved: u32,
    backward: u32,
    per_head: u32,
    total: u32,
    _p0: u32,
}

/// The cos and sin tables of one grid: [count, hd], or [heads, count, hd] when each head turns at its own
/// frequencies; `interleaved` pairs 2j with 2j+1, else i with i + hd/2 (rotate-half).
pub struct RopeTables {
    pub cos: GpuTensor,
    pub sin: GpuTensor,
    pub count: usize,
    pub head_dim: usize,
    pub per_head: bool,
    pub interleaved: bool,
}

/// Turns (or, with `backward`, turns back the gradient of) q and k of tokens `start .. start + count` of every
/// image of `qkv` [n, T, 3·D], in place.
pub fn rope(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    t: &RopeTables,
    start: usize,
    heads: usize,
    backward: bool,
) -> Result<(), GpuError> {
    let (n, tokens) = (qkv.shape[0], qkv.shape[1]);
    let dim = qkv.shape[2] / 3;
    assert!(
        start + t.count <= tokens && heads * t.head_dim == dim,
        "rope: tables for {} tokens of head size {} do not fit qkv {:?} from token {start}",
        t.count,
        t.head_dim,
        qkv.shape
    );
    let total = n * t.count * 2 * heads * (t.head_dim / 2);
    let p = Params {
        images: u(n),
        tokens: u(tokens),
        start: u(start),
        count: u(t.count),
        heads: u(heads),
        head_dim: u(t.head_dim),
        dim: u(dim),
        interleaved: u32::from(t.interleaved),
        backward: u32::from(backward),
        per_head: u32::from(t.per_head),
        total: u(total),
        _p0: 0,
    };
    rec.dispatch(&ROPE, &p, &[&t.cos, &t.sin, qkv], elementwise_groups(total));
    Ok(())
}
