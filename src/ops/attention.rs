//! Multi-head self-attention on a fused qkv tensor: scores = scale·QKᵀ, softmax, ·V.
//! Heads are read straight from qkv [N,T,3D] (q, k, v blocks; head h owns columns h·hd..(h+1)·hd).

use crate::gpu::{GpuError, GpuTensor, Recorder};
use crate::ops::activation::{add_into, zeros};
use crate::ops::matmul::{Layout, Matmul};
use crate::ops::softmax::{softmax_backward_inplace, softmax_inplace};

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
    fn batched(mut mm: Matmul<'_>, n: usize, heads: usize) -> Matmul<'_> {
        mm.batch1 = n;
        mm.batch2 = heads;
        mm
    }
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
    )
    .record(rec);
    if let Some(out) = capture {
        let copy = zeros(rec, &dp.shape)?;
        add_into(rec, &copy, &dp);
        out.push(copy);
    }
    softmax_backward_inplace(rec, probs, &dp);
    // dQ = scale · dS · K
    let mut dq = batched(
        Matmul::new(
            (t, hd, t),
            (&dp, probs_layout),
            (qkv, qkv_layout(1, t, d, hd)),
            (&dqkv, qkv_layout(0, t, d, hd)),
        ),
        n,
        heads,
    );
    dq.alpha = scale;
    dq.record(rec);
    // dK = scale · dSᵀ · Q
    let mut dk = batched(
        Matmul::new(
            (t, hd, t),
            (&dp, probs_t),
            (qkv, qkv_layout(0, t, d, hd)),
            (&dqkv, qkv_layout(1, t, d, hd)),
        ),
        n,
        heads,
    );
    dk.alpha = scale;
    dk.record(rec);
    Ok(dqkv)
}
