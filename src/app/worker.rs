//! The app's GPU worker: owns the device, the backbone and the current tuning; the UI sends it commands and
//! polls its replies, so the UI never waits on the GPU.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::gpu::{AttentionKernel, Gpu};
use crate::job::{run_train, AttentionRequest, Data, Init, TrainJob};
use crate::model::{Backbone, GpuViT, LoadOptions};
use crate::select::{CompareRow, SearchOptions, Selection};
use crate::train::{predict_logits, Augment, Evaluation, Samples, TrainEvent};
use crate::tuned::{self, TunedMeta};
use crate::tuning::GpuTuning;
use crate::tuning::{Method, Tuning};
use crate::viz::{heat_map, Colormap, HeadFusion, MapMode, MapStyle};

use super::project::{Project, Settings};

pub enum Command {
    /// Load this backbone: a file, a hub name (`hf-hub:...`, downloaded with `Reply::Download` progress and
    /// cancelled by the stop flag), or the embedded demo one when `None`. When it fails, the backbone held stays
    /// (`keep_on_failure`, a new choice the user made) or is dropped (the project's own, which must not be trained
    /// on another).
    LoadBackbone {
        spec: Option<PathBuf>,
        hub: crate::hub::HubConfig,
        keep_on_failure: bool,
    },
    Train(Project),
    /// Train on from the model the worker holds (same method and classes), with the setting the last search
    /// chose (or the recipe's) and no new search: after moving or disabling images the model learned wrong.
    Continue(Project),
    /// Score every method on the project's training images by cross-validation (each with its own search when
    /// the project's Auto is on); the tuned files go to the folder given.
    Compare(Project, PathBuf),
    /// `vitune selftest` on this adapter (speed figures unless `quick`).
    Selftest {
        quick: bool,
    },
    Attention {
        image: PathBuf,
        request: AttentionRequest,
    },
    /// The maps of several images (a class's, or the mistakes), for the grid view.
    AttentionGrid {
        images: Vec<PathBuf>,
        request: AttentionRequest,
    },
    Predict(Vec<PathBuf>),
    Export(PathBuf),
    /// Export the current tuning as a self-checked ONNX model.
    ExportOnnx(PathBuf),
    /// Export the current tuning merged into a timm checkpoint (with config.json beside it).
    ExportTimm(PathBuf),
    Import(PathBuf),
    /// Drop the tuning the worker holds (a new or another project without a kept model).
    Forget,
    /// Memory savers: frozen weights in f16, and the fused attention kernel (the backbone re-uploads).
    Memory(MemoryChoice),
}

/// The device-memory switches the app offers (see `Gpu::set_f16_weights`, `Gpu::set_attention_kernel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryChoice {
    pub f16_weights: bool,
    pub fused_attention: bool,
}

/// A class and its probability.
pub type Scored = (String, f32);

/// A grid tile: the image, its map, the tuned model's top class.
pub type MapTile = (PathBuf, image::RgbImage, Option<Scored>);

/// An image's ranked (class, probability) list and its heat-map overlay.
pub type Prediction = (PathBuf, Vec<(String, f32)>, image::RgbImage);

pub enum Reply {
    Backbone {
        /// What the project records: the file, or the hub name pinned to the commit that was loaded.
        spec: Option<PathBuf>,
        description: String,
        heads: usize,
    },
    /// The backbone asked for did not load; `error` says which and why.
    BackboneFailed {
        spec: Option<PathBuf>,
        error: String,
    },
    /// A hub download's progress.
    Download(crate::hub::Progress),
    /// The adapter the worker opened at start, and whether it is a CPU driver.
    Adapter {
        description: String,
        cpu: bool,
    },
    /// The kernel variants the worker's device runs (one line) and the autotuner's table, once chosen.
    Kernels {
        summary: String,
        table: String,
    },
    /// Images decoded so far before a run, of all.
    Decoding {
        done: usize,
        total: usize,
    },
    Event(TrainEvent),
    Trained(Trained),
    /// The methods ranked, best first.
    Compared(Vec<CompareRow>),
    Selftest(crate::selftest::Report),
    Attention {
        image: PathBuf,
        before: image::RgbImage,
        after: Option<image::RgbImage>,
        /// The tuned model's top class and its probability.
        prediction: Option<(String, f32)>,
    },
    /// The grid view's tiles: image, its map, the tuned model's top class.
    AttentionGrid(Vec<MapTile>),
    Predictions(Vec<Prediction>),
    Exported(PathBuf),
    /// An ONNX export that passed its self-check.
    ExportedOnnx(crate::export::OnnxReport),
    /// The memory switches now in force (an unsupported one stays off, with an error beside it).
    Memory(MemoryChoice),
    Imported {
        path: PathBuf,
        classes: Vec<String>,
        method: Method,
    },
    Error(String),
    /// A run diverged in its first epoch: nothing was trained (the message says so), at learning rate `lr`.
    Diverged {
        message: String,
        lr: f32,
    },
}

