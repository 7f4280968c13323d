//! Multi-head self-attention on a fused qkv tensor: scores = scale·QKᵀ, softmax, ·V.
//! Heads are read straight from qkv [N,T,3D] (q, k, v blocks; head h owns columns h·hd..(h+1)·hd).
//!
//! Two implementations: `attention` runs three batched matmuls and a softmax and keeps the probabilities
//! [N,H,T,T] (for attention maps and their gradients); `flash_attention` is one fused kernel with an online
//! softmax that keeps only a log-sum-exp per row, and its backward recomputes the probabilities (per row, or
//! workgroup-tiled with the keys or queries of each step in workgroup memory).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::gpu::{AttentionKernel, GpuError, GpuTensor, Kernel, Recorder, Work};
use crate::ops::activation::{add_into, zeros};
use crate::ops::matmul::{Layout, Matmul};
use crate::ops::softmax::{softmax_backward_inplace, softmax_inplace};
use crate::ops::{rows_groups, shaders, u};

pub struct AttentionOut {
    /// Post-softmax probabilities [N, H, T, T].
    pub probs: GpuTensor,
    /// Heads concatenated [N, T, D], ready for the output projection.
    pub context: GpuTensor,
}

/// Layout of q, k or v (`which` = 0, 1, 2) of head b2 in image b1 inside qkv [N,T,3D].
pub fn qkv_layout(which: usize, t: usize, d: usize, hd: usize) -> Layout {
    Layout {
        off: which * d,
        rs: 3 * d,
        cs: 1,
        b1: t * 3 * d,
        b2: hd,
    }
}

pub fn attention(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    heads: usize,
) -> Result<AttentionOut, GpuError> {
    let (n, t, d3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2]);
    let d = d3 / 3;
    let hd = d / heads;
    let probs = rec.gpu().empty(&[n, heads, t, t])?;
    let probs_layout = Layout {
        off: 0,
        rs: t,
        cs: 1,
        b1: heads * t * t,
        b2: t * t,
    };
    let k = qkv_layout(1, t, d, hd);
    let mut scores = Matmul::new(
        (t, t, hd),
        (qkv, qkv_layout(0, t, d, hd)),
        // B(k=c, n=j) = K[j, c]: swap strides of the row-major K.
        (
            qkv,
            Layout {
                rs: k.cs,
                cs: k.rs,
                ..k
            },
        ),
        (&probs, probs_layout),
    );
    scores.batch1 = n;
    scores.batch2 = heads;
    scores.alpha = (hd as f32).powf(-0.5);
    scores.record(rec);
    softmax_inplace(rec, &probs);

    let context = rec.gpu().empty(&[n, t, d])?;
    let mut pv = Matmul::new(
        (t, hd, t),
        (&probs, probs_layout),
        (qkv, qkv_layout(2, t, d, hd)),
        (
            &context,
            Layout {
                off: 0,
                rs: d,
                cs: 1,
                b1: t * d,
                b2: hd,
            },
        ),
    );
    pv.batch1 = n;
    pv.batch2 = heads;
    pv.record(rec);
    Ok(AttentionOut { probs, context })
}

