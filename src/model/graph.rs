//! The ViT graph with the tuning methods' hooks: forward (inference, or training with saved activations) and a
//! hand-written backward that computes input gradients through the frozen backbone and weight gradients only
//! for the tensors being trained.

use std::collections::BTreeMap;

use super::saved::WeightInputs;
use super::{GpuViT, HostTensor, Pooling};
use crate::error::{Error, Result};
use crate::gpu::{AttentionKernel, Gpu, GpuTensor, Recorder};
use crate::ops::activation::{activation, activation_backward, zeros};
use crate::ops::attention::{
    attention, attention_backward, flash_attention, flash_attention_backward,
};
use crate::ops::conv::{conv_tokens, conv_tokens_input_grad, conv_tokens_weight_grad};
use crate::ops::dropout::{dropout_rows, Band, Dropout};
use crate::ops::embed::{assemble_tokens, im2col, Prompts};
use crate::ops::layernorm::{
    layernorm, layernorm_backward, layernorm_param_grads, layernorm_rows, Rows,
};
use crate::ops::matmul::{
    linear, linear_input_grad, linear_keeping_pre_act, linear_weight_grad, Act, Layout, Matmul,
};
use crate::ops::reduce::{
    batch_sum_tokens_into, column_sum_into, gather_tokens, mean_tokens, mean_tokens_backward,
    write_tokens, zero_tokens,
};
use crate::tuning::convpass::BRANCHES;
use crate::tuning::{lora, Method, MethodOptions, Tuning};

/// A tuning's tensors on the GPU. For bitfit and full fine-tuning these replace the backbone's own tensors.
pub struct GpuTuning {
    pub method: Method,
    pub options: MethodOptions,
    pub num_classes: usize,
    pub params: BTreeMap<String, GpuTensor>,
    /// The tuned file's shape of each tensor (the patch-embedding weight is kept as a matrix on the GPU).
    pub shapes: BTreeMap<String, Vec<usize>>,
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
        if self.method.uses_prompts() {
            self.options.prompts
        } else {
            0
        }
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
    qkv: GpuTensor,
    att: SavedAttention,
    ctx: Option<GpuTensor>,
    xm: GpuTensor,
    y2: Option<GpuTensor>,
    st2: GpuTensor,
    hpre: GpuTensor,
    h: Option<GpuTensor>,
    lora_u: Vec<(usize, GpuTensor)>,
    adapt: Option<(GpuTensor, GpuTensor)>,
    conv: [Option<ConvActs>; 2],
}

/// What attention keeps for its backward: the probabilities [N,H,T,T] (matmul path), or the per-row log-sum-exp
/// [N·H,T] of the fused kernel.
enum SavedAttention {
    Probs(GpuTensor),
    Lse(GpuTensor),
}

struct ConvActs {
    dpre: GpuTensor,
    d: GpuTensor,
    cpre: GpuTensor,
    e: GpuTensor,
}

/// What a forward recording produced (and, when training, saved).
pub(crate) struct Forward {
    blocks: Vec<BlockActs>,
    cols: Option<GpuTensor>,
    x_final: GpuTensor,
    pool_in: Option<GpuTensor>,
    final_stats: GpuTensor,
    pub pooled: GpuTensor,
    pub logits: Option<GpuTensor>,
    pub attn: Vec<GpuTensor>,
    /// With `want_tokens`: the patch embeddings before the position embedding [n·m, D], then every block's
    /// output [n, T, D].
    pub tokens: Vec<GpuTensor>,
}

/// The backbone with an optional tuning: resolves tensors by name (tuned first) and records passes.
pub(crate) struct Graph<'a> {
    vit: &'a GpuViT,
    tuning: Option<&'a GpuTuning>,
    /// When set, the backward keeps d(attention probabilities) of every layer here (last layer first).
    pub attn_grads: Option<std::cell::RefCell<Vec<GpuTensor>>>,
    /// Training dropout for the next micro-batch: (step seed, index of its first image in the batch). `None`,
    /// or a method option of 0, trains without dropout.
    pub dropout_key: Option<(u32, usize)>,
}

/// Dropout tags: the prompts entering layer l use tag l; Convpass bypasses use CONVPASS_TAG + 2·l + branch.
const CONVPASS_TAG: u32 = 1 << 16;

