//! `vitune bench`: speed (forward, matmul, a training step, the peaks) and few-shot accuracy.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(subcommand)]
    pub(super) what: BenchCommand,
}

#[derive(Subcommand)]
pub(super) enum BenchCommand {
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
    /// The search's regret on the glyph testbed: every setting of --auto's grid trained to the end and scored on a
    /// test set (the oracle) beside the recipe and --auto's choice, per method and shot count (means over seeds).
    Regret {
        /// Comma-separated shot counts.
        #[arg(long, default_value = "2,4")]
        shots: String,
        /// Draws of the shots per shot count.
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        /// Training epochs of every run (the run keeps the epoch best on validation).
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        /// Test images per class (fixed across seeds).
        #[arg(long, default_value_t = 50)]
        test_per_class: usize,
        /// Comma-separated method labels of `bench fewshot` (default: linear, vpt-deep, vpt-deep + SPT, lora,
        /// convpass, ssf).
        #[arg(long)]
        methods: Option<String>,
        /// The glyph split: shifted (the target classes under a domain shift) or target.
        #[arg(long, default_value = "shifted")]
        split: String,
        /// What the search's rungs rank by: loss (held-out cross-entropy, the default) or accuracy.
        #[arg(long, default_value = "loss")]
        rank_by: String,
        /// Prompt methods with an SGD recipe also try AdamW around 1e-3.
        #[arg(long)]
        prompt_adamw: bool,
        /// The most cross-validation folds the search scores on (2 to 5).
        #[arg(long, default_value_t = vitune::select::folds::SEARCH_FOLDS)]
        max_folds: usize,
        /// Every setting also starting from the linear probe's head (LP-FT; not for the probe itself).
        #[arg(long)]
        warm_head: bool,
        /// The search's folds train at the recipe's batch, so with fewer optimizer steps than the final run (the
        /// search before session 13; by default a fold's batch keeps the final run's steps per epoch).
        #[arg(long)]
        unmatched_steps: bool,
        /// A file that keeps the oracle's scores between runs (same adapter, split, epochs and test images).
        #[arg(long)]
        oracle_cache: Option<std::path::PathBuf>,
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

#[derive(Args)]
pub(super) struct BenchArgs {
    /// vit-ti16, vit-s16, vit-b16, vit-l16, or demo (a tiny config); with -dinov3 (RoPE, 4 registers,
    /// LayerScale) or -swiglu (a packed SwiGLU MLP) after it, that layout at the same size.
    #[arg(long, default_value = "vit-b16")]
    pub(super) config: String,
    /// Images per training step.
    #[arg(long, default_value_t = 8)]
    pub(super) batch: usize,
    /// Timed repetitions after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub(super) iters: usize,
}

pub(super) fn exec(a: Args) -> Result<()> {
    match a.what {
        BenchCommand::Forward(a) => {
            let gpu = Gpu::new()?;
            warn_slow_bench(&gpu, &a.config);
            let r = vitune::bench::forward(&gpu, &a.config, a.batch, a.iters)?;
            println!("{r}");
            Ok(())
        }
        BenchCommand::Regret {
            shots,
            seeds,
            epochs,
            test_per_class,
            methods,
            split,
            rank_by,
            prompt_adamw,
            max_folds,
            warm_head,
            unmatched_steps,
            oracle_cache,
        } => {
            let rank_by = vitune::select::RankBy::from_name(&rank_by).ok_or_else(|| {
                vitune::error::Error::Input(format!(
                    "--rank-by {rank_by:?}: expected accuracy or loss"
                ))
            })?;
            let labels = methods
                .unwrap_or_else(|| "linear,vpt-deep,vpt-deep + SPT,lora,convpass,ssf".to_string());
            let chosen = chosen_methods(&labels)?;
            let gpu = Gpu::new()?;
            let start = std::time::Instant::now();
            let opts = vitune::demo::RegretOptions {
                shots: parse_shots(&shots)?,
                seeds,
                epochs,
                test_per_class,
                split,
                search: vitune::select::SearchOptions {
                    rank_by,
                    prompt_adamw,
                    max_folds,
                    warm_head,
                    match_steps: !unmatched_steps,
                    ..Default::default()
                },
                oracle_cache,
            };
            let rows =
                vitune::demo::search_regret(&gpu, &chosen, &opts, &mut |m| eprintln!("{m}"))?;
            println!("adapter: {}", gpu.describe());
            println!(
                "{seeds} seeds, {epochs} epochs, {test_per_class} test images per class, {:.0}s\n",
                start.elapsed().as_secs_f64()
            );
            println!("{}", vitune::demo::RegretRow::markdown(&rows));
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
            let shots = parse_shots(&shots)?;
            let chosen = match &methods {
                None => vitune::demo::bench_methods(),
                Some(list) => chosen_methods(list)?,
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
    }
}

/// On a CPU adapter the ViT-B/L configs take minutes per forward: say so before starting.
pub(super) fn warn_slow_bench(gpu: &Gpu, config: &str) {
    if gpu.info.device_type == wgpu::DeviceType::Cpu
        && (config.starts_with("vit-b16") || config.starts_with("vit-l16"))
    {
        eprintln!(
            "note: {config} on a CPU adapter takes tens of seconds per image and pass \
             (about 25 s for one vit-b16 forward on 2 cores); --config demo or tiny is quick"
        );
    }
}

/// Comma-separated shot counts.
fn parse_shots(list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("--shots `{s}`: {e}"))
        })
        .collect()
}

/// The bench rows named by comma-separated labels; a label that names none is an error.
fn chosen_methods(list: &str) -> Result<Vec<vitune::demo::BenchMethod>> {
    let all = vitune::demo::bench_methods();
    let want: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(w) = want.iter().find(|w| !all.iter().any(|m| m.label == **w)) {
        let labels: Vec<&str> = all.iter().map(|m| m.label).collect();
        bail!(
            "--methods `{w}`: expected labels among {}",
            labels.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|m| want.contains(&m.label))
        .collect())
}
