//! `vitune attention`: a heat-map of where the model looks, drawn over the image at its own size.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub(super) model: BackboneArgs,
    #[command(flatten)]
    pub(super) tuned: TunedArgs,
    /// The image to draw the map over (any format vitune reads).
    pub(super) image: PathBuf,
    /// cls, prompt, rollout or grad-rollout.
    #[arg(long, default_value = "cls")]
    pub(super) mode: String,
    /// Layer for cls and prompt maps (default: the last).
    #[arg(long)]
    pub(super) layer: Option<usize>,
    /// Head fusion: mean, max, min, or a head index.
    #[arg(long, default_value = "mean")]
    pub(super) head: String,
    /// Prompt index for prompt maps (default: the mean over prompts).
    #[arg(long)]
    pub(super) prompt: Option<usize>,
    /// Class explained by grad-rollout (default: the predicted one).
    #[arg(long)]
    pub(super) class: Option<usize>,
    /// Rollout's discard ratio (the smallest fraction of attention zeroed; CLS→CLS kept).
    #[arg(long, default_value_t = 0.9)]
    pub(super) discard: f32,
    /// inferno, viridis or jet.
    #[arg(long, default_value = "inferno")]
    pub(super) colormap: String,
    /// Opacity of the heat-map.
    #[arg(long, default_value_t = 0.5)]
    pub(super) alpha: f32,
    /// Where to write the result.
    #[arg(long)]
    pub(super) out: PathBuf,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let b = a.model.load()?;
    let req = vitune::job::AttentionRequest {
        mode: a.mode,
        layer: a.layer,
        head: a.head,
        prompt: a.prompt,
        class: a.class,
        discard: a.discard,
        colormap: a.colormap,
        alpha: a.alpha,
    };
    let input = vitune::job::prepare_predict(
        &b,
        a.tuned.tuned.as_deref(),
        std::slice::from_ref(&a.image),
        a.tuned.force,
    )?;
    let gpu = Gpu::new()?;
    let (img, class) = vitune::job::attention_overlay(&gpu, &b, &input, &a.image, &req)?;
    img.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({}x{}){}",
        a.out.display(),
        img.width(),
        img.height(),
        class.map(|c| format!(", class {c}")).unwrap_or_default()
    );
    Ok(())
}
