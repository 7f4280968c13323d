use serde::Serialize;

/// How the image representation is taken from the final tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// CLS token after the final `norm` (timm `global_pool='token'`); with a distillation token, CLS and it side
    /// by side, under one head that is timm's two heads averaged.
    Token,
    /// Mean over every token after the prefix tokens and registers, then `fc_norm` (timm `global_pool='avg'`, the
    /// default `fc_norm`).
    Avg,
    /// The final `norm` on every token, then the mean over every token after the prefix tokens and registers (timm
    /// `global_pool='avg'` with `fc_norm=False`).
    NormAvg,
    /// The final `norm` on every token, then SigLIP's attention pooling `attn_pool` (timm `global_pool='map'`): a
    /// learned latent query attends over the tokens after the prefix tokens and registers, then `proj` and a
    /// residual MLP behind its own LayerNorm.
    Map,
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MlpAct {
    /// Exact (erf) GELU, timm's and Hugging Face's default.
    Gelu,
    /// x·σ(1.702·x), OpenAI CLIP's (timm `act_layer='quick_gelu'`).
    QuickGelu,
}

/// Rotary position embeddings (RoPE): the patch tokens' q and k turned by angles that grow with their grid
/// position, as timm's `Eva` class builds them (`timm/layers/pos_embed_sincos.py`). CLS, the registers and a
/// method's prompts are prefix tokens and never turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rope {
    pub kind: RopeKind,
    /// DINOv3's period base (`rope_temperature`, 100), or the inverse-frequency base of `cat` (10000).
    pub temperature: f64,
    /// Pairs i with i + hd/2 (`rope_rotate_half`, DINOv3), else 2j with 2j+1 (EVA-02).
    pub rotate_half: bool,
    /// Added to every grid coordinate (`rope_grid_offset`).
    pub grid_offset: f64,
    /// The coordinate channels in (x, y) order (`rope_grid_indexing='xy'`), else (row, column).
    pub xy: bool,
    /// `cat`: coordinates rescaled so the grid in use spans this pre-training grid (`ref_feat_shape`).
    pub ref_grid: Option<(usize, usize)>,
}

/// How the angles are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RopeKind {
    /// DINOv3: patch centres normalised per axis to [-1, 1], angle 2π·coord / temperature^(2k/(hd/2)).
    DinoV3,
    /// EVA-02 and timm's `vit_*_rope_*`: integer grid indices, angle coord / temperature^(k/(hd/4)).
    Cat,
}

impl RopeKind {
    pub fn name(self) -> &'static str {
        match self {
            RopeKind::DinoV3 => "dinov3",
            RopeKind::Cat => "cat",
        }
    }
}

impl Rope {
    /// "dinov3 (temperature 100, rotate-half)"; `full` adds the grid indexing and the reference grid.
    pub fn describe(&self, full: bool) -> String {
        let layout = if self.rotate_half {
            "rotate-half"
        } else {
            "interleaved"
        };
        let mut extra = String::new();
        if full && self.xy {
            extra.push_str(", xy grid");
        }
        if let (true, Some((h, w))) = (full, self.ref_grid) {
            extra.push_str(&format!(", reference grid {h}x{w}"));
        }
        format!(
            "{} (temperature {}, {layout}{extra})",
            self.kind.name(),
            self.temperature
        )
    }

    /// The channel paired with channel `i` of a head of size `hd`, and the sign its value takes in i's rotation:
    /// y_i = x_i·cos_i + sign·x_partner·sin_i.
    pub fn partner(&self, i: usize, hd: usize) -> (usize, f32) {
        if self.rotate_half {
            if i < hd / 2 {
                (i + hd / 2, -1.0)
            } else {
                (i - hd / 2, 1.0)
            }
        } else if i.is_multiple_of(2) {
            (i + 1, -1.0)
        } else {
            (i - 1, 1.0)
        }
    }

