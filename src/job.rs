//! The jobs users come for, shared by the CLI and the app: train a method few-shot from class folders (or
//! samples in memory), evaluate a tuned file, predict classes of images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Backbone, ForwardOptions, GpuViT, HostTensor};
use crate::preprocess::Transform;
use crate::rng::Rng;
pub use crate::train::Session;
use crate::train::{
    predict_logits, train, Dataset, Evaluation, Samples, TrainConfig, TrainEvent, TrainOutcome,
};
use crate::tuned::{self, TunedMeta};
use crate::tuning::spt::{self, SptKind};
use crate::tuning::GpuTuning;
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

/// What a run tunes, how it starts and how it trains: the part of a job a search varies.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub method: Method,
    pub options: MethodOptions,
    pub init: Init,
    pub config: TrainConfig,
}

impl TrainJob {
    pub fn recipe(&self) -> Recipe {
        Recipe {
            method: self.method,
            options: self.options.clone(),
            init: self.init.clone(),
            config: self.config.clone(),
        }
    }
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

/// The eval transform of a backbone at `size`.
pub fn eval_transform(b: &Backbone, size: Option<(usize, usize)>) -> Transform {
    let c = &b.config;
    Transform {
        size: size.unwrap_or(c.image_size),
        crop_pct: c.crop_pct,
        mean: c.mean,
        std: c.std,
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
    Ok(t)
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

/// Evaluates a tuned file on class folders (classes matched by name).
pub fn evaluate(
    gpu: &Gpu,
    backbone: &Backbone,
    tuned_path: &Path,
    data: &Path,
    force: bool,
) -> Result<(Evaluation, Vec<String>)> {
    let tf = tuned::read(tuned_path, backbone, force)?;
    let mut ds = Dataset::from_folder(data)?;
    ds.relabel(&tf.classes)?;
    let size = tf.meta.as_ref().map(|m| m.image_size);
    let transform = eval_transform(backbone, size);
    let (samples, problems) =
        Samples::decode(&ds.items, crate::train::working_side(transform.size));
    let vit = GpuViT::new(gpu, backbone, Some(transform.size))?;
    let gt = GpuTuning::upload(gpu, &tf.tuning)?;
    let logits = predict_logits(gpu, &vit, &transform, &gt, &samples, 32)?;
    Ok((
        Evaluation::from_logits(tf.classes, &logits.data, &samples.labels, &samples.paths),
        problems,
    ))
}

/// Everything a prediction needs before the GPU: the tuned file (if any), the transform and decoded pixels.
pub struct PredictInput {
    pub tuned: Option<tuned::TunedFile>,
    pub transform: Transform,
    /// The images that decoded, in the order given, and their pixels.
    pub images: Vec<PathBuf>,
    pub pixels: crate::model::HostTensor,
    /// The images that did not decode, each with its reason: the others go on without them.
    pub failed: Vec<(PathBuf, String)>,
}

impl PredictInput {
    /// The backbone at this input's size, and the tuned tensors when there is a tuned file.
    fn upload(&self, gpu: &Gpu, backbone: &Backbone) -> Result<(GpuViT, Option<GpuTuning>)> {
        let vit = GpuViT::new(gpu, backbone, Some(self.transform.size))?;
        let gt = self
            .tuned
            .as_ref()
            .map(|t| GpuTuning::upload(gpu, &t.tuning))
            .transpose()?;
        Ok((vit, gt))
    }
}

/// Reads the tuned file and decodes the images (bad input fails here, before any GPU work).
pub fn prepare_predict(
    backbone: &Backbone,
    tuned_path: Option<&Path>,
    images: &[PathBuf],
    force: bool,
) -> Result<PredictInput> {
    let tf = tuned_path
        .map(|p| tuned::read(p, backbone, force))
        .transpose()?;
    let size = tf
        .as_ref()
        .and_then(|t| t.meta.as_ref())
        .map(|m| m.image_size);
    let transform = eval_transform(backbone, size);
    let (pixels, good, failed) = transform.batch_readable(images);
    let good: Vec<PathBuf> = good.into_iter().map(|i| images[i].clone()).collect();
    let failed: Vec<(PathBuf, String)> = failed
        .into_iter()
        .map(|(i, e)| (images[i].clone(), e.to_string()))
        .collect();
    if good.is_empty() {
        let reasons: Vec<&str> = failed.iter().map(|f| f.1.as_str()).collect();
        return Err(Error::Input(format!(
            "no image could be read: {}",
            reasons.join("; ")
        )));
    }
    Ok(PredictInput {
        tuned: tf,
        transform,
        images: good,
        pixels,
        failed,
    })
}

/// Class probabilities of the prepared images under the tuned file (or the backbone's own head):
/// (class names, one row of probabilities per image).
pub fn predict(
    gpu: &Gpu,
    backbone: &Backbone,
    input: &PredictInput,
) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    let (vit, gt) = input.upload(gpu, backbone)?;
    let out = vit.forward(
        gpu,
        &input.pixels,
        &ForwardOptions {
            tuning: gt.as_deref(),
            ..Default::default()
        },
    )?;
    let logits = out.logits.ok_or_else(|| {
        Error::Input(format!(
            "{} has no classification head; give a tuned file (--tuned) made by `vitune train`",
            backbone.path.display()
        ))
    })?;
    let nc = logits.shape[1];
    let classes = match &input.tuned {
        Some(t) => t.classes.clone(),
        None => crate::model::class_names(&backbone.path)
            .filter(|n| n.len() == nc)
            .unwrap_or_else(|| (0..nc).map(|i| format!("class {i}")).collect()),
    };
    let rows = logits.data.chunks(nc).map(softmax).collect();
    Ok((classes, rows))
}

/// Classes with their probabilities, most probable first.
pub fn ranked(classes: &[String], probs: &[f32]) -> Vec<(String, f32)> {
    let mut r: Vec<(String, f32)> = classes.iter().cloned().zip(probs.iter().copied()).collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1));
    r
}

