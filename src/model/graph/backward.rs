//! The hand-written backward: input gradients through the frozen backbone, weight gradients only for the
//! tensors being trained.

use super::*;

impl Graph<'_> {
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
        let head = Layer::resolve(self.vit, self.tuning, "head", None)
            .map_err(|_| Error::Input("training needs a head (head.weight)".into()))?;
        let hw = head.weight;
        let n = f.pooled.shape[0];
        let t = f.x_final.shape[1];
        self.linear_param_grads(rec, &head, dlogits, Some(&f.pooled), grads, 1.0)?;
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
            let norm = Layer::resolve(self.vit, self.tuning, "norm_pre", None)?;
            let dx0 = rec.gpu().empty(&x0.shape)?;
            layernorm_backward(rec, x0, Rows::all(x0), stats, norm.weight, &dx, None, &dx0);
            self.norm_param_grads(rec, &norm, x0, Rows::all(x0), stats, &dx, grads)?;
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
    pub(super) fn final_norm_backward(
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
    pub(super) fn backward_floor<'k>(
        &self,
        trained: impl Iterator<Item = &'k String>,
    ) -> Option<usize> {
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

    /// dW += scale·dyᵀ·x and db += scale·Σ dy for `layer`'s weight and bias where they are trained; `x` is the
    /// layer's saved input, `None` when the forward kept none (it must have, if the weight is trained).
    pub(super) fn linear_param_grads(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        dy: &GpuTensor,
        x: Option<&GpuTensor>,
        grads: &Grads,
        scale: f32,
    ) -> Result<()> {
        if let Some(g) = grads.get(&layer.weight_key) {
            let x = x.ok_or_else(|| {
                Error::Input(format!(
                    "internal: the forward kept no input for `{}`'s gradient",
                    layer.weight_key
                ))
            })?;
            linear_weight_grad(rec, dy, x, g, scale);
        }
        if let Some(g) = grads.get(&layer.bias_key) {
            match &layer.layer_scale {
                // The bias entered as γ⊙b: db = γ⊙Σ dy (with the weight tuned too, dy is already γ⊙dy).
                Some((ls, _)) if !layer.weight_tuned => {
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

    /// Backward of `layer` (y = x·Wᵀ + b, y and x of one shape but the last axis): returns dx and accumulates the
    /// weight and bias gradients where trained; `x` is the saved input, if kept.
    pub(super) fn linear_backward(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        dy: &GpuTensor,
        x: Option<&GpuTensor>,
        grads: &Grads,
    ) -> Result<GpuTensor> {
        self.layer_linear_backward(rec, layer, (dy, 1.0), x, grads, None)
    }

    /// Backward of y = scale·(x·Wᵀ + b) for the linear layer `{prefix}` (a method's own layer): returns dx (added
    /// into `into` when given, else new) and accumulates the weight and bias gradients where trained; `x` is the
    /// saved input.
    #[allow(clippy::too_many_arguments)]
    pub fn scaled_linear_backward(
        &self,
        rec: &mut Recorder,
        prefix: &str,
        dy: (&GpuTensor, f32),
        x: Option<&GpuTensor>,
        grads: &Grads,
        into: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let layer = Layer::resolve(self.vit, self.tuning, prefix, None)?;
        self.layer_linear_backward(rec, &layer, dy, x, grads, into)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_linear_backward(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        (dy, scale): (&GpuTensor, f32),
        x: Option<&GpuTensor>,
        grads: &Grads,
        into: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let w = layer.weight;
        let mut shape = dy.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = w.shape[1];
        }
        let dx = linear_input_grad(rec, dy, w, scale, into, &shape)?;
        self.linear_param_grads(rec, layer, dy, x, grads, scale)?;
        Ok(dx)
    }

    #[allow(clippy::too_many_arguments)]
    /// The parameter gradients of the LayerNorm at `site` (or of the method's affine folded into it).
    pub(super) fn ln_param_grads(
        &self,
        rec: &mut Recorder,
        site: Site,
        x: &GpuTensor,
        rows: Rows,
        stats: &GpuTensor,
        dy: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        let layer = self.layer(site);
        let gw = grads.get(&layer.weight_key);
        let gb = grads.get(&layer.bias_key);
        let d = self.vit.config.dim;
        let affine = match self.affine(site)? {
            Some(af) => self.affine_grads(&af, grads)?,
            None => None,
        };
        if let Some((gs, gsh)) = affine {
            if gw.is_some() || gb.is_some() {
                return Err(Error::Internal(format!(
                    "`{}` and the affine after it cannot both be trained",
                    layer.name
                )));
            }
            // The gradients of the folded parameters, then back through the fold.
            let (sw, sb) = (zeros(rec, &[d])?, zeros(rec, &[d])?);
            layernorm_param_grads(rec, x, rows, stats, dy, &sw, &sb);
            fold_norm_grads(rec, (layer.weight, layer.bias), (&sw, &sb), (gs, gsh));
            return Ok(());
        }
        self.norm_param_grads(rec, layer, x, rows, stats, dy, grads)
    }

    /// The gradients of the LayerNorm `layer`'s weight and bias, where trained.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_param_grads(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        x: &GpuTensor,
        rows: Rows,
        stats: &GpuTensor,
        dy: &GpuTensor,
        grads: &Grads,
    ) -> Result<()> {
        let gw = grads.get(&layer.weight_key);
        let gb = grads.get(&layer.bias_key);
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

    /// Back through a block's pre-norm at `site` (its input `x`, saved stats and folded weight `w`): the residual's
    /// gradient plus the norm's input gradient, and the norm's (or its folded affine's) parameter gradients.
    fn block_norm_backward(
        &self,
        rec: &mut Recorder,
        site: Site,
        (x, stats, w): (&GpuTensor, &GpuTensor, &GpuTensor),
        dy: &GpuTensor,
        residual: &GpuTensor,
        grads: &Grads,
    ) -> Result<GpuTensor> {
        let dx = rec.gpu().empty(&x.shape)?;
        layernorm_backward(rec, x, Rows::all(x), stats, w, dy, Some(residual), &dx);
        self.ln_param_grads(rec, site, x, Rows::all(x), stats, dy, grads)?;
        Ok(dx)
    }

    pub(super) fn block_backward(
        &self,
        rec: &mut Recorder,
        l: usize,
        a: &BlockActs,
        g: &GpuTensor,
        grads: &Grads,
    ) -> Result<GpuTensor> {
        let c = &self.vit.config;
        let hooks = self.hooks();
        let layers = &self.layers.blocks[l];
        let z = |site: Site| a.affine_in.get(&site);
        // MLP sub-block: xo = xm + fc2(gelu(fc1(LN2 xm))) [+ branch], each layer's output [+ affine]
        let dfc2 = self.affine_backward(rec, Site::Fc2(l), g, z(Site::Fc2(l)), grads)?;
        let dfc2 = dfc2.as_ref().unwrap_or(g);
        let dh = self.linear_backward(rec, &layers.fc2, dfc2, a.h.as_ref(), grads)?;
        let dh = match &a.sub_norm {
            Some((hin, stats)) => {
                let norm = layers.mlp_norm.as_ref().ok_or_else(|| {
                    Error::Internal(format!(
                        "block {l} kept a sub-norm input but has no mlp.norm"
                    ))
                })?;
                let dhin = rec.gpu().empty(&hin.shape)?;
                layernorm_backward(
                    rec,
                    hin,
                    Rows::all(hin),
                    stats,
                    norm.weight,
                    &dh,
                    None,
                    &dhin,
                );
                self.norm_param_grads(rec, norm, hin, Rows::all(hin), stats, &dh, grads)?;
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
        let dy2 = self.linear_backward(rec, &layers.fc1, &dh, a.y2.as_ref(), grads)?;
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
        let dxm =
            self.block_norm_backward(rec, Site::Norm2(l), (&a.xm, &a.st2, &a.n2w), &dy2, g, grads)?;
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
        let dctx = self.linear_backward(rec, &layers.proj, dproj, a.ctx.as_ref(), grads)?;
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
            &layers.qkv,
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
        let dx = self.block_norm_backward(
            rec,
            Site::Norm1(l),
            (&a.x, &a.st1, &a.n1w),
            &dy1,
            &dxm,
            grads,
        )?;
        if attn_reads == BranchInput::Residual {
            let x = Some(&a.x);
            hooks.branch_backward(self, rec, l, Branch::Attention, attn, &dxm, x, &dx, grads)?;
        }
        Ok(dx)
    }
}