/// Backward of `attention`: from d context [N,T,D] to d qkv [N,T,3D], given the saved qkv and probabilities.
/// With `capture`, also a copy of d probabilities [N,H,T,T] (for gradient-weighted attention maps).
pub fn attention_backward(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    probs: &GpuTensor,
    dctx: &GpuTensor,
    heads: usize,
    capture: Option<&mut Vec<GpuTensor>>,
) -> Result<GpuTensor, GpuError> {
    let (n, t, d3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2]);
    let d = d3 / 3;
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    let probs_layout = Layout {
        off: 0,
        rs: t,
        cs: 1,
        b1: heads * t * t,
        b2: t * t,
    };
    let probs_t = Layout {
        rs: 1,
        cs: t,
        ..probs_layout
    };
    let ctx_layout = Layout {
        off: 0,
        rs: d,
        cs: 1,
        b1: t * d,
        b2: hd,
    };
    let dqkv = rec.gpu().empty(&qkv.shape)?;
    // dV = Pᵀ · dctx
    batched(
        Matmul::new(
            (t, hd, t),
            (probs, probs_t),
            (dctx, ctx_layout),
            (&dqkv, qkv_layout(2, t, d, hd)),
        ),
        n,
        heads,
        1.0,
    )
    .record(rec);
    // dP = dctx · Vᵀ
    let dp = rec.gpu().empty(&probs.shape)?;
    let v = qkv_layout(2, t, d, hd);
    batched(
        Matmul::new(
            (t, t, hd),
            (dctx, ctx_layout),
            (
                qkv,
                Layout {
                    rs: v.cs,
                    cs: v.rs,
                    ..v
                },
            ),
            (&dp, probs_layout),
        ),
        n,
        heads,
        1.0,
    )
    .record(rec);
    if let Some(out) = capture {
        let copy = zeros(rec, &dp.shape)?;
        add_into(rec, &copy, &dp);
        out.push(copy);
    }
    softmax_backward_inplace(rec, probs, &dp);
    // dQ = scale · dS · K
    let dq = batched(
        Matmul::new(
            (t, hd, t),
            (&dp, probs_layout),
            (qkv, qkv_layout(1, t, d, hd)),
            (&dqkv, qkv_layout(0, t, d, hd)),
        ),
        n,
        heads,
        scale,
    );
    dq.record(rec);
    // dK = scale · dSᵀ · Q
    let dk = batched(
        Matmul::new(
            (t, hd, t),
            (&dp, probs_t),
            (qkv, qkv_layout(0, t, d, hd)),
            (&dqkv, qkv_layout(1, t, d, hd)),
        ),
        n,
        heads,
        scale,
    );
    dk.record(rec);
    Ok(dqkv)
}

/// What the fused forward keeps for its backward, beside the context it returns.
pub struct FlashOut {
    /// Heads concatenated [N, T, D].
    pub context: GpuTensor,
    /// Log-sum-exp of each row's scaled scores [N·H, T].
    pub lse: GpuTensor,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FlashParams {
    t: u32,
    d: u32,
    heads: u32,
    bh: u32,
    scale: f32,
    _p: [u32; 3],
}

/// The fused kernels for head size `hd`: forward, dQ, dK/dV per row, then the same three workgroup-tiled. The
/// shader is specialised per head size, built once per size and kept for the life of the process (a model has one
/// head size).
fn flash_kernels(hd: usize) -> &'static [Kernel; 6] {
    static BY_HD: Mutex<BTreeMap<usize, &'static [Kernel; 6]>> = Mutex::new(BTreeMap::new());
    let mut map = BY_HD.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(hd).or_insert_with(|| {
        let source: &'static str = if hd == 64 {
            shaders::ATTENTION
        } else {
            Box::leak(shaders::attention_source(hd).into_boxed_str())
        };
        let kernel = |entry| Kernel {
            family: "attention",
            source,
            entry,
        };
        Box::leak(Box::new([
            kernel("flash_forward"),
            kernel("flash_backward_dq"),
            kernel("flash_backward_dkv"),
            kernel("flash_tiled_forward"),
            kernel("flash_tiled_backward_dq"),
            kernel("flash_tiled_backward_dkv"),
        ]))
    })
}

/// Which fused kernels run: `Tiled` (workgroup-tiled, `TROWS` = 32 rows per workgroup) or the per-row ones
/// (`ROWS` = 16) for any other choice.
fn flash_variant(kernel: AttentionKernel) -> (usize, usize) {
    match kernel {
        AttentionKernel::Tiled => (3, 32),
        AttentionKernel::Fused | AttentionKernel::Matmul => (0, 16),
    }
}

/// Sizes of a fused launch with `rows` rows per workgroup: params, head size, and the grid (row blocks ×
/// (image, head) pairs).
fn flash_launch(qkv: &GpuTensor, heads: usize, rows: usize) -> (FlashParams, usize, [u32; 3]) {
    let (n, t, d3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2]);
    let d = d3 / 3;
    let hd = d / heads;
    let bh = n * heads;
    let params = FlashParams {
        t: u(t),
        d: u(d),
        heads: u(heads),
        bh: u(bh),
        scale: (hd as f32).powf(-0.5),
        _p: [0; 3],
    };
    let fold = rows_groups(bh);
    (params, hd, [u(t.div_ceil(rows)), fold[0], fold[1]])
}

/// Fused attention (flash-style): context [N,T,D] and the per-row log-sum-exp, never the [T,T] scores. Runs the
/// workgroup-tiled kernels where the GPU's attention choice is `tiled`, else the per-row ones.
pub fn flash_attention(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    heads: usize,
) -> Result<FlashOut, GpuError> {
    let kernel = rec.gpu().attention_kernel();
    flash_attention_as(rec, qkv, heads, kernel)
}

