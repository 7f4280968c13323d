//! The recorded forward pass: tokens, blocks, pooling and head, keeping what the backward reads when training.

use super::*;

impl Graph<'_> {
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
        let fused = !maps && rec.gpu().attention_kernel().is_fused();
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

    pub(super) fn block_forward(
        &self,
        rec: &mut Recorder,
        l: usize,
        x: GpuTensor,
        keep: Option<WeightInputs>,
        maps: bool,
    ) -> Result<(GpuTensor, Option<BlockActs>, Option<GpuTensor>)> {
        let c = &self.vit.config;
        let train = keep.is_some();
        let layers = &self.layers.blocks[l];
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
        let (context, saved) = if maps || !rec.gpu().attention_kernel().is_fused() {
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
        let (f1w, f1b) = (layers.fc1.weight, layers.fc1.bias);
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
        let (h, sub_norm) = if let Some(norm) = &layers.mlp_norm {
            let o = layernorm(rec, &h, norm.weight, norm.bias, c.eps)?;
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
}
