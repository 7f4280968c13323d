//! The embedded demo: glyph data rendered in-process, a small timm ViT pre-trained on the source glyphs
//! (assets/demo/backbone), few-shot tuning on the target glyphs.

use std::path::Path;

use crate::data::glyphs::{
    class_dir_name, render_set, source_classes, target_classes, Glyphs, Style,
};
use crate::error::{Error, Result};

/// The classes of a split, `source` (pre-training), `target` (few-shot, rendered as the backbone was
/// pre-trained) or `shifted` (the target classes under a domain shift), in the order of their folder names: the
/// order a data set read from `vitune demo-data` folders has, and the demo backbone's head was trained in.
pub fn split_classes(split: &str) -> Result<(Vec<char>, Style)> {
    let (mut classes, style) = match split {
        "source" => (source_classes(), Style::Clean),
        "target" => (target_classes(), Style::Clean),
        "shifted" => (target_classes(), Style::Shifted),
        s => {
            return Err(Error::Input(format!(
                "--split `{s}`: expected source, target or shifted"
            )))
        }
    };
    classes.sort_by_key(|c| class_dir_name(*c));
    Ok((classes, style))
}

/// Writes `per_class` rendered images of every class of `split` as class folders under `out`; returns the count.
pub fn write_glyph_folders(
    split: &str,
    per_class: usize,
    seed: u64,
    size: u32,
    out: &Path,
) -> Result<usize> {
    let (classes, style) = split_classes(split)?;
    let glyphs = Glyphs::new()?;
    let set = render_set(&glyphs, &classes, per_class, seed, size, style);
    let mut counts = vec![0usize; classes.len()];
    for (img, label) in &set {
        let dir = out.join(class_dir_name(classes[*label]));
        std::fs::create_dir_all(&dir).map_err(crate::Error::io("create", &dir))?;
        let path = dir.join(format!("{:05}.png", counts[*label]));
        counts[*label] += 1;
        img.save(&path)
            .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(set.len())
}

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::gpu::Gpu;
use crate::job::{run_train, Data, Init, TrainJob};
use crate::model::{load_backbone_bytes, Backbone, GpuViT, HostTensor, LoadOptions};
use crate::select::{SearchOptions, Selection};
use crate::train::{argmax_rows, predict_logits, Augment, Samples, TrainConfig, TrainEvent};
use crate::tuning::spt::SptKind;
use crate::tuning::GpuTuning;
use crate::tuning::{Method, MethodOptions};
use crate::viz::{image_attention, overlay, Colormap, HeadFusion, MapMode};

mod regret;
pub use regret::{search_regret, RegretOptions, RegretRow};

/// The demo backbone: a ViT (patch 8, width 96, depth 4, 3 heads) pre-trained on the source glyphs by
/// tools/pretrain_demo_backbone.py, in timm's layout.
pub const BACKBONE: &[u8] = include_bytes!("../../assets/demo/backbone/model.safetensors");
pub const BACKBONE_CONFIG: &str = include_str!("../../assets/demo/backbone/config.json");
const BACKBONE_NAME: &str = "assets/demo/backbone/model.safetensors";

pub fn backbone() -> Result<Backbone> {
    let cfg: serde_json::Value = serde_json::from_str(BACKBONE_CONFIG)
        .map_err(|e| Error::Input(format!("the embedded demo config.json is invalid: {e}")))?;
    Ok(load_backbone_bytes(
        BACKBONE,
        Path::new(BACKBONE_NAME),
        Some(&cfg),
        None,
        &LoadOptions::default(),
    )?)
}

/// Class names of the demo backbone's own head (the source glyphs).
pub fn source_class_names() -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(BACKBONE_CONFIG)
        .ok()
        .and_then(|c| crate::model::class_names_from(&c))
        .unwrap_or_default()
}

