//! Argument groups shared by several subcommands, flattened into each: backbone loading, method options,
//! augmentation, the search.

use super::*;

/// The backbone and how to read what its files do not say.
#[derive(Args, Clone)]
pub(super) struct BackboneArgs {
    /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
    /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
    #[arg(long)]
    pub(super) backbone: PathBuf,
    #[command(flatten)]
    pub(super) load: LoadArgs,
}

impl BackboneArgs {
    pub(super) fn load(&self) -> Result<Backbone> {
        self.load.load(&self.backbone)
    }
}

/// Hyper-parameter selection on the training images.
#[derive(Args, Clone)]
pub(super) struct AutoArgs {
    /// Choose the learning rate and weight decay first: k-fold cross-validation over the shots, successive
    /// halving over the papers' grid, at most --auto-budget default runs.
    #[arg(long)]
    pub(super) auto: bool,
    /// With --auto, also choose the VPT prompt count from 5, 10 and 50.
    #[arg(long, requires = "auto")]
    pub(super) auto_prompts: bool,
    /// The most the search may cost, in default runs.
    #[arg(long, default_value_t = vitune::select::halving::DEFAULT_BUDGET, requires = "auto")]
    pub(super) auto_budget: f64,
}

impl AutoArgs {
    pub(super) fn options(&self) -> Option<vitune::select::SearchOptions> {
        self.auto.then(|| vitune::select::SearchOptions {
            prompts: self
                .auto_prompts
                .then(|| vitune::select::grid::PROMPT_COUNTS.to_vec()),
            budget: self.auto_budget,
        })
    }
}

/// Training augmentation.
#[derive(Args, Clone)]
pub(super) struct AugArgs {
    /// No augmentation (the eval transform for training too).
    #[arg(long)]
    pub(super) no_aug: bool,
    /// No horizontal flips (for data whose meaning flips, such as characters).
    #[arg(long)]
    pub(super) no_flip: bool,
    /// Smallest area fraction of the random resized crop.
    #[arg(long, default_value_t = 0.08)]
    pub(super) crop_scale: f32,
}

impl AugArgs {
    pub(super) fn augment(&self) -> vitune::train::Augment {
        if self.no_aug {
            vitune::train::Augment::none()
        } else {
            vitune::train::Augment {
                crop: Some((self.crop_scale, 1.0)),
                flip: !self.no_flip,
                ..Default::default()
            }
        }
    }
}

/// A tuning method and its options (defaults from the papers).
#[derive(Args, Clone)]
pub(super) struct MethodArgs {
    /// linear, bitfit, vpt-shallow, vpt-deep, lora, adaptformer, convpass, ssf or full.
    #[arg(long)]
    pub(super) method: String,
    /// VPT prompt tokens (default 10).
    #[arg(long)]
    pub(super) prompts: Option<usize>,
    /// LoRA rank (default 8).
    #[arg(long)]
    pub(super) rank: Option<usize>,
    /// LoRA alpha (default 8).
    #[arg(long)]
    pub(super) alpha: Option<f32>,
    /// LoRA targets among q, k, v (default qv).
    #[arg(long)]
    pub(super) lora_targets: Option<String>,
    /// AdaptFormer bottleneck (default 64).
    #[arg(long)]
    pub(super) bottleneck: Option<usize>,
    /// AdaptFormer / Convpass scale (defaults 0.1 / 1.0).
    #[arg(long)]
    pub(super) scale: Option<f32>,
    /// Convpass hidden width (default 8).
    #[arg(long)]
    pub(super) convpass_dim: Option<usize>,
    /// Convpass conv initialisation: xavier or identity.
    #[arg(long)]
    pub(super) conv_init: Option<String>,
    /// Training dropout: VPT prompt dropout (default 0.1 for vpt-deep, 0 for vpt-shallow) or the Convpass
    /// bypass's dropout (default 0.1). Never applied by `grad`, `eval` or `predict`.
    #[arg(long, visible_alias = "prompt-dropout")]
    pub(super) dropout: Option<f32>,
}

impl MethodArgs {
    pub(super) fn resolve(&self) -> Result<(Method, MethodOptions)> {
        let m = Method::from_name(&self.method)?;
        let mut o = MethodOptions::defaults(m);
        if let Some(v) = self.prompts {
            o.prompts = v;
        }
        if let Some(v) = self.rank {
            o.rank = v;
        }
        if let Some(v) = self.alpha {
            o.alpha = v;
        }
        if let Some(v) = &self.lora_targets {
            o.lora_targets = v.clone();
        }
        if let Some(v) = self.bottleneck {
            o.bottleneck = v;
        }
        if let Some(v) = self.scale {
            o.scale = v;
        }
        if let Some(v) = self.convpass_dim {
            o.convpass_dim = v;
        }
        if let Some(v) = self.dropout {
            if !MethodOptions::has_dropout(m) {
                bail!("--dropout applies to vpt-shallow, vpt-deep and convpass, not {m}");
            }
            o.dropout = v;
        }
        if let Some(v) = &self.conv_init {
            o.conv_init = match v.as_str() {
                "xavier" => ConvInit::Xavier,
                "identity" => ConvInit::Identity,
                other => bail!("--conv-init `{other}`: expected xavier or identity"),
            };
        }
        Ok((m, o))
    }
}

#[derive(Args, Clone, Default)]
pub(super) struct LoadArgs {
    /// Attention heads (when neither config.json nor the width tells).
    #[arg(long)]
    pub(super) heads: Option<usize>,
    /// LayerNorm epsilon.
    #[arg(long)]
    pub(super) eps: Option<f32>,
    /// Normalisation mean, three comma-separated numbers.
    #[arg(long, value_parser = parse_triple)]
    pub(super) mean: Option<[f32; 3]>,
    /// Normalisation std, three comma-separated numbers.
    #[arg(long, value_parser = parse_triple)]
    pub(super) std: Option<[f32; 3]>,
    /// The MLP activation (when neither config.json nor the architecture name says; OpenAI CLIP uses quick-gelu).
    #[arg(long, value_enum)]
    pub(super) act: Option<ActArg>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum ActArg {
    Gelu,
    QuickGelu,
}

pub(super) fn parse_triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| format!("`{x}`: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    v.try_into()
        .map_err(|_| format!("expected three comma-separated numbers, got `{s}`"))
}

impl LoadArgs {
    pub(super) fn load(&self, path: &Path) -> Result<Backbone> {
        let opts = LoadOptions {
            heads: self.heads,
            eps: self.eps,
            mean: self.mean,
            std: self.std,
            act: self.act.map(|a| match a {
                ActArg::Gelu => vitune::model::MlpAct::Gelu,
                ActArg::QuickGelu => vitune::model::MlpAct::QuickGelu,
            }),
        };
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let mut bar = hub::ProgressBar::default();
        let b = vitune::hub::load_backbone(
            path,
            &opts,
            &vitune::hub::HubConfig::from_env(),
            &mut |p| bar.show(p),
            &cancel,
        );
        bar.finish();
        Ok(b?)
    }
}
