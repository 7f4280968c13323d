//! `vitune selftest`: does vitune compute correctly on this GPU (against embedded golden data), and how fast.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    /// Only the checks (no speed figures).
    #[arg(long)]
    pub(super) quick: bool,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn exec(a: Args) -> Result<()> {
    let gpu = Gpu::new()?;
    if !a.quick && gpu.info.device_type == wgpu::DeviceType::Cpu {
        eprintln!(
            "note: on a CPU adapter the ViT-B/16 speed figure takes minutes; --quick skips the speed figures"
        );
    }
    let r = vitune::selftest::run(&gpu, a.quick, &mut |m| eprintln!("{m}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.text());
    }
    if !r.passed {
        bail!("selftest failed on {}", gpu.describe());
    }
    Ok(())
}
