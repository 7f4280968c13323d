//! The ViT forward as an ONNX graph, op for op as vitune's GPU graph computes it: patch embedding (a strided
//! convolution), CLS and prompts, pre-norm blocks with LayerScale where the backbone has it, token or average
//! pooling, the head, and softmax.

use std::collections::BTreeMap;

use tract_onnx::pb::GraphProto;

use crate::error::{Error, Result};
use crate::model::hooks::{Branch, BranchInput, Hooks};
use crate::model::resample::resample_pos_embed;
use crate::model::{HostTensor, MlpAct, Pooling, ViTConfig, POS_EMBED_ANTIALIAS};
use crate::onnx::{int, ints, value_info, ExportCtx, OnnxGraph, OnnxHooks};

/// A backbone's weights with everything foldable already folded in (timm names), and the method's structural
/// hooks for the rest.
pub struct VitExport<'a> {
    pub config: &'a ViTConfig,
    pub weights: &'a BTreeMap<String, HostTensor>,
    pub input_size: (usize, usize),
    /// The method's graph hooks: prompt count and what each branch reads.
    pub hooks: &'a dyn Hooks,
    pub onnx: Option<&'a dyn OnnxHooks>,
    pub cx: ExportCtx<'a>,
}

impl VitExport<'_> {
    fn w(&self, name: &str) -> Result<&HostTensor> {
        self.weights.get(name).ok_or_else(|| {
            Error::Input(format!(
                "the backbone has no tensor `{name}` (needed by the exported graph)"
            ))
        })
    }

    fn linear(&self, g: &mut OnnxGraph, x: &str, prefix: &str) -> Result<String> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let b = self.w(&format!("{prefix}.bias"))?;
        Ok(g.linear(x, w, Some(b)))
    }

    fn layer_norm(&self, g: &mut OnnxGraph, x: &str, prefix: &str) -> Result<String> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let b = self.w(&format!("{prefix}.bias"))?;
        Ok(g.layer_norm(x, w, b, self.config.eps))
    }

    /// `pixels` [N,3,H,W] → `pooled` [N,D], `logits` [N,C], `probabilities` [N,C].
    pub fn graph(&self) -> Result<GraphProto> {
        let c = self.config;
        let (h, w) = self.input_size;
        let grid = (h / c.patch, w / c.patch);
        let d = c.dim as i64;
        let mut g = OnnxGraph::default();

        g.scope("patch_embed");
        let pw = g.constant("proj.weight", self.w("patch_embed.proj.weight")?);
        let pb = g.constant("proj.bias", self.w("patch_embed.proj.bias")?);
        let p = c.patch as i64;
        let conv = g.node(
            "Conv",
            &["pixels", &pw, &pb],
            vec![ints("kernel_shape", &[p, p]), ints("strides", &[p, p])],
            None,
        );
        let flat = g.reshape(&conv, &[0, d, -1]);
        let patches = g.transpose(&flat, &[0, 2, 1]);

        // Position embeddings at the export size: the prefix tokens' (CLS, distillation token) are added to them,
        // the rest to the patches.
        let k = c.prefix_tokens();
        let pos = if c.abs_pos {
            let pos = self.w("pos_embed")?;
            resample_pos_embed(&pos.data, c.dim, k, c.grid(), grid, POS_EMBED_ANTIALIAS)
        } else {
            vec![0.0; (k + grid.0 * grid.1) * c.dim]
        };
        let mut prefix_pos = Vec::with_capacity(k * c.dim);
        for (row, name) in ["cls_token", "dist_token"].into_iter().take(k).enumerate() {
            let t = self.w(name)?;
            let rp = &pos[row * c.dim..(row + 1) * c.dim];
            prefix_pos.extend(t.data.iter().zip(rp).map(|(a, b)| a + b));
        }
        let patch_pos = HostTensor::new(vec![1, grid.0 * grid.1, c.dim], pos[k * c.dim..].to_vec());
        g.scope("");
        let patch_pos = g.constant("pos_embed.patches", &patch_pos);
        let patches = g.op("Add", &[&patches, &patch_pos]);
        let mut parts = Vec::new();
        if k > 0 {
            let prefix = g.constant(
                "prefix_tokens_with_pos",
                &HostTensor::new(vec![1, k, c.dim], prefix_pos),
            );
            parts.push(g.batched(&prefix, &patches, k, c.dim));
        }
        let prompts = self.hooks.prompts();
        let prompt_tokens = match self.onnx {
            Some(o) => o.prompt_tokens(&self.cx, &mut g)?,
            None => None,
        };
        if c.registers > 0 {
            let r = g.constant("reg_token", self.w("reg_token")?);
            parts.push(g.batched(&r, &patches, c.registers, c.dim));
        }
        if let Some(t) = prompt_tokens {
            parts.push(g.batched(&t, &patches, prompts, c.dim));
        }
        parts.push(patches);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut x = g.concat(&parts, 1);

        if c.pre_norm {
            x = self.layer_norm(&mut g, &x, "norm_pre")?;
        }
        let rope = self.rope_tables(&mut g);
        for l in 0..c.depth {
            x = self.block(&mut g, l, x, rope.as_ref())?;
        }

        g.scope("");
        let start = k + c.registers;
        let pooled = match c.pooling {
            Pooling::Token if c.distilled => {
                // CLS and the distillation token side by side, [N, 2D]: the head is timm's two heads averaged.
                let y = self.layer_norm(&mut g, &x, "norm")?;
                let both = g.tokens(&y, 0, Some(2));
                g.reshape(&both, &[0, -1])
            }
            Pooling::Token => {
                let y = self.layer_norm(&mut g, &x, "norm")?;
                let zero = g.int64s(&[0], true);
                g.node("Gather", &[&y, &zero], vec![int("axis", 1)], None)
            }
            Pooling::Avg => {
                let rest = g.tokens(&x, start, None);
                let m = g.node(
                    "ReduceMean",
                    &[&rest],
                    vec![ints("axes", &[1]), int("keepdims", 0)],
                    None,
                );
                self.layer_norm(&mut g, &m, "fc_norm")?
            }
            Pooling::NormAvg => {
                let y = self.layer_norm(&mut g, &x, "norm")?;
                let rest = g.tokens(&y, start, None);
                g.node(
                    "ReduceMean",
                    &[&rest],
                    vec![ints("axes", &[1]), int("keepdims", 0)],
                    None,
                )
            }
            Pooling::Map => {
                let y = self.layer_norm(&mut g, &x, "norm")?;
                let y = if start > 0 {
                    g.tokens(&y, start, None)
                } else {
                    y
                };
                self.attn_pool(&mut g, &y)?
            }
        };
        let pooled = g.node("Identity", &[&pooled], vec![], Some("pooled"));
        let logits = self.linear(&mut g, &pooled, "head")?;
        let logits = g.node("Identity", &[&logits], vec![], Some("logits"));
        g.node(
            "Softmax",
            &[&logits],
            vec![int("axis", -1)],
            Some("probabilities"),
        );
        let classes = self.w("head.weight")?.shape[0];
        Ok(g.finish(
            "vitune",
            vec![value_info("pixels", &[None, Some(3), Some(h), Some(w)])],
            vec![
                value_info("logits", &[None, Some(classes)]),
                value_info("probabilities", &[None, Some(classes)]),
                value_info("pooled", &[None, Some(c.pooled_dim())]),
            ],
        ))
    }

    fn block(
        &self,
        g: &mut OnnxGraph,
        l: usize,
        x: String,
        rope: Option<&(String, String, String)>,
    ) -> Result<String> {
        let c = self.config;
        let b = format!("blocks.{l}");
        g.scope(&b);
        let x = match self.onnx {
            Some(o) => o.block_input(&self.cx, g, l, x)?,
            None => x,
        };
        let n1 = self.layer_norm(g, &x, &format!("{b}.norm1"))?;
        let qkv = self.linear(g, &n1, &format!("{b}.attn.qkv"))?;
        let qkv = match rope {
            Some((cos, sin, idx)) => {
                // y = x·cos + x[partner]·(±sin) on q and k of the patch tokens (cos 1, sin 0 elsewhere).
                let turned = g.node("Gather", &[&qkv, idx], vec![int("axis", 2)], None);
                let a = g.op("Mul", &[&qkv, cos]);
                let b = g.op("Mul", &[&turned, sin]);
                g.op("Add", &[&a, &b])
            }
            None => qkv,
        };
        let ctx = attention(g, &qkv, c.heads, c.dim);
        let mut a = self.linear(g, &ctx, &format!("{b}.attn.proj"))?;
        if c.layer_scale {
            let ls = g.constant("ls1.gamma", self.w(&format!("{b}.ls1.gamma"))?);
            a = g.op("Mul", &[&a, &ls]);
        }
        let xm = g.op("Add", &[&x, &a]);
        let xm = self.branch(g, l, Branch::Attention, (&n1, &x), xm)?;
        let n2 = self.layer_norm(g, &xm, &format!("{b}.norm2"))?;
        let h = self.linear(g, &n2, &format!("{b}.mlp.fc1"))?;
        let h = if c.swiglu {
            g.swiglu(&h, c.mlp_inner())
        } else {
            self.mlp_act(g, &h)
        };
        let h = if c.mlp_norm {
            self.layer_norm(g, &h, &format!("{b}.mlp.norm"))?
        } else {
            h
        };
        let mut m = self.linear(g, &h, &format!("{b}.mlp.fc2"))?;
        if c.layer_scale {
            let ls = g.constant("ls2.gamma", self.w(&format!("{b}.ls2.gamma"))?);
            m = g.op("Mul", &[&m, &ls]);
        }
        let xo = g.op("Add", &[&xm, &m]);
        self.branch(g, l, Branch::Mlp, (&n2, &xm), xo)
    }

    /// RoPE as constants over a qkv [N,T,3D], made once for every block: cos [T,3D]
    /// (1 outside q and k of the patch tokens), ±sin [T,3D] (0 there), and the partner index of every channel.
    fn rope_tables(&self, g: &mut OnnxGraph) -> Option<(String, String, String)> {
        let c = self.config;
        let rope = c.rope.as_ref()?;
        let (h, w) = self.input_size;
        let grid = (h / c.patch, w / c.patch);
        let hd = c.dim / c.heads;
        let (cos, sin) = rope.tables(grid, hd);
        let start = c.prefix_tokens() + c.registers + self.hooks.prompts();
        let t = start + grid.0 * grid.1;
        let width = 3 * c.dim;
        let mut cos_t = vec![1.0f32; t * width];
        let mut sin_t = vec![0.0f32; t * width];
        let mut idx: Vec<i64> = (0..width as i64).collect();
        for part in 0..2 {
            for head in 0..c.heads {
                for i in 0..hd {
                    let ch = part * c.dim + head * hd + i;
                    let (j, sign) = rope.partner(i, hd);
                    idx[ch] = (part * c.dim + head * hd + j) as i64;
                    for m in 0..grid.0 * grid.1 {
                        let at = (start + m) * width + ch;
                        cos_t[at] = cos[m * hd + i];
                        sin_t[at] = sign * sin[m * hd + i];
                    }
                }
            }
        }
        Some((
            g.constant("rope.cos", &HostTensor::new(vec![t, width], cos_t)),
            g.constant("rope.sin", &HostTensor::new(vec![t, width], sin_t)),
            g.int64s(&idx, false),
        ))
    }

    /// SigLIP's attention pooling: tokens [N,T,D] after the final norm → pooled [N,D].
    fn attn_pool(&self, g: &mut OnnxGraph, y: &str) -> Result<String> {
        let c = self.config;
        g.scope("attn_pool");
        let latent = g.constant("latent", self.w("attn_pool.latent")?);
        let q = self.linear(g, &latent, "attn_pool.q")?;
        let q = heads_of(g, &q, 1, c.heads, c.dim).remove(0);
        let kv = self.linear(g, y, "attn_pool.kv")?;
        let kv = heads_of(g, &kv, 2, c.heads, c.dim);
        // [1,H,1,dh] · [N,H,dh,T] → [N,H,1,T]
        let ctx = attend(g, &q, &kv[0], &kv[1], c.heads, c.dim);
        let ctx = g.reshape(&ctx, &[0, c.dim as i64]);
        let p = self.linear(g, &ctx, "attn_pool.proj")?;
        let z = self.layer_norm(g, &p, "attn_pool.norm")?;
        let h = self.linear(g, &z, "attn_pool.mlp.fc1")?;
        let h = self.mlp_act(g, &h);
        let m = self.linear(g, &h, "attn_pool.mlp.fc2")?;
        let pooled = g.op("Add", &[&p, &m]);
        g.scope("");
        Ok(pooled)
    }

    fn mlp_act(&self, g: &mut OnnxGraph, h: &str) -> String {
        match self.config.mlp_act {
            MlpAct::Gelu => g.gelu(h),
            MlpAct::QuickGelu => g.quick_gelu(h),
        }
    }

    /// `out` with the method's branch added; (normed, residual) are the two inputs a branch may read.
    fn branch(
        &self,
        g: &mut OnnxGraph,
        l: usize,
        branch: Branch,
        (normed, residual): (&str, &str),
        out: String,
    ) -> Result<String> {
        let Some(o) = self.onnx else {
            return Ok(out);
        };
        let input = match self.hooks.branch_input(branch) {
            BranchInput::Normed => normed,
            BranchInput::Residual => residual,
        };
        o.branch(&self.cx, g, l, branch, input, out)
    }
}