    /// The cos and sin tables [grid rows · grid columns, hd] for a grid (row-major, as the patch tokens lie).
    pub fn tables(&self, (gh, gw): (usize, usize), head_dim: usize) -> (Vec<f32>, Vec<f32>) {
        let bands = head_dim / 4;
        let freq: Vec<f64> = (0..bands)
            .map(|k| match self.kind {
                RopeKind::DinoV3 => {
                    let period = self
                        .temperature
                        .powf(2.0 * k as f64 / (head_dim / 2) as f64);
                    2.0 * std::f64::consts::PI / period
                }
                RopeKind::Cat => 1.0 / self.temperature.powf(k as f64 / bands as f64),
            })
            .collect();
        let coord = |i: usize, size: usize, axis: usize| -> f64 {
            match self.kind {
                RopeKind::DinoV3 => 2.0 * ((i as f64 + 0.5 + self.grid_offset) / size as f64) - 1.0,
                RopeKind::Cat => {
                    let t = i as f64 + self.grid_offset;
                    match self.ref_grid {
                        Some(r) => t / size as f64 * [r.0, r.1][axis] as f64,
                        None => t,
                    }
                }
            }
        };
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for r in 0..gh {
            for c in 0..gw {
                let (y, x) = (coord(r, gh, 0), coord(c, gw, 1));
                let channels = if self.xy { [x, y] } else { [y, x] };
                let angles: Vec<f64> = channels
                    .iter()
                    .flat_map(|v| freq.iter().map(move |f| v * f))
                    .collect();
                let laid: Vec<f64> = if self.rotate_half {
                    angles.iter().chain(&angles).copied().collect()
                } else {
                    angles.iter().flat_map(|a| [*a, *a]).collect()
                };
                cos.extend(laid.iter().map(|a| a.cos() as f32));
                sin.extend(laid.iter().map(|a| a.sin() as f32));
            }
        }
        (cos, sin)
    }
}

/// Which naming the checkpoint used on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WeightFormat {
    Timm,
    HuggingFace,
}

/// A ViT's shape and the facts about its inputs, named as in the paper and timm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViTConfig {
    pub format: WeightFormat,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_hidden: usize,
    pub patch: usize,
    /// The checkpoint's own input size (H, W), from its position-embedding grid.
    pub image_size: (usize, usize),
    /// Classes of the checkpoint's head; 0 when it has none.
    pub num_classes: usize,
    pub pooling: Pooling,
    pub eps: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop_pct: f32,
    pub layer_scale: bool,
    /// A LayerNorm `norm_pre` after the position embedding, before the blocks (CLIP's `ln_pre`).
    pub pre_norm: bool,
    pub mlp_act: MlpAct,
    /// A class token `cls_token` (timm `class_token=True`; SigLIP and `*_gap_*` models have none).
    pub class_token: bool,
    /// A distillation token `dist_token` after CLS, with its own position row (DeiT distilled); its head is
    /// folded into `head` at load.
    pub distilled: bool,
    /// Register tokens after CLS, without position embedding (DINOv2 with registers, timm `reg_tokens`).
    pub registers: usize,
    /// The checkpoint's `pos_embed` has no row for CLS (timm `no_embed_class`: DeiT III, DINOv2 with
    /// registers); vitune gives CLS a zero row, so CLS + 0 is what timm computes.
    pub no_embed_class: bool,
    /// Linear biases the checkpoint lacks (timm `qkv_bias=False`, CLIP's patch embedding): zeros in the forward,
    /// never trained.
    pub absent_biases: Vec<String>,
    /// Where the head count came from (config.json, architecture name, width table, flag).
    pub heads_source: String,
    /// Rotary position embeddings (DINOv3, EVA-02, timm's RoPE ViTs).
    pub rope: Option<Rope>,
    /// An absolute position embedding `pos_embed`; without one (DINOv3, timm's RoPE ViTs) the GPU adds zeros and
    /// nothing is trained there.
    pub abs_pos: bool,
    /// SwiGLU MLP: `mlp.fc1` gives [gate | x] (2·H rows; timm's `SwiGLUPacked`, EVA-02's `fc1_g`/`fc1_x` joined
    /// at load), silu(gate)·x enters `mlp.fc2` (H columns).
    pub swiglu: bool,
    /// A LayerNorm `mlp.norm` on the MLP's hidden before fc2 (EVA-02's `scale_mlp`).
    pub mlp_norm: bool,
    /// How a timm `Eva` checkpoint (DINOv3, EVA-02, the RoPE ViTs) named what the loader joined, so the merged
    /// timm export writes it back; `None` for timm's `VisionTransformer` and Hugging Face layouts.
    pub eva_names: Option<EvaNames>,
    /// timm's architecture name from config.json (`vit_small_patch16_dinov3`), when it gave one.
    pub architecture: Option<String>,
}

