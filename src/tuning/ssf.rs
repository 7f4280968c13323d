//! SSF — Scaling & Shifting Your Features (Lian et al., NeurIPS 2022): a per-channel y ← γ⊙y + β after the patch
//! embedding, after norm1, qkv, proj, norm2, fc1 (before GELU) and fc2 in every block, and after the final norm;
//! the head is trained too. Init γ ~ N(1, 0.02), β ~ N(0, 0.02).
//!
//! This file is the whole method: its tensors (`<module>.ssf_scale` / `.ssf_shift` under timm's module names),
//! its init, and its one hook, which tells the graph where each affine is. The graph folds an affine after a
//! linear layer into that matmul's epilogue (before the bias-GELU or residual that follows) and one after a
//! LayerNorm into the LayerNorm's own parameters, so SSF adds no pass over the activations in the forward.

use std::collections::BTreeMap;

use super::{has_name, MethodOptions, MethodRecipe, MethodSpec};
use crate::error::{Error, Result};
use crate::model::hooks::{Affine, Hooks, Site};
use crate::model::{Backbone, Graph, HostTensor, ViTConfig};
use crate::rng::Rng;

/// The names of γ and β after `site`.
fn names(site: Site, c: &ViTConfig) -> [String; 2] {
    let m = site.module(c.final_norm());
    [format!("{m}.ssf_scale"), format!("{m}.ssf_shift")]
}

/// Channels of `site`'s output.
fn width(site: Site, c: &ViTConfig) -> usize {
    match site {
        Site::Qkv(_) => 3 * c.dim,
        Site::Fc1(_) => c.mlp_hidden,
        _ => c.dim,
    }
}

pub fn shapes(c: &ViTConfig) -> BTreeMap<String, Vec<usize>> {
    Site::all(c.depth)
        .into_iter()
        .flat_map(|site| names(site, c).map(|n| (n, vec![width(site, c)])))
        .collect()
}

pub fn init(c: &ViTConfig, rng: &mut Rng) -> BTreeMap<String, HostTensor> {
    shapes(c)
        .into_iter()
        .map(|(name, shape)| {
            let mean = if name.ends_with("ssf_scale") {
                1.0
            } else {
                0.0
            };
            let data = rng
                .normal_vec(shape[0], 0.02)
                .into_iter()
                .map(|v| v + mean)
                .collect();
            (name, HostTensor::new(shape, data))
        })
        .collect()
}

/// SSF's attachment: an affine at every site.
pub struct SsfHooks;

impl Hooks for SsfHooks {
    fn saved_floats_per_token(&self, c: &ViTConfig) -> usize {
        // The inputs of the affines after qkv, proj, fc1 and fc2.
        5 * c.dim + c.mlp_hidden
    }

    fn affine<'a>(&self, g: &Graph<'a>, site: Site) -> Result<Option<Affine<'a>>> {
        let names = names(site, g.config());
        Ok(Some(Affine {
            scale: g.w(&names[0])?,
            shift: g.w(&names[1])?,
            names,
        }))
    }
}

pub struct Ssf;

impl MethodSpec for Ssf {
    fn description(&self) -> &'static str {
        "SSF: a learned scale and shift of every layer's features (Lian et al., NeurIPS 2022)"
    }

    fn recipe(&self) -> MethodRecipe {
        // dongzelian/SSF's VTAB-1k scripts (train_scripts/vit/vtab): AdamW, lr 5e-3, weight decay 5e-5.
        MethodRecipe {
            sgd: false,
            lr: 5e-3,
            weight_decay: 5e-5,
        }
    }

    fn shapes(&self, _o: &MethodOptions, b: &Backbone) -> BTreeMap<String, Vec<usize>> {
        shapes(&b.config)
    }

    fn init(
        &self,
        _o: &MethodOptions,
        b: &Backbone,
        rng: &mut Rng,
    ) -> Result<BTreeMap<String, HostTensor>> {
        Ok(init(&b.config, rng))
    }

    fn recognises(&self, tensors: &BTreeMap<String, HostTensor>) -> bool {
        has_name(tensors, |k| k.ends_with(".ssf_scale"))
    }

    fn hooks(&self, _o: &MethodOptions) -> Box<dyn Hooks> {
        Box::new(SsfHooks)
    }

    fn merge(
        &self,
        _o: &MethodOptions,
        c: &ViTConfig,
        tuned: &BTreeMap<String, HostTensor>,
        weights: &mut BTreeMap<String, HostTensor>,
    ) -> Result<()> {
        // γ⊙(W·x + b) + β = (γ⊙W)·x + (γ⊙b + β): each output channel's row of the weight (linear, convolution or
        // LayerNorm alike) is scaled, and the bias becomes γ⊙b + β. Under LayerScale the layer's γ_ls stays
        // outside, as the graph applies it: γ_ls⊙(γ⊙z + β).
        for site in Site::all(c.depth) {
            let [sn, bn] = names(site, c);
            let module = match site {
                Site::PatchEmbed => "patch_embed.proj".to_string(),
                _ => site.module(c.final_norm()),
            };
            let missing = |n: &str| Error::Internal(format!("SSF's merge lacks `{n}`"));
            let gamma = tuned.get(&sn).ok_or_else(|| missing(&sn))?;
            let beta = tuned.get(&bn).ok_or_else(|| missing(&bn))?;
            let wn = format!("{module}.weight");
            let w = weights.get_mut(&wn).ok_or_else(|| missing(&wn))?;
            let per_row = w.numel() / gamma.numel();
            for (row, g) in w.data.chunks_mut(per_row).zip(&gamma.data) {
                row.iter_mut().for_each(|v| *v *= g);
            }
            let bias = format!("{module}.bias");
            let b = weights.get_mut(&bias).ok_or_else(|| missing(&bias))?;
            for ((v, g), s) in b.data.iter_mut().zip(&gamma.data).zip(&beta.data) {
                *v = *v * g + s;
            }
        }
        Ok(())
    }
}
