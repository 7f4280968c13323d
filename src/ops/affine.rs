//! The per-channel affine y = γ⊙z + β a method may put after a layer (SSF), beside the matmul epilogue that
//! applies it after linear layers: the affine on rows, its folding into a LayerNorm, and its parameter gradients.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{elementwise_groups, shaders, u};

macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        pub static $name: Kernel = Kernel {
            family: "affine",
            source: shaders::AFFINE,
            entry: $entry,
        };
    };
}
kernel!(SCALE_ROWS, "scale_rows");
kernel!(FOLD_NORM, "fold_norm");
kernel!(FOLD_NORM_GRADS, "fold_norm_grads");
kernel!(AFFINE_GRADS, "affine_grads");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    flags: u32,
    _p0: u32,
}

const SHIFT: u32 = 1;

fn params(rows: usize, d: usize, flags: u32) -> Params {
    Params {
        rows: u(rows),
        d: u(d),
        flags,
        _p0: 0,
    }
}

/// y = z⊙γ (+ β) over the rows of `z` [.., d], as a new tensor; d = γ's length.
pub fn scale_rows(
    rec: &mut Recorder,
    z: &GpuTensor,
    scale: &GpuTensor,
    shift: Option<&GpuTensor>,
) -> Result<GpuTensor, GpuError> {
    let d = scale.numel();
    let rows = z.numel() / d.max(1);
    let out = rec.gpu().empty(&z.shape)?;
    let dummy = rec.gpu().dummy();
    let flags = if shift.is_some() { SHIFT } else { 0 };
    let sh = shift.unwrap_or(dummy);
    rec.dispatch(
        &SCALE_ROWS,
        &params(rows, d, flags),
        &[z, scale, sh, &out],
        elementwise_groups(rows * d),
    );
    Ok(out)
}

/// A LayerNorm's (w, b) with γ and β folded in: (γ⊙w, γ⊙b + β).
pub fn fold_norm(
    rec: &mut Recorder,
    (w, b): (&GpuTensor, &GpuTensor),
    (scale, shift): (&GpuTensor, &GpuTensor),
) -> Result<(GpuTensor, GpuTensor), GpuError> {
    let d = w.numel();
    let w2 = rec.gpu().empty(&w.shape)?;
    let b2 = rec.gpu().empty(&b.shape)?;
    rec.dispatch(
        &FOLD_NORM,
        &params(1, d, 0),
        &[w, b, scale, shift, &w2, &b2],
        [u(d.div_ceil(64)), 1, 1],
    );
    Ok((w2, b2))
}

/// dγ += w⊙gw' + b⊙gb' and dβ += gb', from the gradients (gw', gb') of `fold_norm`'s output.
pub fn fold_norm_grads(
    rec: &mut Recorder,
    (w, b): (&GpuTensor, &GpuTensor),
    (gw, gb): (&GpuTensor, &GpuTensor),
    (dscale, dshift): (&GpuTensor, &GpuTensor),
) {
    let d = w.numel();
    rec.dispatch(
        &FOLD_NORM_GRADS,
        &params(1, d, 0),
        &[w, b, gw, gb, dscale, dshift],
        [u(d.div_ceil(64)), 1, 1],
    );
}

/// dγ += Σ_rows dy⊙z and dβ += Σ_rows dy, for y = γ⊙z + β over rows of width γ's length.
pub fn affine_grads(
    rec: &mut Recorder,
    dy: &GpuTensor,
    z: &GpuTensor,
    (dscale, dshift): (&GpuTensor, &GpuTensor),
) {
    let d = dscale.numel();
    let rows = dy.numel() / d.max(1);
    rec.dispatch(
        &AFFINE_GRADS,
        &params(rows, d, 0),
        &[dy, z, dscale, dshift],
        [u(d.div_ceil(64)), 1, 1],
    );
}
