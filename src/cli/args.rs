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

/// A tuned file to run with (else the backbone alone, with its own head where it has one).
#[derive(Args, Clone)]
pub(super) struct TunedArgs {
    /// A tuned file (from `vitune train`): run with its prompts, adapters and head.
    #[arg(long)]
    pub(super) tuned: Option<PathBuf>,
    /// Use a tuned file made for a backbone with other tensors (the shapes must still fit).
    #[arg(long)]
    pub(super) force: bool,
}

/// The tuned file a command needs.
#[derive(Args, Clone)]
pub(super) struct TunedFileArgs {
    /// A tuned file (from `vitune train`).
    #[arg(long)]
    pub(super) tuned: PathBuf,
    /// Use a tuned file made for a backbone with other tensors (the shapes must still fit).
    #[arg(long)]
    pub(super) force: bool,
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
            ..Default::default()
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

/// A tuning method and its options (defaults from the papers): `--method`, and a flag for every option some
/// method offers, made from the methods' own declarations (`tuning::options`), with their help and defaults.
#[derive(Clone)]
pub(super) struct MethodArgs {
    pub(super) method: String,
    /// The options given, by key, as typed.
    pub(super) given: Vec<(&'static str, String)>,
}

impl MethodArgs {
    pub(super) fn resolve(&self) -> Result<(Method, MethodOptions)> {
        let m = Method::from_name(&self.method)?;
        let given = self.given.iter().map(|(k, v)| (*k, v.as_str()));
        Ok((m, MethodOptions::with_values(m, given)?))
    }

    /// Whether the option `key` was given.
    pub(super) fn gives(&self, key: &str) -> bool {
        self.given.iter().any(|(k, _)| *k == key)
    }
}

impl clap::FromArgMatches for MethodArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        let method = m
            .get_one::<String>("method")
            .cloned()
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingRequiredArgument))?;
        let given = options::all_keys()
            .into_iter()
            .filter_map(|k| m.get_one::<String>(k).map(|v| (k, v.clone())))
            .collect();
        Ok(Self { method, given })
    }

    fn update_from_arg_matches(
        &mut self,
        m: &clap::ArgMatches,
    ) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for MethodArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        let (last, rest) = names.split_last().expect("methods");
        let mut cmd = cmd.arg(
            clap::Arg::new("method")
                .long("method")
                .required(true)
                .value_name("METHOD")
                .help(format!("{} or {last}", rest.join(", "))),
        );
        for key in options::all_keys() {
            let mut aliases: Vec<&'static str> = options::offered_by(key)
                .iter()
                .flat_map(|(_, s)| s.aliases.iter().copied())
                .collect();
            aliases.dedup();
            let value_name: &'static str =
                Box::leak(key.to_uppercase().replace('-', "_").into_boxed_str());
            cmd = cmd.arg(
                clap::Arg::new(key)
                    .long(key)
                    .value_name(value_name)
                    .visible_aliases(aliases)
                    .help(options::help(key)),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
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
