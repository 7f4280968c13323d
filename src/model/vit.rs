//! The ViT forward graph on the GPU: one recording (one submit) per micro-batch.

use super::resample::resample_pos_embed;
use super::{Backbone, HostTensor, Pooling, ViTConfig};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, KernelTimes, Recorder};
use crate::ops::attention::attention;
use crate::ops::embed::{assemble_tokens, patch_embed, Prompts};
use crate::ops::layernorm::{layernorm, layernorm_rows};
use crate::ops::matmul::linear;
use crate::ops::reduce::mean_tokens;

/// timm resamples position embeddings with `F.interpolate(..., mode='bicubic', antialias=True)`.
pub const POS_EMBED_ANTIALIAS: bool = true;

struct Block {
    norm1: (GpuTensor, GpuTensor),
    qkv: (GpuTensor, GpuTensor),
    proj: (GpuTensor, GpuTensor),
    norm2: (GpuTensor, GpuTensor),
    fc1: (GpuTensor, GpuTensor),
    fc2: (GpuTensor, GpuTensor),
}

/// A backbone's weights on the GPU, ready to run at one input size.
pub struct GpuViT {
    pub config: ViTConfig,
    pub input_size: (usize, usize),
    cls: GpuTensor,
    pos: GpuTensor,
    patch: (GpuTensor, GpuTensor),
    blocks: Vec<Block>,
    /// `norm` for token pooling, `fc_norm` for average pooling.
    final_norm: (GpuTensor, GpuTensor),
    head: Option<(GpuTensor, GpuTensor)>,
}

#[derive(Debug, Clone, Default)]
pub struct ForwardOptions<'a> {
    /// Read back the post-softmax attention of every layer.
    pub attn: bool,
    /// Prompt tokens [1, p, D] placed after CLS.
    pub prompts: Option<&'a HostTensor>,
    /// Collect per-kernel GPU times (where the adapter has timestamp queries).
    pub timing: bool,
    /// Largest micro-batch; the binding limit may make it smaller.
    pub max_batch: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// Features entering the head [N, D].
    pub pooled: HostTensor,
    /// [N, C] when the model has a head.
    pub logits: Option<HostTensor>,
    /// Per layer, [N, heads, T, T], when asked for.
    pub attn: Vec<HostTensor>,
    pub times: Option<KernelTimes>,
}

fn upload(gpu: &Gpu, b: &Backbone, name: &str) -> Result<GpuTensor> {
    let t = b.get(name)?;
    Ok(gpu.upload(&t.shape, &t.data)?)
}

fn upload_pair(gpu: &Gpu, b: &Backbone, prefix: &str) -> Result<(GpuTensor, GpuTensor)> {
    Ok((
        upload(gpu, b, &format!("{prefix}.weight"))?,
        upload(gpu, b, &format!("{prefix}.bias"))?,
    ))
}

/// A linear layer followed by LayerScale γ: γ⊙(Wx + b) = (γ⊙W)x + γ⊙b, folded into the weights.
fn upload_scaled(
    gpu: &Gpu,
    b: &Backbone,
    prefix: &str,
    gamma: Option<&str>,
) -> Result<(GpuTensor, GpuTensor)> {
    let Some(gamma) = gamma else {
        return upload_pair(gpu, b, prefix);
    };
    let g = &b.get(gamma)?.data;
    let w = b.get(&format!("{prefix}.weight"))?;
    let bias = b.get(&format!("{prefix}.bias"))?;
    let cols = w.shape[1];
    let wd: Vec<f32> = w
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| v * g[i / cols])
        .collect();
    let bd: Vec<f32> = bias.data.iter().zip(g).map(|(v, g)| v * g).collect();
    Ok((gpu.upload(&w.shape, &wd)?, gpu.upload(&bias.shape, &bd)?))
}