/// A finished run: its validation evaluation and what the status says of it.
#[derive(Debug)]
pub struct Trained {
    pub evaluation: Option<Evaluation>,
    pub classes: Vec<String>,
    pub parameters: usize,
    /// The search that chose the setting (Auto).
    pub selection: Option<Selection>,
    /// Which epoch's weights were kept, and whether Stop ended the run.
    pub best_epoch: usize,
    pub stopped: bool,
    /// The run went on from the previous model.
    pub continued: bool,
    /// The trained model's method.
    pub method: Method,
    /// The run diverged after the kept epoch (it stopped there), at learning rate `lr`.
    pub diverged: Option<crate::train::Divergence>,
    pub lr: f32,
}

pub struct Worker {
    pub commands: Sender<Command>,
    pub replies: Receiver<Reply>,
    pub stop: Arc<AtomicBool>,
    /// Set when the app closes: the worker drops the commands still queued.
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Stops a running training after its step, drops the queued commands, lets the worker release the device, and
/// waits for it: the process must not exit while the worker thread is still inside the GPU driver.
impl Drop for Worker {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        let (closed, _) = channel();
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(t) = self.thread.take() {
            // A worker that panicked has said so on stderr already; closing goes on.
            t.join().ok();
        }
    }
}

struct State {
    gpu: Option<Gpu>,
    backbone: Option<Backbone>,
    /// The backbone's weights on the GPU, uploaded once per backbone and shared by every request.
    vit: Option<GpuViT>,
    tuning: Option<(Tuning, TunedMeta)>,
}

/// Starts the worker thread; `wake` is called after each reply (to repaint the UI).
pub fn spawn(wake: impl Fn() + Send + 'static) -> Worker {
    let (ctx, crx) = channel::<Command>();
    let (rtx, rrx) = channel::<Reply>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let closing = Arc::new(AtomicBool::new(false));
    let closing2 = closing.clone();
    let thread = std::thread::Builder::new()
        .name("vitune-worker".into())
        .spawn(move || {
            let mut st = State {
                gpu: None,
                backbone: None,
                vit: None,
                tuning: None,
            };
            let send = |r: Reply| {
                // The app has closed when nobody receives: the reply has no one to reach.
                rtx.send(r).ok();
                wake();
            };
            // The device first: the person learns at once which adapter runs the work, and when it is the CPU.
            match Gpu::new() {
                Ok(g) => {
                    send(Reply::Adapter {
                        description: g.describe(),
                        cpu: g.is_cpu(),
                    });
                    // Checked and timed once per adapter and driver, then read from the cache.
                    crate::ops::autotune::ensure(&g);
                    send(Reply::Kernels {
                        summary: g.kernel_summary(),
                        table: g.tuned().map(|t| t.text()).unwrap_or_default(),
                    });
                    st.gpu = Some(g);
                }
                Err(e) => send(Reply::Error(e.to_string())),
            }
            while let Ok(cmd) = crx.recv() {
                if closing2.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = handle(&mut st, cmd, &stop2, &send) {
                    send(Reply::Error(e.to_string()));
                }
            }
        })
        .expect("the OS refused to start the GPU worker thread");
    Worker {
        commands: ctx,
        replies: rrx,
        stop,
        closing,
        thread: Some(thread),
    }
}

fn gpu(st: &mut State) -> Result<&Gpu> {
    if st.gpu.is_none() {
        st.gpu = Some(Gpu::new()?);
    }
    st.gpu.as_ref().ok_or_else(|| Error::Input("no GPU".into()))
}

