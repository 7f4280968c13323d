//! What a run tunes and how it starts: the recipe a search varies, the initialisations (the method's, SPT's
//! prototypes, PVP's pre-trained prompts, a continued model), and fitting one recipe on a session.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::{train, Samples, Session, TrainConfig, TrainEvent, TrainOutcome};
use crate::error::{Error, Result};
use crate::model::ForwardOptions;
use crate::tuned::{self};
use crate::tuning::spt::{self, SptKind};
use crate::tuning::{Method, MethodOptions, Tuning};

/// Where the trainable tensors start.
#[derive(Debug, Clone)]
pub enum Init {
    /// The method's published initialisation.
    Method,
    /// SPT prototypes of the training images' tokens.
    Spt(SptKind),
    /// PVP: prompts pre-trained on a source task (a tuned file of `pretrain-prompts`); a new head.
    Pretrained(PathBuf),
    /// Continue from a tuned file (same classes).
    Tuned(PathBuf),
    /// Continue from a tuning in memory (the app's current model; same method and classes).
    Current(Box<Tuning>),
}

impl Init {
    pub fn describe(&self) -> String {
        match self {
            Init::Method => "method".into(),
            Init::Spt(k) => k.name().into(),
            Init::Pretrained(p) => format!("pvp:{}", p.display()),
            Init::Tuned(p) => format!("continued:{}", p.display()),
            Init::Current(_) => "continued from the previous model".into(),
        }
    }
}

/// What a run tunes, how it starts and how it trains: the part of a job a search varies.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub method: Method,
    pub options: MethodOptions,
    pub init: Init,
    pub config: TrainConfig,
    /// LP-FT (Kumar et al., 2022): after `init`, the head is the one a linear probe (its recipe, on the same
    /// images, on cached features) learns first, instead of a fresh one. No effect on the linear probe itself.
    pub warm_head: bool,
}

impl Session<'_> {
    /// Trains `recipe` from its initialisation on `train` (validating on `val` each epoch when given).
    pub fn fit(
        &self,
        recipe: &Recipe,
        classes: usize,
        train_set: &Samples,
        val: Option<&Samples>,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<TrainOutcome> {
        let tuning = initial_tuning(self, recipe, classes, train_set)?;
        train(self, tuning, train_set, val, &recipe.config, stop, on_event)
    }
}

/// The starting tuning of a recipe on `train`.
pub fn initial_tuning(
    session: &Session,
    recipe: &Recipe,
    classes: usize,
    train: &Samples,
) -> Result<Tuning> {
    let (gpu, vit, backbone, transform) = (
        session.gpu,
        session.vit,
        session.backbone,
        session.transform,
    );
    let mut t = Tuning::init(
        recipe.method,
        recipe.options.clone(),
        backbone,
        classes,
        recipe.config.seed,
    )?;
    match &recipe.init {
        Init::Method => {}
        Init::Spt(kind) => {
            let idx: Vec<usize> = (0..train.len()).collect();
            let mut tokens: Vec<crate::model::HostTensor> = Vec::new();
            for ids in idx.chunks(32) {
                let px = crate::train::trainer::batch_pixels(train, ids, transform, None);
                let out = vit.forward(
                    gpu,
                    &px,
                    &ForwardOptions {
                        tokens: true,
                        ..Default::default()
                    },
                )?;
                if tokens.is_empty() {
                    tokens = out.tokens;
                } else {
                    for (acc, more) in tokens.iter_mut().zip(out.tokens) {
                        acc.shape[0] += more.shape[0];
                        acc.data.extend(more.data);
                    }
                }
            }
            spt::apply(&mut t, &tokens, *kind, recipe.config.seed)?;
        }
        Init::Pretrained(path) => {
            let src = tuned::read(path, backbone, true)?;
            for name in ["prompt_embeddings", "deep_prompt_embeddings"] {
                match (t.tensors.get_mut(name), src.tuning.tensors.get(name)) {
                    (Some(dst), Some(s)) if dst.shape == s.shape => dst.data.clone_from(&s.data),
                    (Some(dst), Some(s)) => {
                        return Err(Error::Input(format!(
                            "{}: `{name}` has shape {:?}, the run needs {:?} (use the same method and --prompts)",
                            path.display(),
                            s.shape,
                            dst.shape
                        )))
                    }
                    (Some(_), None) => {
                        return Err(Error::Input(format!("{} has no `{name}` to start from", path.display())))
                    }
                    _ => {}
                }
            }
        }
        Init::Tuned(path) => {
            let src = tuned::read(path, backbone, false)?.tuning;
            t = continued(src, &path.display().to_string(), recipe, classes)?;
        }
        Init::Current(src) => t = continued((**src).clone(), "the current model", recipe, classes)?,
    }
    if recipe.warm_head && recipe.method != Method::Linear {
        warm_head(session, recipe, classes, train, &mut t)?;
    }
    Ok(t)
}