impl GpuViT {
    /// Uploads `backbone` to run at `input_size` (H, W); position embeddings are resampled when it differs
    /// from the checkpoint's own size.
    pub fn new(gpu: &Gpu, backbone: &Backbone, input_size: Option<(usize, usize)>) -> Result<Self> {
        let c = backbone.config.clone();
        let input_size = input_size.unwrap_or(c.image_size);
        if !input_size.0.is_multiple_of(c.patch)
            || !input_size.1.is_multiple_of(c.patch)
            || input_size.0 == 0
            || input_size.1 == 0
        {
            return Err(Error::Input(format!(
                "input size {}x{} is not a positive multiple of the patch size {}",
                input_size.0, input_size.1, c.patch
            )));
        }
        let pos = backbone.get("pos_embed")?;
        let to = (input_size.0 / c.patch, input_size.1 / c.patch);
        let pos_data = resample_pos_embed(&pos.data, c.dim, 1, c.grid(), to, POS_EMBED_ANTIALIAS);
        let pos = gpu.upload(&[1, 1 + to.0 * to.1, c.dim], &pos_data)?;
        let pw = backbone.get("patch_embed.proj.weight")?;
        let patch_w = gpu.upload(&[c.dim, 3 * c.patch * c.patch], &pw.data)?;
        let patch_b = upload(gpu, backbone, "patch_embed.proj.bias")?;
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let p = format!("blocks.{i}");
            let ls1 = c.layer_scale.then(|| format!("{p}.ls1.gamma"));
            let ls2 = c.layer_scale.then(|| format!("{p}.ls2.gamma"));
            blocks.push(Block {
                norm1: upload_pair(gpu, backbone, &format!("{p}.norm1"))?,
                qkv: upload_pair(gpu, backbone, &format!("{p}.attn.qkv"))?,
                proj: upload_scaled(gpu, backbone, &format!("{p}.attn.proj"), ls1.as_deref())?,
                norm2: upload_pair(gpu, backbone, &format!("{p}.norm2"))?,
                fc1: upload_pair(gpu, backbone, &format!("{p}.mlp.fc1"))?,
                fc2: upload_scaled(gpu, backbone, &format!("{p}.mlp.fc2"), ls2.as_deref())?,
            });
        }
        let final_norm = match c.pooling {
            Pooling::Token => upload_pair(gpu, backbone, "norm")?,
            Pooling::Avg => upload_pair(gpu, backbone, "fc_norm")?,
        };
        let head = if c.num_classes > 0 {
            Some(upload_pair(gpu, backbone, "head")?)
        } else {
            None
        };
        Ok(Self {
            config: c,
            input_size,
            cls: upload(gpu, backbone, "cls_token")?,
            pos,
            patch: (patch_w, patch_b),
            blocks,
            final_norm,
            head,
        })
    }

    pub fn tokens(&self, prompts: usize) -> usize {
        1 + prompts
            + (self.input_size.0 / self.config.patch) * (self.input_size.1 / self.config.patch)
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

    /// Runs the backbone (and head) on normalised pixels [N, 3, H, W].
    pub fn forward(
        &self,
        gpu: &Gpu,
        pixels: &HostTensor,
        opts: &ForwardOptions,
    ) -> Result<ForwardOutput> {
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
        let d = self.config.dim;
        if let Some(p) = opts.prompts {
            if p.shape.len() != 3 || p.shape[0] != 1 || p.shape[2] != d {
                return Err(Error::Input(format!(
                    "prompts have shape {:?}; expected [1, p, {d}]",
                    p.shape
                )));
            }
        }
        let n = pixels.shape[0];
        let p = opts.prompts.map(|p| p.shape[1]).unwrap_or(0);
        let chunk = self.micro_batch(gpu, p, opts.max_batch.unwrap_or(32));
        let prompts = match opts.prompts {
            Some(pt) => Some(gpu.upload(&pt.shape, &pt.data)?),
            None => None,
        };
        let img = 3 * h * w;
        let mut out: Option<ForwardOutput> = None;
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let part = HostTensor::new(
                vec![end - start, 3, h, w],
                pixels.data[start * img..end * img].to_vec(),
            );
            let r = self.forward_chunk(gpu, &part, prompts.as_ref(), opts)?;
            out = Some(match out {
                None => r,
                Some(acc) => concat_outputs(acc, r),
            });
        }
        out.ok_or_else(|| Error::Input("no images to run".into()))
    }

    fn forward_chunk(
        &self,
        gpu: &Gpu,
        pixels: &HostTensor,
        prompts: Option<&GpuTensor>,
        opts: &ForwardOptions,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let n = pixels.shape[0];
        let mut rec = Recorder::new(gpu).with_timing(opts.timing);
        let px = gpu.upload(&pixels.shape, &pixels.data)?;
        let patches = patch_embed(&mut rec, &px, &self.patch.0, &self.patch.1, c.patch)?;
        let prompts = prompts.map(|t| Prompts {
            tokens: t,
            count: t.shape[1],
            per_image: false,
        });
        let mut x = assemble_tokens(&mut rec, &patches, n, &self.cls, &self.pos, prompts)?;
        drop(patches);
        let mut attn_reads = Vec::new();
        for b in &self.blocks {
            let ln1 = layernorm(&mut rec, &x, &b.norm1.0, &b.norm1.1, c.eps)?;
            let qkv = linear(&mut rec, &ln1.y, &b.qkv.0, Some(&b.qkv.1), false, None)?;
            drop(ln1);
            let att = attention(&mut rec, &qkv, c.heads)?;
            drop(qkv);
            if opts.attn {
                attn_reads.push(rec.read(&att.probs));
            }
            x = linear(
                &mut rec,
                &att.context,
                &b.proj.0,
                Some(&b.proj.1),
                false,
                Some(&x),
            )?;
            drop(att);
            let ln2 = layernorm(&mut rec, &x, &b.norm2.0, &b.norm2.1, c.eps)?;
            let hidden = linear(&mut rec, &ln2.y, &b.fc1.0, Some(&b.fc1.1), true, None)?;
            drop(ln2);
            x = linear(&mut rec, &hidden, &b.fc2.0, Some(&b.fc2.1), false, Some(&x))?;
        }
        let t = x.shape[1];
        let pooled = match c.pooling {
            Pooling::Token => {
                layernorm_rows(
                    &mut rec,
                    &x,
                    n,
                    0,
                    t * c.dim,
                    &self.final_norm.0,
                    &self.final_norm.1,
                    c.eps,
                )?
                .y
            }
            Pooling::Avg => {
                let m = mean_tokens(&mut rec, &x)?;
                layernorm(&mut rec, &m, &self.final_norm.0, &self.final_norm.1, c.eps)?.y
            }
        };
        let pooled_read = rec.read(&pooled);
        let logits_read = match &self.head {
            Some((w, b)) => {
                let logits = linear(&mut rec, &pooled, w, Some(b), false, None)?;
                Some((rec.read(&logits), logits.shape.clone()))
            }
            None => None,
        };
        let (mut outs, times) = rec.finish()?;
        let take = |outs: &mut Vec<Vec<f32>>, i: usize| std::mem::take(&mut outs[i]);
        let attn = attn_reads
            .iter()
            .map(|h| HostTensor::new(vec![n, c.heads, t, t], take(&mut outs, h.0)))
            .collect();
        Ok(ForwardOutput {
            pooled: HostTensor::new(vec![n, c.dim], take(&mut outs, pooled_read.0)),
            logits: logits_read.map(|(h, shape)| HostTensor::new(shape, take(&mut outs, h.0))),
            attn,
            times,
        })
    }
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
        times,
    }
}