/// `per_class` rendered images of every class of `split` as samples, with the class folder names.
pub fn glyph_samples(
    split: &str,
    per_class: usize,
    seed: u64,
    size: u32,
) -> Result<(Vec<String>, Samples)> {
    let (classes, style) = split_classes(split)?;
    let glyphs = Glyphs::new()?;
    let set = render_set(&glyphs, &classes, per_class, seed, size, style);
    let (images, labels): (Vec<_>, Vec<_>) = set.into_iter().unzip();
    Ok((
        classes.iter().map(|c| class_dir_name(*c)).collect(),
        Samples::from_images(images, labels),
    ))
}

/// What `vitune demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub shots: usize,
    pub epochs: usize,
    pub seed: u64,
    pub test_per_class: usize,
    /// The glyph split tuned on: `shifted` (the target classes under a domain shift) or `target`.
    pub split: String,
    /// Also run each method with its learning rate and weight decay chosen on the shots (`train --auto`).
    pub auto: Option<SearchOptions>,
    pub out: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            shots: 2,
            epochs: 10,
            seed: 0,
            test_per_class: 10,
            split: "shifted".into(),
            auto: Some(SearchOptions::default()),
            out: PathBuf::from("demo-out"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DemoRow {
    pub label: String,
    pub parameters: usize,
    pub accuracy: f64,
    pub seconds: f64,
    /// The search behind an `--auto` row.
    pub selection: Option<Selection>,
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub rows: Vec<DemoRow>,
    pub tuned: PathBuf,
    pub attention: PathBuf,
    pub classes: usize,
    pub train_images: usize,
    pub test_images: usize,
}

/// The papers' recipe for `method` on the glyphs at batch 16, without augmentation: the renders already vary in
/// font, size, rotation, colour and noise, and a flip would change a glyph's meaning. Never tuned to the glyphs:
/// `--auto` is what chooses a setting for them.
pub fn glyph_recipe(method: Method, epochs: usize, train_images: usize, seed: u64) -> TrainConfig {
    let batch = 16;
    let mut c = TrainConfig::defaults(method, epochs, batch, train_images.div_ceil(batch));
    c.augment = Augment::none();
    c.seed = seed;
    c
}

/// Few-shot prompt tuning of the target glyphs on the embedded backbone against the linear probe, each with the
/// papers' recipe and (with `auto`) with its setting chosen on the shots; writes the prompt method's tuned file
/// (the searched one when there is one) and an attention figure under `opts.out`.
pub fn run(gpu: &Gpu, opts: &DemoOptions, log: &mut dyn FnMut(&str)) -> Result<DemoReport> {
    let backbone = backbone()?;
    let size = backbone.config.image_size.0 as u32;
    let (classes, train) = glyph_samples(&opts.split, opts.shots, opts.seed, size)?;
    let (_, test) = glyph_samples(
        &opts.split,
        opts.test_per_class,
        opts.seed + 1_000_003,
        size,
    )?;
    std::fs::create_dir_all(&opts.out).map_err(crate::Error::io("create", &opts.out))?;
    log(&format!(
        "{} {} glyph classes, {} shots each ({} training images), {} test images; backbone {} ({} parameters)",
        classes.len(),
        opts.split,
        opts.shots,
        train.len(),
        test.len(),
        BACKBONE_NAME,
        backbone.parameter_count()
    ));
    let stop = AtomicBool::new(false);
    let mut rows = Vec::new();
    let mut prompts_tuning = None;
    let runs: [(&str, Method, Init); 2] = [
        ("linear probe", Method::Linear, Init::Method),
        (
            "vpt-deep, SPT init",
            Method::VptDeep,
            Init::Spt(SptKind::Mean),
        ),
    ];
    let vit = GpuViT::new(gpu, &backbone, None)?;
    let transform = crate::job::eval_transform(&backbone, None);
    // The probe with the papers' recipe is the baseline; with `auto` each method also runs with its setting
    // chosen on the shots (the prompt method only so: its recipe run would double the demo's time).
    let mut plan = vec![(runs[0].clone(), None)];
    match &opts.auto {
        Some(a) => {
            plan.push((runs[0].clone(), Some(a.clone())));
            plan.push((runs[1].clone(), Some(a.clone())));
        }
        None => plan.push((runs[1].clone(), None)),
    }
    for ((label, method, init), auto) in plan {
        let start = Instant::now();
        let mut options = MethodOptions::defaults(method);
        options.prompts = 5;
        let config = glyph_recipe(method, opts.epochs, train.len(), opts.seed);
        let mut job = samples_job(&classes, &train, method, options, init, config);
        job.auto = auto.clone();
        let mut quiet = |_: &str| {};
        let mut on_event = |_: &TrainEvent| {};
        let report = run_train(gpu, &backbone, &job, &stop, &mut quiet, &mut on_event)?;
        let accuracy = test_accuracy(
            gpu,
            &vit,
            &transform,
            &report.outcome.best,
            &test,
            classes.len(),
        )?;
        let row = DemoRow {
            label: format!(
                "{label}, {}",
                if auto.is_some() { "--auto" } else { "recipe" }
            ),
            parameters: report.outcome.best.parameter_count(),
            accuracy,
            seconds: start.elapsed().as_secs_f64(),
            selection: report.selection.clone(),
        };
        let recipe = &job.config.optim;
        let setting = match &row.selection {
            Some(s) => format!(
                "chose {} ({:.1}% ± {:.1} on {}-fold); search {:.1}s, planned {:.1} default runs",
                s.chosen.describe(),
                100.0 * s.score,
                100.0 * s.score_std,
                s.table.first().map_or(0, |t| t.folds.len()),
                s.seconds,
                s.schedule.cost
            ),
            None => format!(
                "{:?} lr {:.2e} wd {:.0e} (the papers' recipe)",
                recipe.kind, recipe.lr, recipe.weight_decay
            ),
        };
        log(&format!(
            "{:<30} {:>6} trainable  test accuracy {:5.1}%  ({:.1}s)  {setting}",
            row.label,
            row.parameters,
            100.0 * row.accuracy,
            row.seconds
        ));
        rows.push(row);
        if method == Method::VptDeep {
            prompts_tuning = Some((report.outcome.best, report.meta));
        }
    }
    let (tuning, meta) =
        prompts_tuning.ok_or_else(|| Error::Input("the prompt run produced nothing".into()))?;
    let tuned = opts.out.join("tuned.safetensors");
    crate::tuned::write(&tuned, &tuning, &meta)?;
    let attention = opts.out.join("attention.png");
    let gt = GpuTuning::upload(gpu, &tuning)?;
    attention_figure(gpu, &vit, &gt, &test, &transform, &attention)?;
    Ok(DemoReport {
        rows,
        tuned,
        attention,
        classes: classes.len(),
        train_images: train.len(),
        test_images: test.len(),
    })
}

/// Rows of [image, CLS→patch before tuning, prompt→patch after tuning] for four test images, each upscaled
/// to 128 px.
fn attention_figure(
    gpu: &Gpu,
    vit: &GpuViT,
    tuning: &GpuTuning,
    test: &Samples,
    transform: &crate::preprocess::Transform,
    path: &Path,
) -> Result<()> {
    const CELL: u32 = 128;
    let picks: Vec<usize> = (0..4).map(|i| i * test.len() / 4).collect();
    let mut fig = image::RgbImage::new(3 * CELL, picks.len() as u32 * CELL);
    let last = vit.config.depth - 1;
    for (row, &i) in picks.iter().enumerate() {
        let img = image::imageops::resize(
            test.images[i].as_ref(),
            CELL,
            CELL,
            image::imageops::FilterType::Nearest,
        );
        let px = HostTensor::new(
            vec![1, 3, transform.size.0, transform.size.1],
            transform.apply(&test.images[i]),
        );
        let before = image_attention(gpu, vit, None, &px, false, None)?;
        let after = image_attention(gpu, vit, Some(tuning), &px, false, None)?;
        let cls = before.map(MapMode::Cls { layer: last }, HeadFusion::Mean)?;
        let prm = after.map(
            MapMode::Prompt {
                layer: last,
                prompt: None,
            },
            HeadFusion::Mean,
        )?;
        let full = (0, 0, CELL, CELL);
        let cells = [
            img.clone(),
            overlay(&img, &cls, before.grid, full, Colormap::Inferno, 0.55),
            overlay(&img, &prm, after.grid, full, Colormap::Inferno, 0.55),
        ];
        for (col, c) in cells.iter().enumerate() {
            image::imageops::replace(
                &mut fig,
                c,
                (col as u32 * CELL) as i64,
                (row as u32 * CELL) as i64,
            );
        }
    }
    fig.save(path)
        .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))
}

