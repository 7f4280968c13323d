//! SigLIP's attention pooling (timm `AttentionPoolLatent`, one latent): after the final norm, a learned latent,
//! projected by `q`, attends over the pooled tokens' `kv`; then `proj`, and a residual MLP behind its own
//! LayerNorm: pooled = p + fc2(act(fc1(norm(p)))), p = proj(attention). Forward and backward.

use super::{Graph, Layer};
use crate::error::Result;
use crate::gpu::{GpuTensor, Recorder};
use crate::ops::activation::{activation_backward, add_into, zeros};
use crate::ops::attention::{pool_attention, pool_attention_backward};
use crate::ops::layernorm::{layernorm, layernorm_backward, Rows};
use crate::ops::matmul::{linear, linear_input_grad, linear_keeping_pre_act, Act};
use crate::ops::reduce::column_sum_into;

/// What the pooling's backward reads (all [n, D]-sized but `y` and `kv`).
pub(crate) struct PoolActs {
    /// The pooled tokens after the final norm [n, T', D] (kv's input).
    y: GpuTensor,
    kv: GpuTensor,
    /// The projected latent query [1, D].
    q: GpuTensor,
    /// The latent as a [1, D] row (q's input).
    latent: GpuTensor,
    probs: GpuTensor,
    /// Heads concatenated [n, D] (proj's input).
    context: GpuTensor,
    /// proj's output [n, D]: the norm's input and the residual.
    p: GpuTensor,
    stats: GpuTensor,
    /// The norm's output (fc1's input), fc1's pre-activation and fc2's input.
    z: GpuTensor,
    pre: GpuTensor,
    h: GpuTensor,
}

impl PoolActs {
    /// The latent query's attention [n, H, 1, T'] over the pooled tokens.
    pub(super) fn probs(&self) -> &GpuTensor {
        &self.probs
    }
}

const PREFIX: &str = "attn_pool";

impl<'a> Graph<'a> {
    fn pool_w(&self, name: &str) -> Result<&'a GpuTensor> {
        self.w(&format!("{PREFIX}.{name}"))
    }

    /// y [n, T', D] (tokens after the final norm) → pooled [n, D].
    pub(crate) fn attn_pool_forward(
        &self,
        rec: &mut Recorder,
        y: GpuTensor,
    ) -> Result<(GpuTensor, PoolActs)> {
        let c = &self.vit.config;
        let mut latent = self.pool_w("latent")?.clone();
        latent.shape = vec![1, c.dim];
        let (qw, qb) = (self.pool_w("q.weight")?, self.pool_w("q.bias")?);
        let q = linear(rec, &latent, qw, Some(qb), Act::None, None)?;
        let (kw, kb) = (self.pool_w("kv.weight")?, self.pool_w("kv.bias")?);
        let kv = linear(rec, &y, kw, Some(kb), Act::None, None)?;
        let att = pool_attention(rec, &q, &kv, c.heads)?;
        let (pw, pb) = (self.pool_w("proj.weight")?, self.pool_w("proj.bias")?);
        let p = linear(rec, &att.context, pw, Some(pb), Act::None, None)?;
        let (nw, nb) = (self.pool_w("norm.weight")?, self.pool_w("norm.bias")?);
        let o = layernorm(rec, &p, nw, nb, c.eps)?;
        let (f1w, f1b) = (self.pool_w("mlp.fc1.weight")?, self.pool_w("mlp.fc1.bias")?);
        let (pre, h) = linear_keeping_pre_act(rec, &o.y, f1w, Some(f1b), self.mlp_act())?;
        let (f2w, f2b) = (self.pool_w("mlp.fc2.weight")?, self.pool_w("mlp.fc2.bias")?);
        let pooled = linear(rec, &h, f2w, Some(f2b), Act::None, Some(&p))?;
        Ok((
            pooled,
            PoolActs {
                y,
                kv,
                q,
                latent,
                probs: att.probs,
                context: att.context,
                p,
                stats: o.stats,
                z: o.y,
                pre,
                h,
            },
        ))
    }

    /// d pooled [n, D] → d y [n, T', D], accumulating the pooling's own gradients where trained (BitFit's biases,
    /// full fine-tuning's every tensor).
    pub(crate) fn attn_pool_backward(
        &self,
        rec: &mut Recorder,
        a: &PoolActs,
        dpooled: &GpuTensor,
        grads: &super::Grads,
    ) -> Result<GpuTensor> {
        let c = &self.vit.config;
        let layer = |s: &str| Layer::resolve(self.vit, self.tuning, &format!("{PREFIX}.{s}"), None);
        // The MLP branch.
        let f2w = self.pool_w("mlp.fc2.weight")?;
        self.linear_param_grads(rec, &layer("mlp.fc2")?, dpooled, Some(&a.h), grads, 1.0)?;
        let dh = linear_input_grad(rec, dpooled, f2w, 1.0, None, &a.h.shape)?;
        activation_backward(rec, &a.pre, &dh, self.mlp_act());
        let f1w = self.pool_w("mlp.fc1.weight")?;
        self.linear_param_grads(rec, &layer("mlp.fc1")?, &dh, Some(&a.z), grads, 1.0)?;
        let dz = linear_input_grad(rec, &dh, f1w, 1.0, None, &a.z.shape)?;
        let nw = self.pool_w("norm.weight")?;
        let rows = Rows::all(&a.p);
        self.norm_param_grads(rec, &layer("norm")?, &a.p, rows, &a.stats, &dz, grads)?;
        let dp = rec.gpu().empty(&a.p.shape)?;
        layernorm_backward(rec, &a.p, rows, &a.stats, nw, &dz, None, &dp);
        add_into(rec, &dp, dpooled);
        // proj and the attention.
        let pw = self.pool_w("proj.weight")?;
        self.linear_param_grads(rec, &layer("proj")?, &dp, Some(&a.context), grads, 1.0)?;
        let dctx = linear_input_grad(rec, &dp, pw, 1.0, None, &a.context.shape)?;
        let query_trained = ["latent", "q.weight", "q.bias"]
            .iter()
            .any(|s| grads.keys().any(|k| *k == format!("{PREFIX}.{s}")));
        let (dkv, dq) =
            pool_attention_backward(rec, &a.q, &a.kv, &a.probs, &dctx, c.heads, query_trained)?;
        if let Some(dq) = dq {
            // One query for every image: its gradient is the sum over the batch.
            let sum = zeros(rec, &[1, c.dim])?;
            column_sum_into(rec, &dq, &sum, 1.0);
            self.linear_param_grads(rec, &layer("q")?, &sum, Some(&a.latent), grads, 1.0)?;
            if let Some(g) = grads.get(&format!("{PREFIX}.latent")) {
                let qw = self.pool_w("q.weight")?;
                let mut into = g.clone();
                into.shape = vec![1, c.dim];
                linear_input_grad(rec, &sum, qw, 1.0, Some(&into), &into.shape)?;
            }
        }
        let kw = self.pool_w("kv.weight")?;
        self.linear_param_grads(rec, &layer("kv")?, &dkv, Some(&a.y), grads, 1.0)?;
        Ok(linear_input_grad(rec, &dkv, kw, 1.0, None, &a.y.shape)?)
    }
}
