//! The ViT graph with the tuning methods' hooks: forward (inference, or training with saved activations) and a
//! hand-written backward that computes input gradients through the frozen backbone and weight gradients only
//! for the tensors being trained.

use std::collections::BTreeMap;

mod attn_pool;

use super::hooks::{Affine, Branch, BranchInput, Grads, Hooks, Saved, Site, TokenLayout};
use super::saved::WeightInputs;
use super::{GpuViT, HostTensor, MlpAct, Pooling, ViTConfig};
use crate::error::{Error, Result};
use crate::gpu::{AttentionKernel, Gpu, GpuTensor, Recorder};
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
use crate::tuning::{Method, MethodOptions, Tuning};

/// A tuning's tensors on the GPU, with the hooks that attach its method to the graph. For bitfit and full
/// fine-tuning the tensors replace the backbone's own.
pub struct GpuTuning {
    pub method: Method,
    pub options: MethodOptions,
    pub num_classes: usize,
    pub params: BTreeMap<String, GpuTensor>,
    /// The tuned file's shape of each tensor (the patch-embedding weight is kept as a matrix on the GPU).
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub hooks: Box<dyn Hooks>,
}

/// GPU shape of a tuned tensor: the patch-embedding convolution weight is the matrix of its im2col matmul.
fn gpu_shape(name: &str, shape: &[usize]) -> Vec<usize> {
    if name == "patch_embed.proj.weight" && shape.len() == 4 {
        vec![shape[0], shape[1] * shape[2] * shape[3]]
    } else {
        shape.to_vec()
    }
}

impl GpuTuning {
    pub fn upload(gpu: &Gpu, t: &Tuning) -> Result<Self> {
        let mut params = BTreeMap::new();
        let mut shapes = BTreeMap::new();
        for (k, v) in &t.tensors {
            params.insert(k.clone(), gpu.upload(&gpu_shape(k, &v.shape), &v.data)?);
            shapes.insert(k.clone(), v.shape.clone());
        }
        Ok(Self {
            method: t.method,
            options: t.options.clone(),
            num_classes: t.num_classes,
            params,
            shapes,
            hooks: t.method.hooks(&t.options),
        })
    }

    /// Zero-filled tensors shaped like every parameter (gradients, optimizer state).
    pub fn zeros_like(&self, gpu: &Gpu) -> Result<BTreeMap<String, GpuTensor>> {
        self.params
            .iter()
            .map(|(k, v)| Ok((k.clone(), gpu.zeros(&v.shape)?)))
            .collect()
    }

    /// Reads every parameter back under the tuned file's names and shapes.
    pub fn download(&self, gpu: &Gpu) -> Result<Tuning> {
        let tensors = download_named(gpu, &self.params, &self.shapes)?;
        Ok(Tuning {
            method: self.method,
            options: self.options.clone(),
            num_classes: self.num_classes,
            tensors,
        })
    }

    pub fn prompts(&self) -> usize {
        self.hooks.prompts()
    }
}

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
    tuning: Option<&'a GpuTuning>,
    /// When set, the backward keeps d(attention probabilities) of every layer here (last layer first).
    pub(crate) attn_grads: Option<std::cell::RefCell<Vec<GpuTensor>>>,
    /// Training dropout for the next micro-batch: (step seed, index of its first image in the batch). `None`,
    /// or a method option of 0, trains without dropout.
    pub(crate) dropout_key: Option<(u32, usize)>,
}

/// The hooks of a graph without a tuning.
static NO_HOOKS: super::hooks::NoHooks = super::hooks::NoHooks;

