//! The `vitune` command line: parses arguments, calls the library, prints. No logic lives here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use vitune::gpu::Gpu;
use vitune::model::{
    class_names, load_backbone, Backbone, ForwardOptions, GpuViT, HostTensor, LoadOptions,
};
use vitune::preprocess::Transform;
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
    /// Print a checkpoint's detected format and configuration.
    Info {
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the backbone on a tensor of normalised pixels: `pixels` [N,3,H,W] in, `pooled`, `logits`, `attn.{l}` out.
    Forward {
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Also write the post-softmax attention of every layer as `attn.{l}` [N,heads,T,T].
        #[arg(long)]
        attn: bool,
    },
    /// Classify images with the backbone's own head and print the top classes.
    Predict {
        #[arg(long)]
        backbone: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// Loss and gradients of every trainable tensor of a method: `pixels` and `labels` in; `loss` and one
    /// gradient per tensor (named as in the tuned file) out. Dropout is off.
    Grad {
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
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
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
    /// A training step of a method: images/s, step/forward ratio, memory per image, trainable parameters.
    Train {
        #[command(flatten)]
        args: BenchArgs,
        #[arg(long, default_value = "vpt-deep")]
        method: String,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// vit-ti16, vit-s16, vit-b16, vit-l16, or demo (a tiny config).
    #[arg(long, default_value = "vit-b16")]
    config: String,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed repetitions after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
}

/// A tuning method and its options (defaults from the papers).
#[derive(Args, Clone)]
struct MethodArgs {
    /// linear, bitfit, vpt-shallow, vpt-deep, lora, adaptformer, convpass or full.
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
    /// VPT prompt dropout while training (default 0.1 for vpt-deep, 0 otherwise).
    #[arg(long)]
    prompt_dropout: Option<f32>,
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
        if let Some(v) = self.prompt_dropout {
            o.prompt_dropout = v;
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
        };
        Ok(load_backbone(path, &opts)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => bail!("the desktop app is not built yet; see `vitune --help` for the commands"),
        Some(Command::Info {
            backbone,
            load,
            json,
        }) => info(&backbone, &load, json),
        Some(Command::Forward {
            backbone,
            load,
            input,
            out,
            attn,
        }) => forward(&backbone, &load, &input, &out, attn),
        Some(Command::Predict {
            backbone,
            load,
            images,
            top,
            json,
        }) => predict(&backbone, &load, &images, top, json),
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
                let r = vitune::bench::forward(&gpu, &a.config, a.batch, a.iters)?;
                println!("{r}");
                Ok(())
            }
            BenchCommand::Train { args: a, method } => {
                let gpu = Gpu::new()?;
                let r = vitune::bench::train(&gpu, &a.config, &method, a.batch, a.iters)?;
                println!("{r}");
                Ok(())
            }
            BenchCommand::Matmul(a) => {
                let gpu = Gpu::new()?;
                let r = vitune::bench::matmul(&gpu, a.batch, a.iters)?;
                println!("{r}");
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
    println!("pooling       {:?}", c.pooling);
    println!("layer scale   {}", c.layer_scale);
    println!("eps           {:e}", c.eps);
    println!("mean          {:?}", c.mean);
    println!("std           {:?}", c.std);
    println!("crop pct      {}", c.crop_pct);
    println!("head classes  {}", c.num_classes);
    println!("parameters    {}", b.parameter_count());
    println!("sha256        {}", b.sha256);
    Ok(())
}

fn forward(path: &Path, load: &LoadArgs, input: &Path, out: &Path, attn: bool) -> Result<()> {
    let b = load.load(path)?;
    let mut tensors = vitune::io::read_tensors(input)?;
    let pixels = vitune::io::take(&mut tensors, "pixels", input)?;
    if pixels.shape.len() != 4 || pixels.shape[1] != 3 {
        bail!(
            "`pixels` in {} has shape {:?}; expected [N, 3, H, W]",
            input.display(),
            pixels.shape
        );
    }
    let gpu = Gpu::new()?;
    let vit = GpuViT::new(&gpu, &b, Some((pixels.shape[2], pixels.shape[3])))?;
    let r = vit.forward(
        &gpu,
        &pixels,
        &ForwardOptions {
            attn,
            ..Default::default()
        },
    )?;
    let mut outs: BTreeMap<String, HostTensor> = BTreeMap::new();
    outs.insert("pooled".into(), r.pooled);
    if let Some(l) = r.logits {
        outs.insert("logits".into(), l);
    }
    for (i, a) in r.attn.into_iter().enumerate() {
        outs.insert(format!("attn.{i}"), a);
    }
    vitune::io::write_tensors(out, &outs, None)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn predict(path: &Path, load: &LoadArgs, images: &[PathBuf], top: usize, json: bool) -> Result<()> {
    let b = load.load(path)?;
    let c = &b.config;
    if c.num_classes == 0 {
        bail!(
            "{} has no classification head (no `head.weight`); tune one with `vitune train` first",
            path.display()
        );
    }
    let names = class_names(path);
    let t = Transform {
        size: c.image_size,
        crop_pct: c.crop_pct,
        mean: c.mean,
        std: c.std,
    };
    let pixels = t.batch(images)?;
    let gpu = Gpu::new()?;
    let vit = GpuViT::new(&gpu, &b, None)?;
    let r = vit.forward(&gpu, &pixels, &ForwardOptions::default())?;
    let logits = r.logits.context("the model produced no logits")?;
    let nc = c.num_classes;
    let mut results = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let probs = softmax(&logits.data[i * nc..(i + 1) * nc]);
        let mut order: Vec<usize> = (0..nc).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let topk: Vec<(usize, String, f32)> = order
            .iter()
            .take(top)
            .map(|&k| {
                let name = names
                    .as_ref()
                    .and_then(|n| n.get(k).cloned())
                    .unwrap_or_else(|| format!("class {k}"));
                (k, name, probs[k])
            })
            .collect();
        results.push((img.display().to_string(), topk));
    }
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|(img, topk)| {
                serde_json::json!({
                    "image": img,
                    "top": topk.iter().map(|(k, n, p)| serde_json::json!({"index": k, "class": n, "probability": p})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (img, topk) in results {
            println!("{img}");
            for (k, n, p) in topk {
                println!("  {:6.2}%  {n} ({k})", p * 100.0);
            }
        }
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
    if pixels.shape.len() != 4 || pixels.shape[1] != 3 {
        bail!(
            "`pixels` in {} has shape {:?}; expected [N, 3, H, W]",
            input.display(),
            pixels.shape
        );
    }
    let labels: Vec<usize> = labels
        .data
        .iter()
        .map(|v| {
            if *v >= 0.0 {
                Ok(*v as usize)
            } else {
                Err(anyhow::anyhow!("negative label {v}"))
            }
        })
        .collect::<Result<_>>()?;
    let gpu = Gpu::new()?;
    let vit = GpuViT::new(&gpu, &b, Some((pixels.shape[2], pixels.shape[3])))?;
    let gt = vitune::model::GpuTuning::upload(&gpu, &tuning)?;
    let grads = gt.zeros_like(&gpu)?;
    let step = vitune::train::compute_grads(&gpu, &vit, &gt, &grads, &pixels, &labels, None, None)?;
    let mut outs = vitune::model::download_named(&gpu, &grads, &gt.shapes)?;
    outs.insert(
        "loss".into(),
        HostTensor::new(vec![], vec![step.loss as f32]),
    );
    vitune::io::write_tensors(out, &outs, None)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "loss {:.6}  ({} gradients, {} trainable parameters)",
        step.loss,
        outs.len() - 1,
        tuning.parameter_count()
    );
    Ok(())
}
