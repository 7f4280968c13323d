//! The `vitune` command line: the clap tree and the dispatch here, one file per subcommand beside it (its
//! arguments, an `exec`, its printing), the argument groups several share in `args.rs`. Each calls the library
//! and prints; no logic of the library lives here. A command is one file and one row of `commands!`.

mod app;
mod args;
mod attention;
mod bench;
mod compare;
mod demo;
mod demo_data;
mod eval;
mod export;
mod forward;
mod grad;
pub mod hub;
mod info;
mod predict;
mod selftest;
mod train;

use args::*;
use compare::CompareArgs;
use train::TrainArgs;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use vitune::gpu::Gpu;
use vitune::model::{Backbone, GpuViT, LoadOptions};
use vitune::tuning::{options, Method, MethodOptions, Tuning};

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

/// The subcommands: each row its `--help` line, its variant and arguments, and the function that runs it.
macro_rules! commands {
    ($($(#[$doc:meta])* $variant:ident($args:ty) => $exec:path,)*) => {
        // Parsed once per run; the size difference between subcommands costs nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Subcommand)]
        enum Command {
            $($(#[$doc])* $variant($args),)*
        }

        impl Command {
            fn exec(self) -> Result<()> {
                match self {
                    $(Command::$variant(a) => $exec(a),)*
                }
            }
        }
    };
}

commands! {
    /// Download a backbone from the Hugging Face hub into its cache (shared with timm and transformers).
    Pull(hub::PullArgs) => hub::pull,
    /// The curated backbones vitune loads, with their size and licence, and which are in the cache.
    Models(hub::ModelsArgs) => hub::models,
    /// Print a checkpoint's detected format and configuration.
    Info(info::Args) => info::exec,
    /// Run the backbone on a tensor of normalised pixels: `pixels` [N,3,H,W] in, `pooled`, `logits`, `attn.{l}` out.
    Forward(forward::Args) => forward::exec,
    /// Export a tuned model to run outside vitune: one ONNX file (checked against vitune's own forward before it
    /// is kept), or a merged timm checkpoint with its config.json for methods whose result is a plain ViT.
    Export(export::Args) => export::exec,
    /// Classify images with a tuned file (or the backbone's own head) and print the top classes.
    Predict(predict::Args) => predict::exec,
    /// Tune a method few-shot on class folders (one sub-folder of images per class) and write the tuned file.
    Train(TrainArgs) => train::exec,
    /// Score several methods on the same shots by cross-validation (each with its own search under --auto) and
    /// rank them.
    Compare(CompareArgs) => compare::exec,
    /// PVP: pre-train prompts (and a head) on a source data set, for `train --init-from`.
    PretrainPrompts(TrainArgs) => train::exec_pretrain,
    /// Accuracy, per-class accuracy and confusion matrix of a tuned file on class folders.
    Eval(eval::Args) => eval::exec,
    /// Write an attention heat-map over an image (at the image's own size).
    Attention(attention::Args) => attention::exec,
    /// Render the demo's glyph data set (source classes for pre-training, target classes for few-shot tuning)
    /// as class folders of PNG images.
    DemoData(demo_data::Args) => demo_data::exec,
    /// Loss and gradients of every trainable tensor of a method: `pixels` and `labels` in; `loss` and one
    /// gradient per tensor (named as in the tuned file) out. Dropout is off.
    Grad(grad::Args) => grad::exec,
    /// The embedded demo: few-shot prompt tuning of 20 glyph classes on the shipped backbone, against the linear
    /// probe; writes the tuned file and an attention figure.
    Demo(demo::Args) => demo::exec,
    /// Does vitune compute correctly on this GPU, and how fast? Checks against embedded golden data (timm's
    /// forward, autograd's gradients, a CPU matmul reference) with every kernel variant the adapter could use,
    /// then two speed figures. Exits non-zero on any failure.
    Selftest(selftest::Args) => selftest::exec,
    /// Open the desktop app (also what `vitune` with no command does).
    App(app::Args) => app::exec,
    /// Measure speed: `forward` (the whole model) or `matmul` (the kernel alone at ViT-B shapes).
    Bench(bench::Args) => bench::exec,
}

impl Cli {
    /// Whether the command never opens a window (all but `app` and no command at all).
    pub fn headless(&self) -> bool {
        !matches!(self.command, None | Some(Command::App(_)))
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => Ok(vitune::app::run(None)?),
        Some(c) => c.exec(),
    }
}
