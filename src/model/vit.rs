//! A backbone's weights on the GPU and the inference entry point (one recording, one submit per micro-batch).

use std::collections::BTreeMap;

use super::graph::Graph;
use super::hooks::Attached;
use super::hooks::TokenLayout;
use super::resample::resample_pos_embed;
use super::{Backbone, HostTensor, ViTConfig};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, KernelTimes, Recorder};
use crate::ops::rope::RopeTables;

/// timm resamples position embeddings with `F.interpolate(..., mode='bicubic', antialias=True)`.
pub const POS_EMBED_ANTIALIAS: bool = true;

/// A backbone's weights on the GPU (timm names), ready to run at one input size. The patch-embedding weight is
/// stored as the [D, 3·P·P] matrix of its im2col matmul; LayerScale γ is folded into `attn.proj` and `mlp.fc2`.
pub struct GpuViT {
    pub config: ViTConfig,
    pub input_size: (usize, usize),
    pub(crate) weights: BTreeMap<String, GpuTensor>,
    /// The rotary tables for the grid at `input_size`, when the backbone turns q and k.
    pub(crate) rope: Option<RopeTables>,
}

#[derive(Clone, Default)]
pub struct ForwardOptions<'a> {
    /// Read back the post-softmax attention of every layer.
    pub attn: bool,
    /// Tuned prompts, adapters and head to run with.
    pub tuning: Option<&'a Attached>,
    /// Collect per-kernel GPU times (where the adapter has timestamp queries).
    pub timing: bool,
    /// Largest micro-batch; the binding limit may make it smaller.
    pub max_batch: Option<usize>,
    /// Read back the patch embeddings (before the position embedding) and every block's output tokens.
    pub tokens: bool,
}

#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// Features entering the head [N, D].
    pub pooled: HostTensor,
    /// [N, C] when there is a head (the tuned one, else the checkpoint's).
    pub logits: Option<HostTensor>,
    /// Per layer, [N, heads, T, T], when asked for.
    pub attn: Vec<HostTensor>,
    /// With `tokens`: [N, m, D] patch embeddings before the position embedding, then each block's output
    /// [N, T, D].
    pub tokens: Vec<HostTensor>,
    pub times: Option<KernelTimes>,
}

impl GpuViT {
    /// Uploads `backbone` to run at `input_size` (H, W); position embeddings are resampled when it differs
    /// from the checkpoint's own size.
    /// The first model a device meets chooses its kernels (`ops::autotune`: checked and timed once per adapter,
    /// then cached).
    pub fn new(gpu: &Gpu, backbone: &Backbone, input_size: Option<(usize, usize)>) -> Result<Self> {
        crate::ops::autotune::ensure(gpu);
        let c = backbone.config.clone();
        let input_size = input_size.unwrap_or(c.image_size);
        c.check_input_size(input_size)?;
        let mut weights = BTreeMap::new();
        let f16 = gpu.f16_weights();
        for (name, t) in &backbone.tensors {
            let (shape, data): (Vec<usize>, std::borrow::Cow<'_, [f32]>) = match name.as_str() {
                "pos_embed" => {
                    let to = (input_size.0 / c.patch, input_size.1 / c.patch);
                    let k = c.prefix_tokens();
                    let data =
                        resample_pos_embed(&t.data, c.dim, k, c.grid(), to, POS_EMBED_ANTIALIAS);
                    (vec![1, k + to.0 * to.1, c.dim], data.into())
                }
                "patch_embed.proj.weight" => {
                    (vec![c.dim, 3 * c.patch * c.patch], t.data.as_slice().into())
                }
                _ => match layer_scale_of(name) {
                    Some(gamma) if c.layer_scale => {
                        let g = &backbone.get(&gamma)?.data;
                        let cols = if t.shape.len() == 2 { t.shape[1] } else { 1 };
                        let data: Vec<f32> = t
                            .data
                            .iter()
                            .enumerate()
                            .map(|(i, v)| v * g[i / cols])
                            .collect();
                        (t.shape.clone(), data.into())
                    }
                    _ => (t.shape.clone(), t.data.as_slice().into()),
                },
            };
            let gt = if f16 && is_matmul_weight(name) {
                gpu.upload_f16(&shape, &data)?
            } else {
                gpu.upload(&shape, &data)?
            };
            weights.insert(name.clone(), gt);
        }
        let to = (input_size.0 / c.patch, input_size.1 / c.patch);
        if !c.abs_pos {
            // Without an absolute position embedding the tokens get zeros: one code path, nothing to train.
            let rows = c.prefix_tokens() + to.0 * to.1;
            weights.insert("pos_embed".into(), gpu.zeros(&[1, rows, c.dim])?);
        }
        let rope = match &c.rope {
            Some(r) => {
                let hd = c.dim / c.heads;
                let (cos, sin) = r.tables(to, hd);
                Some(RopeTables {
                    cos: gpu.upload(&[to.0 * to.1, hd], &cos)?,
                    sin: gpu.upload(&[to.0 * to.1, hd], &sin)?,
                    count: to.0 * to.1,
                    head_dim: hd,
                    per_head: false,
                    interleaved: !r.rotate_half,
                })
            }
            None => None,
        };
        Ok(Self {
            config: c,
            input_size,
            weights,
            rope,
        })
    }