pub use crate::train::softmax;

/// What attention map to draw, as the CLI and the app name things.
#[derive(Debug, Clone)]
pub struct AttentionRequest {
    /// cls, prompt, rollout or grad-rollout.
    pub mode: String,
    pub layer: Option<usize>,
    /// mean, max, min, or a head index.
    pub head: String,
    pub prompt: Option<usize>,
    pub class: Option<usize>,
    pub discard: f32,
    pub colormap: String,
    pub alpha: f32,
}

impl AttentionRequest {
    pub fn mode(&self, depth: usize) -> Result<crate::viz::MapMode> {
        use crate::viz::MapMode;
        let layer = self.layer.unwrap_or(depth.saturating_sub(1));
        if layer >= depth {
            return Err(Error::Input(format!(
                "--layer {layer} does not exist; the model has {depth} layers (0–{})",
                depth - 1
            )));
        }
        Ok(match self.mode.as_str() {
            "cls" => MapMode::Cls { layer },
            "prompt" => MapMode::Prompt {
                layer,
                prompt: self.prompt,
            },
            "rollout" => MapMode::Rollout {
                discard: self.discard.clamp(0.0, 0.999),
            },
            "grad-rollout" => MapMode::GradRollout,
            m => {
                return Err(Error::Input(format!(
                    "--mode `{m}`: expected cls, prompt, rollout or grad-rollout"
                )))
            }
        })
    }
}

