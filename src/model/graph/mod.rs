//! The ViT graph with the tuning methods' hooks: forward (inference, or training with saved activations) and a
//! hand-written backward that computes input gradients through the frozen backbone and weight gradients only
//! for the tensors being trained.

use std::collections::BTreeMap;

mod attn_pool;
mod backward;
mod forward;
mod layers;

use layers::{Layer, Layers};

use super::hooks::{Affine, Attached, Branch, BranchInput, Grads, Hooks, Saved, Site, TokenLayout};
use super::saved::WeightInputs;
use super::{GpuViT, HostTensor, MlpAct, Pooling, ViTConfig};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, Recorder};
use crate::ops::activation::{activation_backward, add_into, swiglu, swiglu_backward, zeros};
use crate::ops::affine::{affine_grads, fold_norm, fold_norm_grads, scale_rows};
use crate::ops::attention::{
    attention, attention_backward, flash_attention, flash_attention_backward,
};
use crate::ops::dropout::{Band, Dropout};
use crate::ops::embed::{assemble_tokens, im2col, Prompts};
use crate::ops::layernorm::{
    layernorm, layernorm_backward, layernorm_param_grads, layernorm_rows, Rows,
};
use crate::ops::matmul::{
    linear, linear_input_grad, linear_keeping_pre_act, linear_scaled, linear_weight_grad, Act,
};
use crate::ops::reduce::{
    batch_sum_tokens_into, column_sum_into, gather_tokens, mean_tokens, mean_tokens_backward,
    scatter_tokens, write_tokens,
};
use crate::ops::rope::rope;

/// Reads a set of named GPU tensors back in one submit, with the given host shapes.
pub fn download_named(
    gpu: &Gpu,
    tensors: &BTreeMap<String, GpuTensor>,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<BTreeMap<String, HostTensor>> {
    let mut rec = Recorder::new(gpu);
    let handles: Vec<_> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), rec.read(t)))
        .collect();
    let (mut outs, _) = rec.finish()?;
    Ok(handles
        .into_iter()
        .map(|(k, h)| {
            let shape = shapes
                .get(&k)
                .cloned()
                .unwrap_or_else(|| tensors[&k].shape.clone());
            (k, HostTensor::new(shape, std::mem::take(&mut outs[h.0])))
        })
        .collect())
}

/// Activations one block saves for its backward.
/// The inputs that only weight gradients read are `None` when no such weight is trained (see `WeightInputs`).
struct BlockActs {
    x: GpuTensor,
    y1: Option<GpuTensor>,
    st1: GpuTensor,
    /// The LayerNorms' weights as the forward used them (a method's affine folded in), for their backward.
    n1w: GpuTensor,
    n2w: GpuTensor,
    qkv: GpuTensor,
    att: SavedAttention,
    ctx: Option<GpuTensor>,
    xm: GpuTensor,
    y2: Option<GpuTensor>,
    st2: GpuTensor,
    /// fc1's output before the activation: GELU's input (the affine's input z when a method scales fc1's output),
    /// or SwiGLU's input [gate | x].
    hpre: GpuTensor,
    /// EVA-02's sub-LayerNorm `mlp.norm`: its input (the gated hidden) and row statistics.
    sub_norm: Option<(GpuTensor, GpuTensor)>,
    h: Option<GpuTensor>,
    /// The inputs of the method's affines after qkv, proj, fc1 and fc2 (where it has them).
    affine_in: BTreeMap<Site, GpuTensor>,
    /// What the method's qkv hook and its two branch hooks kept.
    qkv_hook: Saved,
    branches: [Saved; 2],
}

/// What attention keeps for its backward: the probabilities [N,H,T,T] (matmul path), or the per-row log-sum-exp
/// [N·H,T] of the fused kernel.
enum SavedAttention {
    Probs(GpuTensor),
    Lse(GpuTensor),
}

/// What a forward recording produced (and, when training, saved).
pub(crate) struct Forward {
    blocks: Vec<BlockActs>,
    cols: Option<GpuTensor>,
    /// The input of the method's affine after the patch embedding, if it has one.
    patch_affine_in: Option<GpuTensor>,
    /// With `norm_pre`, in training: its input and row statistics.
    pre: Option<(GpuTensor, GpuTensor)>,
    x_final: GpuTensor,
    pool_in: Option<GpuTensor>,
    /// Attention pooling's saved activations.
    attn_pool: Option<attn_pool::PoolActs>,
    final_stats: GpuTensor,
    /// The final norm's weight as the forward used it.
    final_w: GpuTensor,
    pub pooled: GpuTensor,
    pub logits: Option<GpuTensor>,
    pub attn: Vec<GpuTensor>,
    /// With `want_tokens`: the patch embeddings before the position embedding [n·m, D], then every block's
    /// output [n, T, D].
    pub tokens: Vec<GpuTensor>,
}

impl Forward {
    /// With attention pooling, its query's attention [n, H, 1, T'] over the pooled tokens.
    pub(crate) fn pool_attention(&self) -> Option<&GpuTensor> {
        self.attn_pool.as_ref().map(|a| a.probs())
    }
}

