//! `vitune grad`: the loss and every trainable tensor's gradient, for checks against autograd.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    #[command(flatten)]
    pub(super) method: MethodArgs,
    /// Start every trainable tensor from this file (tuned file, or plain safetensors with the same names).
    #[arg(long)]
    pub(super) tuned: Option<PathBuf>,
    /// Classes of the new head (without --tuned).
    #[arg(long)]
    pub(super) num_classes: Option<usize>,
    /// Seed of the method's initialisation (without --tuned).
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Input tensors (safetensors).
    #[arg(long)]
    pub(super) input: PathBuf,
    /// Where to write the result.
    #[arg(long)]
    pub(super) out: PathBuf,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let (path, load, method) = (&a.model.backbone, &a.model.load, &a.method);
    let (tuned, num_classes, seed) = (a.tuned.as_deref(), a.num_classes, a.seed);
    let (input, out) = (&a.input, &a.out);
    let b = load.load(path)?;
    let (m, opts) = method.resolve()?;
    let tuning = match (tuned, num_classes) {
        (Some(t), _) => Tuning::from_tensors(m, opts, &b, vitune::io::read_tensors(t)?)?,
        (None, Some(c)) => Tuning::init(m, opts, &b, c, seed)?,
        (None, None) => bail!("give --tuned FILE or --num-classes C (the new head's classes)"),
    };
    let mut tensors = vitune::io::read_tensors(input)?;
    let pixels = vitune::io::take(&mut tensors, "pixels", input)?;
    let labels = vitune::io::take(&mut tensors, "labels", input)?;
    let outs = vitune::job::gradients(&Gpu::new()?, &b, &tuning, &pixels, &labels)
        .with_context(|| format!("the gradients on {}", input.display()))?;
    vitune::io::write_tensors(out, &outs, None)?;
    let loss = outs.get("loss").map_or(f32::NAN, |l| l.data[0]);
    println!(
        "loss {:.6}  ({} gradients, {} trainable parameters)",
        loss,
        outs.len() - 1,
        tuning.parameter_count()
    );
    Ok(())
}