/// The names a timm `Eva` checkpoint used where vitune's graph reads one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EvaNames {
    /// `attn.q_proj`/`k_proj`/`v_proj` (EVA-02) rather than one `attn.qkv`.
    pub separate_qkv: bool,
    /// `attn.q_bias` and `attn.v_bias` beside a bias-free `attn.qkv` (DINOv3 `_qkvb`, the RoPE ViTs).
    pub qv_bias: bool,
    /// `mlp.fc1_g` and `mlp.fc1_x` rather than one `mlp.fc1` (EVA-02, DINOv3 H+ and 7B).
    pub split_fc1: bool,
    /// LayerScale as `gamma_1`/`gamma_2` (rather than `ls1.gamma`/`ls2.gamma`).
    pub gammas: bool,
}

impl ViTConfig {
    /// The final LayerNorm's module name: `fc_norm` after average pooling, else `norm`.
    pub fn final_norm(&self) -> &'static str {
        match self.pooling {
            Pooling::Avg => "fc_norm",
            Pooling::Token | Pooling::NormAvg | Pooling::Map => "norm",
        }
    }

    /// Tokens before the registers that have a position row: CLS and the distillation token.
    pub fn prefix_tokens(&self) -> usize {
        usize::from(self.class_token) + usize::from(self.distilled)
    }

    /// Width of fc2's input: fc1's rows, or half of them under SwiGLU.
    pub fn mlp_inner(&self) -> usize {
        if self.swiglu {
            self.mlp_hidden / 2
        } else {
            self.mlp_hidden
        }
    }

    /// Width of the head's input: CLS and the distillation token side by side for DeiT distilled.
    pub fn pooled_dim(&self) -> usize {
        self.dim * if self.distilled { 2 } else { 1 }
    }

    /// The layout family in words, for `vitune info`.
    pub fn family(&self) -> String {
        if let Some(name) = self.modern_family() {
            return name;
        }
        let mut v = vec![match (self.pre_norm, self.mlp_act) {
            (true, MlpAct::QuickGelu) => "CLIP-style (pre-norm, QuickGELU)",
            (true, MlpAct::Gelu) => "CLIP-style (pre-norm)",
            (false, MlpAct::QuickGelu) => "ViT with QuickGELU",
            (false, MlpAct::Gelu) if self.layer_scale => {
                "ViT with LayerScale (DeiT III / DINOv2 style)"
            }
            (false, MlpAct::Gelu) => "classic ViT",
        }
        .to_string()];
        v.push(
            match self.pooling {
                Pooling::Token => "CLS-token pooling",
                Pooling::Avg => "average pooling + fc_norm",
                Pooling::NormAvg => "norm + average pooling",
                Pooling::Map => "norm + attention pooling (SigLIP's attn_pool)",
            }
            .into(),
        );
        if !self.class_token {
            v.push("no class token".into());
        }
        if self.distilled {
            v.push("distillation token (heads averaged)".into());
        }
        if self.registers > 0 {
            v.push(format!("{} register tokens", self.registers));
        }
        if !self.absent_biases.is_empty() {
            v.push(format!("{} biases absent", self.absent_biases.len()));
        }
        v.join(", ")
    }

    /// The rotary and SwiGLU families in words: the family, the RoPE kind, the MLP kind, the pooling.
    fn modern_family(&self) -> Option<String> {
        if self.rope.is_none() && !self.swiglu && !self.mlp_norm {
            return None;
        }
        let mut v = vec![match (&self.rope, self.abs_pos) {
            (Some(r), false) if r.kind == RopeKind::DinoV3 => "DINOv3-style ViT".to_string(),
            (Some(_), true) => "EVA-02-style ViT".to_string(),
            (Some(_), false) => "RoPE ViT".to_string(),
            (None, _) => "ViT (DINOv2-giant style)".to_string(),
        }];
        if let Some(r) = &self.rope {
            v.push(format!("RoPE {}", r.describe(false)));
        }
        v.push(match (self.swiglu, self.mlp_norm) {
            (true, true) => "SwiGLU MLP with a sub-LayerNorm".into(),
            (true, false) => "SwiGLU MLP".into(),
            (false, true) => "GELU MLP with a sub-LayerNorm".into(),
            (false, false) => "GELU MLP".into(),
        });
        if self.layer_scale {
            v.push("LayerScale".into());
        }
        v.push(
            match self.pooling {
                Pooling::Token => "CLS-token pooling",
                Pooling::Avg => "average pooling + fc_norm",
                Pooling::NormAvg => "norm + average pooling",
                Pooling::Map => "norm + attention pooling",
            }
            .into(),
        );
        if !self.class_token {
            v.push("no class token".into());
        }
        if self.registers > 0 {
            v.push(format!("{} register tokens", self.registers));
        }
        Some(v.join(", "))
    }

    /// Whether timm builds this layout only from its own architecture name (its layers, RoPE and norms cannot be
    /// said in `model_args`): the RoPE and SwiGLU families and anything timm's `Eva` class saved.
    pub fn needs_own_architecture(&self) -> bool {
        self.rope.is_some() || self.swiglu || self.mlp_norm || self.eva_names.is_some()
    }

    /// The part of this layout the merged timm export cannot write, in words; `None` when it can. The RoPE and
    /// SwiGLU families are written under timm's own names for timm's own architecture, which must be known:
    /// config.json's `architecture` of a timm checkpoint. The ONNX export writes them all.
    pub fn not_exported(&self) -> Option<&'static str> {
        if !self.needs_own_architecture() {
            None
        } else if self.format != WeightFormat::Timm {
            Some("a Hugging Face checkpoint of the RoPE and SwiGLU families (timm's own checkpoint exports)")
        } else if self.architecture.is_none() {
            Some("a timm Eva, RoPE or SwiGLU checkpoint without config.json's `architecture` (timm needs the name)")
        } else {
            None
        }
    }

    /// Refuses an input size (H, W) that is not a positive multiple of the patch size.
    pub fn check_input_size(&self, (h, w): (usize, usize)) -> crate::Result<()> {
        if h == 0 || w == 0 || !h.is_multiple_of(self.patch) || !w.is_multiple_of(self.patch) {
            return Err(crate::Error::Input(format!(
                "input size {h}x{w} is not a positive multiple of the patch size {}",
                self.patch
            )));
        }
        Ok(())
    }

    pub fn grid(&self) -> (usize, usize) {
        (
            self.image_size.0 / self.patch,
            self.image_size.1 / self.patch,
        )
    }

    /// Multiply-accumulates ×2 for one image through the backbone (and head) at input size (h, w) with
    /// `prompts` extra tokens.
    pub fn forward_flops(&self, (h, w): (usize, usize), prompts: usize) -> f64 {
        let d = self.dim as f64;
        let m = ((h / self.patch) * (w / self.patch)) as f64;
        let t = (self.prefix_tokens() + self.registers + prompts) as f64 + m;
        let patch = 2.0 * m * d * (3 * self.patch * self.patch) as f64;
        let per_layer = 2.0 * t * d * 3.0 * d          // qkv
            + 2.0 * 2.0 * t * t * d                    // scores and ·V
            + 2.0 * t * d * d                          // proj
            + 2.0 * t * d * (self.mlp_hidden + self.mlp_inner()) as f64; // fc1, fc2
        patch
            + self.depth as f64 * per_layer
            + 2.0 * self.pooled_dim() as f64 * self.num_classes as f64
    }
}

