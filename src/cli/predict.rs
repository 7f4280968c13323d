//! `vitune predict`: the top classes of images; goes on past unreadable files.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    #[command(flatten)]
    pub(super) tuned: TunedArgs,
    /// Image files or folders.
    #[arg(required = true)]
    pub(super) images: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub(super) top: usize,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let (path, load, tuned, force) = (
        &a.model.backbone,
        &a.model.load,
        a.tuned.tuned.as_deref(),
        a.tuned.force,
    );
    let (images, top, json) = (&a.images[..], a.top, a.json);
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
