//! `vitune eval`: accuracy, per-class accuracy and confusion matrix of a tuned file on class folders; goes on
//! past unreadable files.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    /// A tuned file (from `vitune train`).
    #[arg(long)]
    pub(super) tuned: PathBuf,
    /// Class folders: one sub-folder of images per class.
    #[arg(long)]
    pub(super) data: PathBuf,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
    /// Use a tuned file made for a backbone with other tensors (the shapes must still fit).
    #[arg(long)]
    pub(super) force: bool,
}

pub(super) fn exec(a: Args) -> Result<()> {
    eval(
        &a.model.backbone,
        &a.model.load,
        &a.tuned,
        &a.data,
        a.json,
        a.force,
    )
}

pub(super) fn eval(
    path: &Path,
    load: &LoadArgs,
    tuned: &Path,
    data: &Path,
    json: bool,
    force: bool,
) -> Result<()> {
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