impl<'a> Graph<'a> {
    pub fn new(vit: &'a GpuViT, tuning: Option<&'a GpuTuning>) -> Result<Self> {
        if let Some(t) = tuning {
            if t.method == Method::Full && vit.input_size != vit.config.image_size {
                return Err(Error::Input(format!(
                    "full fine-tuning runs at the checkpoint's own input size {:?}",
                    vit.config.image_size
                )));
            }
        }
        Ok(Self {
            vit,
            tuning,
            attn_grads: None,
            dropout_key: None,
        })
    }

    fn method(&self) -> Option<Method> {
        self.tuning.map(|t| t.method)
    }

    pub fn prompts(&self) -> usize {
        self.tuning.map(|t| t.prompts()).unwrap_or(0)
    }

    fn w(&self, name: &str) -> Result<&'a GpuTensor> {
        if let Some(t) = self.tuning.and_then(|t| t.params.get(name)) {
            return Ok(t);
        }
        self.vit.weights.get(name).ok_or_else(|| {
            Error::Input(format!(
                "the backbone has no tensor `{name}` (needed by the forward pass)"
            ))
        })
    }

    fn pair(&self, prefix: &str) -> Result<(&'a GpuTensor, &'a GpuTensor)> {
        Ok((
            self.w(&format!("{prefix}.weight"))?,
            self.w(&format!("{prefix}.bias"))?,
        ))
    }

    fn head(&self) -> Option<(&'a GpuTensor, &'a GpuTensor)> {
        self.pair("head").ok()
    }

    fn opts(&self) -> Option<&'a MethodOptions> {
        self.tuning.map(|t| &t.options)
    }

    /// The dropout a training forward and its backward apply, if any.
    fn dropout(&self) -> Option<Dropout> {
        let (seed, first_image) = self.dropout_key?;
        let rate = self.opts()?.dropout;
        (rate > 0.0 && MethodOptions::has_dropout(self.method()?)).then_some(Dropout {
            rate,
            seed,
            first_image,
        })
    }

    /// The prompt rows of x [n, T, D].
    fn prompt_band(&self, x: &GpuTensor) -> Band {
        Band {
            images: x.shape[0],
            tokens: x.shape[1],
            start: 1,
            count: self.prompts(),
            dim: self.vit.config.dim,
        }
    }

    /// Records the forward pass of a micro-batch `px` [n,3,H,W]. With `train`, the gradients the backward will
    /// compute (by tensor name; empty for input gradients only), it keeps what that backward needs.
    pub fn forward(
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
        let (pw, pb) = self.pair("patch_embed.proj")?;
        let patches = linear(rec, &cols, pw, Some(pb), Act::None, None)?;
        let prompt_tokens = if p > 0 {
            Some(self.w("prompt_embeddings")?)
        } else {
            None
        };
        let mut x = assemble_tokens(
            rec,
            &patches,
            n,
            self.w("cls_token")?,
            self.w("pos_embed")?,
            prompt_tokens.map(|t| Prompts {
                tokens: t,
                count: p,
                per_image: false,
            }),
        )?;
        let dropout = if train.is_some() {
            self.dropout()
        } else {
            None
        };
        if let (Some(d), true) = (&dropout, p > 0) {
            dropout_rows(rec, &x, self.prompt_band(&x), d, 0);
        }
        let mut tokens = Vec::new();
        if want_tokens {
            tokens.push(patches);
        } else {
            drop(patches);
        }
        let deep = if self.method() == Some(Method::VptDeep) && c.depth > 1 {
            Some(self.w("deep_prompt_embeddings")?)
        } else {
            None
        };
        let mut blocks = Vec::new();
        let mut attn = Vec::new();
        // The probabilities are materialised only where maps or their gradients are wanted.
        let maps = want_attn || self.attn_grads.is_some();
        let fused = !maps && rec.gpu().attention_kernel() == AttentionKernel::Fused;
        for l in 0..c.depth {
            if let (Some(deep), true) = (deep, l > 0) {
                write_tokens(rec, &x, 1, p, deep, (l - 1) * p);
                if let Some(d) = &dropout {
                    dropout_rows(rec, &x, self.prompt_band(&x), d, l as u32);
                }
            }
            let keep = train.map(|_| WeightInputs::for_block(l, &trained, fused));
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
        let (fw, fb) = match c.pooling {
            Pooling::Token => self.pair("norm")?,
            Pooling::Avg => self.pair("fc_norm")?,
        };
        let (pooled, final_stats, pool_in) = match c.pooling {
            Pooling::Token => {
                let o = layernorm_rows(rec, &x, n, 0, t * c.dim, fw, fb, c.eps)?;
                (o.y, o.stats, None)
            }
            Pooling::Avg => {
                let m = mean_tokens(rec, &x)?;
                let o = layernorm(rec, &m, fw, fb, c.eps)?;
                (o.y, o.stats, Some(m))
            }
        };
        let logits = match self.head() {
            Some((hw, hb)) => Some(linear(rec, &pooled, hw, Some(hb), Act::None, None)?),
            None => None,
        };
        Ok(Forward {
            blocks,
            cols: trained("patch_embed.proj.weight").then_some(cols),
            x_final: x,
            pool_in,
            final_stats,
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
        let (n1w, n1b) = self.pair(&format!("{b}.norm1"))?;
        let ln1 = layernorm(rec, &x, n1w, n1b, c.eps)?;
        let (qw, qb) = self.pair(&format!("{b}.attn.qkv"))?;
        let qkv = linear(rec, &ln1.y, qw, Some(qb), Act::None, None)?;
        let mut lora_u = Vec::new();
        if let (Some(Method::Lora), Some(o)) = (self.method(), self.opts()) {
            let rows = qkv.numel() / (3 * c.dim);
            for slot in o.lora_slots() {
                let (an, bn) = lora::names(l, slot);
                let u = linear(rec, &ln1.y, self.w(&an)?, None, Act::None, None)?;
                let mut mm = Matmul::new(
                    (rows, c.dim, o.rank),
                    (&u, Layout::row_major(o.rank, 0)),
                    (self.w(&bn)?, Layout::transposed(o.rank, 0)),
                    (
                        &qkv,
                        Layout {
                            off: slot * c.dim,
                            rs: 3 * c.dim,
                            cs: 1,
                            b1: 0,
                            b2: 0,
                        },
                    ),
                );
                mm.alpha = o.alpha / o.rank as f32;
                mm.accumulate = true;
                mm.record(rec);
                lora_u.push((slot, u));
            }
        }
        let (context, saved) = if maps || rec.gpu().attention_kernel() == AttentionKernel::Matmul {
            let a = attention(rec, &qkv, c.heads)?;
            (a.context, SavedAttention::Probs(a.probs))
        } else {
            let a = flash_attention(rec, &qkv, c.heads)?;
            (a.context, SavedAttention::Lse(a.lse))
        };
        let (pw, pb) = self.pair(&format!("{b}.attn.proj"))?;
        let xm = linear(rec, &context, pw, Some(pb), Act::None, Some(&x))?;
        let convpass = self.method() == Some(Method::Convpass);
        let conv1 = if convpass {
            Some(self.convpass_forward(rec, l, 0, &ln1.y, &xm, train)?)
        } else {
            None
        };
        let (n2w, n2b) = self.pair(&format!("{b}.norm2"))?;
        let ln2 = layernorm(rec, &xm, n2w, n2b, c.eps)?;
        let (f1w, f1b) = self.pair(&format!("{b}.mlp.fc1"))?;
        let (hpre, h) = if train {
            let (hpre, h) = linear_keeping_pre_act(rec, &ln2.y, f1w, Some(f1b), Act::Gelu)?;
            (Some(hpre), h)
        } else {
            (None, linear(rec, &ln2.y, f1w, Some(f1b), Act::Gelu, None)?)
        };
        let (f2w, f2b) = self.pair(&format!("{b}.mlp.fc2"))?;
        let xo = linear(rec, &h, f2w, Some(f2b), Act::None, Some(&xm))?;
        let adapt = if self.method() == Some(Method::Adaptformer) {
            let o = self
                .opts()
                .ok_or_else(|| Error::Input("AdaptFormer without options".into()))?;
            let a = format!("{b}.adaptmlp");
            let (dw, db) = self.pair(&format!("{a}.down_proj"))?;
            let (apre, act) = if train {
                let (apre, act) = linear_keeping_pre_act(rec, &xm, dw, Some(db), Act::Relu)?;
                (Some(apre), act)
            } else {
                (None, linear(rec, &xm, dw, Some(db), Act::Relu, None)?)
            };
            let (uw, ub) = self.pair(&format!("{a}.up_proj"))?;
            let rows = xo.numel() / c.dim;
            let mut mm = Matmul::new(
                (rows, c.dim, o.bottleneck),
                (&act, Layout::row_major(o.bottleneck, 0)),
                (uw, Layout::transposed(o.bottleneck, 0)),
                (&xo, Layout::row_major(c.dim, 0)),
            );
            mm.bias = Some((ub, 0));
            mm.alpha = o.scale;
            mm.accumulate = true;
            mm.record(rec);
            apre.map(|p| (p, act))
        } else {
            None
        };
        let conv2 = if convpass {
            Some(self.convpass_forward(rec, l, 1, &ln2.y, &xo, train)?)
        } else {
            None
        };
        let probs = match &saved {
            SavedAttention::Probs(p) => Some(p.clone()),
            SavedAttention::Lse(_) => None,
        };
        let acts = match keep {
            Some(keep) => Some(BlockActs {
                x,
                y1: keep.y1.then_some(ln1.y),
                st1: ln1.stats,
                qkv,
                att: saved,
                ctx: keep.ctx.then_some(context),
                xm,
                y2: keep.y2.then_some(ln2.y),
                st2: ln2.stats,
                hpre: hpre
                    .ok_or_else(|| Error::Input("internal: no pre-activation saved".into()))?,
                h: keep.h.then_some(h),
                lora_u,
                adapt,
                conv: [conv1.flatten(), conv2.flatten()],
            }),
            None => None,
        };
        Ok((xo, acts, probs))
    }

    /// out += s · up(QuickGELU(conv(QuickGELU(down(z))))); returns the saved activations when training.
    fn convpass_forward(
        &self,
        rec: &mut Recorder,
        l: usize,
        branch: usize,
        z: &GpuTensor,
        out: &GpuTensor,
        train: bool,
    ) -> Result<Option<ConvActs>> {
        let c = &self.vit.config;
        let o = self
            .opts()
            .ok_or_else(|| Error::Input("Convpass without options".into()))?;
        let b = format!("blocks.{l}.{}", BRANCHES[branch]);
        let (dw, db) = self.pair(&format!("{b}.adapter_down"))?;
        let (cw, cb) = self.pair(&format!("{b}.adapter_conv"))?;
        let (uw, ub) = self.pair(&format!("{b}.adapter_up"))?;
        let (dpre, d) = linear_keeping_pre_act(rec, z, dw, Some(db), Act::QuickGelu)?;
        let cpre = conv_tokens(rec, &d, cw, cb, 1 + self.prompts(), self.vit.grid())?;
        let e = activation(rec, &cpre, Act::QuickGelu)?;
        let rows = out.numel() / c.dim;
        if let (Some(d), true) = (self.dropout(), train) {
            dropout_rows(
                rec,
                &e,
                convpass_band(out, o.convpass_dim),
                &d,
                convpass_tag(l, branch),
            );
        }
        let mut mm = Matmul::new(
            (rows, c.dim, o.convpass_dim),
            (&e, Layout::row_major(o.convpass_dim, 0)),
            (uw, Layout::transposed(o.convpass_dim, 0)),
            (out, Layout::row_major(c.dim, 0)),
        );
        mm.bias = Some((ub, 0));
        mm.alpha = o.scale;
        mm.accumulate = true;
        mm.record(rec);
        Ok(train.then_some(ConvActs { dpre, d, cpre, e }))
    }

    /// Records the backward of a training forward from d logits, accumulating into `grads` (by tensor name;
    /// a tensor without an entry is not trained and gets no weight gradient).
    pub fn backward(
        &self,
        rec: &mut Recorder,
        f: &Forward,
        dlogits: &GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<()> {
        let c = &self.vit.config;
        let (hw, _) = self
            .head()
            .ok_or_else(|| Error::Input("training needs a head (head.weight)".into()))?;
        let n = f.pooled.shape[0];
        let t = f.x_final.shape[1];
        let p = self.prompts();
        self.linear_param_grads(rec, "head", dlogits, Some(&f.pooled), grads, 1.0)?;
        // Only as deep as a trained tensor (or a captured attention gradient) needs.
        let Some(floor) = self.backward_floor(grads) else {
            return Ok(());
        };
        let dpooled = linear_input_grad(rec, dlogits, hw, 1.0, None, &f.pooled.shape)?;
        let (fw, name) = match c.pooling {
            Pooling::Token => (self.w("norm.weight")?, "norm"),
            Pooling::Avg => (self.w("fc_norm.weight")?, "fc_norm"),
        };
        let mut dx = match (&f.pool_in, c.pooling) {
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
                self.ln_param_grads(rec, name, m, Rows::all(m), &f.final_stats, &dpooled, grads)?;
                mean_tokens_backward(rec, &dm, t)?
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
                self.ln_param_grads(rec, name, &f.x_final, rows, &f.final_stats, &dpooled, grads)?;
                dx
            }
        };
        if floor > 0 {
            for l in (floor..c.depth).rev() {
                dx = self.block_backward(rec, l, &f.blocks[l], &dx, grads)?;
            }
            return Ok(());
        }
        let deep = self.method() == Some(Method::VptDeep);
        let dropout = self.dropout();
        for l in (0..c.depth).rev() {
            dx = self.block_backward(rec, l, &f.blocks[l], &dx, grads)?;
            if deep && l > 0 {
                if let Some(d) = &dropout {
                    dropout_rows(rec, &dx, self.prompt_band(&dx), d, l as u32);
                }
                if let Some(g) = grads.get("deep_prompt_embeddings") {
                    batch_sum_tokens_into(rec, &dx, 1, p, g, (l - 1) * p);
                }
                zero_tokens(rec, &dx, 1, p);
            }
        }
        // Token assembly: x0 = [CLS + pos₀, dropout(prompts), patches + pos₁…].
        if let Some(g) = grads.get("prompt_embeddings") {
            if let Some(d) = &dropout {
                dropout_rows(rec, &dx, self.prompt_band(&dx), d, 0);
            }
            batch_sum_tokens_into(rec, &dx, 1, p, g, 0);
        }
        if let Some(g) = grads.get("cls_token") {
            batch_sum_tokens_into(rec, &dx, 0, 1, g, 0);
        }
        let m = t - 1 - p;
        if let Some(g) = grads.get("pos_embed") {
            batch_sum_tokens_into(rec, &dx, 0, 1, g, 0);
            batch_sum_tokens_into(rec, &dx, 1 + p, m, g, 1);
        }
        let pw = grads.get("patch_embed.proj.weight");
        let pb = grads.get("patch_embed.proj.bias");
        if pw.is_some() || pb.is_some() {
            let dpatch = gather_tokens(rec, &dx, 1 + p, m)?;
            if let (Some(g), Some(cols)) = (pw, &f.cols) {
                linear_weight_grad(rec, &dpatch, cols, g, 1.0);
            }
            if let Some(g) = pb {
                column_sum_into(rec, &dpatch, g, 1.0);
            }
        }
        Ok(())
    }

    /// Whether a training forward must keep activations for `grads` (a head-only tuning needs none).
    pub fn keeps_activations(&self, grads: &BTreeMap<String, GpuTensor>) -> bool {
        self.backward_floor(grads).is_some()
    }

    /// The lowest layer the backward must reach for `grads`: `None` when only the head is trained, the depth when
    /// the final norm is, `l` for the lowest trained `blocks.{l}.*`, 0 for tensors before the blocks (prompts,
    /// embeddings) or when attention gradients are captured.
    fn backward_floor(&self, grads: &BTreeMap<String, GpuTensor>) -> Option<usize> {
        let depth = self.vit.config.depth;
        if self.attn_grads.is_some() {
            return Some(0);
        }
        grads
            .keys()
            .filter_map(|k| {
                if k.starts_with("head.") {
                    None
                } else if k.starts_with("norm.") || k.starts_with("fc_norm.") {
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
        grads: &BTreeMap<String, GpuTensor>,
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
            column_sum_into(rec, dy, g, scale);
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
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<GpuTensor> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let mut shape = dy.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = w.shape[1];
        }
        let dx = linear_input_grad(rec, dy, w, 1.0, None, &shape)?;
        self.linear_param_grads(rec, prefix, dy, x, grads, 1.0)?;
        Ok(dx)
    }

    #[allow(clippy::too_many_arguments)]
    fn ln_param_grads(
        &self,
        rec: &mut Recorder,
        prefix: &str,
        x: &GpuTensor,
        rows: Rows,
        stats: &GpuTensor,
        dy: &GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<()> {
        let gw = grads.get(&format!("{prefix}.weight"));
        let gb = grads.get(&format!("{prefix}.bias"));
        if gw.is_none() && gb.is_none() {
            return Ok(());
        }
        let d = self.vit.config.dim;
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
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<GpuTensor> {
        let c = &self.vit.config;
        let b = format!("blocks.{l}");
        // MLP sub-block: xo = xm + fc2(gelu(fc1(LN2 xm))) [+ adapters]
        let dh = self.linear_backward(rec, &format!("{b}.mlp.fc2"), g, a.h.as_ref(), grads)?;
        activation_backward(rec, &a.hpre, &dh, Act::Gelu);
        let dy2 = self.linear_backward(rec, &format!("{b}.mlp.fc1"), &dh, a.y2.as_ref(), grads)?;
        drop(dh);
        if let Some(ca) = &a.conv[1] {
            self.convpass_backward(rec, l, 1, g, a.y2.as_ref(), ca, &dy2, grads)?;
        }
        let (n2w, _) = self.pair(&format!("{b}.norm2"))?;
        let dxm = rec.gpu().empty(&a.xm.shape)?;
        layernorm_backward(
            rec,
            &a.xm,
            Rows::all(&a.xm),
            &a.st2,
            n2w,
            &dy2,
            Some(g),
            &dxm,
        );
        self.ln_param_grads(
            rec,
            &format!("{b}.norm2"),
            &a.xm,
            Rows::all(&a.xm),
            &a.st2,
            &dy2,
            grads,
        )?;
        if let Some((apre, act)) = &a.adapt {
            let o = self
                .opts()
                .ok_or_else(|| Error::Input("AdaptFormer without options".into()))?;
            let ad = format!("{b}.adaptmlp");
            let (uw, _) = self.pair(&format!("{ad}.up_proj"))?;
            self.linear_param_grads(rec, &format!("{ad}.up_proj"), g, Some(act), grads, o.scale)?;
            let da = linear_input_grad(rec, g, uw, o.scale, None, &act.shape)?;
            activation_backward(rec, apre, &da, Act::Relu);
            let (dw, _) = self.pair(&format!("{ad}.down_proj"))?;
            self.linear_param_grads(
                rec,
                &format!("{ad}.down_proj"),
                &da,
                Some(&a.xm),
                grads,
                1.0,
            )?;
            linear_input_grad(rec, &da, dw, 1.0, Some(&dxm), &a.xm.shape)?;
        }
        // Attention sub-block: xm = x + proj(attn(LN1 x)) [+ LoRA inside qkv, + Convpass]
        let dctx =
            self.linear_backward(rec, &format!("{b}.attn.proj"), &dxm, a.ctx.as_ref(), grads)?;
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
        let dy1 =
            self.linear_backward(rec, &format!("{b}.attn.qkv"), &dqkv, a.y1.as_ref(), grads)?;
        if let Some(o) = self.opts() {
            let s = o.alpha / o.rank.max(1) as f32;
            let rows = a.x.numel() / c.dim;
            for (slot, u) in &a.lora_u {
                let (an, bn) = lora::names(l, *slot);
                let dq_t = Layout {
                    off: slot * c.dim,
                    rs: 1,
                    cs: 3 * c.dim,
                    b1: 0,
                    b2: 0,
                };
                let dq = Layout {
                    off: slot * c.dim,
                    rs: 3 * c.dim,
                    cs: 1,
                    b1: 0,
                    b2: 0,
                };
                if let Some(gb) = grads.get(&bn) {
                    let mut mm = Matmul::new(
                        (c.dim, o.rank, rows),
                        (&dqkv, dq_t),
                        (u, Layout::row_major(o.rank, 0)),
                        (gb, Layout::row_major(o.rank, 0)),
                    );
                    mm.alpha = s;
                    mm.accumulate = true;
                    mm.record(rec);
                }
                let du = rec.gpu().empty(&u.shape)?;
                let mut mm = Matmul::new(
                    (rows, o.rank, c.dim),
                    (&dqkv, dq),
                    (self.w(&bn)?, Layout::row_major(o.rank, 0)),
                    (&du, Layout::row_major(o.rank, 0)),
                );
                mm.alpha = s;
                mm.record(rec);
                if let Some(ga) = grads.get(&an) {
                    linear_weight_grad(rec, &du, kept(&a.y1, "LN1")?, ga, 1.0);
                }
                linear_input_grad(rec, &du, self.w(&an)?, 1.0, Some(&dy1), &a.x.shape)?;
            }
        }
        drop(dqkv);
        if let Some(ca) = &a.conv[0] {
            self.convpass_backward(rec, l, 0, &dxm, a.y1.as_ref(), ca, &dy1, grads)?;
        }
        let (n1w, _) = self.pair(&format!("{b}.norm1"))?;
        let dx = rec.gpu().empty(&a.x.shape)?;
        layernorm_backward(
            rec,
            &a.x,
            Rows::all(&a.x),
            &a.st1,
            n1w,
            &dy1,
            Some(&dxm),
            &dx,
        );
        self.ln_param_grads(
            rec,
            &format!("{b}.norm1"),
            &a.x,
            Rows::all(&a.x),
            &a.st1,
            &dy1,
            grads,
        )?;
        Ok(dx)
    }

    /// Backward of `convpass_forward`: g is the gradient of the sum the bypass was added to; adds into dz. `z`,
    /// the bypass's input, is kept only when its down-projection is trained (not for input gradients alone).
    #[allow(clippy::too_many_arguments)]
    fn convpass_backward(
        &self,
        rec: &mut Recorder,
        l: usize,
        branch: usize,
        g: &GpuTensor,
        z: Option<&GpuTensor>,
        a: &ConvActs,
        dz: &GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<()> {
        let o = self
            .opts()
            .ok_or_else(|| Error::Input("Convpass without options".into()))?;
        let b = format!("blocks.{l}.{}", BRANCHES[branch]);
        let prefix = 1 + self.prompts();
        let grid = self.vit.grid();
        let (uw, _) = self.pair(&format!("{b}.adapter_up"))?;
        self.linear_param_grads(
            rec,
            &format!("{b}.adapter_up"),
            g,
            Some(&a.e),
            grads,
            o.scale,
        )?;
        let de = linear_input_grad(rec, g, uw, o.scale, None, &a.e.shape)?;
        if let Some(d) = self.dropout() {
            dropout_rows(
                rec,
                &de,
                convpass_band(g, o.convpass_dim),
                &d,
                convpass_tag(l, branch),
            );
        }
        activation_backward(rec, &a.cpre, &de, Act::QuickGelu);
        if let Some(gw) = grads.get(&format!("{b}.adapter_conv.weight")) {
            conv_tokens_weight_grad(rec, &de, &a.d, gw, prefix, grid);
        }
        if let Some(gb) = grads.get(&format!("{b}.adapter_conv.bias")) {
            column_sum_into(rec, &de, gb, 1.0);
        }
        let (cw, _) = self.pair(&format!("{b}.adapter_conv"))?;
        let dd = conv_tokens_input_grad(rec, &de, cw, prefix, grid)?;
        activation_backward(rec, &a.dpre, &dd, Act::QuickGelu);
        let (dw, _) = self.pair(&format!("{b}.adapter_down"))?;
        self.linear_param_grads(rec, &format!("{b}.adapter_down"), &dd, z, grads, 1.0)?;
        linear_input_grad(rec, &dd, dw, 1.0, Some(dz), &dz.shape)?;
        Ok(())
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

/// Every row of a Convpass bypass's hidden activations, for the block tensor `out` [n, T, D] it adds into.
fn convpass_band(out: &GpuTensor, width: usize) -> Band {
    let images = out.shape[0];
    let tokens = out.numel() / out.shape.last().copied().unwrap_or(1) / images.max(1);
    Band {
        images,
        tokens,
        start: 0,
        count: tokens,
        dim: width,
    }
}

fn convpass_tag(l: usize, branch: usize) -> u32 {
    CONVPASS_TAG + 2 * l as u32 + branch as u32
}
