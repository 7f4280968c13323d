//! `vitune forward`: the backbone (and a tuned file) on a tensor of pixels, for checks against timm.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    #[command(flatten)]
    pub(super) tuned: TunedArgs,
    /// Input tensors (safetensors).
    #[arg(long)]
    pub(super) input: PathBuf,
    /// Where to write the result.
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Also write the post-softmax attention of every layer as `attn.{l}` [N,heads,T,T].
    #[arg(long)]
    pub(super) attn: bool,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let b = a.model.load()?;
    let tuned = match &a.tuned.tuned {
        Some(t) => Some(vitune::tuned::read(t, &b, a.tuned.force)?.tuning),
        None => None,
    };
    let mut tensors = vitune::io::read_tensors(&a.input)?;
    let pixels = vitune::io::take(&mut tensors, "pixels", &a.input)?;
    let outs = vitune::job::forward_tensors(&Gpu::new()?, &b, tuned.as_ref(), &pixels, a.attn)
        .with_context(|| format!("the forward of {}", a.input.display()))?;
    vitune::io::write_tensors(&a.out, &outs, None)?;
    Ok(())
}