/// `flash_attention` through the given fused variant (`Tiled`, else per row): for tests and the autotuner.
pub fn flash_attention_as(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    heads: usize,
    kernel: AttentionKernel,
) -> Result<FlashOut, GpuError> {
    let (n, t, d3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2]);
    let (first, rows) = flash_variant(kernel);
    let (params, hd, groups) = flash_launch(qkv, heads, rows);
    let context = rec.gpu().empty(&[n, t, d3 / 3])?;
    let lse = rec.gpu().empty(&[n * heads, t])?;
    rec.dispatch(
        &flash_kernels(hd)[first],
        &params,
        &[qkv, &context, &lse],
        groups,
    );
    // Scores and ·V: 2·T·T·hd multiply-adds per (image, head); qkv read once, context and lse written.
    rec.declare_work(Work {
        flops: 4.0 * (n * heads * t * t * hd) as f64,
        bytes: 4.0 * (qkv.numel() + context.numel() + lse.numel()) as f64,
    });
    Ok(FlashOut { context, lse })
}

/// Backward of `flash_attention`: d qkv [N,T,3D] from d context, recomputing the probabilities.
/// `context` and `lse` are what the forward returned.
pub fn flash_attention_backward(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    context: &GpuTensor,
    lse: &GpuTensor,
    dctx: &GpuTensor,
    heads: usize,
) -> Result<GpuTensor, GpuError> {
    let kernel = rec.gpu().attention_kernel();
    flash_attention_backward_as(rec, (qkv, context, lse, dctx), heads, kernel)
}

/// `flash_attention_backward` through the given fused variant, from (qkv, context, lse, d context).
pub fn flash_attention_backward_as(
    rec: &mut Recorder,
    (qkv, context, lse, dctx): (&GpuTensor, &GpuTensor, &GpuTensor, &GpuTensor),
    heads: usize,
    kernel: AttentionKernel,
) -> Result<GpuTensor, GpuError> {
    let (n, t) = (qkv.shape[0], qkv.shape[1]);
    let (first, rows) = flash_variant(kernel);
    let (params, hd, groups) = flash_launch(qkv, heads, rows);
    let kernels = flash_kernels(hd);
    let dqkv = rec.gpu().empty(&qkv.shape)?;
    let delta = rec.gpu().empty(&lse.shape)?;
    let args = [qkv, dctx, lse, &delta, &dqkv, context];
    let pairs = (n * heads * t * t * hd) as f64;
    let bytes = 4.0 * (qkv.numel() + context.numel() + dctx.numel()) as f64;
    rec.dispatch(&kernels[first + 1], &params, &args, groups);
    // s, dP and dQ: three dot products of hd per (query, key) pair.
    rec.declare_work(Work {
        flops: 6.0 * pairs,
        bytes,
    });
    rec.dispatch(&kernels[first + 2], &params, &args[..5], groups);
    // s, dP, dV and dK: four per pair.
    rec.declare_work(Work {
        flops: 8.0 * pairs,
        bytes,
    });
    Ok(dqkv)
}

/// Attention pooling (SigLIP's `attn_pool`, timm `AttentionPoolLatent` with one latent): one query q [1, D],
/// shared by the batch, attends over the tokens' kv [N, T, 2D] (k then v; head h owns columns h·hd..(h+1)·hd).
pub struct PoolAttentionOut {
    /// Post-softmax probabilities [N, H, 1, T].
    pub probs: GpuTensor,
    /// Heads concatenated [N, D].
    pub context: GpuTensor,
}

/// Layout of k or v (`which` = 0, 1) of head b2 in image b1 inside kv [N,T,2D].
fn kv_layout(which: usize, t: usize, d: usize, hd: usize) -> Layout {
    Layout {
        off: which * d,
        rs: 2 * d,
        cs: 1,
        b1: t * 2 * d,
        b2: hd,
    }
}

/// Layouts of a pooling attention with heads of `hd` over `t` tokens of width `d`: the probabilities
/// [N,H,1,T], the query [1,D] (one for every image) and a per-image row [N,D] (context, d context, d q).
fn pool_layouts(t: usize, d: usize, hd: usize, heads: usize) -> (Layout, Layout, Layout) {
    let probs = Layout {
        off: 0,
        rs: t,
        cs: 1,
        b1: heads * t,
        b2: t,
    };
    let query = Layout {
        off: 0,
        rs: d,
        cs: 1,
        b1: 0,
        b2: hd,
    };
    let row = Layout {
        off: 0,
        rs: d,
        cs: 1,
        b1: d,
        b2: hd,
    };
    (probs, query, row)
}