    /// Bytes the backbone's weights take on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.values().map(|t| t.bytes()).sum()
    }

    pub fn grid(&self) -> (usize, usize) {
        (
            self.input_size.0 / self.config.patch,
            self.input_size.1 / self.config.patch,
        )
    }

    /// Where CLS, the registers, `prompts` prompt tokens and the patches lie in a sequence at this input size.
    pub fn layout(&self, prompts: usize) -> TokenLayout {
        let (gh, gw) = self.grid();
        TokenLayout {
            prefix: self.config.prefix_tokens(),
            registers: self.config.registers,
            prompts,
            patches: gh * gw,
        }
    }

    pub fn tokens(&self, prompts: usize) -> usize {
        self.layout(prompts).total()
    }

    /// Images per micro-batch so that no single buffer exceeds the adapter's binding limit.
    pub fn micro_batch(&self, gpu: &Gpu, prompts: usize, wanted: usize) -> usize {
        let c = &self.config;
        let t = self.tokens(prompts);
        let per_image = [
            t * c.mlp_hidden,
            c.heads * t * t,
            3 * c.dim * t,
            3 * c.patch * c.patch * t,
        ]
        .into_iter()
        .max()
        .unwrap_or(1)
            * 4;
        let fit = (gpu.max_binding_bytes() as usize / per_image.max(1)).max(1);
        wanted.min(fit).max(1)
    }

    /// Runs the backbone (with a tuning, if given) on normalised pixels [N, 3, H, W].
    pub fn forward(
        &self,
        gpu: &Gpu,
        pixels: &HostTensor,
        opts: &ForwardOptions,
    ) -> Result<ForwardOutput> {
        self.check_pixels(pixels)?;
        let graph = Graph::new(self, opts.tuning)?;
        let n = pixels.shape[0];
        let chunk = self.micro_batch(gpu, graph.prompts(), opts.max_batch.unwrap_or(32));
        let mut out: Option<ForwardOutput> = None;
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let part = slice_batch(pixels, start, end);
            let mut rec = Recorder::new(gpu).with_timing(opts.timing);
            let px = gpu.upload(&part.shape, &part.data)?;
            let f = graph.forward(&mut rec, &px, None, opts.attn, opts.tokens)?;
            let hp = rec.read(&f.pooled);
            let hl = f.logits.as_ref().map(|l| rec.read(l));
            let ha: Vec<_> = f
                .attn
                .iter()
                .map(|a| (rec.read(a), a.shape.clone()))
                .collect();
            let ht: Vec<_> = f
                .tokens
                .iter()
                .map(|a| (rec.read(a), a.shape.clone()))
                .collect();
            let m = self.grid().0 * self.grid().1;
            let pooled_shape = f.pooled.shape.clone();
            let logits_shape = f.logits.as_ref().map(|l| l.shape.clone());
            drop(f);
            let (mut outs, times) = rec.finish()?;
            let mut take = |i: usize| std::mem::take(&mut outs[i]);
            let r = ForwardOutput {
                pooled: HostTensor::new(pooled_shape, take(hp.0)),
                logits: hl
                    .zip(logits_shape)
                    .map(|(h, s)| HostTensor::new(s, take(h.0))),
                attn: ha
                    .into_iter()
                    .map(|(h, s)| HostTensor::new(s, take(h.0)))
                    .collect(),
                tokens: ht
                    .into_iter()
                    .enumerate()
                    .map(|(i, (h, s))| {
                        let shape = if i == 0 { vec![s[0] / m, m, s[1]] } else { s };
                        HostTensor::new(shape, take(h.0))
                    })
                    .collect(),
                times,
            };
            out = Some(match out {
                None => r,
                Some(acc) => concat_outputs(acc, r),
            });
        }
        out.ok_or_else(|| Error::Input("no images to run".into()))
    }

    pub(crate) fn check_pixels(&self, pixels: &HostTensor) -> Result<()> {
        let (h, w) = self.input_size;
        if pixels.shape.len() != 4
            || pixels.shape[1] != 3
            || pixels.shape[2] != h
            || pixels.shape[3] != w
        {
            return Err(Error::Input(format!(
                "pixels have shape {:?}; expected [N, 3, {h}, {w}]",
                pixels.shape
            )));
        }
        Ok(())
    }
}