/// x [N,T,parts·D] → its parts as heads [N,H,T,dh] each (q, k, v in that order).
fn heads_of(g: &mut OnnxGraph, x: &str, parts: usize, heads: usize, dim: usize) -> Vec<String> {
    let dh = (dim / heads) as i64;
    let split = g.reshape(x, &[0, 0, parts as i64, heads as i64, dh]);
    let split = g.transpose(&split, &[2, 0, 3, 1, 4]);
    (0..parts as i64)
        .map(|i| {
            let idx = g.int64s(&[i], true);
            g.node("Gather", &[&split, &idx], vec![int("axis", 0)], None)
        })
        .collect()
}

/// softmax(q·kᵀ/√dh)·v over heads [N,H,T,dh] (q may have other rows, or one image for all) → the heads'
/// concatenated context [N,Tq,D].
fn attend(g: &mut OnnxGraph, q: &str, k: &str, v: &str, heads: usize, dim: usize) -> String {
    let dh = (dim / heads) as f32;
    let kt = g.transpose(k, &[0, 1, 3, 2]);
    let scores = g.op("MatMul", &[q, &kt]);
    let scores = g.scale(&scores, 1.0 / dh.sqrt());
    let probs = g.node("Softmax", &[&scores], vec![int("axis", -1)], None);
    let ctx = g.op("MatMul", &[&probs, v]);
    let ctx = g.transpose(&ctx, &[0, 2, 1, 3]);
    g.reshape(&ctx, &[0, 0, dim as i64])
}

/// Multi-head self-attention from qkv [N,T,3D] to the heads' concatenated context [N,T,D].
fn attention(g: &mut OnnxGraph, qkv: &str, heads: usize, dim: usize) -> String {
    let qkv = heads_of(g, qkv, 3, heads, dim);
    attend(g, &qkv[0], &qkv[1], &qkv[2], heads, dim)
}
