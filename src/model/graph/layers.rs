//! The backbone's layers as the graph reads them, resolved once when the graph is built: each linear layer and
//! norm with its weight and bias (the tuning's where it carries them, else the backbone's), whether the tuning
//! replaces them, the LayerScale γ folded into it, and the names its gradients go under. The passes index these
//! by site; no name is formatted per pass.

use super::*;

/// A linear layer or LayerNorm (`{name}.weight`, `{name}.bias`).
pub(crate) struct Layer<'a> {
    /// timm's module name: `blocks.3.attn.qkv`.
    pub name: String,
    pub weight_key: String,
    pub bias_key: String,
    pub weight: &'a GpuTensor,
    pub bias: &'a GpuTensor,
    /// The tuning carries the weight (full fine-tuning), or the bias (BitFit, full).
    pub weight_tuned: bool,
    pub bias_tuned: bool,
    /// LayerScale's γ over this layer's output (proj and fc2 of LayerScale backbones) and its name.
    pub layer_scale: Option<(&'a GpuTensor, String)>,
}

impl<'a> Layer<'a> {
    /// The layer `name`, looked up in the tuning first, then the backbone.
    pub fn resolve(
        vit: &'a GpuViT,
        tuning: Option<&'a Attached>,
        name: &str,
        layer_scale: Option<String>,
    ) -> Result<Self> {
        let (weight_key, bias_key) = (format!("{name}.weight"), format!("{name}.bias"));
        let tuned = |k: &str| tuning.is_some_and(|t| t.params.contains_key(k));
        let layer_scale = match layer_scale {
            Some(g) => Some((resolve(vit, tuning, &g)?, g)),
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            weight: resolve(vit, tuning, &weight_key)?,
            bias: resolve(vit, tuning, &bias_key)?,
            weight_tuned: tuned(&weight_key),
            bias_tuned: tuned(&bias_key),
            weight_key,
            bias_key,
            layer_scale,
        })
    }

    /// LayerScale's γ when the tuning replaces this layer's weight (full fine-tuning): the backbone's folded weight
    /// is not in use, so γ is applied, and trained, on its own.
    pub fn unfolded_layer_scale(&self) -> Option<&(&'a GpuTensor, String)> {
        self.layer_scale.as_ref().filter(|_| self.weight_tuned)
    }
}

/// One block's layers.
pub(crate) struct BlockLayers<'a> {
    pub norm1: Layer<'a>,
    pub qkv: Layer<'a>,
    pub proj: Layer<'a>,
    pub norm2: Layer<'a>,
    pub fc1: Layer<'a>,
    pub fc2: Layer<'a>,
    /// EVA-02's sub-LayerNorm between the MLP's activation and fc2.
    pub mlp_norm: Option<Layer<'a>>,
}

/// Every layer a pass reads by site.
pub(crate) struct Layers<'a> {
    pub patch_embed: Layer<'a>,
    pub blocks: Vec<BlockLayers<'a>>,
    pub final_norm: Layer<'a>,
}

impl<'a> Layers<'a> {
    pub fn resolve(vit: &'a GpuViT, tuning: Option<&'a Attached>) -> Result<Self> {
        let c = &vit.config;
        let layer = |name: &str, ls: Option<String>| Layer::resolve(vit, tuning, name, ls);
        let ls = |l: usize, k: usize| c.layer_scale.then(|| format!("blocks.{l}.ls{k}.gamma"));
        let blocks = (0..c.depth)
            .map(|l| {
                let b = format!("blocks.{l}");
                Ok(BlockLayers {
                    norm1: layer(&format!("{b}.norm1"), None)?,
                    qkv: layer(&format!("{b}.attn.qkv"), None)?,
                    proj: layer(&format!("{b}.attn.proj"), ls(l, 1))?,
                    norm2: layer(&format!("{b}.norm2"), None)?,
                    fc1: layer(&format!("{b}.mlp.fc1"), None)?,
                    fc2: layer(&format!("{b}.mlp.fc2"), ls(l, 2))?,
                    mlp_norm: if c.mlp_norm {
                        Some(layer(&format!("{b}.mlp.norm"), None)?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            patch_embed: layer("patch_embed.proj", None)?,
            blocks,
            final_norm: layer(c.final_norm(), None)?,
        })
    }

    /// The layer whose output `site` is.
    pub fn at(&self, site: Site) -> &Layer<'a> {
        match site {
            Site::PatchEmbed => &self.patch_embed,
            Site::Norm1(l) => &self.blocks[l].norm1,
            Site::Qkv(l) => &self.blocks[l].qkv,
            Site::Proj(l) => &self.blocks[l].proj,
            Site::Norm2(l) => &self.blocks[l].norm2,
            Site::Fc1(l) => &self.blocks[l].fc1,
            Site::Fc2(l) => &self.blocks[l].fc2,
            Site::FinalNorm => &self.final_norm,
        }
    }
}

/// A tensor by name: the tuning's if it has one, else the backbone's.
pub(crate) fn resolve<'a>(
    vit: &'a GpuViT,
    tuning: Option<&'a Attached>,
    name: &str,
) -> Result<&'a GpuTensor> {
    if let Some(t) = tuning.and_then(|t| t.params.get(name)) {
        return Ok(t);
    }
    vit.weights.get(name).ok_or_else(|| {
        Error::Input(format!(
            "the backbone has no tensor `{name}` (needed by the forward pass)"
        ))
    })
}
