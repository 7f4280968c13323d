//! `vitune train` (and `pretrain-prompts`): the run's summary, its progress lines, the search's table.

use super::*;

#[derive(Args)]
pub(super) struct TrainArgs {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    pub(super) data: PathBuf,
    #[command(flatten)]
    pub(super) method: MethodArgs,
    /// Images per class to train on, drawn with the seed (all when unset).
    #[arg(long)]
    pub(super) shots: Option<usize>,
    /// Training epochs (the run keeps the epoch best on validation).
    #[arg(long, default_value_t = vitune::train::DEFAULT_EPOCHS)]
    pub(super) epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = vitune::train::DEFAULT_BATCH)]
    pub(super) batch: usize,
    /// Peak learning rate (the method's default when unset).
    #[arg(long)]
    pub(super) lr: Option<f32>,
    /// Weight decay (the method's default when unset).
    #[arg(long)]
    pub(super) wd: Option<f32>,
    /// sgd or adamw (the method's default when unset).
    #[arg(long)]
    pub(super) optimizer: Option<String>,
    /// Seed for the shots drawn, the augmentation and the initialisation.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Validation class folders; without it, up to --val-per-class of the images not drawn as shots.
    #[arg(long)]
    pub(super) val: Option<PathBuf>,
    /// Without --val: at most this many images per class that were not drawn as shots validate each epoch.
    #[arg(long, default_value_t = 20)]
    pub(super) val_per_class: usize,
    #[command(flatten)]
    pub(super) aug: AugArgs,
    #[command(flatten)]
    pub(super) auto: AutoArgs,
    /// Prompt initialisation: method (the method's own), spt-mean, spt-max, spt-random or spt-kmeans.
    #[arg(long, default_value = "method")]
    pub(super) init: String,
    /// PVP: start the prompts from a file of `vitune pretrain-prompts` (the head is made anew).
    #[arg(long)]
    pub(super) init_from: Option<PathBuf>,
    /// Continue from a tuned file of the same method and classes.
    #[arg(long)]
    pub(super) resume: Option<PathBuf>,
    /// Print the search (with --auto) as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
    /// Where to write the result.
    #[arg(long)]
    pub(super) out: PathBuf,
}

pub(super) fn exec(a: TrainArgs) -> Result<()> {
    train(&a, false)
}

/// `vitune pretrain-prompts`: the same run, its prompts kept for `train --init-from`.
pub(super) fn exec_pretrain(a: TrainArgs) -> Result<()> {
    train(&a, true)
}

pub(super) fn print_search_event(e: &vitune::select::SearchEvent) {
    use vitune::select::SearchEvent;
    match e {
        SearchEvent::Planned {
            protocol,
            candidates,
            schedule,
            ..
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

pub(super) fn train(a: &TrainArgs, pretrain: bool) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use vitune::job::{Data, Init, RunPlan, TrainJob};
    use vitune::train::{OptimizerKind, TrainEvent};

    let b = a.model.load()?;
    let (method, options) = a.method.resolve()?;
    if pretrain && !method.uses_prompts() {
        bail!("pretrain-prompts trains prompts: use --method vpt-deep or vpt-shallow");
    }
    let init = Init::choose(&a.init, a.init_from.clone(), a.resume.clone())?;
    let ds = vitune::train::Dataset::from_folder(&a.data)?;
    let train_images = ds.shot_count(a.shots);
    let optimizer = match &a.optimizer {
        Some(k) => Some(
            OptimizerKind::from_name(k)
                .ok_or_else(|| anyhow::anyhow!("--optimizer `{k}`: expected sgd or adamw"))?,
        ),
        None => None,
    };
    let plan = RunPlan {
        epochs: a.epochs,
        batch: a.batch,
        seed: a.seed,
        augment: a.aug.augment(),
        overrides: vitune::train::RecipeOverrides {
            optimizer,
            lr: a.lr,
            weight_decay: a.wd,
        },
    };
    let config = plan.config(method, train_images);
    // The rules hold for pretrain-prompts too, which then trains without the search.
    let asked = a.auto.options();
    vitune::job::check_choices(
        asked.as_ref(),
        method,
        &plan.overrides,
        a.method.gives("prompts"),
    )?;
    let auto = if pretrain { None } else { asked };
    let job = TrainJob {
        auto,
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
        warm_head: false,
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
        let handled = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after this step; the best tuned file so far will be written");
        });
        if let Err(e) = handled {
            eprintln!("warning: Ctrl-C will end the run without writing a tuned file ({e})");
        }
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
            "chose {} ({:.1}% ± {:.1} held-out); the recipe's own lr {:.3e}, wd {:.0e}",
            sel.chosen.describe(),
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
