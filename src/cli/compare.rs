//! `vitune compare`: every method scored on the same shots, ranked.

use super::*;

#[derive(Args)]
pub(super) struct CompareArgs {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    pub(super) data: PathBuf,
    /// Comma-separated methods, each with the papers' default options.
    #[arg(
        long,
        default_value = "linear,bitfit,vpt-shallow,vpt-deep,lora,adaptformer,convpass"
    )]
    pub(super) methods: String,
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
    use vitune::job::{eval_transform, Init, Recipe, Session};
    use vitune::select::CompareEntry;
    use vitune::train::{Dataset, Samples, TrainConfig};

    let b = a.model.load()?;
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