/// The device and the backbone uploaded to it (once, then reused).
fn gpu_vit(st: &mut State) -> Result<(&Gpu, &GpuViT)> {
    let State {
        gpu, backbone, vit, ..
    } = st;
    if gpu.is_none() {
        *gpu = Some(Gpu::new()?);
    }
    let g = gpu.as_ref().ok_or_else(|| Error::Input("no GPU".into()))?;
    if vit.is_none() {
        let b = backbone.as_ref().ok_or(Error::NoBackbone)?;
        *vit = Some(GpuViT::new(g, b, None)?);
    }
    let v = vit.as_ref().ok_or(Error::NoBackbone)?;
    Ok((g, v))
}

/// The tuning the worker holds, as a tuned file would read back.
fn current_tuning(st: &State) -> Result<tuned::TunedFile> {
    let (tuning, meta) = st
        .tuning
        .clone()
        .ok_or(Error::NoModel("nothing to export yet: train first"))?;
    Ok(tuned::TunedFile {
        tuning,
        classes: meta.classes.clone(),
        meta: Some(meta),
    })
}

fn backbone(st: &State) -> Result<&Backbone> {
    st.backbone.as_ref().ok_or(Error::NoBackbone)
}

fn handle(st: &mut State, cmd: Command, stop: &AtomicBool, send: &dyn Fn(Reply)) -> Result<()> {
    match cmd {
        Command::LoadBackbone {
            spec,
            hub,
            keep_on_failure,
        } => {
            let loaded = match &spec {
                Some(p) => crate::hub::load_backbone(
                    p,
                    &LoadOptions::default(),
                    &hub,
                    &mut |progress| send(Reply::Download(progress.clone())),
                    stop,
                ),
                None => crate::demo::backbone(),
            };
            let b = match loaded {
                Ok(b) => b,
                Err(e) => {
                    if !keep_on_failure {
                        st.backbone = None;
                        st.vit = None;
                        st.tuning = None;
                    }
                    send(Reply::BackboneFailed {
                        spec,
                        error: e.to_string(),
                    });
                    return Ok(());
                }
            };
            let spec = spec.map(|p| b.source.clone().map(PathBuf::from).unwrap_or(p));
            let c = &b.config;
            let description = format!(
                "{} ({:?}): {}; width {}, depth {}, {} heads, patch {}, {}x{}, {:.1} M parameters",
                b.source.clone().unwrap_or_else(|| b.file_name()),
                c.format,
                c.family(),
                c.dim,
                c.depth,
                c.heads,
                c.patch,
                c.image_size.0,
                c.image_size.1,
                b.parameter_count() as f64 / 1e6
            );
            let heads = c.heads;
            st.backbone = Some(b);
            st.vit = None;
            st.tuning = None;
            send(Reply::Backbone {
                spec,
                description,
                heads,
            });
        }
        Command::Memory(want) => {
            let g = gpu(st)?;
            // A fused variant already in force (the tuned one, say) stays; otherwise the per-row one.
            let now = g.attention_kernel();
            g.set_attention_kernel(match (want.fused_attention, now.is_fused()) {
                (true, true) => now,
                (true, false) => AttentionKernel::Fused,
                (false, _) => AttentionKernel::Matmul,
            });
            let f16 = g.set_f16_weights(want.f16_weights);
            let now = MemoryChoice {
                f16_weights: g.f16_weights(),
                fused_attention: g.attention_kernel().is_fused(),
            };
            // The weights are stored as they were uploaded: upload again under the new choice.
            st.vit = None;
            send(Reply::Memory(now));
            f16?;
        }
        // The UI clears `stop` before it sends Train (so closing the app, which sets it, is never undone here).
        Command::Train(project) => train_project(st, &project, Init::Method, None, stop, send)?,
        Command::Continue(project) => {
            let (tn, meta) = st.tuning.clone().ok_or(Error::NoModel(
                "there is no model to continue from: train first",
            ))?;
            let classes: Vec<String> = project.classes.iter().map(|c| c.name.clone()).collect();
            if meta.classes != classes || tn.method != project.settings.method {
                return Err(Error::Input(format!(
                    "the model is {} over {} classes; the project now has {} over {} classes: train anew",
                    tn.method,
                    meta.classes.len(),
                    project.settings.method,
                    classes.len()
                )));
            }
            let chosen = meta.selection.as_ref().map(|s| s.chosen);
            train_project(
                st,
                &project,
                Init::Current(Box::new(tn)),
                chosen,
                stop,
                send,
            )?;
        }
        Command::Selftest { quick } => {
            let r = crate::selftest::run(gpu(st)?, quick, &mut |_| {})?;
            send(Reply::Selftest(r));
        }
        Command::Compare(project, out) => {
            let side = crate::train::working_side(backbone(st)?.config.image_size);
            let (classes, train, _) = project_samples(&project, side, send)?;
            let job = crate::job::CompareJob {
                data: crate::job::CompareData::Samples { classes, train },
                methods: crate::job::default_compared(),
                plan: project_plan(&project.settings),
                auto: project.settings.auto.then(SearchOptions::default),
                out: Some(out),
            };
            let b = backbone(st)?.clone();
            let t = crate::job::eval_transform(&b, None);
            let (g, vit) = gpu_vit(st)?;
            let session = crate::job::Session::new(g, &b, vit, &t);
            let mut note = |m: &str| {
                send(Reply::Event(TrainEvent::Search(
                    crate::select::SearchEvent::Note(m.to_string()),
                )))
            };
            let rows = job.run(&session, stop, &mut note).map_err(|e| match e {
                Error::Stopped(m) => Error::Stopped(format!("{m}; the app's model is unchanged")),
                e => e,
            })?;
            send(Reply::Compared(rows));
        }
        Command::Attention { image, request } => {
            let (before, after, prediction) = Maps::new(st, &request)?.draw(&image, true)?;
            send(Reply::Attention {
                image,
                before: before.unwrap_or_default(),
                after,
                prediction,
            });
        }
        Command::AttentionGrid { images, request } => {
            // The tuned model's map where there is one, else the backbone's.
            let backbone_only = st.tuning.is_none();
            let maps = Maps::new(st, &request)?;
            let mut tiles = Vec::new();
            for image in images {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                match maps.draw(&image, backbone_only) {
                    Ok((before, after, prediction)) => {
                        if let Some(map) = after.or(before) {
                            tiles.push((image, map, prediction));
                        }
                    }
                    Err(e) => send(Reply::Error(e.to_string())),
                }
            }
            send(Reply::AttentionGrid(tiles));
        }
        Command::Predict(paths) => {
            let b = backbone(st)?.clone();
            let (tn, meta) = st
                .tuning
                .clone()
                .ok_or(Error::NoModel("train or import a tuned file first"))?;
            let (g, vit) = gpu_vit(st)?;
            let t = crate::job::eval_transform(&b, None);
            let gt = GpuTuning::upload(g, &tn)?;
            let style = MapStyle {
                mode: MapMode::Rollout { discard: 0.9 },
                fusion: HeadFusion::Mean,
                colormap: Colormap::Inferno,
                alpha: 0.5,
                class: None,
            };
            let mut out = Vec::new();
            for p in paths {
                let img = match crate::preprocess::load_rgb(&p) {
                    Ok(i) => i,
                    Err(e) => {
                        send(Reply::Error(e.to_string()));
                        continue;
                    }
                };
                let shown = display_copy(&img);
                let (drawn, att) = heat_map(g, vit, Some(&gt), &t, (&img, &shown), &style)?;
                let ranked = crate::job::ranked(&meta.classes, &crate::job::softmax(&att.logits));
                out.push((p, ranked, drawn));
            }
            send(Reply::Predictions(out));
        }
        Command::Export(path) => {
            let (tn, meta) = st
                .tuning
                .as_ref()
                .ok_or(Error::NoModel("nothing to export yet: train first"))?;
            tuned::write(&path, tn, meta)?;
            send(Reply::Exported(path));
        }
        Command::ExportOnnx(path) => {
            let file = current_tuning(st)?;
            gpu(st)?;
            let (Some(g), Some(b)) = (st.gpu.as_ref(), st.backbone.as_ref()) else {
                return Err(Error::NoBackbone);
            };
            let report = crate::export::export_onnx(g, b, &file, &path, None)?;
            send(Reply::ExportedOnnx(report));
        }
        Command::ExportTimm(path) => {
            let file = current_tuning(st)?;
            let r = crate::export::timm::export_timm(backbone(st)?, &file, &path)?;
            send(Reply::Exported(r.weights));
        }
        Command::Forget => st.tuning = None,
        Command::Import(path) => {
            let b = backbone(st)?;
            let tf = tuned::read(&path, b, false)?;
            let meta = match tf.meta.clone() {
                Some(m) => m,
                None => TunedMeta::new(&tf.tuning, b, tf.classes.clone(), "imported"),
            };
            let classes = tf.classes.clone();
            let method = tf.tuning.method;
            st.tuning = Some((tf.tuning, meta));
            send(Reply::Imported {
                path,
                classes,
                method,
            });
        }
    }
    Ok(())
}