/// One configuration of the few-shot benchmark.
#[derive(Debug, Clone)]
pub struct BenchMethod {
    pub label: &'static str,
    pub method: Method,
    pub init: BenchInit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchInit {
    Method,
    Spt,
    /// Prompts pre-trained on the source glyphs (PVP).
    Pvp,
}

/// Every method in the registry's order, with SPT's and PVP's initialisations of the demo's prompt method after
/// it.
pub fn bench_methods() -> Vec<BenchMethod> {
    let mut rows = Vec::new();
    for method in Method::ALL {
        rows.push(BenchMethod {
            label: method.name(),
            method,
            init: BenchInit::Method,
        });
        if method == Method::DEFAULT {
            rows.push(BenchMethod {
                label: "vpt-deep + SPT",
                method,
                init: BenchInit::Spt,
            });
            rows.push(BenchMethod {
                label: "vpt-deep + PVP",
                method,
                init: BenchInit::Pvp,
            });
        }
    }
    rows
}

/// A row of the few-shot table: label, trainable parameters, (mean, std) accuracy per shot count.
pub type FewshotRow = (String, usize, Vec<(f64, f64)>);

/// Mean ± std test accuracy per (method, shots) over seeds; also the trainable parameter counts.
pub struct FewshotTable {
    pub shots: Vec<usize>,
    pub rows: Vec<FewshotRow>,
    pub seeds: usize,
    pub epochs: usize,
    pub test_images: usize,
}

impl FewshotTable {
    pub fn markdown(&self) -> String {
        let mut s = String::from("| method | trainable params |");
        for k in &self.shots {
            s.push_str(&format!(" {k}-shot |"));
        }
        s.push_str("\n|---|---:|");
        s.push_str(&"---:|".repeat(self.shots.len()));
        s.push('\n');
        for (label, params, cells) in &self.rows {
            s.push_str(&format!("| {label} | {params} |"));
            for (m, sd) in cells {
                s.push_str(&format!(" {:.1} ± {:.1} |", 100.0 * m, 100.0 * sd));
            }
            s.push('\n');
        }
        s
    }
}

fn bench_options(method: Method) -> MethodOptions {
    let mut o = MethodOptions::defaults(method);
    o.prompts = 5;
    o.bottleneck = 16;
    o.rank = 4;
    o
}

/// What `bench fewshot` runs.
#[derive(Debug, Clone)]
pub struct FewshotOptions {
    pub shots: Vec<usize>,
    pub seeds: usize,
    pub epochs: usize,
    pub test_per_class: usize,
    /// `target` or `shifted`.
    pub split: String,
    /// Also a row per method with its setting chosen on the shots (`--auto`).
    pub auto: Option<SearchOptions>,
}

/// The few-shot benchmark on the target glyphs: every method × shots × seeds, test accuracy on a fixed test set;
/// each method with the papers' recipe, and with `auto` also with its setting searched on the shots.
pub fn fewshot(
    gpu: &Gpu,
    methods: &[BenchMethod],
    o: &FewshotOptions,
    log: &mut dyn FnMut(&str),
) -> Result<FewshotTable> {
    let (shots, seeds, epochs) = (&o.shots[..], o.seeds, o.epochs);
    let backbone = backbone()?;
    let size = backbone.config.image_size.0 as u32;
    let (classes, test) = glyph_samples(&o.split, o.test_per_class, 999_983, size)?;
    let vit = GpuViT::new(gpu, &backbone, None)?;
    let transform = crate::job::eval_transform(&backbone, None);
    let stop = AtomicBool::new(false);
    // PVP: prompts (and a head) pre-trained once on the source glyphs.
    let pvp_file = if methods.iter().any(|m| m.init == BenchInit::Pvp) {
        let (src_classes, src) = glyph_samples("source", 10, 4242, size)?;
        let config = glyph_recipe(Method::VptDeep, 4, src.len(), 0);
        let options = bench_options(Method::VptDeep);
        let job = samples_job(
            &src_classes,
            &src,
            Method::VptDeep,
            options,
            Init::Method,
            config,
        );
        let r = run_train(gpu, &backbone, &job, &stop, &mut |_| {}, &mut |_| {})?;
        let path =
            std::env::temp_dir().join(format!("vitune-pvp-{}.safetensors", std::process::id()));
        crate::tuned::write(&path, &r.outcome.best, &r.meta)?;
        log("pre-trained PVP prompts on the 52 source classes (10 images each, 4 epochs)");
        Some(path)
    } else {
        None
    };
    let mut rows = Vec::new();
    let variants: Vec<Option<SearchOptions>> =
        [None].into_iter().chain(o.auto.clone().map(Some)).collect();
    for (m, auto) in methods
        .iter()
        .flat_map(|m| variants.iter().map(move |a| (m, a)))
    {
        let mut cells = Vec::new();
        let mut params = 0;
        for &k in shots {
            let mut accs = Vec::new();
            for seed in 0..seeds as u64 {
                let (_, train) = glyph_samples(&o.split, k, 17 + seed * 7919, size)?;
                let init = match m.init {
                    BenchInit::Method => Init::Method,
                    BenchInit::Spt => Init::Spt(SptKind::Mean),
                    BenchInit::Pvp => Init::Pretrained(pvp_file.clone().unwrap_or_default()),
                };
                let config = glyph_recipe(m.method, epochs, train.len(), seed);
                let mut job = samples_job(
                    &classes,
                    &train,
                    m.method,
                    bench_options(m.method),
                    init,
                    config,
                );
                job.auto = auto.clone();
                let r = run_train(gpu, &backbone, &job, &stop, &mut |_| {}, &mut |_| {})?;
                params = r.outcome.best.parameter_count();
                let acc =
                    test_accuracy(gpu, &vit, &transform, &r.outcome.best, &test, classes.len())?;
                accs.push(acc);
            }
            let mean = accs.iter().sum::<f64>() / accs.len() as f64;
            let sd = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>()
                / accs.len().max(2).saturating_sub(1) as f64)
                .sqrt();
            log(&format!(
                "{:<16} {}{k}-shot  {:.1} ± {:.1}",
                m.label,
                if auto.is_some() { "--auto " } else { "" },
                100.0 * mean,
                100.0 * sd
            ));
            cells.push((mean, sd));
        }
        let label = match auto {
            Some(_) => format!("{} --auto", m.label),
            None => m.label.to_string(),
        };
        rows.push((label, params, cells));
    }
    if let Some(p) = pvp_file {
        std::fs::remove_file(&p).map_err(Error::io("remove", &p))?;
    }
    Ok(FewshotTable {
        shots: shots.to_vec(),
        rows,
        seeds,
        epochs,
        test_images: test.len(),
    })
}

/// A training job on in-memory samples (the demo's and the benchmark's).
fn samples_job(
    classes: &[String],
    train: &Samples,
    method: Method,
    options: MethodOptions,
    init: Init,
    config: TrainConfig,
) -> TrainJob {
    TrainJob {
        auto: None,
        data: Data::Samples {
            classes: classes.to_vec(),
            train: train.clone(),
            val: None,
        },
        shots: None,
        val_per_class: 0,
        method,
        options,
        init,
        config,
        image_size: None,
        warm_head: false,
    }
}

/// Top-1 accuracy of `tuning` on `test`.
fn test_accuracy(
    gpu: &Gpu,
    vit: &GpuViT,
    transform: &crate::preprocess::Transform,
    tuning: &crate::tuning::Tuning,
    test: &Samples,
    classes: usize,
) -> Result<f64> {
    let gt = GpuTuning::upload(gpu, tuning)?;
    let logits = predict_logits(gpu, vit, transform, &gt, test, 64)?;
    let pred = argmax_rows(&logits.data, classes);
    let correct = pred
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / test.len().max(1) as f64)
}
