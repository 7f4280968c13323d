//! `vitune compare`: every method scored on the same shots, ranked.

use super::*;

#[derive(Args)]
pub(super) struct CompareArgs {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    pub(super) data: PathBuf,
    /// Comma-separated methods, each with the papers' default options (default: every method but full
    /// fine-tuning).
    #[arg(long)]
    pub(super) methods: Option<String>,
    /// Images per class, drawn with each seed (all when unset).
    #[arg(long)]
    pub(super) shots: Option<usize>,
    /// Draws of the shots (seeds 0..S); the score's spread is over seeds when S > 1, else over folds.
    #[arg(long, default_value_t = 1)]
    pub(super) seeds: usize,
    /// Training epochs (the run keeps the epoch best on validation).
    #[arg(long, default_value_t = vitune::train::DEFAULT_EPOCHS)]
    pub(super) epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = vitune::train::DEFAULT_BATCH)]
    pub(super) batch: usize,
    #[command(flatten)]
    pub(super) auto: AutoArgs,
    #[command(flatten)]
    pub(super) aug: AugArgs,
    /// Write each method's tuned file (its scored setting trained on the first draw) into this folder.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn exec(a: CompareArgs) -> Result<()> {
    compare(&a)
}

pub(super) fn compare(a: &CompareArgs) -> Result<()> {
    use std::sync::atomic::AtomicBool;
    use vitune::job::{CompareData, CompareJob, RunPlan, Session};

    let b = a.model.load()?;
    let methods = match &a.methods {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Method::from_name)
            .collect::<vitune::Result<Vec<_>>>()?,
        None => vitune::job::default_compared(),
    };
    let job = CompareJob {
        data: CompareData::Folder {
            dir: a.data.clone(),
            shots: a.shots,
            seeds: a.seeds,
        },
        methods,
        plan: RunPlan {
            epochs: a.epochs,
            batch: a.batch,
            augment: a.aug.augment(),
            ..Default::default()
        },
        auto: a.auto.options(),
        out: a.out.clone(),
    };
    let gpu = Gpu::new()?;
    let transform = vitune::job::eval_transform(&b, None);
    let vit = GpuViT::new(&gpu, &b, Some(transform.size))?;
    let session = Session::new(&gpu, &b, &vit, &transform);
    let rows = job.run(&session, &AtomicBool::new(false), &mut |m| eprintln!("{m}"))?;
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
