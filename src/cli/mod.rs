//! The `vitune` command line: the clap tree and the dispatch here, one file per subcommand beside it (its
//! arguments' groups in `args.rs`); each calls the library and prints. No logic of the library lives here.

mod args;
mod bench;
mod compare;
mod grad;
pub mod hub;
mod info;
mod predict;
mod train;

use args::*;
use bench::warn_slow_bench;
use compare::compare;
use grad::grad;
use info::{info, tuned_info};
use predict::{eval, predict};
use train::train;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use vitune::gpu::Gpu;
use vitune::model::{Backbone, GpuViT, LoadOptions};
use vitune::tuning::spt::SptKind;
use vitune::tuning::{ConvInit, Method, MethodOptions, Tuning};

#[derive(clap::Parser)]
#[command(
    name = "vitune",
    version,
    about = "Few-shot prompt and adapter tuning of frozen Vision Transformers on any GPU"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per run; the size difference between subcommands costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Download a backbone from the Hugging Face hub into its cache (shared with timm and transformers).
    Pull(hub::PullArgs),
    /// The curated backbones vitune loads, with their size and licence, and which are in the cache.
    Models(hub::ModelsArgs),
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
        #[command(flatten)]
        model: BackboneArgs,
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
        #[command(flatten)]
        model: BackboneArgs,
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
        #[command(flatten)]
        model: BackboneArgs,
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
        #[command(flatten)]
        model: BackboneArgs,
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
        #[command(flatten)]
        model: BackboneArgs,
        /// A tuned file (from `vitune train`).
        #[arg(long)]
        tuned: Option<PathBuf>,
        /// Use a tuned file made for a backbone with other tensors (the shapes must still fit).
        #[arg(long)]
        force: bool,
        /// The image to draw the map over (any format vitune reads).
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
        #[command(flatten)]
        model: BackboneArgs,
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
    /// vit-ti16, vit-s16, vit-b16, vit-l16, or demo (a tiny config); with -dinov3 (RoPE, 4 registers,
    /// LayerScale) or -swiglu (a packed SwiGLU MLP) after it, that layout at the same size.
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
    #[command(flatten)]
    model: BackboneArgs,
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
    #[command(flatten)]
    model: BackboneArgs,
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

impl Cli {
    /// Whether the command never opens a window (all but `app` and no command at all).
    pub fn headless(&self) -> bool {
        !matches!(self.command, None | Some(Command::App { .. }))
    }
}

pub fn run(cli: Cli) -> Result<()> {
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
        Some(Command::Pull(a)) => hub::pull(&a),
        Some(Command::Models(a)) => hub::models(&a),
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
            model: BackboneArgs { backbone, load },
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
            model: BackboneArgs { backbone, load },
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
                        // timm builds any registered ViT name at the shape its model_args give; say which shape.
                        let c = &b.config;
                        println!(
                            "wrote {} and {} (timm builds {} with model_args width {}, depth {}, {} heads, patch {}; {} classes)",
                            r.weights.display(),
                            r.config.display(),
                            r.architecture,
                            c.dim,
                            c.depth,
                            c.heads,
                            c.patch,
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
            model: BackboneArgs { backbone, load },
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
            model: BackboneArgs { backbone, load },
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
            model: BackboneArgs { backbone, load },
            tuned,
            data,
            json,
            force,
        }) => eval(&backbone, &load, &tuned, &data, json, force),
        Some(Command::Grad {
            model: BackboneArgs { backbone, load },
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
