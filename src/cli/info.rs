//! `vitune info`: a checkpoint's detected family and configuration, or a tuned file's method, classes and search.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    /// A backbone checkpoint (safetensors), or a hub name hf-hub:ORG/NAME[@REVISION].
    #[arg(required_unless_present = "tuned")]
    pub(super) backbone: Option<PathBuf>,
    /// A tuned file: its method, classes, backbone and how its setting was chosen.
    #[arg(long)]
    pub(super) tuned: Option<PathBuf>,
    #[command(flatten)]
    pub(super) load: LoadArgs,
    /// Print as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn exec(a: Args) -> Result<()> {
    if let Some(b) = &a.backbone {
        info(b, &a.load, a.json)?;
    }
    if let Some(t) = &a.tuned {
        tuned_info(t, a.json)?;
    }
    Ok(())
}

pub(super) fn info(path: &Path, load: &LoadArgs, json: bool) -> Result<()> {
    let b = load.load(path)?;
    let c = &b.config;
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "config": c,
            "parameters": b.parameter_count(),
            "sha256": b.sha256,
            "source": b.source,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("file          {}", path.display());
    println!("format        {:?}", c.format);
    println!("width         {}", c.dim);
    println!("depth         {}", c.depth);
    println!("heads         {} (from {})", c.heads, c.heads_source);
    println!("mlp hidden    {}", c.mlp_hidden);
    println!("patch         {}", c.patch);
    println!("image size    {}x{}", c.image_size.0, c.image_size.1);
    println!("family        {}", c.family());
    println!("pooling       {:?}", c.pooling);
    println!("layer scale   {}", c.layer_scale);
    println!("pre-norm      {}", c.pre_norm);
    let mlp = match (c.swiglu, c.mlp_norm) {
        (true, true) => "SwiGLU with a sub-LayerNorm (mlp.norm)".to_string(),
        (true, false) => "SwiGLU".to_string(),
        (false, true) => format!("{:?} with a sub-LayerNorm (mlp.norm)", c.mlp_act),
        (false, false) => format!("{:?}", c.mlp_act),
    };
    println!("mlp           {mlp}");
    match &c.rope {
        Some(r) => println!(
            "positions     RoPE {}{}",
            r.describe(true),
            if c.abs_pos { " + absolute" } else { "" }
        ),
        None => println!("positions     absolute (pos_embed)"),
    }
    if !c.absent_biases.is_empty() {
        println!("absent biases {}", c.absent_biases.join(", "));
    }
    println!("eps           {:e}", c.eps);
    println!("mean          {:?}", c.mean);
    println!("std           {:?}", c.std);
    println!("crop pct      {}", c.crop_pct);
    println!("head classes  {}", c.num_classes);
    println!("parameters    {}", b.parameter_count());
    println!("sha256        {}", b.sha256);
    if let Some(source) = &b.source {
        println!("from          {source} ({})", b.path.display());
    }
    Ok(())
}

pub(super) fn tuned_info(path: &Path, json: bool) -> Result<()> {
    let m = vitune::tuned::read_meta(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    println!("tuned file    {}", path.display());
    match m.options.describe(m.method) {
        settings if settings.is_empty() => println!("method        {}", m.method),
        settings => println!("method        {} ({settings})", m.method),
    }
    println!(
        "classes       {} ({})",
        m.classes.len(),
        m.classes.join(", ")
    );
    println!(
        "backbone      {} (sha256 {})",
        m.backbone_file, m.backbone_sha256
    );
    if let Some(source) = &m.backbone_source {
        println!("from          {source}");
    }
    if !m.backbone_family.is_empty() {
        println!("family        {}", m.backbone_family);
    }
    println!("image size    {}x{}", m.image_size.0, m.image_size.1);
    println!("init          {}", m.init);
    println!("vitune        {}", m.vitune_version);
    match &m.selection {
        None => println!("selection     none (the recipe's learning rate and weight decay)"),
        Some(s) => {
            println!(
                "selection     {} chosen by {}: {:.1}% ± {:.1}",
                s.chosen.describe(),
                s.protocol,
                100.0 * s.score,
                100.0 * s.score_std
            );
            print!("{}", s.table_text());
        }
    }
    Ok(())
}