fn batched(mut mm: Matmul<'_>, n: usize, heads: usize, alpha: f32) -> Matmul<'_> {
    mm.batch1 = n;
    mm.batch2 = heads;
    mm.alpha = alpha;
    mm
}

/// softmax(scale·q·Kᵀ)·V for every image and head: context [N, D] and the probabilities.
pub fn pool_attention(
    rec: &mut Recorder,
    q: &GpuTensor,
    kv: &GpuTensor,
    heads: usize,
) -> Result<PoolAttentionOut, GpuError> {
    let (n, t, d2) = (kv.shape[0], kv.shape[1], kv.shape[2]);
    let d = d2 / 2;
    let hd = d / heads;
    assert_eq!(q.numel(), d, "pool attention: one query of width {d}");
    let (pl, ql, rl) = pool_layouts(t, d, hd, heads);
    let probs = rec.gpu().empty(&[n, heads, 1, t])?;
    let k = kv_layout(0, t, d, hd);
    let kt = Layout {
        rs: k.cs,
        cs: k.rs,
        ..k
    };
    let scale = (hd as f32).powf(-0.5);
    batched(
        Matmul::new((1, t, hd), (q, ql), (kv, kt), (&probs, pl)),
        n,
        heads,
        scale,
    )
    .record(rec);
    softmax_inplace(rec, &probs);
    let context = rec.gpu().empty(&[n, d])?;
    batched(
        Matmul::new(
            (1, hd, t),
            (&probs, pl),
            (kv, kv_layout(1, t, d, hd)),
            (&context, rl),
        ),
        n,
        heads,
        1.0,
    )
    .record(rec);
    Ok(PoolAttentionOut { probs, context })
}

/// Backward of `pool_attention`: d kv [N,T,2D] from d context [N,D], and with `want_dq` d q per image [N,D]
/// (the shared query's gradient is their sum).
pub fn pool_attention_backward(
    rec: &mut Recorder,
    q: &GpuTensor,
    kv: &GpuTensor,
    probs: &GpuTensor,
    dctx: &GpuTensor,
    heads: usize,
    want_dq: bool,
) -> Result<(GpuTensor, Option<GpuTensor>), GpuError> {
    let (n, t, d2) = (kv.shape[0], kv.shape[1], kv.shape[2]);
    let d = d2 / 2;
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    let (pl, ql, rl) = pool_layouts(t, d, hd, heads);
    // Pᵀ as a [T, 1] matrix.
    let pt = Layout { rs: 1, cs: t, ..pl };
    let dkv = rec.gpu().empty(&kv.shape)?;
    // dV = Pᵀ · dctx
    batched(
        Matmul::new(
            (t, hd, 1),
            (probs, pt),
            (dctx, rl),
            (&dkv, kv_layout(1, t, d, hd)),
        ),
        n,
        heads,
        1.0,
    )
    .record(rec);
    // dP = dctx · Vᵀ, then dS in place.
    let dp = rec.gpu().empty(&probs.shape)?;
    let v = kv_layout(1, t, d, hd);
    let vt = Layout {
        rs: v.cs,
        cs: v.rs,
        ..v
    };
    batched(
        Matmul::new((1, t, hd), (dctx, rl), (kv, vt), (&dp, pl)),
        n,
        heads,
        1.0,
    )
    .record(rec);
    softmax_backward_inplace(rec, probs, &dp);
    // dK = scale · dSᵀ · q
    batched(
        Matmul::new(
            (t, hd, 1),
            (&dp, pt),
            (q, ql),
            (&dkv, kv_layout(0, t, d, hd)),
        ),
        n,
        heads,
        scale,
    )
    .record(rec);
    // dq = scale · dS · K
    let dq = if want_dq {
        let dq = rec.gpu().empty(&[n, d])?;
        batched(
            Matmul::new(
                (1, hd, t),
                (&dp, pl),
                (kv, kv_layout(0, t, d, hd)),
                (&dq, rl),
            ),
            n,
            heads,
            scale,
        )
        .record(rec);
        Some(dq)
    } else {
        None
    };
    Ok((dkv, dq))
}