/// The heat-map overlay of the first prepared image, at the size of the original `image_path`, and the class a
/// grad-rollout explained.
pub fn attention_overlay(
    gpu: &Gpu,
    backbone: &Backbone,
    input: &PredictInput,
    image_path: &Path,
    req: &AttentionRequest,
) -> Result<(image::RgbImage, Option<usize>)> {
    use crate::viz::{heat_map, Colormap, HeadFusion, MapMode, MapStyle};
    let style = MapStyle {
        mode: req.mode(backbone.config.depth)?,
        fusion: HeadFusion::from_name(&req.head)?,
        colormap: Colormap::from_name(&req.colormap).ok_or_else(|| {
            Error::Input(format!(
                "--colormap `{}`: expected inferno, viridis or jet",
                req.colormap
            ))
        })?,
        alpha: req.alpha,
        class: req.class,
    };
    let (vit, gt) = input.upload(gpu, backbone)?;
    let img = crate::preprocess::load_rgb(image_path)?;
    let (drawn, att) = heat_map(
        gpu,
        &vit,
        gt.as_ref(),
        &input.transform,
        (&img, &img),
        &style,
    )?;
    let explained = (style.mode == MapMode::GradRollout)
        .then_some(att.class)
        .flatten();
    Ok((drawn, explained))
}

/// `vitune forward`: the backbone (with `tuning`, if given) on `pixels` [N,3,H,W] at their size, as named tensors:
/// `pooled` [N,D], `logits` [N,C] where there is a head (the tuning's, else the checkpoint's), and with `attn`
/// every layer's post-softmax attention `attn.{l}` [N,heads,T,T].
pub fn forward_tensors(
    gpu: &Gpu,
    backbone: &Backbone,
    tuning: Option<&Tuning>,
    pixels: &HostTensor,
    attn: bool,
) -> Result<BTreeMap<String, HostTensor>> {
    check_pixels_shape(pixels)?;
    let vit = GpuViT::new(gpu, backbone, Some((pixels.shape[2], pixels.shape[3])))?;
    let gt = tuning.map(|t| GpuTuning::upload(gpu, t)).transpose()?;
    let r = vit.forward(
        gpu,
        pixels,
        &ForwardOptions {
            attn,
            tuning: gt.as_deref(),
            ..Default::default()
        },
    )?;
    let mut outs = BTreeMap::from([("pooled".to_string(), r.pooled)]);
    if let Some(l) = r.logits {
        outs.insert("logits".into(), l);
    }
    for (i, a) in r.attn.into_iter().enumerate() {
        outs.insert(format!("attn.{i}"), a);
    }
    Ok(outs)
}

/// `vitune grad`: the mean cross-entropy of `tuning` on `pixels` and `labels` (no dropout) and the gradient of
/// every trainable tensor, under the tuned file's names and shapes; `loss` is a 0-d tensor.
pub fn gradients(
    gpu: &Gpu,
    backbone: &Backbone,
    tuning: &Tuning,
    pixels: &HostTensor,
    labels: &HostTensor,
) -> Result<BTreeMap<String, HostTensor>> {
    check_pixels_shape(pixels)?;
    let labels: Vec<usize> = labels
        .data
        .iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(Error::Input(format!(
                    "label {v} is not a class index (a non-negative integer)"
                )))
            }
        })
        .collect::<Result<_>>()?;
    let vit = GpuViT::new(gpu, backbone, Some((pixels.shape[2], pixels.shape[3])))?;
    let gt = GpuTuning::upload(gpu, tuning)?;
    let grads = gt.zeros_like(gpu)?;
    let step = crate::train::compute_grads(
        gpu,
        &vit,
        &gt,
        &grads,
        pixels,
        &labels,
        Default::default(),
        None,
    )?;
    let mut outs = crate::model::download_named(gpu, &grads, &gt.shapes)?;
    outs.insert(
        "loss".into(),
        HostTensor::new(vec![], vec![step.loss as f32]),
    );
    Ok(outs)
}

fn check_pixels_shape(pixels: &HostTensor) -> Result<()> {
    if pixels.shape.len() != 4 || pixels.shape[1] != 3 {
        return Err(Error::Input(format!(
            "`pixels` has shape {:?}; expected [N, 3, H, W]",
            pixels.shape
        )));
    }
    Ok(())
}
