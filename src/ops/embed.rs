//! Patch embedding (im2col + matmul) and token assembly with room for prompts after CLS.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::matmul::{linear, Act};
use crate::ops::{elementwise_groups, shaders, u};

pub static IM2COL: Kernel = Kernel {
    family: "embed",
    source: shaders::EMBED,
    entry: "im2col",
};
pub static ASSEMBLE: Kernel = Kernel {
    family: "embed",
    source: shaders::EMBED,
    entry: "assemble_tokens",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Im2colParams {
    n: u32,
    h: u32,
    w: u32,
    psize: u32,
    gh: u32,
    gw: u32,
    total: u32,
    _p0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TokenParams {
    n: u32,
    t: u32,
    d: u32,
    prompts: u32,
    total: u32,
    prompt_batch_stride: u32,
    prefix: u32,
    _p1: u32,
}

/// pixels [N,3,H,W] → patch rows [N·gh·gw, 3·P·P], in the order of a flattened conv weight [D,3,P,P].
pub fn im2col(rec: &mut Recorder, pixels: &GpuTensor, patch: usize) -> Result<GpuTensor, GpuError> {
    let (n, h, w) = (pixels.shape[0], pixels.shape[2], pixels.shape[3]);
    let (gh, gw) = (h / patch, w / patch);
    let cols = rec.gpu().empty(&[n * gh * gw, 3 * patch * patch])?;
    let total = cols.numel();
    let params = Im2colParams {
        n: u(n),
        h: u(h),
        w: u(w),
        psize: u(patch),
        gh: u(gh),
        gw: u(gw),
        total: u(total),
        _p0: 0,
    };
    rec.dispatch(
        &IM2COL,
        &params,
        &[pixels, &cols],
        elementwise_groups(total),
    );
    Ok(cols)
}

/// Patch tokens [N·m, D] from pixels: the stride-P convolution as im2col followed by a matmul.
pub fn patch_embed(
    rec: &mut Recorder,
    pixels: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    patch: usize,
) -> Result<GpuTensor, GpuError> {
    let cols = im2col(rec, pixels, patch)?;
    linear(rec, &cols, weight, Some(bias), Act::None, None)
}

/// Tokens placed after the prefix tokens (registers, prompts), without position embedding: shared by the batch ([1,p,D]) or one set per image ([N,p,D]).
pub struct Prompts<'t> {
    pub tokens: &'t GpuTensor,
    pub count: usize,
    pub per_image: bool,
}

/// tokens [N, k+p+m, D] = [prefix₀…ₖ + pos₀…ₖ, prompts, patches + posₖ…ₖ₊ₘ], where the k prefix tokens [1,k,D]
/// (CLS, the distillation token) have position rows; none without a class token.
pub fn assemble_tokens(
    rec: &mut Recorder,
    patches: &GpuTensor,
    n: usize,
    prefix: Option<&GpuTensor>,
    pos: &GpuTensor,
    prompts: Option<Prompts>,
) -> Result<GpuTensor, GpuError> {
    let d = *pos.shape.last().expect("pos_embed [1,k+m,D]");
    let k = prefix.map(|c| c.numel() / d).unwrap_or(0);
    let m = patches.numel() / d / n;
    assert_eq!(
        pos.numel(),
        (k + m) * d,
        "pos_embed rows = prefix + patches"
    );
    let p = prompts.as_ref().map(|p| p.count).unwrap_or(0);
    let t = k + p + m;
    let out = rec.gpu().empty(&[n, t, d])?;
    let total = out.numel();
    let dummy = rec.gpu().dummy();
    let params = TokenParams {
        n: u(n),
        t: u(t),
        d: u(d),
        prompts: u(p),
        total: u(total),
        prompt_batch_stride: u(prompts
            .as_ref()
            .map(|p| if p.per_image { p.count * d } else { 0 })
            .unwrap_or(0)),
        prefix: u(k),
        _p1: 0,
    };
    let ptoks = prompts.as_ref().map(|p| p.tokens).unwrap_or(dummy);
    rec.dispatch(
        &ASSEMBLE,
        &params,
        &[prefix.unwrap_or(dummy), pos, ptoks, patches, &out],
        elementwise_groups(total),
    );
    Ok(out)
}