/// LP-FT's first stage: the linear probe with its own recipe, over the run's epochs and seed, on `train`'s cached
/// features (no augmentation); `t` then starts from its head.
fn warm_head(
    session: &Session,
    recipe: &Recipe,
    classes: usize,
    train: &Samples,
    t: &mut Tuning,
) -> Result<()> {
    let c = &recipe.config;
    let mut config = TrainConfig::defaults(
        Method::Linear,
        c.epochs,
        c.batch,
        train.len().div_ceil(c.batch.max(1)),
    );
    config.seed = c.seed;
    config.augment = super::Augment::none();
    config.micro_batch = c.micro_batch;
    let probe = Recipe {
        method: Method::Linear,
        options: MethodOptions::defaults(Method::Linear),
        init: Init::Method,
        config,
        warm_head: false,
    };
    let out = session.fit(
        &probe,
        classes,
        train,
        None,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;
    for name in ["head.weight", "head.bias"] {
        match (t.tensors.get_mut(name), out.best.tensors.get(name)) {
            (Some(dst), Some(src)) if dst.shape == src.shape => dst.data.clone_from(&src.data),
            _ => {
                return Err(Error::Input(format!(
                    "warm head: the linear probe's `{name}` does not fit {}'s head",
                    recipe.method
                )))
            }
        }
    }
    Ok(())
}

/// `src` to train on, when it is the run's method over its classes (`what` names it in the error).
fn continued(mut src: Tuning, what: &str, recipe: &Recipe, classes: usize) -> Result<Tuning> {
    if src.method != recipe.method || src.num_classes != classes {
        return Err(Error::Input(format!(
            "{what} holds {} with {} classes; this run is {} with {classes}",
            src.method, src.num_classes, recipe.method
        )));
    }
    // Dropout is a training setting, not part of the tuned tensors: this run's value applies.
    src.options.dropout = recipe.options.dropout;
    Ok(src)
}

impl Init {
    /// The start a run's choices name: `init` is `method` (the method's own) or an SPT kind; `pretrained` a file of
    /// PVP prompts; `resume` a tuned file to continue. Only the method's own start combines with either file.
    pub fn choose(
        init: &str,
        pretrained: Option<PathBuf>,
        resume: Option<PathBuf>,
    ) -> Result<Init> {
        match (init, pretrained, resume) {
            (_, Some(_), Some(_)) => Err(Error::Input(
                "--init-from and --resume exclude each other".into(),
            )),
            ("method", Some(p), None) => Ok(Init::Pretrained(p)),
            ("method", None, Some(p)) => Ok(Init::Tuned(p)),
            ("method", None, None) => Ok(Init::Method),
            (k, None, None) => SptKind::from_name(k).map(Init::Spt).ok_or_else(|| {
                Error::Input(format!(
                    "--init `{k}`: expected method, spt-mean, spt-max, spt-random or spt-kmeans"
                ))
            }),
            (k, _, _) => Err(Error::Input(format!(
                "--init {k} cannot be combined with --init-from or --resume"
            ))),
        }
    }
}