/// Heads for a standard ViT width (Ti, S, B, L, H).
pub fn heads_from_width(dim: usize) -> Option<usize> {
    match dim {
        192 => Some(3),
        384 => Some(6),
        768 => Some(12),
        1024 => Some(16),
        1280 => Some(16),
        _ => None,
    }
}

/// Heads from a timm architecture name such as `vit_base_patch16_224.augreg_in21k`.
pub fn heads_from_arch(arch: &str) -> Option<usize> {
    let a = arch.to_lowercase();
    let table = [
        ("tiny", 3),
        ("small", 6),
        ("medium", 8),
        ("base", 12),
        ("large", 16),
        ("huge", 16),
        ("giant", 16),
        ("so400m", 16),
    ];
    table
        .iter()
        .find(|(name, _)| a.split(['_', '.', '-']).any(|part| part == *name))
        .map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_counts_come_from_the_names_people_download() {
        assert_eq!(
            heads_from_arch("vit_base_patch16_siglip_224.webli"),
            Some(12)
        );
        assert_eq!(
            heads_from_arch("vit_so400m_patch14_siglip_224.webli"),
            Some(16)
        );
        assert_eq!(
            heads_from_arch("vit_small_patch14_reg4_dinov2.lvd142m"),
            Some(6)
        );
        assert_eq!(heads_from_arch("vit_fixture_x"), None);
    }
}
