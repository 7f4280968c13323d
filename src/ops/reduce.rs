//! Token pooling and its backward, column sums (bias gradients), batch sums of token rows, token-row writes.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        pub static $name: Kernel = Kernel {
            family: "reduce",
            source: shaders::REDUCE,
            entry: $entry,
        };
    };
}
kernel!(MEAN_TOKENS, "mean_tokens");
kernel!(MEAN_TOKENS_BACKWARD, "mean_tokens_backward");
kernel!(COLUMN_SUM, "column_sum");
kernel!(BATCH_SUM_TOKENS, "batch_sum_tokens");
kernel!(WRITE_TOKENS, "write_tokens");
kernel!(GATHER_TOKENS, "gather_tokens");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    t: u32,
    d: u32,
    start: u32,
    count: u32,
    src_off: u32,
    flags: u32,
    rows: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

const ACCUMULATE: u32 = 1;
const ZERO: u32 = 2;
const PER_IMAGE: u32 = 4;

fn ntd(x: &GpuTensor) -> (usize, usize, usize) {
    (x.shape[0], x.shape[1], x.shape[2])
}

/// x [N,T,D] → mean over tokens start..T (everything after the prefix tokens) → [N,D].
pub fn mean_tokens(rec: &mut Recorder, x: &GpuTensor, start: usize) -> Result<GpuTensor, GpuError> {
    let (n, t, d) = ntd(x);
    assert!(start < t, "mean over tokens {start}..{t}");
    let out = rec.gpu().empty(&[n, d])?;
    let params = Params {
        n: u(n),
        t: u(t),
        d: u(d),
        start: u(start),
        ..Default::default()
    };
    rec.dispatch(&MEAN_TOKENS, &params, &[x, &out], elementwise_groups(n * d));
    Ok(out)
}

/// d pooled [N,D] → d x [N,T,D] for `mean_tokens`.
pub fn mean_tokens_backward(
    rec: &mut Recorder,
    dpooled: &GpuTensor,
    t: usize,
    start: usize,
) -> Result<GpuTensor, GpuError> {
    let (n, d) = (dpooled.shape[0], dpooled.shape[1]);
    let dx = rec.gpu().empty(&[n, t, d])?;
    let params = Params {
        n: u(n),
        t: u(t),
        d: u(d),
        start: u(start),
        ..Default::default()
    };
    rec.dispatch(
        &MEAN_TOKENS_BACKWARD,
        &params,
        &[dpooled, &dx],
        elementwise_groups(n * t * d),
    );
    Ok(dx)
}

/// out[j] += scale · Σ_rows g[r, j] over every row of `g` seen as [rows, out.len()] (bias gradients).
pub fn column_sum_into(rec: &mut Recorder, g: &GpuTensor, out: &GpuTensor, scale: f32) {
    let d = out.numel();
    let params = Params {
        d: u(d),
        rows: u(g.numel() / d.max(1)),
        flags: ACCUMULATE,
        scale,
        ..Default::default()
    };
    rec.dispatch(&COLUMN_SUM, &params, &[g, out], [u(d.div_ceil(64)), 1, 1]);
}

/// out[out_row + j, :] += Σ_n g[n, start + j, :] for j < count (gradients of CLS, position and prompt tokens).
pub fn batch_sum_tokens_into(
    rec: &mut Recorder,
    g: &GpuTensor,
    start: usize,
    count: usize,
    out: &GpuTensor,
    out_row: usize,
) {
    let (n, t, d) = ntd(g);
    let params = Params {
        n: u(n),
        t: u(t),
        d: u(d),
        start: u(start),
        count: u(count),
        src_off: u(out_row * d),
        flags: ACCUMULATE,
        ..Default::default()
    };
    rec.dispatch(
        &BATCH_SUM_TOKENS,
        &params,
        &[g, out],
        elementwise_groups(count * d),
    );
}

/// x[n, start + j, :] = src[src_row + j, :] for j < count, in every image: VPT-deep's prompt replacement.
pub fn write_tokens(
    rec: &mut Recorder,
    x: &GpuTensor,
    start: usize,
    count: usize,
    src: &GpuTensor,
    src_row: usize,
) {
    write_rows(rec, x, start, count, Some((src, src_row)), 0);
}

/// x[n, start + j, :] = src[n·count + j, :] for j < count: each image's own rows, the inverse of `gather_tokens`.
pub fn scatter_tokens(
    rec: &mut Recorder,
    x: &GpuTensor,
    start: usize,
    count: usize,
    src: &GpuTensor,
) {
    assert_eq!(src.numel(), x.shape[0] * count * x.shape[2], "scatter rows");
    write_rows(rec, x, start, count, Some((src, 0)), PER_IMAGE);
}

/// g[n, start..start+count, :] = 0 (the gradient of tokens that were replaced).
pub fn zero_tokens(rec: &mut Recorder, g: &GpuTensor, start: usize, count: usize) {
    write_rows(rec, g, start, count, None, 0);
}

fn write_rows(
    rec: &mut Recorder,
    x: &GpuTensor,
    start: usize,
    count: usize,
    src: Option<(&GpuTensor, usize)>,
    flags: u32,
) {
    let (n, t, d) = ntd(x);
    let params = Params {
        n: u(n),
        t: u(t),
        d: u(d),
        start: u(start),
        count: u(count),
        src_off: u(src.map(|s| s.1 * d).unwrap_or(0)),
        flags: flags | if src.is_some() { 0 } else { ZERO },
        ..Default::default()
    };
    let s = src.map(|s| s.0).unwrap_or(rec.gpu().dummy());
    rec.dispatch(
        &WRITE_TOKENS,
        &params,
        &[s, x],
        elementwise_groups(n * count * d),
    );
}

/// x [N,T,D] → [N·count, D]: rows start..start+count of every image, compacted (patch-token gradients).
pub fn gather_tokens(
    rec: &mut Recorder,
    x: &GpuTensor,
    start: usize,
    count: usize,
) -> Result<GpuTensor, GpuError> {
    let (n, t, d) = ntd(x);
    let out = rec.gpu().empty(&[n * count, d])?;
    let params = Params {
        n: u(n),
        t: u(t),
        d: u(d),
        start: u(start),
        count: u(count),
        ..Default::default()
    };
    rec.dispatch(
        &GATHER_TOKENS,
        &params,
        &[x, &out],
        elementwise_groups(n * count * d),
    );
    Ok(out)
}
