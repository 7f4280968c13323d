//! `vitune demo-data`: the demo's glyph classes written as class folders of PNG images.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    /// source, target, or shifted (the target classes under a domain shift).
    #[arg(long)]
    pub(super) split: String,
    /// Images written per class.
    #[arg(long, default_value_t = 100)]
    pub(super) per_class: usize,
    /// Seed for the shots drawn, the augmentation and the initialisation.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 32)]
    pub(super) size: u32,
    /// Where to write the result.
    #[arg(long)]
    pub(super) out: PathBuf,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let n = vitune::demo::write_glyph_folders(&a.split, a.per_class, a.seed, a.size, &a.out)?;
    eprintln!("wrote {n} images to {}", a.out.display());
    Ok(())
}
