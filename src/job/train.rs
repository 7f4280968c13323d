//! The training job: class folders (or samples in memory) to a tuned model, with the search first under Auto.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::{eval_transform, Init, Recipe};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Backbone, GpuViT};
use crate::rng::Rng;
use crate::train::{Dataset, Samples, Session, TrainConfig, TrainEvent, TrainOutcome};
use crate::tuned::TunedMeta;
use crate::tuning::{Method, MethodOptions};

/// Training data: class folders, or decoded samples.
pub enum Data {
    Folder {
        dir: PathBuf,
        val_dir: Option<PathBuf>,
    },
    Samples {
        classes: Vec<String>,
        train: Samples,
        val: Option<Samples>,
    },
}

pub struct TrainJob {
    pub data: Data,
    /// Choose the learning rate and weight decay (and the prompt count) on the training images first.
    pub auto: Option<crate::select::SearchOptions>,
    /// K images per class for training (all when unset); with a folder and no `val_dir`, up to
    /// `val_per_class` of the others per class make the validation split.
    pub shots: Option<usize>,
    pub val_per_class: usize,
    pub method: Method,
    pub options: MethodOptions,
    pub init: Init,
    pub config: TrainConfig,
    /// Input size; the backbone's own when unset.
    pub image_size: Option<(usize, usize)>,
    /// Start from a linear probe's head (LP-FT; `Recipe::warm_head`).
    pub warm_head: bool,
}

pub struct TrainReport {
    pub outcome: TrainOutcome,
    /// The search that chose the final run's setting (`auto`).
    pub selection: Option<crate::select::Selection>,
    pub classes: Vec<String>,
    pub meta: TunedMeta,
    pub train_images: usize,
    pub val_images: usize,
}

impl TrainJob {
    pub fn recipe(&self) -> Recipe {
        Recipe {
            method: self.method,
            options: self.options.clone(),
            init: self.init.clone(),
            config: self.config.clone(),
            warm_head: self.warm_head,
        }
    }
}

/// Loads the training and validation samples of a job; `log` hears about skipped images.
pub fn load_data(
    job: &TrainJob,
    input: (usize, usize),
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Samples, Option<Samples>)> {
    let side = crate::train::working_side(input);
    match &job.data {
        Data::Samples {
            classes,
            train,
            val,
        } => Ok((classes.clone(), train.clone(), val.clone())),
        Data::Folder { dir, val_dir } => {
            let ds = Dataset::from_folder(dir)?;
            let (train_idx, rest_idx) = match job.shots {
                Some(k) => ds.k_shot(k, job.config.seed),
                None => ((0..ds.items.len()).collect(), Vec::new()),
            };
            let pick = |idx: &[usize]| idx.iter().map(|&i| ds.items[i].clone()).collect::<Vec<_>>();
            let (train, problems) = Samples::decode(&pick(&train_idx), side);
            problems.iter().for_each(|p| log(p));
            let val = match val_dir {
                Some(v) => {
                    let mut vs = Dataset::from_folder(v)?;
                    vs.relabel(&ds.classes)?;
                    let (s, problems) = Samples::decode(&vs.items, side);
                    problems.iter().for_each(|p| log(p));
                    Some(s)
                }
                None if !rest_idx.is_empty() => {
                    // A held-out split from the images not drawn as shots, capped per class.
                    let mut rng = Rng::new(job.config.seed ^ 0xBA1);
                    let mut chosen = Vec::new();
                    for c in 0..ds.classes.len() {
                        let mut of: Vec<usize> = rest_idx
                            .iter()
                            .copied()
                            .filter(|&i| ds.items[i].1 == c)
                            .collect();
                        rng.shuffle(&mut of);
                        chosen.extend(of.into_iter().take(job.val_per_class));
                    }
                    chosen.sort_unstable();
                    let (s, problems) = Samples::decode(&pick(&chosen), side);
                    problems.iter().for_each(|p| log(p));
                    Some(s)
                }
                None => None,
            };
            if train.is_empty() {
                return Err(Error::Input(format!(
                    "no readable training images in {}",
                    dir.display()
                )));
            }
            Ok((ds.classes, train, val))
        }
    }
}

/// Runs a training job to the end (or until `stop`), returning the best tuning and its metadata.
pub fn run_train(
    gpu: &Gpu,
    backbone: &Backbone,
    job: &TrainJob,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainReport> {
    let transform = eval_transform(backbone, job.image_size);
    let (classes, train_set, val) = load_data(job, transform.size, log)?;
    let vit = GpuViT::new(gpu, backbone, Some(transform.size))?;
    let session = Session::new(gpu, backbone, &vit, &transform);
    let mut recipe = job.recipe();
    let selection = match &job.auto {
        Some(auto) => {
            let s = crate::select::search(
                &session,
                &recipe,
                &classes,
                &train_set,
                val.as_ref(),
                auto,
                stop,
                on_event,
                log,
            )?;
            if let Some(s) = &s {
                s.apply(&mut recipe, train_set.len());
            }
            s
        }
        None => None,
    };
    let outcome = session.fit(
        &recipe,
        classes.len(),
        &train_set,
        val.as_ref(),
        stop,
        on_event,
    )?;
    let mut meta = TunedMeta::new(
        &outcome.best,
        backbone,
        classes.clone(),
        &job.init.describe(),
    );
    meta.image_size = transform.size;
    meta.selection = selection.as_ref().cloned();
    meta.diverged = outcome.diverged.clone();
    Ok(TrainReport {
        selection,
        classes,
        meta,
        train_images: train_set.len(),
        val_images: val.as_ref().map(|v| v.len()).unwrap_or(0),
        outcome,
    })
}

/// The rules between a run's choices: a search chooses the learning rate and weight decay, so neither may be set
/// beside it; a prompt-count search needs a prompt method whose count was not set.
pub fn check_choices(
    auto: Option<&crate::select::SearchOptions>,
    method: Method,
    overrides: &crate::train::RecipeOverrides,
    prompts_set: bool,
) -> Result<()> {
    let Some(auto) = auto else {
        return Ok(());
    };
    if overrides.lr.is_some() || overrides.weight_decay.is_some() {
        return Err(Error::Input(
            "--auto chooses the learning rate and weight decay: drop --lr/--wd, or drop --auto"
                .into(),
        ));
    }
    if auto.prompts.is_some() && (!method.uses_prompts() || prompts_set) {
        return Err(Error::Input(
            "--auto-prompts chooses the prompt count of vpt-shallow or vpt-deep (without --prompts)".into(),
        ));
    }
    Ok(())
}
