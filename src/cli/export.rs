//! `vitune export`: a tuned model as one ONNX file (checked against vitune first) or a merged timm checkpoint.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    #[command(flatten)]
    pub(super) tuned: TunedFileArgs,
    /// Where to write: model.onnx, or merged.safetensors with --format timm (config.json goes beside it).
    #[arg(long)]
    pub(super) out: PathBuf,
    /// onnx (every method) or timm (a merged checkpoint, for methods whose result is a plain ViT).
    #[arg(long, value_enum, default_value = "onnx")]
    pub(super) format: ExportFormat,
    /// Images for the ONNX self-check (default: a few seeded stand-ins).
    #[arg(long, num_args = 1..)]
    pub(super) check_images: Vec<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum ExportFormat {
    /// One self-contained ONNX file (opset 17, f32): pixels in; logits, probabilities, pooled out.
    Onnx,
    /// A merged timm state dict (safetensors) and config.json: linear, bitfit, lora, ssf, full.
    Timm,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let b = a.model.load()?;
    let t = vitune::tuned::read(&a.tuned.tuned, &b, a.tuned.force)?;
    match a.format {
        ExportFormat::Onnx => {
            let pixels = if a.check_images.is_empty() {
                None
            } else {
                let size = vitune::export::input_size(&b, &t);
                let transform = vitune::job::eval_transform(&b, Some(size));
                Some(transform.batch(&a.check_images)?)
            };
            let r = vitune::export::export_onnx(&Gpu::new()?, &b, &t, &a.out, pixels)
                .with_context(|| format!("exporting {}", a.tuned.tuned.display()))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {} ({:.1} MiB, input {}x{}): {}",
                    r.path.display(),
                    r.bytes as f64 / (1 << 20) as f64,
                    r.input_size.0,
                    r.input_size.1,
                    r.check.describe()
                );
            }
        }
        ExportFormat::Timm => {
            let r = vitune::export::timm::export_timm(&b, &t, &a.out)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                // timm builds any registered ViT name at the shape its model_args give; say which shape.
                let c = &b.config;
                println!(
                    "wrote {} and {} (timm builds {} with model_args width {}, depth {}, {} heads, patch {}; {} classes)",
                    r.weights.display(),
                    r.config.display(),
                    r.architecture,
                    c.dim,
                    c.depth,
                    c.heads,
                    c.patch,
                    t.tuning.num_classes
                );
                if let Some(n) = &r.note {
                    println!("note: {n}");
                }
            }
        }
    }
    Ok(())
}
