//! The `vitune` command line: parses arguments, calls the library, prints. No logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod cli;

use vitune::gpu::Gpu;
use vitune::model::{Backbone, GpuViT, LoadOptions};
use vitune::tuning::spt::SptKind;
use vitune::tuning::{ConvInit, Method, MethodOptions, Tuning};

#[derive(Parser)]
#[command(
    name = "vitune",
    version,
    about = "Few-shot prompt and adapter tuning of frozen Vision Transformers on any GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per run; the size difference between subcommands costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Download a backbone from the Hugging Face hub into its cache (shared with timm and transformers).
    Pull(cli::hub::PullArgs),
    /// The curated backbones vitune loads, with their size and licence, and which are in the cache.
    Models(cli::hub::ModelsArgs),
    /// Print a checkpoint's detected format and configuration.
    Info {
        /// A backbone checkpoint (safetensors), or a hub name hf-hub:ORG/NAME[@REVISION].
        #[arg(required_unless_present = "tuned")]
        backbone: Option<PathBuf>,
        /// A tuned file: its method, classes, backbone and how its setting was chosen.
        #[arg(long)]
        tuned: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the backbone on a tensor of normalised pixels: `pixels` [N,3,H,W] in, `pooled`, `logits`, `attn.{l}` out.
    Forward {
        /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
        /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// A tuned file: run with its prompts, adapters and head.
        #[arg(long)]
        tuned: Option<PathBuf>,
        /// Use a tuned file made for a backbone with other tensors.
        #[arg(long)]
        force: bool,
        /// Input tensors (safetensors).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the result.
        #[arg(long)]
        out: PathBuf,
        /// Also write the post-softmax attention of every layer as `attn.{l}` [N,heads,T,T].
        #[arg(long)]
        attn: bool,
    },
    /// Export a tuned model to run outside vitune: one ONNX file (checked against vitune's own forward before it
    /// is kept), or a merged timm checkpoint with its config.json for methods whose result is a plain ViT.
    Export {
        /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
        /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// A tuned file (from `vitune train`).
        #[arg(long)]
        tuned: PathBuf,
        /// Use a tuned file made for a backbone with other tensors.
        #[arg(long)]
        force: bool,
        /// Where to write: model.onnx, or merged.safetensors with --format timm (config.json goes beside it).
        #[arg(long)]
        out: PathBuf,
        /// onnx (every method) or timm (a merged checkpoint, for methods whose result is a plain ViT).
        #[arg(long, value_enum, default_value = "onnx")]
        format: ExportFormat,
        /// Images for the ONNX self-check (default: a few seeded stand-ins).
        #[arg(long, num_args = 1..)]
        check_images: Vec<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Classify images with a tuned file (or the backbone's own head) and print the top classes.
    Predict {
        /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
        /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// A tuned file from `vitune train`.
        #[arg(long)]
        tuned: Option<PathBuf>,
        /// Use a tuned file made for a backbone with other weights (the shapes must still fit).
        #[arg(long)]
        force: bool,
        /// Image files or folders.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Print the result as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Tune a method few-shot on class folders (one sub-folder of images per class) and write the tuned file.
    Train(TrainArgs),
    /// Score several methods on the same shots by cross-validation (each with its own search under --auto) and
    /// rank them.
    Compare(CompareArgs),
    /// PVP: pre-train prompts (and a head) on a source data set, for `train --init-from`.
    PretrainPrompts(TrainArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a tuned file on class folders.
    Eval {
        /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
        /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// A tuned file (from `vitune train`).
        #[arg(long)]
        tuned: PathBuf,
        /// Class folders: one sub-folder of images per class.
        #[arg(long)]
        data: PathBuf,
        /// Print the result as JSON on standard output.
        #[arg(long)]
        json: bool,
        /// Use a tuned file made for a backbone with other tensors (the shapes must still fit).
        #[arg(long)]
        force: bool,
    },
    /// Write an attention heat-map over an image (at the image's own size).
    Attention {
        /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
        /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// A tuned file (from `vitune train`).
        #[arg(long)]
        tuned: Option<PathBuf>,
        /// Use a tuned file made for a backbone with other tensors (the shapes must still fit).
        #[arg(long)]
        force: bool,
        image: PathBuf,
        /// cls, prompt, rollout or grad-rollout.
        #[arg(long, default_value = "cls")]
        mode: String,
        /// Layer for cls and prompt maps (default: the last).
        #[arg(long)]
        layer: Option<usize>,
        /// Head fusion: mean, max, min, or a head index.
        #[arg(long, default_value = "mean")]
        head: String,
        /// Prompt index for prompt maps (default: the mean over prompts).
        #[arg(long)]
        prompt: Option<usize>,
        /// Class explained by grad-rollout (default: the predicted one).
        #[arg(long)]
        class: Option<usize>,
        /// Rollout's discard ratio (the smallest fraction of attention zeroed; CLS→CLS kept).
        #[arg(long, default_value_t = 0.9)]
        discard: f32,
        /// inferno, viridis or jet.
        #[arg(long, default_value = "inferno")]
        colormap: String,
        /// Opacity of the heat-map.
        #[arg(long, default_value_t = 0.5)]
        alpha: f32,
        /// Where to write the result.
        #[arg(long)]
        out: PathBuf,
    },
    /// Render the demo's glyph data set (source classes for pre-training, target classes for few-shot tuning)
    /// as class folders of PNG images.
    DemoData {
        /// source, target, or shifted (the target classes under a domain shift).
        #[arg(long)]
        split: String,
        /// Images written per class.
        #[arg(long, default_value_t = 100)]
        per_class: usize,
        /// Seed for the shots drawn, the augmentation and the initialisation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image side in pixels.
        #[arg(long, default_value_t = 32)]
        size: u32,
        /// Where to write the result.
        #[arg(long)]
        out: PathBuf,
    },
    /// Loss and gradients of every trainable tensor of a method: `pixels` and `labels` in; `loss` and one
    /// gradient per tensor (named as in the tuned file) out. Dropout is off.
    Grad {
        /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
        /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        method: MethodArgs,
        /// Start every trainable tensor from this file (tuned file, or plain safetensors with the same names).
        #[arg(long)]
        tuned: Option<PathBuf>,
        /// Classes of the new head (without --tuned).
        #[arg(long)]
        num_classes: Option<usize>,
        /// Seed of the method's initialisation (without --tuned).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Input tensors (safetensors).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the result.
        #[arg(long)]
        out: PathBuf,
    },
    /// The embedded demo: few-shot prompt tuning of 20 glyph classes on the shipped backbone, against the linear
    /// probe; writes the tuned file and an attention figure.
    Demo {
        /// Training images per class.
        #[arg(long, default_value_t = 2)]
        shots: usize,
        /// Training epochs (the run keeps the epoch best on validation).
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Seed for the shots drawn, the augmentation and the initialisation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Test images per class.
        #[arg(long, default_value_t = 10)]
        test_per_class: usize,
        /// The glyph split: shifted (the target classes under a domain shift) or target.
        #[arg(long, default_value = "shifted")]
        split: String,
        /// Only the papers' recipes (no search on the shots).
        #[arg(long)]
        no_auto: bool,
        /// The most each search may cost, in default runs.
        #[arg(long, default_value_t = vitune::select::halving::DEFAULT_BUDGET)]
        auto_budget: f64,
        /// Where to write the result.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
    },
    /// Does vitune compute correctly on this GPU, and how fast? Checks against embedded golden data (timm's
    /// forward, autograd's gradients, a CPU matmul reference) with every kernel variant the adapter could use,
    /// then two speed figures. Exits non-zero on any failure.
    Selftest {
        /// Only the checks (no speed figures).
        #[arg(long)]
        quick: bool,
        /// Print the result as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Open the desktop app (also what `vitune` with no command does).
    App {
        /// A project file to open (else the last one, else the demo project).
        project: Option<PathBuf>,
    },
    /// Measure speed: `forward` (the whole model) or `matmul` (the kernel alone at ViT-B shapes).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Forward throughput of a standard config with random weights.
    Forward(BenchArgs),
    /// The matmul kernel alone at M = batch·197, K = 768, N ∈ {2304, 768, 3072}.
    Matmul(BenchArgs),
    /// The peaks the floors are taken against: our best fp32 matmul rate and the copy bandwidth.
    Peaks,
    /// Few-shot accuracy of every method on the demo's target glyphs (mean ± std over seeds).
    Fewshot {
        /// Comma-separated shot counts.
        #[arg(long, default_value = "1,2,4,8")]
        shots: String,
        /// Draws of the shots per shot count.
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        /// Training epochs (the run keeps the epoch best on validation).
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        /// Test images per class (fixed across seeds).
        #[arg(long, default_value_t = 50)]
        test_per_class: usize,
        /// Comma-separated method labels (default: all).
        #[arg(long)]
        methods: Option<String>,
        /// The glyph split: target (rendered as the backbone was pre-trained) or shifted.
        #[arg(long, default_value = "target")]
        split: String,
        /// Also a row per method with its setting searched on the shots (as `train --auto`).
        #[arg(long)]
        auto: bool,
    },
    /// A training step of a method: images/s, step/forward ratio, memory per image, trainable parameters.
    Train {
        #[command(flatten)]
        args: BenchArgs,
        /// The method whose training step is timed.
        #[arg(long, default_value = "vpt-deep")]
        method: String,
        /// Skip timing a forward of the same batch (no step / forward ratio).
        #[arg(long)]
        no_forward: bool,
        /// Skip the extra step with timestamp queries (no per-kernel floors table).
        #[arg(long)]
        no_profile: bool,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormat {
    /// One self-contained ONNX file (opset 17, f32): pixels in; logits, probabilities, pooled out.
    Onnx,
    /// A merged timm state dict (safetensors) and config.json: linear, bitfit, lora, ssf, full.
    Timm,
}

#[derive(Args)]
struct BenchArgs {
    /// vit-ti16, vit-s16, vit-b16, vit-l16, or demo (a tiny config).
    #[arg(long, default_value = "vit-b16")]
    config: String,
    /// Images per training step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed repetitions after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
}

#[derive(Args)]
struct TrainArgs {
    /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
    /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
    #[arg(long)]
    backbone: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    method: MethodArgs,
    /// Images per class to train on, drawn with the seed (all when unset).
    #[arg(long)]
    shots: Option<usize>,
    /// Training epochs (the run keeps the epoch best on validation).
    #[arg(long, default_value_t = vitune::train::DEFAULT_EPOCHS)]
    epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = vitune::train::DEFAULT_BATCH)]
    batch: usize,
    /// Peak learning rate (the method's default when unset).
    #[arg(long)]
    lr: Option<f32>,
    /// Weight decay (the method's default when unset).
    #[arg(long)]
    wd: Option<f32>,
    /// sgd or adamw (the method's default when unset).
    #[arg(long)]
    optimizer: Option<String>,
    /// Seed for the shots drawn, the augmentation and the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validation class folders; without it, up to --val-per-class of the images not drawn as shots.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Without --val: at most this many images per class that were not drawn as shots validate each epoch.
    #[arg(long, default_value_t = 20)]
    val_per_class: usize,
    #[command(flatten)]
    aug: AugArgs,
    #[command(flatten)]
    auto: AutoArgs,
    /// Prompt initialisation: method (the method's own), spt-mean, spt-max, spt-random or spt-kmeans.
    #[arg(long, default_value = "method")]
    init: String,
    /// PVP: start the prompts from a file of `vitune pretrain-prompts` (the head is made anew).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Continue from a tuned file of the same method and classes.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print the search (with --auto) as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Where to write the result.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct CompareArgs {
    /// The backbone: a safetensors checkpoint (config.json beside it is read), or a hub name
    /// hf-hub:ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded on first use; see `vitune models`).
    #[arg(long)]
    backbone: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated methods, each with the papers' default options.
    #[arg(
        long,
        default_value = "linear,bitfit,vpt-shallow,vpt-deep,lora,adaptformer,convpass"
    )]
    methods: String,
    /// Images per class, drawn with each seed (all when unset).
    #[arg(long)]
    shots: Option<usize>,
    /// Draws of the shots (seeds 0..S); the score's spread is over seeds when S > 1, else over folds.
    #[arg(long, default_value_t = 1)]
    seeds: usize,
    /// Training epochs (the run keeps the epoch best on validation).
    #[arg(long, default_value_t = vitune::train::DEFAULT_EPOCHS)]
    epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = vitune::train::DEFAULT_BATCH)]
    batch: usize,
    #[command(flatten)]
    auto: AutoArgs,
    #[command(flatten)]
    aug: AugArgs,
    /// Write each method's tuned file (its scored setting trained on the first draw) into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Hyper-parameter selection on the training images.
#[derive(Args, Clone)]
struct AutoArgs {
    /// Choose the learning rate and weight decay first: k-fold cross-validation over the shots, successive
    /// halving over the papers' grid, at most --auto-budget default runs.
    #[arg(long)]
    auto: bool,
    /// With --auto, also choose the VPT prompt count from 5, 10 and 50.
    #[arg(long, requires = "auto")]
    auto_prompts: bool,
    /// The most the search may cost, in default runs.
    #[arg(long, default_value_t = vitune::select::halving::DEFAULT_BUDGET, requires = "auto")]
    auto_budget: f64,
}

impl AutoArgs {
    fn options(&self) -> Option<vitune::select::SearchOptions> {
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
struct AugArgs {
    /// No augmentation (the eval transform for training too).
    #[arg(long)]
    no_aug: bool,
    /// No horizontal flips (for data whose meaning flips, such as characters).
    #[arg(long)]
    no_flip: bool,
    /// Smallest area fraction of the random resized crop.
    #[arg(long, default_value_t = 0.08)]
    crop_scale: f32,
}

impl AugArgs {
    fn augment(&self) -> vitune::train::Augment {
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
struct MethodArgs {
    /// linear, bitfit, vpt-shallow, vpt-deep, lora, adaptformer, convpass, ssf or full.
    #[arg(long)]
    method: String,
    /// VPT prompt tokens (default 10).
    #[arg(long)]
    prompts: Option<usize>,
    /// LoRA rank (default 8).
    #[arg(long)]
    rank: Option<usize>,
    /// LoRA alpha (default 8).
    #[arg(long)]
    alpha: Option<f32>,
    /// LoRA targets among q, k, v (default qv).
    #[arg(long)]
    lora_targets: Option<String>,
    /// AdaptFormer bottleneck (default 64).
    #[arg(long)]
    bottleneck: Option<usize>,
    /// AdaptFormer / Convpass scale (defaults 0.1 / 1.0).
    #[arg(long)]
    scale: Option<f32>,
    /// Convpass hidden width (default 8).
    #[arg(long)]
    convpass_dim: Option<usize>,
    /// Convpass conv initialisation: xavier or identity.
    #[arg(long)]
    conv_init: Option<String>,
    /// Training dropout: VPT prompt dropout (default 0.1 for vpt-deep, 0 for vpt-shallow) or the Convpass
    /// bypass's dropout (default 0.1). Never applied by `grad`, `eval` or `predict`.
    #[arg(long, visible_alias = "prompt-dropout")]
    dropout: Option<f32>,
}

impl MethodArgs {
    fn resolve(&self) -> Result<(Method, MethodOptions)> {
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
struct LoadArgs {
    /// Attention heads (when neither config.json nor the width tells).
    #[arg(long)]
    heads: Option<usize>,
    /// LayerNorm epsilon.
    #[arg(long)]
    eps: Option<f32>,
    /// Normalisation mean, three comma-separated numbers.
    #[arg(long, value_parser = parse_triple)]
    mean: Option<[f32; 3]>,
    /// Normalisation std, three comma-separated numbers.
    #[arg(long, value_parser = parse_triple)]
    std: Option<[f32; 3]>,
    /// The MLP activation (when neither config.json nor the architecture name says; OpenAI CLIP uses quick-gelu).
    #[arg(long, value_enum)]
    act: Option<ActArg>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ActArg {
    Gelu,
    QuickGelu,
}

fn parse_triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| format!("`{x}`: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    v.try_into()
        .map_err(|_| format!("expected three comma-separated numbers, got `{s}`"))
}

impl LoadArgs {
    fn load(&self, path: &Path) -> Result<Backbone> {
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
        let mut bar = cli::hub::ProgressBar::default();
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::App { .. })) {
        quiet_headless_windowing();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// On a machine without a desktop session (SSH, containers) `XDG_RUNTIME_DIR` is unset, and the Vulkan loader's
/// Wayland probe prints "error: XDG_RUNTIME_DIR is invalid or not set" twice before any work, which reads as
/// vitune failing. The headless commands never open a window: point it at a private empty folder so the probe finds
/// no display quietly. Called first in `main`, before any thread exists.
fn quiet_headless_windowing() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .is_some_and(|p| p.is_dir());
        if valid {
            return;
        }
        let dir = std::env::temp_dir().join(format!(
            "vitune-runtime-{}",
            std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0)
        ));
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        if made.is_ok() || dir.is_dir() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => Ok(vitune::app::run(None)?),
        Some(Command::App { project }) => Ok(vitune::app::run(project)?),
        Some(Command::Demo {
            shots,
            epochs,
            seed,
            test_per_class,
            split,
            no_auto,
            auto_budget,
            out,
        }) => {
            let start = std::time::Instant::now();
            let gpu = Gpu::new()?;
            eprintln!("adapter: {}", gpu.describe());
            let opts = vitune::demo::DemoOptions {
                shots,
                epochs,
                seed,
                test_per_class,
                split,
                auto: (!no_auto).then(|| vitune::select::SearchOptions {
                    budget: auto_budget,
                    ..Default::default()
                }),
                out,
            };
            let r = vitune::demo::run(&gpu, &opts, &mut |m| println!("{m}"))?;
            println!(
                "wrote {} and {} ({:.1}s in all)",
                r.tuned.display(),
                r.attention.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some(Command::Pull(a)) => cli::hub::pull(&a),
        Some(Command::Models(a)) => cli::hub::models(&a),
        Some(Command::Info {
            backbone,
            tuned,
            load,
            json,
        }) => {
            if let Some(b) = &backbone {
                info(b, &load, json)?;
            }
            if let Some(t) = &tuned {
                tuned_info(t, json)?;
            }
            Ok(())
        }
        Some(Command::Forward {
            backbone,
            load,
            tuned,
            force,
            input,
            out,
            attn,
        }) => {
            let b = load.load(&backbone)?;
            let tuned = match tuned {
                Some(t) => Some(vitune::tuned::read(&t, &b, force)?.tuning),
                None => None,
            };
            let mut tensors = vitune::io::read_tensors(&input)?;
            let pixels = vitune::io::take(&mut tensors, "pixels", &input)?;
            let outs =
                vitune::job::forward_tensors(&Gpu::new()?, &b, tuned.as_ref(), &pixels, attn)
                    .with_context(|| format!("the forward of {}", input.display()))?;
            vitune::io::write_tensors(&out, &outs, None)?;
            Ok(())
        }
        Some(Command::Export {
            backbone,
            load,
            tuned,
            force,
            out,
            format,
            check_images,
            json,
        }) => {
            let b = load.load(&backbone)?;
            let t = vitune::tuned::read(&tuned, &b, force)?;
            match format {
                ExportFormat::Onnx => {
                    let pixels = if check_images.is_empty() {
                        None
                    } else {
                        let size = vitune::export::input_size(&b, &t);
                        let transform = vitune::job::eval_transform(&b, Some(size));
                        Some(transform.batch(&check_images)?)
                    };
                    let r = vitune::export::export_onnx(&Gpu::new()?, &b, &t, &out, pixels)
                        .with_context(|| format!("exporting {}", tuned.display()))?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    } else {
                        println!(
                            "wrote {} ({:.1} MiB, input {}x{}): {}",
                            r.path.display(),
                            r.bytes as f64 / (1 << 20) as f64,
                            r.input_size.0,
                            r.input_size.1,
                            r.check.describe()
                        );
                    }
                }
                ExportFormat::Timm => {
                    let r = vitune::export::timm::export_timm(&b, &t, &out)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    } else {
                        println!(
                            "wrote {} and {} (timm architecture {}, {} classes)",
                            r.weights.display(),
                            r.config.display(),
                            r.architecture,
                            t.tuning.num_classes
                        );
                        if let Some(n) = &r.note {
                            println!("note: {n}");
                        }
                    }
                }
            }
            Ok(())
        }
        Some(Command::Predict {
            backbone,
            load,
            tuned,
            force,
            images,
            top,
            json,
        }) => predict(
            &backbone,
            &load,
            tuned.as_deref(),
            force,
            &images,
            top,
            json,
        ),
        Some(Command::Attention {
            backbone,
            load,
            tuned,
            force,
            image,
            mode,
            layer,
            head,
            prompt,
            class,
            discard,
            colormap,
            alpha,
            out,
        }) => {
            let b = load.load(&backbone)?;
            let req = vitune::job::AttentionRequest {
                mode,
                layer,
                head,
                prompt,
                class,
                discard,
                colormap,
                alpha,
            };
            let input = vitune::job::prepare_predict(
                &b,
                tuned.as_deref(),
                std::slice::from_ref(&image),
                force,
            )?;
            let gpu = Gpu::new()?;
            let (img, class) = vitune::job::attention_overlay(&gpu, &b, &input, &image, &req)?;
            img.save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({}x{}){}",
                out.display(),
                img.width(),
                img.height(),
                class.map(|c| format!(", class {c}")).unwrap_or_default()
            );
            Ok(())
        }
        Some(Command::DemoData {
            split,
            per_class,
            seed,
            size,
            out,
        }) => {
            let n = vitune::demo::write_glyph_folders(&split, per_class, seed, size, &out)?;
            eprintln!("wrote {n} images to {}", out.display());
            Ok(())
        }
        Some(Command::Train(a)) => train(&a, false),
        Some(Command::Compare(a)) => compare(&a),
        Some(Command::Selftest { quick, json }) => {
            let gpu = Gpu::new()?;
            if !quick && gpu.info.device_type == wgpu::DeviceType::Cpu {
                eprintln!(
                    "note: on a CPU adapter the ViT-B/16 speed figure takes minutes; --quick skips the speed figures"
                );
            }
            let r = vitune::selftest::run(&gpu, quick, &mut |m| eprintln!("{m}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.text());
            }
            if !r.passed {
                bail!("selftest failed on {}", gpu.describe());
            }
            Ok(())
        }
        Some(Command::PretrainPrompts(a)) => train(&a, true),
        Some(Command::Eval {
            backbone,
            load,
            tuned,
            data,
            json,
            force,
        }) => eval(&backbone, &load, &tuned, &data, json, force),
        Some(Command::Grad {
            backbone,
            load,
            method,
            tuned,
            num_classes,
            seed,
            input,
            out,
        }) => grad(
            &backbone,
            &load,
            &method,
            tuned.as_deref(),
            num_classes,
            seed,
            &input,
            &out,
        ),
        Some(Command::Bench { what }) => match what {
            BenchCommand::Forward(a) => {
                let gpu = Gpu::new()?;
                warn_slow_bench(&gpu, &a.config);
                let r = vitune::bench::forward(&gpu, &a.config, a.batch, a.iters)?;
                println!("{r}");
                Ok(())
            }
            BenchCommand::Fewshot {
                shots,
                seeds,
                epochs,
                test_per_class,
                methods,
                split,
                auto,
            } => {
                let shots: Vec<usize> = shots
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|e| anyhow::anyhow!("--shots `{s}`: {e}"))
                    })
                    .collect::<Result<_>>()?;
                let all = vitune::demo::bench_methods();
                let chosen: Vec<_> = match &methods {
                    None => all,
                    Some(list) => {
                        let want: Vec<&str> = list.split(',').map(str::trim).collect();
                        all.into_iter()
                            .filter(|m| want.contains(&m.label))
                            .collect()
                    }
                };
                let gpu = Gpu::new()?;
                let start = std::time::Instant::now();
                let opts = vitune::demo::FewshotOptions {
                    shots,
                    seeds,
                    epochs,
                    test_per_class,
                    split,
                    auto: auto.then(vitune::select::SearchOptions::default),
                };
                let t = vitune::demo::fewshot(&gpu, &chosen, &opts, &mut |m| eprintln!("{m}"))?;
                println!("adapter: {}", gpu.describe());
                println!(
                    "{} seeds, {} epochs, {} test images, {:.0}s\n",
                    t.seeds,
                    t.epochs,
                    t.test_images,
                    start.elapsed().as_secs_f64()
                );
                println!("{}", t.markdown());
                Ok(())
            }
            BenchCommand::Train {
                args: a,
                method,
                no_forward,
                no_profile,
            } => {
                let gpu = Gpu::new()?;
                warn_slow_bench(&gpu, &a.config);
                let extras = vitune::bench::TrainExtras {
                    forward: !no_forward,
                    profile: !no_profile,
                };
                let r = vitune::bench::train(&gpu, &a.config, &method, a.batch, a.iters, extras)?;
                println!("{r}");
                Ok(())
            }
            BenchCommand::Matmul(a) => {
                let gpu = Gpu::new()?;
                let r = vitune::bench::matmul(&gpu, a.batch, a.iters)?;
                println!("{r}");
                Ok(())
            }
            BenchCommand::Peaks => {
                let gpu = Gpu::new()?;
                let p = vitune::bench::measure_peaks(&gpu)?;
                println!("adapter       {}", gpu.describe());
                println!(
                    "matmul        {:.2} GFLOP/s (fp32, best of 2)",
                    p.flops / 1e9
                );
                println!("copy          {:.2} GB/s (read + write)", p.bytes / 1e9);
                Ok(())
            }
        },
    }
}

fn info(path: &Path, load: &LoadArgs, json: bool) -> Result<()> {
    let b = load.load(path)?;
    let c = &b.config;
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "config": c,
            "parameters": b.parameter_count(),
            "sha256": b.sha256,
            "source": b.source,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("file          {}", path.display());
    println!("format        {:?}", c.format);
    println!("width         {}", c.dim);
    println!("depth         {}", c.depth);
    println!("heads         {} (from {})", c.heads, c.heads_source);
    println!("mlp hidden    {}", c.mlp_hidden);
    println!("patch         {}", c.patch);
    println!("image size    {}x{}", c.image_size.0, c.image_size.1);
    println!("family        {}", c.family());
    println!("pooling       {:?}", c.pooling);
    println!("layer scale   {}", c.layer_scale);
    println!("pre-norm      {}", c.pre_norm);
    println!("mlp act       {:?}", c.mlp_act);
    if !c.absent_biases.is_empty() {
        println!("absent biases {}", c.absent_biases.join(", "));
    }
    println!("eps           {:e}", c.eps);
    println!("mean          {:?}", c.mean);
    println!("std           {:?}", c.std);
    println!("crop pct      {}", c.crop_pct);
    println!("head classes  {}", c.num_classes);
    println!("parameters    {}", b.parameter_count());
    println!("sha256        {}", b.sha256);
    if let Some(source) = &b.source {
        println!("from          {source} ({})", b.path.display());
    }
    Ok(())
}

fn tuned_info(path: &Path, json: bool) -> Result<()> {
    let m = vitune::tuned::read_meta(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    println!("tuned file    {}", path.display());
    match m.options.describe(m.method) {
        settings if settings.is_empty() => println!("method        {}", m.method),
        settings => println!("method        {} ({settings})", m.method),
    }
    println!(
        "classes       {} ({})",
        m.classes.len(),
        m.classes.join(", ")
    );
    println!(
        "backbone      {} (sha256 {})",
        m.backbone_file, m.backbone_sha256
    );
    if let Some(source) = &m.backbone_source {
        println!("from          {source}");
    }
    println!("image size    {}x{}", m.image_size.0, m.image_size.1);
    println!("init          {}", m.init);
    println!("vitune        {}", m.vitune_version);
    match &m.selection {
        None => println!("selection     none (the recipe's learning rate and weight decay)"),
        Some(s) => {
            println!(
                "selection     lr {:.3e}, wd {:.0e}{} chosen by {}: {:.1}% ± {:.1}",
                s.chosen.lr,
                s.chosen.weight_decay,
                s.chosen
                    .prompts
                    .map(|p| format!(", {p} prompts"))
                    .unwrap_or_default(),
                s.protocol,
                100.0 * s.score,
                100.0 * s.score_std
            );
            print!("{}", s.table_text());
        }
    }
    Ok(())
}

fn print_search_event(e: &vitune::select::SearchEvent) {
    use vitune::select::SearchEvent;
    match e {
        SearchEvent::Planned {
            protocol,
            candidates,
            schedule,
        } => eprintln!(
            "search: {candidates} settings, {protocol}; rungs {} (candidates x epochs); planned cost {:.1} default runs",
            schedule
                .rungs
                .iter()
                .map(|r| format!("{}x{}", r.candidates, r.epochs))
                .collect::<Vec<_>>()
                .join(" -> "),
            schedule.cost
        ),
        SearchEvent::Trial {
            rung,
            rungs,
            index,
            of,
            trial,
        } => eprintln!(
            "  rung {}/{rungs} {:>2}/{of}  lr {:.3e} wd {:.0e}{}  {:5.1}% ± {:4.1}{}",
            rung + 1,
            index + 1,
            trial.candidate.lr,
            trial.candidate.weight_decay,
            trial
                .candidate
                .prompts
                .map(|p| format!(" p {p}"))
                .unwrap_or_default(),
            100.0 * trial.mean,
            100.0 * trial.std,
            if trial.diverged { " (diverged)" } else { "" }
        ),
        SearchEvent::Note(m) => eprintln!("{m}"),
    }
}

fn compare(a: &CompareArgs) -> Result<()> {
    use std::sync::atomic::AtomicBool;
    use vitune::job::{eval_transform, Init, Recipe, Session};
    use vitune::select::CompareEntry;
    use vitune::train::{Dataset, Samples, TrainConfig};

    let b = a.load.load(&a.backbone)?;
    let ds = Dataset::from_folder(&a.data)?;
    let mut draws = Vec::new();
    for seed in 0..a.seeds.max(1) as u64 {
        let idx = match a.shots {
            Some(k) => ds.k_shot(k, seed).0,
            None => (0..ds.items.len()).collect(),
        };
        let items: Vec<_> = idx.iter().map(|&i| ds.items[i].clone()).collect();
        let side = vitune::train::working_side(b.config.image_size);
        let (s, problems): (Samples, _) = Samples::decode(&items, side);
        problems.iter().for_each(|p| eprintln!("warning: {p}"));
        draws.push(s);
    }
    let images = draws[0].len();
    let mut entries = Vec::new();
    for name in a
        .methods
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let method = Method::from_name(name)?;
        let mut config =
            TrainConfig::defaults(method, a.epochs, a.batch, images.div_ceil(a.batch.max(1)));
        config.augment = a.aug.augment();
        entries.push(CompareEntry {
            label: name.to_string(),
            recipe: Recipe {
                method,
                options: MethodOptions::defaults(method),
                init: Init::Method,
                config,
            },
        });
    }
    eprintln!(
        "comparing {} methods on {} ({} classes, {images} training images{}, {} draw(s)){}",
        entries.len(),
        a.data.display(),
        ds.classes.len(),
        a.shots.map(|k| format!(", {k}-shot")).unwrap_or_default(),
        a.seeds.max(1),
        if a.auto.auto {
            ", each with its own search"
        } else {
            ", the papers' recipes"
        }
    );
    let gpu = Gpu::new()?;
    let transform = eval_transform(&b, None);
    let vit = GpuViT::new(&gpu, &b, Some(transform.size))?;
    let session = Session::new(&gpu, &b, &vit, &transform);
    let stop = AtomicBool::new(false);
    let auto = a.auto.options();
    let rows = vitune::select::compare(
        &session,
        &ds.classes,
        &draws,
        &entries,
        auto.as_ref(),
        a.out.as_deref(),
        &stop,
        &mut |m| eprintln!("{m}"),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", vitune::select::compare_table(&rows));
        if let Some(r) = rows.first() {
            eprintln!("scored by {}", r.protocol);
        }
    }
    Ok(())
}

fn predict(
    path: &Path,
    load: &LoadArgs,
    tuned: Option<&Path>,
    force: bool,
    images: &[PathBuf],
    top: usize,
    json: bool,
) -> Result<()> {
    let b = load.load(path)?;
    let input = vitune::job::prepare_predict(&b, tuned, images, force)?;
    let gpu = Gpu::new()?;
    let (names, rows) = vitune::job::predict(&gpu, &b, &input)?;
    let mut results = Vec::new();
    for (img, probs) in input.images.iter().zip(&rows) {
        let topk: Vec<(usize, String, f32)> = vitune::job::ranked(&names, probs)
            .into_iter()
            .take(top)
            .map(|(n, p)| (names.iter().position(|x| *x == n).unwrap_or(0), n, p))
            .collect();
        results.push((img.display().to_string(), topk));
    }
    for (img, why) in &input.failed {
        eprintln!("error: skipped {}: {why}", img.display());
    }
    if json {
        let mut v: Vec<_> = results
            .iter()
            .map(|(img, topk)| {
                serde_json::json!({
                    "image": img,
                    "top": topk.iter().map(|(k, n, p)| serde_json::json!({"index": k, "class": n, "probability": p})).collect::<Vec<_>>(),
                })
            })
            .collect();
        v.extend(input.failed.iter().map(
            |(img, why)| serde_json::json!({"image": img.display().to_string(), "error": why}),
        ));
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (img, topk) in results {
            println!("{img}");
            for (k, n, p) in topk {
                println!("  {:6.2}%  {n} ({k})", p * 100.0);
            }
        }
    }
    if !input.failed.is_empty() {
        bail!(
            "{} of {} images could not be read (named above); the others' results are printed",
            input.failed.len(),
            images.len()
        );
    }
    Ok(())
}

fn eval(
    path: &Path,
    load: &LoadArgs,
    tuned: &Path,
    data: &Path,
    json: bool,
    force: bool,
) -> Result<()> {
    let b = load.load(path)?;
    let gpu = Gpu::new()?;
    let (ev, problems) = vitune::job::evaluate(&gpu, &b, tuned, data, force)?;
    for p in &problems {
        eprintln!("error: {p}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        print!("{}", ev.table());
    }
    if !problems.is_empty() {
        bail!(
            "{} images could not be read (named above); the evaluation covers the others",
            problems.len()
        );
    }
    Ok(())
}

fn train(a: &TrainArgs, pretrain: bool) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use vitune::job::{Data, Init, TrainJob};
    use vitune::train::{OptimizerKind, TrainConfig, TrainEvent};

    let b = a.load.load(&a.backbone)?;
    let (method, options) = a.method.resolve()?;
    if pretrain && !method.uses_prompts() {
        bail!("pretrain-prompts trains prompts: use --method vpt-deep or vpt-shallow");
    }
    let init = match (a.init.as_str(), &a.init_from, &a.resume) {
        (_, Some(_), Some(_)) => bail!("--init-from and --resume exclude each other"),
        ("method", Some(p), None) => Init::Pretrained(p.clone()),
        ("method", None, Some(p)) => Init::Tuned(p.clone()),
        ("method", None, None) => Init::Method,
        (k, None, None) => Init::Spt(SptKind::from_name(k).ok_or_else(|| {
            anyhow::anyhow!(
                "--init `{k}`: expected method, spt-mean, spt-max, spt-random or spt-kmeans"
            )
        })?),
        (k, _, _) => bail!("--init {k} cannot be combined with --init-from or --resume"),
    };
    let ds = vitune::train::Dataset::from_folder(&a.data)?;
    let train_images = ds.shot_count(a.shots);
    let optimizer = match &a.optimizer {
        Some(k) => Some(
            OptimizerKind::from_name(k)
                .ok_or_else(|| anyhow::anyhow!("--optimizer `{k}`: expected sgd or adamw"))?,
        ),
        None => None,
    };
    let steps = train_images.div_ceil(a.batch.max(1));
    let mut config = TrainConfig::defaults(method, a.epochs, a.batch, steps).overridden(
        &vitune::train::RecipeOverrides {
            optimizer,
            lr: a.lr,
            weight_decay: a.wd,
        },
    );
    config.seed = a.seed;
    config.augment = a.aug.augment();
    if a.auto.auto && (a.lr.is_some() || a.wd.is_some()) {
        bail!("--auto chooses the learning rate and weight decay: drop --lr/--wd, or drop --auto");
    }
    if a.auto.auto_prompts && (!method.uses_prompts() || a.method.prompts.is_some()) {
        bail!("--auto-prompts chooses the prompt count of vpt-shallow or vpt-deep (without --prompts)");
    }
    let job = TrainJob {
        auto: if pretrain { None } else { a.auto.options() },
        data: Data::Folder {
            dir: a.data.clone(),
            val_dir: a.val.clone(),
        },
        shots: if pretrain { None } else { a.shots },
        val_per_class: a.val_per_class,
        method,
        options: options.clone(),
        init,
        config: config.clone(),
        image_size: None,
    };
    eprintln!(
        "{} on {} ({} classes, {} training images{}), backbone {}",
        method,
        a.data.display(),
        ds.classes.len(),
        train_images,
        a.shots.map(|k| format!(", {k}-shot")).unwrap_or_default(),
        b.source.clone().unwrap_or_else(|| b.file_name())
    );
    let described = options.describe(method);
    let options_text = if described.is_empty() {
        "no options".to_string()
    } else {
        format!("options: {described}")
    };
    eprintln!(
        "  {options_text} | init {} | {:?} lr {} wd {} | {} epochs, batch {}, warmup {} of {} steps, cosine | seed {}",
        job.init.describe(),
        config.optim.kind,
        config.optim.lr,
        config.optim.weight_decay,
        config.epochs,
        config.batch,
        config.optim.warmup_steps,
        config.optim.total_steps,
        config.seed
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C ends the process at once.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after this step; the best tuned file so far will be written");
        });
    }
    let gpu = Gpu::new()?;
    let mut log = |m: &str| eprintln!("warning: {m}");
    // On a terminal the step line redraws in place; elsewhere (a log file, a pipe) only whole lines are written.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let total_epochs = job.config.epochs;
    let mut epoch_seconds = 0.0;
    let mut on_event = |e: &TrainEvent| match e {
        TrainEvent::Step {
            epoch,
            step,
            steps_per_epoch,
            loss,
            accuracy,
            images_per_s,
            lr,
        } if terminal => {
            let done = (step + 1) * 20 / (*steps_per_epoch).max(1);
            eprint!(
                "\r  epoch {:>3} [{:<20}] loss {loss:.4} acc {:5.1}% {images_per_s:6.1} img/s lr {lr:.2e}   ",
                epoch + 1,
                "=".repeat(done),
                100.0 * accuracy
            );
        }
        TrainEvent::Step { .. } => {}
        TrainEvent::Search(s) => print_search_event(s),
        TrainEvent::Epoch(s) => {
            epoch_seconds += s.seconds;
            let left_epochs = total_epochs.saturating_sub(s.epoch + 1);
            let left = if left_epochs > 0 {
                let secs = epoch_seconds / (s.epoch + 1) as f64 * left_epochs as f64;
                format!("  ({} left)", vitune::words::duration_words(secs))
            } else {
                String::new()
            };
            eprintln!(
                "{}  epoch {:>3}  loss {:.4}  train acc {:5.1}%  {}  {:.1}s{left}{}",
                if terminal { "\r" } else { "" },
                s.epoch + 1,
                s.loss,
                100.0 * s.accuracy,
                s.val_accuracy
                    .map(|v| format!("val acc {:5.1}%", 100.0 * v))
                    .unwrap_or_default(),
                s.seconds,
                if terminal {
                    " ".repeat(30)
                } else {
                    String::new()
                }
            );
        }
    };
    let started = std::time::Instant::now();
    let report = vitune::job::run_train(&gpu, &b, &job, &stop, &mut log, &mut on_event)?;
    vitune::tuned::write(&a.out, &report.outcome.best, &report.meta)?;
    if let Some(sel) = &report.selection {
        let final_s = started.elapsed().as_secs_f64() - sel.seconds;
        eprintln!("\nsearch ({}):\n{}", sel.protocol, sel.table_text());
        eprintln!(
            "chose lr {:.3e}, wd {:.0e}{} ({:.1}% ± {:.1} held-out); the recipe's own lr {:.3e}, wd {:.0e}",
            sel.chosen.lr,
            sel.chosen.weight_decay,
            sel.chosen
                .prompts
                .map(|p| format!(", {p} prompts"))
                .unwrap_or_default(),
            100.0 * sel.score,
            100.0 * sel.score_std,
            sel.default.lr,
            sel.default.weight_decay
        );
        eprintln!(
            "search cost: planned {:.1} default runs; took {:.1}s, {:.1}x the final run's {:.1}s",
            sel.schedule.cost,
            sel.seconds,
            sel.seconds / final_s.max(1e-9),
            final_s
        );
        if a.json {
            println!("{}", serde_json::to_string_pretty(sel)?);
        }
    }
    let best = &report.outcome.history.get(report.outcome.best_epoch);
    eprintln!(
        "{}wrote {} ({} trainable parameters; best epoch {}{})",
        if report.outcome.stopped {
            "stopped; "
        } else {
            ""
        },
        a.out.display(),
        report.outcome.best.parameter_count(),
        report.outcome.best_epoch + 1,
        best.and_then(|s| s.val_accuracy)
            .map(|v| format!(", val acc {:.1}%", 100.0 * v))
            .unwrap_or_default()
    );
    if let Some(d) = &report.outcome.diverged {
        // The kept model is written, but the run did not do what was asked: say so and fail.
        bail!("{d} (the tuned file holds that epoch's model)");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn grad(
    path: &Path,
    load: &LoadArgs,
    method: &MethodArgs,
    tuned: Option<&Path>,
    num_classes: Option<usize>,
    seed: u64,
    input: &Path,
    out: &Path,
) -> Result<()> {
    let b = load.load(path)?;
    let (m, opts) = method.resolve()?;
    let tuning = match (tuned, num_classes) {
        (Some(t), _) => Tuning::from_tensors(m, opts, &b, vitune::io::read_tensors(t)?)?,
        (None, Some(c)) => Tuning::init(m, opts, &b, c, seed)?,
        (None, None) => bail!("give --tuned FILE or --num-classes C (the new head's classes)"),
    };
    let mut tensors = vitune::io::read_tensors(input)?;
    let pixels = vitune::io::take(&mut tensors, "pixels", input)?;
    let labels = vitune::io::take(&mut tensors, "labels", input)?;
    let outs = vitune::job::gradients(&Gpu::new()?, &b, &tuning, &pixels, &labels)
        .with_context(|| format!("the gradients on {}", input.display()))?;
    vitune::io::write_tensors(out, &outs, None)?;
    let loss = outs.get("loss").map_or(f32::NAN, |l| l.data[0]);
    println!(
        "loss {:.6}  ({} gradients, {} trainable parameters)",
        loss,
        outs.len() - 1,
        tuning.parameter_count()
    );
    Ok(())
}

/// On a CPU adapter the ViT-B/L configs take minutes per forward: say so before starting.
fn warn_slow_bench(gpu: &Gpu, config: &str) {
    if gpu.info.device_type == wgpu::DeviceType::Cpu && matches!(config, "vit-b16" | "vit-l16") {
        eprintln!(
            "note: {config} on a CPU adapter takes tens of seconds per image and pass \
             (about 25 s for one vit-b16 forward on 2 cores); --config demo or tiny is quick"
        );
    }
}