/// Trains the project from `init`: with the project's Auto search when `chosen` is `None` and init is the method's,
/// else with `chosen`'s learning rate and weight decay (the recipe's when that is `None` too). Reports each event,
/// the validation evaluation (with the images it got wrong) and the run's summary.
fn train_project(
    st: &mut State,
    project: &Project,
    init: Init,
    chosen: Option<crate::select::Candidate>,
    stop: &AtomicBool,
    send: &dyn Fn(Reply),
) -> Result<()> {
    let b = backbone(st)?.clone();
    let side = crate::train::working_side(b.config.image_size);
    let (classes, train, val) = project_samples(project, side, send)?;
    let s: &Settings = &project.settings;
    let fresh = matches!(init, Init::Method);
    let mut config = project_plan(s).config(s.method, job_images(project));
    if let Some(c) = &chosen {
        config.optim.lr = c.lr;
        config.optim.weight_decay = c.weight_decay;
    }
    let job = TrainJob {
        auto: (s.auto && fresh).then(SearchOptions::default),
        data: Data::Samples {
            classes: classes.clone(),
            train,
            val: val.clone(),
        },
        shots: None,
        val_per_class: 0,
        method: s.method,
        options: s.options.clone(),
        init,
        config,
        image_size: None,
        warm_head: false,
    };
    let mut log = |m: &str| send(Reply::Error(m.to_string()));
    let mut ev = |e: &TrainEvent| send(Reply::Event(e.clone()));
    let report = match run_train(gpu(st)?, &b, &job, stop, &mut log, &mut ev) {
        Err(e @ Error::Diverged { lr, .. }) => {
            send(Reply::Diverged {
                message: e.to_string(),
                lr,
            });
            return Ok(());
        }
        other => other?,
    };
    let (g, vit) = gpu_vit(st)?;
    let evaluation = match &val {
        Some(v) if !v.is_empty() => {
            let t = crate::job::eval_transform(&b, None);
            let gt = GpuTuning::upload(g, &report.outcome.best)?;
            let logits = predict_logits(g, vit, &t, &gt, v, 32)?;
            Some(Evaluation::from_logits(
                classes.clone(),
                &logits.data,
                &v.labels,
                &v.paths,
            ))
        }
        _ => None,
    };
    let parameters = report.outcome.best.parameter_count();
    let (best_epoch, stopped) = (report.outcome.best_epoch, report.outcome.stopped);
    let diverged = report.outcome.diverged.clone();
    let lr = report
        .selection
        .as_ref()
        .map_or(job.config.optim.lr, |s| s.chosen.lr);
    // A continued run keeps the search that chose its setting.
    let selection = report.selection.or_else(|| {
        let kept = st.tuning.as_ref().and_then(|t| t.1.selection.clone());
        kept.filter(|_| !fresh)
    });
    let mut meta = report.meta;
    if meta.selection.is_none() {
        meta.selection = selection.clone();
    }
    st.tuning = Some((report.outcome.best, meta));
    send(Reply::Trained(Trained {
        evaluation,
        classes,
        parameters,
        selection,
        best_epoch,
        stopped,
        continued: !fresh,
        method: s.method,
        lr,
        diverged,
    }));
    Ok(())
}

