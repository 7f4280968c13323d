//! `vitune eval`: accuracy, per-class accuracy and confusion matrix of a tuned file on class folders; goes on
//! past unreadable files.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    #[command(flatten)]
    pub(super) tuned: TunedFileArgs,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    pub(super) data: PathBuf,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let (path, load, tuned, data) = (&a.model.backbone, &a.model.load, &a.tuned.tuned, &a.data);
    let (json, force) = (a.json, a.tuned.force);
    let b = load.load(path)?;
    let gpu = Gpu::new()?;
    let (ev, problems) = vitune::job::evaluate(&gpu, &b, tuned, data, force)?;
    for p in &problems {
        eprintln!("error: {p}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        print!("{}", ev.table());
    }
    if !problems.is_empty() {
        bail!(
            "{} images could not be read (named above); the evaluation covers the others",
            problems.len()
        );
    }
    Ok(())
}