/// `blocks.{i}.attn.proj.*` and `blocks.{i}.mlp.fc2.*` sit under LayerScale γ (ls1, ls2).
fn layer_scale_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix("blocks.")?;
    let (i, sub) = rest.split_once('.')?;
    if sub.starts_with("attn.proj.") {
        Some(format!("blocks.{i}.ls1.gamma"))
    } else if sub.starts_with("mlp.fc2.") {
        Some(format!("blocks.{i}.ls2.gamma"))
    } else {
        None
    }
}

/// Images start..end of a batch.
pub(crate) fn slice_batch(t: &HostTensor, start: usize, end: usize) -> HostTensor {
    let per: usize = t.shape[1..].iter().product();
    let mut shape = t.shape.clone();
    shape[0] = end - start;
    HostTensor::new(shape, t.data[start * per..end * per].to_vec())
}

fn cat(a: HostTensor, b: HostTensor) -> HostTensor {
    let mut shape = a.shape.clone();
    shape[0] += b.shape[0];
    let mut data = a.data;
    data.extend(b.data);
    HostTensor::new(shape, data)
}

fn concat_outputs(a: ForwardOutput, b: ForwardOutput) -> ForwardOutput {
    let times = match (a.times, b.times) {
        (Some(mut x), Some(y)) => {
            x.add(&y);
            Some(x)
        }
        (x, y) => x.or(y),
    };
    ForwardOutput {
        pooled: cat(a.pooled, b.pooled),
        logits: match (a.logits, b.logits) {
            (Some(x), Some(y)) => Some(cat(x, y)),
            _ => None,
        },
        attn: a
            .attn
            .into_iter()
            .zip(b.attn)
            .map(|(x, y)| cat(x, y))
            .collect(),
        tokens: a
            .tokens
            .into_iter()
            .zip(b.tokens)
            .map(|(x, y)| cat(x, y))
            .collect(),
        times,
    }
}

/// Frozen weights that only ever reach the GPU as a matmul's B operand (the patch embedding and the blocks' linear
/// layers): with f16 weights on, these are stored in half precision. Heads, norms, biases and embeddings stay f32.
fn is_matmul_weight(name: &str) -> bool {
    name == "patch_embed.proj.weight"
        || (name.starts_with("blocks.")
            && [
                ".attn.qkv.weight",
                ".attn.proj.weight",
                ".mlp.fc1.weight",
                ".mlp.fc2.weight",
            ]
            .iter()
            .any(|s| name.ends_with(s)))
}