/// The backbone with an optional tuning: resolves tensors by name (tuned first) and records passes.
pub struct Graph<'a> {
    vit: &'a GpuViT,
    tuning: Option<&'a Attached>,
    /// The layers the passes read by site, resolved once.
    layers: Layers<'a>,
    /// When set, the backward keeps d(attention probabilities) of every layer here (last layer first).
    pub(crate) attn_grads: Option<std::cell::RefCell<Vec<GpuTensor>>>,
    /// Training dropout for the next micro-batch: (step seed, index of its first image in the batch). `None`,
    /// or a method option of 0, trains without dropout.
    pub(crate) dropout_key: Option<(u32, usize)>,
}

/// The hooks of a graph without a tuning.
static NO_HOOKS: super::hooks::NoHooks = super::hooks::NoHooks;

impl<'a> Graph<'a> {
    pub fn new(vit: &'a GpuViT, tuning: Option<&'a Attached>) -> Result<Self> {
        let g = Self {
            vit,
            tuning,
            layers: Layers::resolve(vit, tuning)?,
            attn_grads: None,
            dropout_key: None,
        };
        g.hooks().check(&g)?;
        Ok(g)
    }

    fn hooks(&self) -> &'a dyn Hooks {
        match self.tuning {
            Some(t) => t.hooks.as_ref(),
            None => &NO_HOOKS,
        }
    }

    pub fn prompts(&self) -> usize {
        self.hooks().prompts()
    }

    pub fn config(&self) -> &'a ViTConfig {
        &self.vit.config
    }

    /// The patch grid (rows, columns) at the graph's input size.
    pub fn grid(&self) -> (usize, usize) {
        self.vit.grid()
    }

    /// Whether the graph runs at the checkpoint's own input size.
    pub fn at_native_size(&self) -> bool {
        self.vit.input_size == self.vit.config.image_size
    }

    pub fn layout(&self) -> TokenLayout {
        self.vit.layout(self.prompts())
    }

    /// The prefix tokens that have position rows, [1,k,D]: CLS, joined with the distillation token for DeiT
    /// distilled (two small dispatches); none without a class token.
    fn prefix_tokens(&self, rec: &mut Recorder) -> Result<Option<GpuTensor>> {
        let c = &self.vit.config;
        if !c.class_token {
            return Ok(None);
        }
        let cls = self.w("cls_token")?;
        if !c.distilled {
            return Ok(Some(cls.clone()));
        }
        let t = rec.gpu().empty(&[1, 2, c.dim])?;
        write_tokens(rec, &t, 0, 1, cls, 0);
        write_tokens(rec, &t, 1, 1, self.w("dist_token")?, 0);
        Ok(Some(t))
    }

    /// A tensor by name: the tuning's if it has one, else the backbone's (for the methods' own tensors and the
    /// few outside the blocks; the blocks' layers are resolved once, in `layers`).
    pub fn w(&self, name: &str) -> Result<&'a GpuTensor> {
        layers::resolve(self.vit, self.tuning, name)
    }

    /// `{prefix}.weight` and `{prefix}.bias`.
    pub fn pair(&self, prefix: &str) -> Result<(&'a GpuTensor, &'a GpuTensor)> {
        Ok((
            self.w(&format!("{prefix}.weight"))?,
            self.w(&format!("{prefix}.bias"))?,
        ))
    }

    /// The layer whose output `site` is.
    fn layer(&self, site: Site) -> &Layer<'a> {
        self.layers.at(site)
    }

    fn affine(&self, site: Site) -> Result<Option<Affine<'a>>> {
        self.hooks().affine(self, site)
    }

    /// The linear layer whose output is `site`, with the method's affine there folded into its epilogue:
    /// y = act(γ⊙(x·Wᵀ + b) + β) (+ residual). Returns y and, in training with an affine, its input z.
    fn linear_at(
        &self,
        rec: &mut Recorder,
        site: Site,
        x: &GpuTensor,
        act: Act,
        residual: Option<&GpuTensor>,
        train: bool,
    ) -> Result<(GpuTensor, Option<GpuTensor>)> {
        let layer = self.layer(site);
        let (w, b) = (layer.weight, layer.bias);
        // Full fine-tuning under LayerScale: the tuned weight is timm's own, so γ scales the layer's output here
        // (the epilogue's affine, with no shift); the backward takes γ's gradient from the kept z.
        if let Some((ls, _)) = layer.unfolded_layer_scale() {
            if self.affine(site)?.is_some() {
                return Err(Error::Internal(format!(
                    "`{}` is tuned under LayerScale and has a method's affine after it",
                    layer.name
                )));
            }
            let no_shift = zeros(rec, &ls.shape)?;
            let (z, y) =
                linear_scaled(rec, (x, w, Some(b)), (ls, &no_shift), act, residual, train)?;
            return Ok((y, z));
        }
        // A tuned bias under LayerScale is timm's own value: scaled here as the backbone's was at upload.
        let scaled_bias = match &layer.layer_scale {
            Some((ls, _)) if layer.bias_tuned => Some(scale_rows(rec, b, ls, None)?),
            _ => None,
        };
        let b = scaled_bias.as_ref().unwrap_or(b);
        match self.affine(site)? {
            Some(af) => {
                // Under LayerScale (folded into this layer) the affine's shift is scaled too: ls⊙(γ⊙z + β).
                let scaled_shift = match &layer.layer_scale {
                    Some((ls, _)) => Some(scale_rows(rec, af.shift, ls, None)?),
                    None => None,
                };
                let shift = scaled_shift.as_ref().unwrap_or(af.shift);
                let (z, y) = linear_scaled(
                    rec,
                    (x, w, Some(b)),
                    (af.scale, shift),
                    act,
                    residual,
                    train,
                )?;
                Ok((y, z))
            }
            None => Ok((linear(rec, x, w, Some(b), act, residual)?, None)),
        }
    }

    /// The LayerNorm at `site`'s weight and bias, with the method's affine there folded in (γ⊙w, γ⊙b + β).
    fn norm_params(&self, rec: &mut Recorder, site: Site) -> Result<(GpuTensor, GpuTensor)> {
        let layer = self.layer(site);
        let (w, b) = (layer.weight, layer.bias);
        Ok(match self.affine(site)? {
            Some(af) => fold_norm(rec, (w, b), (af.scale, af.shift))?,
            None => (w.clone(), b.clone()),
        })
    }

    /// Back through the affine after `site`, if any: dγ += Σ dy⊙z, dβ += Σ dy where trained, and
    /// dz = γ⊙dy, the gradient of the layer's own output (`None` without an affine: then it is dy).
    fn affine_backward(
        &self,
        rec: &mut Recorder,
        site: Site,
        dy: &GpuTensor,
        z: Option<&GpuTensor>,
        grads: &Grads,
    ) -> Result<Option<GpuTensor>> {
        if let Some((ls, name)) = self.layer(site).unfolded_layer_scale() {
            // y = γ⊙z (+ residual): dγ += Σ dy⊙z where γ is trained, dz = γ⊙dy.
            if let Some(g) = grads.get(name) {
                let z = z.ok_or_else(|| {
                    Error::Internal(format!("the forward kept no input for `{name}`"))
                })?;
                let unused_shift = zeros(rec, &g.shape)?;
                affine_grads(rec, dy, z, (g, &unused_shift));
            }
            return Ok(Some(scale_rows(rec, dy, ls, None)?));
        }
        let Some(af) = self.affine(site)? else {
            return Ok(None);
        };
        if let Some((gs, gb)) = self.affine_grads(&af, grads)? {
            let z = z.ok_or_else(|| {
                Error::Internal(format!("the forward kept no input for `{}`", af.names[0]))
            })?;
            match &self.layer(site).layer_scale {
                // The shift entered as ls⊙β: dβ = ls⊙Σ dy.
                Some((ls, _)) => {
                    let sum = zeros(rec, &gb.shape)?;
                    affine_grads(rec, dy, z, (gs, &sum));
                    let scaled = scale_rows(rec, &sum, ls, None)?;
                    add_into(rec, gb, &scaled);
                }
                None => affine_grads(rec, dy, z, (gs, gb)),
            }
        }
        Ok(Some(scale_rows(rec, dy, af.scale, None)?))
    }

    /// The gradients of an affine's γ and β: both trained, or neither.
    fn affine_grads<'g>(
        &self,
        af: &Affine,
        grads: &'g Grads,
    ) -> Result<Option<(&'g GpuTensor, &'g GpuTensor)>> {
        match (grads.get(&af.names[0]), grads.get(&af.names[1])) {
            (Some(s), Some(b)) => Ok(Some((s, b))),
            (None, None) => Ok(None),
            _ => Err(Error::Internal(format!(
                "`{}` and `{}` are trained together or not at all",
                af.names[0], af.names[1]
            ))),
        }
    }

    /// The MLP's activation.
    fn mlp_act(&self) -> Act {
        match self.vit.config.mlp_act {
            MlpAct::Gelu => Act::Gelu,
            MlpAct::QuickGelu => Act::QuickGelu,
        }
    }

    fn head(&self) -> Option<(&'a GpuTensor, &'a GpuTensor)> {
        self.pair("head").ok()
    }

    /// A training dropout of `rate` for this micro-batch; `None` when the step trains without dropout or the
    /// rate is 0. The same for the forward and its backward.
    pub fn dropout(&self, rate: f32) -> Option<Dropout> {
        let (seed, first_image) = self.dropout_key?;
        (rate > 0.0).then_some(Dropout {
            rate,
            seed,
            first_image,
        })
    }

    /// The prompt rows of x [n, T, D].
    pub fn prompt_band(&self, x: &GpuTensor) -> Band {
        let rows = self.layout().prompt_rows();
        Band {
            images: x.shape[0],
            tokens: x.shape[1],
            start: rows.start,
            count: rows.len(),
            dim: self.vit.config.dim,
        }
    }
}

/// A saved activation the backward needs, or an internal error naming it.
fn kept<'t>(t: &'t Option<GpuTensor>, what: &str) -> Result<&'t GpuTensor> {
    t.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "internal: the training forward kept no {what} output, which this backward needs"
        ))
    })
}
