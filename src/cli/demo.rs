//! `vitune demo`: the embedded demo, few-shot prompt tuning of glyphs against the linear probe.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    /// Training images per class.
    #[arg(long, default_value_t = 2)]
    pub(super) shots: usize,
    /// Training epochs (the run keeps the epoch best on validation).
    #[arg(long, default_value_t = 10)]
    pub(super) epochs: usize,
    /// Seed for the shots drawn, the augmentation and the initialisation.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Test images per class.
    #[arg(long, default_value_t = 10)]
    pub(super) test_per_class: usize,
    /// The glyph split: shifted (the target classes under a domain shift) or target.
    #[arg(long, default_value = "shifted")]
    pub(super) split: String,
    /// Only the papers' recipes (no search on the shots).
    #[arg(long)]
    pub(super) no_auto: bool,
    /// The most each search may cost, in default runs.
    #[arg(long, default_value_t = vitune::select::halving::DEFAULT_BUDGET)]
    pub(super) auto_budget: f64,
    /// Where to write the result.
    #[arg(long, default_value = "demo-out")]
    pub(super) out: PathBuf,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let start = std::time::Instant::now();
    let gpu = Gpu::new()?;
    eprintln!("adapter: {}", gpu.describe());
    let opts = vitune::demo::DemoOptions {
        shots: a.shots,
        epochs: a.epochs,
        seed: a.seed,
        test_per_class: a.test_per_class,
        split: a.split,
        auto: (!a.no_auto).then(|| vitune::select::SearchOptions {
            budget: a.auto_budget,
            ..Default::default()
        }),
        out: a.out,
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
