//! Helpers of `vitune bench`.

use super::*;

/// On a CPU adapter the ViT-B/L configs take minutes per forward: say so before starting.
pub(super) fn warn_slow_bench(gpu: &Gpu, config: &str) {
    if gpu.info.device_type == wgpu::DeviceType::Cpu
        && (config.starts_with("vit-b16") || config.starts_with("vit-l16"))
    {
        eprintln!(
            "note: {config} on a CPU adapter takes tens of seconds per image and pass \
             (about 25 s for one vit-b16 forward on 2 cores); --config demo or tiny is quick"
        );
    }
}