impl<'a> Graph<'a> {
    pub fn new(vit: &'a GpuViT, tuning: Option<&'a GpuTuning>) -> Result<Self> {
        let g = Self {
            vit,
            tuning,
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

    /// A tensor by name: the tuning's if it has one, else the backbone's.
    pub fn w(&self, name: &str) -> Result<&'a GpuTensor> {
        if let Some(t) = self.tuning.and_then(|t| t.params.get(name)) {
            return Ok(t);
        }
        self.vit.weights.get(name).ok_or_else(|| {
            Error::Input(format!(
                "the backbone has no tensor `{name}` (needed by the forward pass)"
            ))
        })
    }

    /// `{prefix}.weight` and `{prefix}.bias`.
    pub fn pair(&self, prefix: &str) -> Result<(&'a GpuTensor, &'a GpuTensor)> {
        Ok((
            self.w(&format!("{prefix}.weight"))?,
            self.w(&format!("{prefix}.bias"))?,
        ))
    }

    /// The backbone module whose output `site` is (timm names).
    fn site_module(&self, site: Site) -> String {
        site.module(self.vit.config.final_norm())
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
        let module = self.site_module(site);
        let prefix = match site {
            Site::PatchEmbed => format!("{module}.proj"),
            _ => module,
        };
        let (w, b) = self.pair(&prefix)?;
        // Full fine-tuning under LayerScale: the tuned weight is timm's own, so γ scales the layer's output here
        // (the epilogue's affine, with no shift); the backward takes γ's gradient from the kept z.
        if let Some(ls) = self.unfolded_layer_scale(site)? {
            if self.affine(site)?.is_some() {
                return Err(Error::Internal(format!(
                    "`{prefix}` is tuned under LayerScale and has a method's affine after it"
                )));
            }
            let no_shift = zeros(rec, &ls.shape)?;
            let (z, y) =
                linear_scaled(rec, (x, w, Some(b)), (ls, &no_shift), act, residual, train)?;
            return Ok((y, z));
        }
        // A tuned bias under LayerScale is timm's own value: scaled here as the backbone's was at upload.
        let scaled_bias = match self.layer_scale(site)? {
            Some(ls) if self.is_tuned(&format!("{prefix}.bias")) => {
                Some(scale_rows(rec, b, ls, None)?)
            }
            _ => None,
        };
        let b = scaled_bias.as_ref().unwrap_or(b);
        match self.affine(site)? {
            Some(af) => {
                // Under LayerScale (folded into this layer) the affine's shift is scaled too: ls⊙(γ⊙z + β).
                let scaled_shift = match self.layer_scale(site)? {
                    Some(ls) => Some(scale_rows(rec, af.shift, ls, None)?),
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

    /// LayerScale's γ over `site` when the tuning replaces the layer's weight (full fine-tuning): the backbone's
    /// folded weight is not in use, so γ is applied, and trained, on its own.
    fn unfolded_layer_scale(&self, site: Site) -> Result<Option<&'a GpuTensor>> {
        let weight = format!("{}.weight", self.site_module(site));
        match self.layer_scale(site)? {
            Some(ls) if self.is_tuned(&weight) => Ok(Some(ls)),
            _ => Ok(None),
        }
    }

    /// Whether the tuning carries `name` (and so replaces the backbone's).
    fn is_tuned(&self, name: &str) -> bool {
        self.tuning.is_some_and(|t| t.params.contains_key(name))
    }

    /// The LayerScale γ over the linear layer `{prefix}` (`blocks.{l}.attn.proj`, `blocks.{l}.mlp.fc2`), if any.
    fn layer_scale_of(&self, prefix: &str) -> Result<Option<&'a GpuTensor>> {
        let Some((l, module)) = prefix
            .strip_prefix("blocks.")
            .and_then(|r| r.split_once('.'))
        else {
            return Ok(None);
        };
        let Ok(l) = l.parse() else {
            return Ok(None);
        };
        match module {
            "attn.proj" => self.layer_scale(Site::Proj(l)),
            "mlp.fc2" => self.layer_scale(Site::Fc2(l)),
            _ => Ok(None),
        }
    }

    /// The LayerScale γ folded into the layer whose output `site` is (proj and fc2 of LayerScale backbones).
    fn layer_scale(&self, site: Site) -> Result<Option<&'a GpuTensor>> {
        if !self.vit.config.layer_scale {
            return Ok(None);
        }
        match site {
            Site::Proj(l) => self.w(&format!("blocks.{l}.ls1.gamma")).map(Some),
            Site::Fc2(l) => self.w(&format!("blocks.{l}.ls2.gamma")).map(Some),
            _ => Ok(None),
        }
    }

    /// The LayerNorm at `site`'s weight and bias, with the method's affine there folded in (γ⊙w, γ⊙b + β).
    fn norm_params(&self, rec: &mut Recorder, site: Site) -> Result<(GpuTensor, GpuTensor)> {
        let (w, b) = self.pair(&self.site_module(site))?;
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
        if let Some(ls) = self.unfolded_layer_scale(site)? {
            // y = γ⊙z (+ residual): dγ += Σ dy⊙z where γ is trained, dz = γ⊙dy.
            let name = match site {
                Site::Proj(l) => format!("blocks.{l}.ls1.gamma"),
                Site::Fc2(l) => format!("blocks.{l}.ls2.gamma"),
                _ => return Err(Error::Internal(format!("no LayerScale at {site:?}"))),
            };
            if let Some(g) = grads.get(&name) {
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
            match self.layer_scale(site)? {
                // The shift entered as ls⊙β: dβ = ls⊙Σ dy.
                Some(ls) => {
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

    /// Records the forward pass of a micro-batch `px` [n,3,H,W]. With `train`, the gradients the backward will
    /// compute (by tensor name; empty for input gradients only), it keeps what that backward needs.
    pub(crate) fn forward(
        &self,
        rec: &mut Recorder,
        px: &GpuTensor,
        train: Option<&BTreeMap<String, GpuTensor>>,
        want_attn: bool,
        want_tokens: bool,
    ) -> Result<Forward> {
        let c = &self.vit.config;
        let trained = |name: &str| train.is_some_and(|g| g.contains_key(name));
        let n = px.shape[0];
        let p = self.prompts();
        let cols = im2col(rec, px, c.patch)?;
        let (patches, patch_affine_in) = self.linear_at(
            rec,
            Site::PatchEmbed,
            &cols,
            Act::None,
            None,
            train.is_some(),
        )?;
        let hooks = self.hooks();
        let prompt_tokens = hooks.prompt_tokens(self)?;
        // Register tokens and prompts both go after the prefix tokens without a position embedding: registers first.
        let r = c.registers;
        // Only registers and prompts together need a joined copy (two small dispatches per micro-batch).
        let joined = match prompt_tokens {
            Some(pt) if r > 0 => {
                let t = rec.gpu().empty(&[1, r + p, c.dim])?;
                write_tokens(rec, &t, 0, r, self.w("reg_token")?, 0);
                write_tokens(rec, &t, r, p, pt, 0);
                Some(t)
            }
            _ => None,
        };
        let inserted = match (&joined, prompt_tokens) {
            (Some(t), _) => Some(t),
            (None, Some(pt)) => Some(pt),
            (None, None) if r > 0 => Some(self.w("reg_token")?),
            (None, None) => None,
        };
        let prefix = self.prefix_tokens(rec)?;
        let mut x = assemble_tokens(
            rec,
            &patches,
            n,
            prefix.as_ref(),
            self.w("pos_embed")?,
            inserted.map(|t| Prompts {
                tokens: t,
                count: r + p,
                per_image: false,
            }),
        )?;
        hooks.tokens(self, rec, &x, train.is_some())?;
        // CLIP's pre-norm (`norm_pre`) runs on the assembled tokens, prompts included.
        let pre = if c.pre_norm {
            let (w, b) = self.pair("norm_pre")?;
            let o = layernorm(rec, &x, w, b, c.eps)?;
            let x0 = std::mem::replace(&mut x, o.y);
            train.map(|_| (x0, o.stats))
        } else {
            None
        };
        let mut tokens = Vec::new();
        if want_tokens {
            tokens.push(patches);
        } else {
            drop(patches);
        }
        let mut blocks = Vec::new();
        let mut attn = Vec::new();
        // The probabilities are materialised only where maps or their gradients are wanted.
        let maps = want_attn || self.attn_grads.is_some();
        let fused = !maps && rec.gpu().attention_kernel() == AttentionKernel::Fused;
        for l in 0..c.depth {
            hooks.block_input(self, rec, l, &x, train.is_some())?;
            let keep = train.map(|_| WeightInputs::for_block(l, &trained, fused, hooks));
            let (out, acts, probs) = self.block_forward(rec, l, x, keep, maps)?;
            if let (true, Some(probs)) = (want_attn, probs) {
                attn.push(probs);
            }
            if let Some(a) = acts {
                blocks.push(a);
            }
            if want_tokens {
                tokens.push(out.clone());
            }
            x = out;
        }
        let t = x.shape[1];
        let (final_w, fb) = self.norm_params(rec, Site::FinalNorm)?;
        let (fw, fb) = (&final_w, &fb);
        let start = self.layout().pool_start();
        let mut pool_acts = None;
        let (pooled, final_stats, pool_in) = match c.pooling {
            Pooling::Token if c.distilled => {
                // CLS and the distillation token normed as rows [n·2, D]: read as [n, 2D], side by side.
                let both = gather_tokens(rec, &x, 0, 2)?;
                let mut o = layernorm(rec, &both, fw, fb, c.eps)?;
                o.y.shape = vec![n, 2 * c.dim];
                (o.y, o.stats, Some(both))
            }
            Pooling::Token => {
                let o = layernorm_rows(rec, &x, n, 0, t * c.dim, fw, fb, c.eps)?;
                (o.y, o.stats, None)
            }
            Pooling::Avg => {
                let m = mean_tokens(rec, &x, start)?;
                let o = layernorm(rec, &m, fw, fb, c.eps)?;
                (o.y, o.stats, Some(m))
            }
            Pooling::NormAvg => {
                let o = layernorm(rec, &x, fw, fb, c.eps)?;
                (mean_tokens(rec, &o.y, start)?, o.stats, None)
            }
            Pooling::Map => {
                // timm pools the tokens after the prefix tokens (none in SigLIP) and the registers.
                let o = layernorm(rec, &x, fw, fb, c.eps)?;
                let y = if start > 0 {
                    let mut y = gather_tokens(rec, &o.y, start, t - start)?;
                    y.shape = vec![n, t - start, c.dim];
                    y
                } else {
                    o.y
                };
                let (pooled, acts) = self.attn_pool_forward(rec, y)?;
                pool_acts = Some(acts);
                (pooled, o.stats, None)
            }
        };
        let logits = match self.head() {
            Some((hw, hb)) => Some(linear(rec, &pooled, hw, Some(hb), Act::None, None)?),
            None => None,
        };
        Ok(Forward {
            blocks,
            cols: trained("patch_embed.proj.weight").then_some(cols),
            patch_affine_in,
            pre,
            x_final: x,
            pool_in,
            attn_pool: pool_acts,
            final_stats,
            final_w,
            pooled,
            logits,
            attn,
            tokens,
        })
    }

    fn block_forward(
        &self,
        rec: &mut Recorder,
        l: usize,
        x: GpuTensor,
        keep: Option<WeightInputs>,
        maps: bool,
    ) -> Result<(GpuTensor, Option<BlockActs>, Option<GpuTensor>)> {
        let c = &self.vit.config;
        let train = keep.is_some();
        let b = format!("blocks.{l}");
        let mut affine_in = BTreeMap::new();
        let mut keep_affine_in = |site: Site, z: Option<GpuTensor>| {
            if let Some(z) = z {
                affine_in.insert(site, z);
            }
        };
        let (n1w, n1b) = self.norm_params(rec, Site::Norm1(l))?;
        let ln1 = layernorm(rec, &x, &n1w, &n1b, c.eps)?;
        let (qkv, z) = self.linear_at(rec, Site::Qkv(l), &ln1.y, Act::None, None, train)?;
        keep_affine_in(Site::Qkv(l), z);
        let hooks = self.hooks();
        let qkv_hook = hooks.qkv(self, rec, l, &ln1.y, &qkv, train)?;
        // RoPE turns q and k of the patch tokens after every method's change to them (LoRA's update included).
        if let Some(tables) = &self.vit.rope {
            rope(
                rec,
                &qkv,
                tables,
                self.layout().patch_rows().start,
                c.heads,
                false,
            )?;
        }
        let (context, saved) = if maps || rec.gpu().attention_kernel() == AttentionKernel::Matmul {
            let a = attention(rec, &qkv, c.heads)?;
            (a.context, SavedAttention::Probs(a.probs))
        } else {
            let a = flash_attention(rec, &qkv, c.heads)?;
            (a.context, SavedAttention::Lse(a.lse))
        };
        let (xm, z) = self.linear_at(rec, Site::Proj(l), &context, Act::None, Some(&x), train)?;
        keep_affine_in(Site::Proj(l), z);
        let attn_input = match hooks.branch_input(Branch::Attention) {
            BranchInput::Normed => &ln1.y,
            BranchInput::Residual => &x,
        };
        let attn_branch = hooks.branch(self, rec, l, Branch::Attention, attn_input, &xm, train)?;
        let (n2w, n2b) = self.norm_params(rec, Site::Norm2(l))?;
        let ln2 = layernorm(rec, &xm, &n2w, &n2b, c.eps)?;
        let (f1w, f1b) = self.pair(&format!("{b}.mlp.fc1"))?;
        let fc1_affine = self.hooks().affine(self, Site::Fc1(l))?.is_some();
        // With an affine after fc1 its input is kept instead of GELU's; the backward recomputes GELU's input.
        // SwiGLU keeps its input [gate | x] (the affine's input z, if any, beside the others).
        let (hpre, h) = if c.swiglu {
            let (u, z) = self.linear_at(rec, Site::Fc1(l), &ln2.y, Act::None, None, train)?;
            keep_affine_in(Site::Fc1(l), z);
            let h = swiglu(rec, &u)?;
            (train.then_some(u), h)
        } else if fc1_affine {
            self.linear_at(rec, Site::Fc1(l), &ln2.y, self.mlp_act(), None, train)
                .map(|(h, z)| (z, h))?
        } else if train {
            let (hpre, h) = linear_keeping_pre_act(rec, &ln2.y, f1w, Some(f1b), self.mlp_act())?;
            (Some(hpre), h)
        } else {
            (
                None,
                linear(rec, &ln2.y, f1w, Some(f1b), self.mlp_act(), None)?,
            )
        };
        let (h, sub_norm) = if c.mlp_norm {
            let (w, nb) = self.pair(&format!("{b}.mlp.norm"))?;
            let o = layernorm(rec, &h, w, nb, c.eps)?;
            (o.y, train.then_some((h, o.stats)))
        } else {
            (h, None)
        };
        let (xo, z) = self.linear_at(rec, Site::Fc2(l), &h, Act::None, Some(&xm), train)?;
        keep_affine_in(Site::Fc2(l), z);
        let mlp_input = match hooks.branch_input(Branch::Mlp) {
            BranchInput::Normed => &ln2.y,
            BranchInput::Residual => &xm,
        };
        let mlp_branch = hooks.branch(self, rec, l, Branch::Mlp, mlp_input, &xo, train)?;
        let probs = match &saved {
            SavedAttention::Probs(p) => Some(p.clone()),
            SavedAttention::Lse(_) => None,
        };
        let acts = match keep {
            Some(keep) => Some(BlockActs {
                x,
                y1: keep.y1.then_some(ln1.y),
                st1: ln1.stats,
                n1w,
                n2w,
                qkv,
                att: saved,
                ctx: keep.ctx.then_some(context),
                xm,
                y2: keep.y2.then_some(ln2.y),
                st2: ln2.stats,
                hpre: hpre
                    .ok_or_else(|| Error::Input("internal: no pre-activation saved".into()))?,
                sub_norm,
                h: keep.h.then_some(h),
                affine_in,
                qkv_hook,
                branches: [attn_branch, mlp_branch],
            }),
            None => None,
        };
        Ok((xo, acts, probs))
    }

    /// Records the backward of a training forward from d logits, accumulating into `grads` (by tensor name;
    /// a tensor without an entry is not trained and gets no weight gradient).
    pub(crate) fn backward(
        &self,
        rec: &mut Recorder,
        f: &Forward,
        dlogits: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        let c = &self.vit.config;
        let (hw, _) = self
            .head()
            .ok_or_else(|| Error::Input("training needs a head (head.weight)".into()))?;
        let n = f.pooled.shape[0];
        let t = f.x_final.shape[1];
        self.linear_param_grads(rec, "head", dlogits, Some(&f.pooled), grads, 1.0)?;
        // Only as deep as a trained tensor (or a captured attention gradient) needs.
        let Some(floor) = self.backward_floor(grads.keys()) else {
            return Ok(());
        };
        let dpooled = linear_input_grad(rec, dlogits, hw, 1.0, None, &f.pooled.shape)?;
        let fw = &f.final_w;
        let start = self.layout().pool_start();
        let mut dx = match (&f.pool_in, c.pooling) {
            (Some(both), Pooling::Token) => {
                // Distilled: the pooled gradient [n, 2D] is the two rows' [n·2, D].
                let mut dy = dpooled.clone();
                dy.shape = both.shape.clone();
                let dboth = rec.gpu().empty(&both.shape)?;
                let (rows, stats) = (Rows::all(both), &f.final_stats);
                layernorm_backward(rec, both, rows, stats, fw, &dy, None, &dboth);
                self.ln_param_grads(rec, Site::FinalNorm, both, rows, stats, &dy, grads)?;
                let dx = zeros(rec, &f.x_final.shape)?;
                scatter_tokens(rec, &dx, 0, 2, &dboth);
                dx
            }
            (Some(m), Pooling::Avg) => {
                let dm = rec.gpu().empty(&m.shape)?;
                layernorm_backward(
                    rec,
                    m,
                    Rows::all(m),
                    &f.final_stats,
                    fw,
                    &dpooled,
                    None,
                    &dm,
                );
                let stats = &f.final_stats;
                self.ln_param_grads(
                    rec,
                    Site::FinalNorm,
                    m,
                    Rows::all(m),
                    stats,
                    &dpooled,
                    grads,
                )?;
                mean_tokens_backward(rec, &dm, t, start)?
            }
            (_, Pooling::Map) => {
                let acts = f
                    .attn_pool
                    .as_ref()
                    .ok_or_else(|| Error::Internal("attention pooling kept nothing".into()))?;
                let dy = self.attn_pool_backward(rec, acts, &dpooled, grads)?;
                let dnormed = if start > 0 {
                    let d = zeros(rec, &f.x_final.shape)?;
                    scatter_tokens(rec, &d, start, t - start, &dy);
                    d
                } else {
                    dy
                };
                self.final_norm_backward(rec, f, &dnormed, grads)?
            }
            (_, Pooling::NormAvg) => {
                let dnormed = mean_tokens_backward(rec, &dpooled, t, start)?;
                self.final_norm_backward(rec, f, &dnormed, grads)?
            }
            _ => {
                let dx = zeros(rec, &f.x_final.shape)?;
                let rows = Rows {
                    rows: n,
                    off: 0,
                    stride: t * c.dim,
                };
                layernorm_backward(
                    rec,
                    &f.x_final,
                    rows,
                    &f.final_stats,
                    fw,
                    &dpooled,
                    None,
                    &dx,
                );
                let (x, stats) = (&f.x_final, &f.final_stats);
                self.ln_param_grads(rec, Site::FinalNorm, x, rows, stats, &dpooled, grads)?;
                dx
            }
        };
        let hooks = self.hooks();
        for l in (floor..c.depth).rev() {
            dx = self.block_backward(rec, l, &f.blocks[l], &dx, grads)?;
            hooks.block_input_backward(self, rec, l, &dx, grads)?;
        }
        if floor > 0 {
            return Ok(());
        }
        if let Some((x0, stats)) = &f.pre {
            let (w, _) = self.pair("norm_pre")?;
            let dx0 = rec.gpu().empty(&x0.shape)?;
            layernorm_backward(rec, x0, Rows::all(x0), stats, w, &dx, None, &dx0);
            self.norm_param_grads(rec, "norm_pre", x0, Rows::all(x0), stats, &dx, grads)?;
            dx = dx0;
        }
        // Token assembly: x0 = [CLS + pos₀ (, dist + pos₁), registers, prompts, patches + posₖ…].
        hooks.tokens_backward(self, rec, &dx, grads)?;
        let layout = self.layout();
        debug_assert_eq!(layout.total(), t);
        for (row, name) in ["cls_token", "dist_token"].into_iter().enumerate() {
            if let (Some(g), true) = (grads.get(name), row < layout.prefix) {
                batch_sum_tokens_into(rec, &dx, row, 1, g, 0);
            }
        }
        if let Some(g) = grads.get("reg_token") {
            let rows = layout.register_rows();
            batch_sum_tokens_into(rec, &dx, rows.start, rows.len(), g, 0);
        }
        let patches = layout.patch_rows();
        if let Some(g) = grads.get("pos_embed") {
            let k = layout.prefix;
            if k > 0 {
                batch_sum_tokens_into(rec, &dx, 0, k, g, 0);
            }
            batch_sum_tokens_into(rec, &dx, patches.start, patches.len(), g, k);
        }
        let pw = grads.get("patch_embed.proj.weight");
        let pb = grads.get("patch_embed.proj.bias");
        let affine = self.affine(Site::PatchEmbed)?.is_some();
        if pw.is_some() || pb.is_some() || affine {
            let dpatch = gather_tokens(rec, &dx, patches.start, patches.len())?;
            let z = f.patch_affine_in.as_ref();
            let dz = self.affine_backward(rec, Site::PatchEmbed, &dpatch, z, grads)?;
            let dpatch = dz.unwrap_or(dpatch);
            if let (Some(g), Some(cols)) = (pw, &f.cols) {
                linear_weight_grad(rec, &dpatch, cols, g, 1.0);
            }
            if let Some(g) = pb {
                column_sum_into(rec, &dpatch, g, 1.0);
            }
        }
        Ok(())
    }

    /// Backward of the final norm run on every token (norm-then-average and attention pooling): d x from d of its
    /// output, with its own gradients where trained.
    fn final_norm_backward(
        &self,
        rec: &mut Recorder,
        f: &Forward,
        dnormed: &GpuTensor,
        grads: &Grads,
    ) -> Result<GpuTensor> {
        let (x, stats) = (&f.x_final, &f.final_stats);
        let dx = rec.gpu().empty(&x.shape)?;
        let rows = Rows::all(x);
        layernorm_backward(rec, x, rows, stats, &f.final_w, dnormed, None, &dx);
        self.ln_param_grads(rec, Site::FinalNorm, x, rows, stats, dnormed, grads)?;
        Ok(dx)
    }

    /// Whether a training forward must keep activations for `grads` (a head-only tuning needs none).
    pub fn keeps_activations(&self, grads: &BTreeMap<String, GpuTensor>) -> bool {
        self.backward_floor(grads.keys()).is_some()
    }

    /// The lowest layer the backward must reach for `grads`: `None` when only the head is trained, the depth when
    /// the final norm is, `l` for the lowest trained `blocks.{l}.*`, 0 for tensors before the blocks (prompts,
    /// embeddings) or when attention gradients are captured.
    fn backward_floor<'k>(&self, trained: impl Iterator<Item = &'k String>) -> Option<usize> {
        let depth = self.vit.config.depth;
        if self.attn_grads.is_some() {
            return Some(0);
        }
        trained
            .filter_map(|k| {
                if k.starts_with("head.") {
                    None
                } else if k.starts_with("norm.")
                    || k.starts_with("fc_norm.")
                    || k.starts_with("attn_pool.")
                {
                    Some(depth)
                } else if let Some(rest) = k.strip_prefix("blocks.") {
                    rest.split('.')
                        .next()
                        .and_then(|i| i.parse().ok())
                        .or(Some(0))
                } else {
                    Some(0)
                }
            })
            .min()
    }

    /// dW += scale·dyᵀ·x and db += scale·Σ dy for `{prefix}.weight/bias` where they are trained; `x` is the
    /// layer's saved input, `None` when the forward kept none (it must have, if the weight is trained).
    fn linear_param_grads(
        &self,
        rec: &mut Recorder,
        prefix: &str,
        dy: &GpuTensor,
        x: Option<&GpuTensor>,
        grads: &Grads,
        scale: f32,
    ) -> Result<()> {
        if let Some(g) = grads.get(&format!("{prefix}.weight")) {
            let x = x.ok_or_else(|| {
                Error::Input(format!(
                    "internal: the forward kept no input for `{prefix}.weight`'s gradient"
                ))
            })?;
            linear_weight_grad(rec, dy, x, g, scale);
        }
        if let Some(g) = grads.get(&format!("{prefix}.bias")) {
            let unfolded = self.is_tuned(&format!("{prefix}.weight"));
            match self.layer_scale_of(prefix)? {
                // The bias entered as γ⊙b: db = γ⊙Σ dy (with the weight tuned too, dy is already γ⊙dy).
                Some(ls) if !unfolded => {
                    let sum = zeros(rec, &g.shape)?;
                    column_sum_into(rec, dy, &sum, scale);
                    let scaled = scale_rows(rec, &sum, ls, None)?;
                    add_into(rec, g, &scaled);
                }
                _ => column_sum_into(rec, dy, g, scale),
            }
        }
        Ok(())
    }

    /// Backward of the linear layer `{prefix}` (y = x·Wᵀ + b, y and x of one shape but the last axis): returns
    /// dx and accumulates the weight and bias gradients where trained; `x` is the saved input, if kept.
    fn linear_backward(
        &self,
        rec: &mut Recorder,
        prefix: &str,
        dy: &GpuTensor,
        x: Option<&GpuTensor>,
        grads: &Grads,
    ) -> Result<GpuTensor> {
        self.scaled_linear_backward(rec, prefix, (dy, 1.0), x, grads, None)
    }

    /// Backward of y = scale·(x·Wᵀ + b) for the linear layer `{prefix}`: returns dx (added into `into` when
    /// given, else new) and accumulates the weight and bias gradients where trained; `x` is the saved input.
    #[allow(clippy::too_many_arguments)]
    pub fn scaled_linear_backward(
        &self,
        rec: &mut Recorder,
        prefix: &str,
        (dy, scale): (&GpuTensor, f32),
        x: Option<&GpuTensor>,
        grads: &Grads,
        into: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let mut shape = dy.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = w.shape[1];
        }
        let dx = linear_input_grad(rec, dy, w, scale, into, &shape)?;
        self.linear_param_grads(rec, prefix, dy, x, grads, scale)?;
        Ok(dx)
    }

    #[allow(clippy::too_many_arguments)]
    /// The parameter gradients of the LayerNorm at `site` (or of the method's affine folded into it).
    fn ln_param_grads(
        &self,
        rec: &mut Recorder,
        site: Site,
        x: &GpuTensor,
        rows: Rows,
        stats: &GpuTensor,
        dy: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        let prefix = self.site_module(site);
        let gw = grads.get(&format!("{prefix}.weight"));
        let gb = grads.get(&format!("{prefix}.bias"));
        let d = self.vit.config.dim;
        let affine = match self.affine(site)? {
            Some(af) => self.affine_grads(&af, grads)?,
            None => None,
        };
        if let Some((gs, gsh)) = affine {
            if gw.is_some() || gb.is_some() {
                return Err(Error::Internal(format!(
                    "`{prefix}` and the affine after it cannot both be trained"
                )));
            }
            // The gradients of the folded parameters, then back through the fold.
            let (sw, sb) = (zeros(rec, &[d])?, zeros(rec, &[d])?);
            layernorm_param_grads(rec, x, rows, stats, dy, &sw, &sb);
            fold_norm_grads(rec, self.pair(&prefix)?, (&sw, &sb), (gs, gsh));
            return Ok(());
        }
        self.norm_param_grads(rec, &prefix, x, rows, stats, dy, grads)
    }

    /// The gradients of the LayerNorm `{prefix}`'s weight and bias, where trained.
    #[allow(clippy::too_many_arguments)]
    fn norm_param_grads(
        &self,
        rec: &mut Recorder,
        prefix: &str,
        x: &GpuTensor,
        rows: Rows,
        stats: &GpuTensor,
        dy: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        let gw = grads.get(&format!("{prefix}.weight"));
        let gb = grads.get(&format!("{prefix}.bias"));
        let d = self.vit.config.dim;
        if gw.is_none() && gb.is_none() {
            return Ok(());
        }
        // The kernel writes both; an untrained one goes to a scratch buffer.
        let scratch_w;
        let scratch_b;
        let gw = match gw {
            Some(g) => g,
            None => {
                scratch_w = rec.gpu().empty(&[d])?;
                &scratch_w
            }
        };
        let gb = match gb {
            Some(g) => g,
            None => {
                scratch_b = rec.gpu().empty(&[d])?;
                &scratch_b
            }
        };
        layernorm_param_grads(rec, x, rows, stats, dy, gw, gb);
        Ok(())
    }

    fn block_backward(
        &self,
        rec: &mut Recorder,
        l: usize,
        a: &BlockActs,
        g: &GpuTensor,
        grads: &Grads,
    ) -> Result<GpuTensor> {
        let c = &self.vit.config;
        let hooks = self.hooks();
        let b = format!("blocks.{l}");
        let z = |site: Site| a.affine_in.get(&site);
        // MLP sub-block: xo = xm + fc2(gelu(fc1(LN2 xm))) [+ branch], each layer's output [+ affine]
        let dfc2 = self.affine_backward(rec, Site::Fc2(l), g, z(Site::Fc2(l)), grads)?;
        let dfc2 = dfc2.as_ref().unwrap_or(g);
        let dh = self.linear_backward(rec, &format!("{b}.mlp.fc2"), dfc2, a.h.as_ref(), grads)?;
        let dh = match &a.sub_norm {
            Some((hin, stats)) => {
                let prefix = format!("{b}.mlp.norm");
                let (w, _) = self.pair(&prefix)?;
                let dhin = rec.gpu().empty(&hin.shape)?;
                layernorm_backward(rec, hin, Rows::all(hin), stats, w, &dh, None, &dhin);
                self.norm_param_grads(rec, &prefix, hin, Rows::all(hin), stats, &dh, grads)?;
                dhin
            }
            None => dh,
        };
        let dh = if c.swiglu {
            let du = swiglu_backward(rec, &a.hpre, &dh)?;
            let dz = self.affine_backward(rec, Site::Fc1(l), &du, z(Site::Fc1(l)), grads)?;
            dz.unwrap_or(du)
        } else {
            match self.affine(Site::Fc1(l))? {
                // hpre is the affine's input z; GELU's was γ⊙z + β.
                Some(af) => {
                    let pre = scale_rows(rec, &a.hpre, af.scale, Some(af.shift))?;
                    activation_backward(rec, &pre, &dh, self.mlp_act());
                    let dz = self.affine_backward(rec, Site::Fc1(l), &dh, Some(&a.hpre), grads)?;
                    dz.unwrap_or(dh)
                }
                None => {
                    activation_backward(rec, &a.hpre, &dh, self.mlp_act());
                    dh
                }
            }
        };
        let dy2 = self.linear_backward(rec, &format!("{b}.mlp.fc1"), &dh, a.y2.as_ref(), grads)?;
        drop(dh);
        let mlp_reads = hooks.branch_input(Branch::Mlp);
        if mlp_reads == BranchInput::Normed {
            let y2 = a.y2.as_ref();
            hooks.branch_backward(
                self,
                rec,
                l,
                Branch::Mlp,
                &a.branches[1],
                g,
                y2,
                &dy2,
                grads,
            )?;
        }
        let dxm = rec.gpu().empty(&a.xm.shape)?;
        layernorm_backward(
            rec,
            &a.xm,
            Rows::all(&a.xm),
            &a.st2,
            &a.n2w,
            &dy2,
            Some(g),
            &dxm,
        );
        self.ln_param_grads(
            rec,
            Site::Norm2(l),
            &a.xm,
            Rows::all(&a.xm),
            &a.st2,
            &dy2,
            grads,
        )?;
        if mlp_reads == BranchInput::Residual {
            let xm = Some(&a.xm);
            hooks.branch_backward(
                self,
                rec,
                l,
                Branch::Mlp,
                &a.branches[1],
                g,
                xm,
                &dxm,
                grads,
            )?;
        }
        // Attention sub-block: xm = x + proj(attn(qkv(LN1 x))) [+ branch]
        let dproj = self.affine_backward(rec, Site::Proj(l), &dxm, z(Site::Proj(l)), grads)?;
        let dproj = dproj.as_ref().unwrap_or(&dxm);
        let dctx =
            self.linear_backward(rec, &format!("{b}.attn.proj"), dproj, a.ctx.as_ref(), grads)?;
        let dqkv = match (&a.att, &self.attn_grads) {
            (SavedAttention::Probs(probs), Some(cell)) => {
                let mut v = cell.borrow_mut();
                attention_backward(rec, &a.qkv, probs, &dctx, c.heads, Some(&mut v))?
            }
            (SavedAttention::Probs(probs), None) => {
                attention_backward(rec, &a.qkv, probs, &dctx, c.heads, None)?
            }
            (SavedAttention::Lse(lse), None) => {
                flash_attention_backward(rec, &a.qkv, kept(&a.ctx, "context")?, lse, &dctx, c.heads)?
            }
            (SavedAttention::Lse(_), Some(_)) => {
                return Err(Error::Input(
                    "internal: attention gradients were asked for after a forward that kept no probabilities"
                        .into(),
                ))
            }
        };
        drop(dctx);
        // Back through RoPE: the gradients of q and k turned back (the rotation's transpose).
        if let Some(tables) = &self.vit.rope {
            rope(
                rec,
                &dqkv,
                tables,
                self.layout().patch_rows().start,
                c.heads,
                true,
            )?;
        }
        let dz = self.affine_backward(rec, Site::Qkv(l), &dqkv, z(Site::Qkv(l)), grads)?;
        let dy1 = self.linear_backward(
            rec,
            &format!("{b}.attn.qkv"),
            dz.as_ref().unwrap_or(&dqkv),
            a.y1.as_ref(),
            grads,
        )?;
        hooks.qkv_backward(self, rec, l, &a.qkv_hook, &dqkv, a.y1.as_ref(), &dy1, grads)?;
        drop(dqkv);
        let attn_reads = hooks.branch_input(Branch::Attention);
        let attn = &a.branches[0];
        if attn_reads == BranchInput::Normed {
            let y1 = a.y1.as_ref();
            hooks.branch_backward(self, rec, l, Branch::Attention, attn, &dxm, y1, &dy1, grads)?;
        }
        let dx = rec.gpu().empty(&a.x.shape)?;
        layernorm_backward(
            rec,
            &a.x,
            Rows::all(&a.x),
            &a.st1,
            &a.n1w,
            &dy1,
            Some(&dxm),
            &dx,
        );
        self.ln_param_grads(
            rec,
            Site::Norm1(l),
            &a.x,
            Rows::all(&a.x),
            &a.st1,
            &dy1,
            grads,
        )?;
        if attn_reads == BranchInput::Residual {
            let x = Some(&a.x);
            hooks.branch_backward(self, rec, l, Branch::Attention, attn, &dxm, x, &dx, grads)?;
        }
        Ok(dx)
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