/// Maps drawn with one request's style: the backbone's, and the tuned model's with its top class (its tensors
/// uploaded once for every image of a grid).
struct Maps<'s> {
    gpu: &'s Gpu,
    vit: &'s GpuViT,
    transform: crate::preprocess::Transform,
    style: MapStyle,
    tuned: Option<(GpuTuning, Vec<String>)>,
}

/// What `Maps::draw` gives: the backbone's map, the tuned model's, and its top class.
type Drawn = (
    Option<image::RgbImage>,
    Option<image::RgbImage>,
    Option<Scored>,
);

impl<'s> Maps<'s> {
    fn new(st: &'s mut State, request: &crate::job::AttentionRequest) -> Result<Self> {
        let (depth, transform) = {
            let b = backbone(st)?;
            (b.config.depth, crate::job::eval_transform(b, None))
        };
        let style = MapStyle {
            mode: request.mode(depth)?,
            fusion: HeadFusion::from_name(&request.head)?,
            colormap: Colormap::from_name(&request.colormap).unwrap_or(Colormap::Inferno),
            alpha: request.alpha,
            class: request.class,
        };
        let tuning = st.tuning.clone();
        let (gpu, vit) = gpu_vit(st)?;
        let tuned = match tuning {
            Some((tn, meta)) => Some((GpuTuning::upload(gpu, &tn)?, meta.classes)),
            None => None,
        };
        Ok(Self {
            gpu,
            vit,
            transform,
            style,
            tuned,
        })
    }

