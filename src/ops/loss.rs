//! Mean cross-entropy and its gradient.

use crate::gpu::{GpuError, GpuTensor, Kernel, Recorder};
use crate::ops::{rows_groups, shaders, u};

pub static CROSS_ENTROPY: Kernel = Kernel {
    family: "loss",
    source: shaders::LOSS,
    entry: "cross_entropy",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    classes: u32,
    inv_n: f32,
    _p0: u32,
}

/// Per-row loss [N] and d(mean loss)/d logits, the mean taken over `total` images (the whole batch, when this
/// is one micro-batch of it). `labels` holds class indices as f32.
pub fn cross_entropy(
    rec: &mut Recorder,
    logits: &GpuTensor,
    labels: &GpuTensor,
    total: usize,
) -> Result<(GpuTensor, GpuTensor), GpuError> {
    let (rows, classes) = (logits.shape[0], logits.shape[1]);
    let dlogits = rec.gpu().empty(&logits.shape)?;
    let row_loss = rec.gpu().empty(&[rows])?;
    let params = Params {
        rows: u(rows),
        classes: u(classes),
        inv_n: 1.0 / total.max(1) as f32,
        _p0: 0,
    };
    // The subgroup reductions where the row kernels use them (the same 64-lane workgroup per row otherwise).
    let kernel = match rec.gpu().row_kernel() {
        crate::gpu::RowKernel::Subgroup => crate::ops::subgroup_kernel(&CROSS_ENTROPY),
        _ => &CROSS_ENTROPY,
    };
    rec.dispatch(
        kernel,
        &params,
        &[logits, labels, &dlogits, &row_loss],
        rows_groups(rows),
    );
    Ok((row_loss, dlogits))
}
