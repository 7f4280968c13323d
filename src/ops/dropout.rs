//! Training-time inverted dropout over a band of token rows, in place. The mask is a pure function of
//! (seed, tag, global image index, element), so the backward replays it by running the same kernel on the
//! gradient, and splitting a batch into micro-batches draws the same masks as the whole batch.

use crate::gpu::{GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

pub static DROPOUT_ROWS: Kernel = Kernel {
    family: "dropout",
    source: shaders::DROPOUT,
    entry: "dropout_rows",
};

/// Which masks a training micro-batch draws: the step's seed and its first image's index in the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub rate: f32,
    pub seed: u32,
    pub first_image: usize,
}

/// The rows `start..start + count` of every image of x [images, tokens, dim].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    pub images: usize,
    pub tokens: usize,
    pub start: usize,
    pub count: usize,
    pub dim: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    images: u32,
    tokens: u32,
    start: u32,
    count: u32,
    dim: u32,
    first_image: u32,
    key: u32,
    threshold: u32,
    scale: f32,
    _p: [u32; 3],
}

/// The shader's hash (PCG-RXS-M-XS of one LCG step), mirrored for the CPU reference and the key.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Per-call key: distinct tags (one per place dropout is applied) draw independent masks from one seed.
pub fn key(seed: u32, tag: u32) -> u32 {
    pcg_hash(seed ^ pcg_hash(tag.wrapping_add(0x9e37_79b9)))
}

/// Hash values below this are dropped.
pub fn threshold(rate: f32) -> u32 {
    (rate.clamp(0.0, 1.0) as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

/// CPU mirror of the mask: whether element (global image, row in band, column) is kept.
pub fn kept(d: &Dropout, tag: u32, band: &Band, image: usize, row: usize, col: usize) -> bool {
    let element = ((image * band.count + row) * band.dim + col) as u32;
    pcg_hash(pcg_hash(element) ^ key(d.seed, tag)) >= threshold(d.rate)
}

/// x[band] ·= mask / (1 − rate), in place. The same call on the gradient is the backward.
pub fn dropout_rows(rec: &mut Recorder, x: &GpuTensor, band: Band, d: &Dropout, tag: u32) {
    debug_assert!(band.images * band.tokens * band.dim <= x.numel());
    debug_assert!(band.start + band.count <= band.tokens);
    let total = band.images * band.count * band.dim;
    if total == 0 || d.rate <= 0.0 {
        return;
    }
    let p = Params {
        images: u(band.images),
        tokens: u(band.tokens),
        start: u(band.start),
        count: u(band.count),
        dim: u(band.dim),
        first_image: u(d.first_image),
        key: key(d.seed, tag),
        threshold: threshold(d.rate),
        scale: 1.0 / (1.0 - d.rate.min(0.999_999)),
        _p: [0; 3],
    };
    rec.dispatch(&DROPOUT_ROWS, &p, &[x], elementwise_groups(total));
    rec.declare_work(crate::gpu::Work {
        flops: 0.0,
        bytes: 8.0 * total as f64,
    });
}