    /// The maps of `image`: the backbone's (with `with_backbone`) and the tuned model's.
    fn draw(&self, image: &std::path::Path, with_backbone: bool) -> Result<Drawn> {
        let (g, vit, t) = (self.gpu, self.vit, &self.transform);
        let img = crate::preprocess::load_rgb(image)?;
        let shown = display_copy(&img);
        // The backbone alone has no prompts: its side of a prompt map is the CLS map of that layer.
        let before_style = MapStyle {
            mode: match self.style.mode {
                MapMode::Prompt { layer, .. } => MapMode::Cls { layer },
                m => m,
            },
            ..self.style
        };
        let before = if with_backbone {
            Some(heat_map(g, vit, None, t, (&img, &shown), &before_style)?.0)
        } else {
            None
        };
        let (after, prediction) = match &self.tuned {
            Some((gt, classes)) => {
                let (drawn, att) = heat_map(g, vit, Some(gt), t, (&img, &shown), &self.style)?;
                let ranked = crate::job::ranked(classes, &crate::job::softmax(&att.logits));
                (Some(drawn), ranked.into_iter().next())
            }
            None => (None, None),
        };
        Ok((before, after, prediction))
    }
}

/// How many training images a project's settings give (for the schedule).
fn job_images(project: &Project) -> usize {
    project
        .classes
        .iter()
        .map(|c| {
            let n = c.images.iter().filter(|i| i.enabled).count();
            project.settings.shots.map_or(n, |k| n.min(k))
        })
        .sum()
}

/// The project's epochs, batch and seed (and its learning rate when set and Auto is off), with the app's
/// augmentation: for the papers' recipe of each method.
fn project_plan(s: &Settings) -> crate::job::RunPlan {
    crate::job::RunPlan {
        epochs: s.epochs,
        batch: s.batch,
        seed: s.seed,
        augment: Augment {
            crop: Some((0.5, 1.0)),
            flip: false,
            ..Augment::default()
        },
        overrides: crate::train::RecipeOverrides {
            lr: s.lr.filter(|_| !s.auto),
            ..Default::default()
        },
    }
}

/// The project's classes, training shots and validation images, decoded; unreadable files are reported.
fn project_samples(
    project: &Project,
    max_side: u32,
    send: &dyn Fn(Reply),
) -> Result<(Vec<String>, Samples, Option<Samples>)> {
    let classes: Vec<String> = project.classes.iter().map(|c| c.name.clone()).collect();
    if classes.len() < 2 {
        return Err(Error::Input(
            "add at least two classes with images before training".into(),
        ));
    }
    if let Some(c) = project
        .classes
        .iter()
        .find(|c| !c.images.iter().any(|i| i.enabled))
    {
        return Err(Error::Input(format!(
            "class `{}` has no images; add some or delete it",
            c.name
        )));
    }
    let mut report = |done, total| send(Reply::Decoding { done, total });
    let (samples, problems) =
        Samples::decode_with_progress(&project.items(), max_side, &mut report);
    for p in problems {
        send(Reply::Error(p));
    }
    let s = &project.settings;
    let (train, val) = samples.k_shot_split(classes.len(), s.shots, s.seed);
    Ok((classes, train, val))
}

/// Small images are shown enlarged so the heat-map can be seen.
fn display_copy(img: &image::RgbImage) -> image::RgbImage {
    let side = img.width().max(img.height());
    if side >= 192 {
        return img.clone();
    }
    let f = 192 / side.max(1);
    image::imageops::resize(
        img,
        img.width() * f,
        img.height() * f,
        image::imageops::FilterType::Nearest,
    )
}
