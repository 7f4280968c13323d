//! `vitune bench`: throughput, achieved FLOP rate and per-kernel GPU time.

use std::fmt::Write;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, KernelTimes, Recorder};
use crate::model::random::{random_backbone, standard_config};
use crate::model::{ForwardOptions, GpuViT, HostTensor};
use crate::ops::matmul::{Layout, Matmul};
use crate::rng::Rng;

fn config(name: &str) -> Result<crate::model::ViTConfig> {
    standard_config(name).ok_or_else(|| {
        Error::Input(format!(
            "unknown config `{name}`; expected vit-ti16, vit-s16, vit-b16, vit-l16 or tiny, optionally \
             followed by -dinov3 (RoPE, registers, LayerScale) or -swiglu"
        ))
    })
}

fn times_table(out: &mut String, t: &KernelTimes, iters: usize) {
    let total = t.total();
    let _ = writeln!(
        out,
        "  GPU time per kernel family (timestamp queries, per forward):"
    );
    for (k, v) in &t.by_family {
        let _ = writeln!(
            out,
            "    {k:<12} {:9.3} ms  {:5.1}%",
            v * 1e3 / iters as f64,
            100.0 * v / total.max(1e-12)
        );
    }
}

/// The device's measured peaks: fp32 matmul rate (FLOP/s) and copy bandwidth (bytes read + written per second).
#[derive(Debug, Clone, Copy)]
pub struct Peaks {
    pub flops: f64,
    pub bytes: f64,
}

/// c[m,n] = a[m,k] · b[n,k]ᵀ: the linear layer's matmul, as the matmul benchmarks time it.
fn record_linear(
    rec: &mut Recorder,
    (a, b, c): (&GpuTensor, &GpuTensor, &GpuTensor),
    (m, n, k): (usize, usize, usize),
) {
    Matmul::new(
        (m, n, k),
        (a, Layout::row_major(k, 0)),
        (b, Layout::transposed(k, 0)),
        (c, Layout::row_major(n, 0)),
    )
    .record(rec);
}

/// Measures the peaks the floors are taken against: the best of a few runs of our own matmul at a ViT-B shape
/// sized for the adapter, and a buffer-to-buffer copy of 64 MiB.
pub fn measure_peaks(gpu: &Gpu) -> Result<Peaks> {
    let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
    let (m, n, k, reps) = if cpu {
        (197, 768, 768, 2)
    } else {
        (8192, 3072, 768, 10)
    };
    let mut rng = Rng::new(5);
    let a = gpu.upload(&[m, k], &rng.normal_vec(m * k, 1.0))?;
    let b = gpu.upload(&[n, k], &rng.normal_vec(n * k, 0.02))?;
    let c = gpu.empty(&[m, n])?;
    let mut best = 0.0f64;
    for round in 0..3 {
        let mut rec = Recorder::new(gpu);
        for _ in 0..reps {
            record_linear(&mut rec, (&a, &b, &c), (m, n, k));
        }
        let start = Instant::now();
        rec.finish()?;
        let rate = 2.0 * (m * n * k * reps) as f64 / start.elapsed().as_secs_f64();
        if round > 0 {
            best = best.max(rate);
        }
    }
    let size = 64u64 << 20;
    let make = |usage| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bandwidth"),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = make(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let dst = make(wgpu::BufferUsages::COPY_DST);
    let mut bw = 0.0f64;
    for round in 0..3 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..4 {
            enc.copy_buffer_to_buffer(&src, 0, &dst, 0, size);
        }
        let start = Instant::now();
        gpu.queue.submit(Some(enc.finish()));
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Input(format!("GPU wait failed: {e}")))?;
        let rate = 2.0 * 4.0 * size as f64 / start.elapsed().as_secs_f64();
        if round > 0 {
            bw = bw.max(rate);
        }
    }
    Ok(Peaks {
        flops: best,
        bytes: bw,
    })
}

/// Per kernel family: its share of `wall` (split by timestamp shares), its FLOP floor (FLOPs / matmul peak) and
/// byte floor (bytes / copy bandwidth), and how far above the larger floor it sits.
fn floors_table(out: &mut String, t: &KernelTimes, wall: f64, peaks: &Peaks, what: &str) {
    let total = t.total().max(1e-12);
    let _ = writeln!(
        out,
        "floors ({what}; peaks {:.1} GFLOP/s matmul, {:.1} GB/s copy; time = wall clock split by timestamp shares):",
        peaks.flops / 1e9,
        peaks.bytes / 1e9
    );
    let _ = writeln!(
        out,
        "    {:<12} {:>10} {:>9} {:>9} {:>11} {:>11} {:>8}",
        "family", "time ms", "GFLOP", "MB", "FLOP floor", "byte floor", "x floor"
    );
    let mut rows = Vec::new();
    let (mut floor_sum, mut flops, mut bytes) = (0.0, 0.0, 0.0);
    for (fam, secs) in &t.by_family {
        let w = t.work.get(fam).copied().unwrap_or_default();
        let est = wall * secs / total;
        let ff = w.flops / peaks.flops;
        let bf = w.bytes / peaks.bytes;
        let floor = ff.max(bf);
        floor_sum += floor;
        flops += w.flops;
        bytes += w.bytes;
        rows.push((est - floor, est / floor.max(1e-12), *fam));
        let _ = writeln!(
            out,
            "    {fam:<12} {:>10.3} {:>9.3} {:>9.2} {:>8.3} ms {:>8.3} ms {:>8.1}",
            est * 1e3,
            w.flops / 1e9,
            w.bytes / 1e6,
            ff * 1e3,
            bf * 1e3,
            est / floor.max(1e-12)
        );
    }
    let _ = writeln!(
        out,
        "    {:<12} {:>10.3} {:>9.3} {:>9.2} {:>8.3} ms {:>8.3} ms {:>8.1}",
        "all",
        wall * 1e3,
        flops / 1e9,
        bytes / 1e6,
        flops / peaks.flops * 1e3,
        bytes / peaks.bytes * 1e3,
        wall / floor_sum.max(1e-12)
    );
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let far: Vec<String> = rows
        .iter()
        .take(3)
        .map(|(excess, r, f)| format!("{f} ({:.1} ms above, {r:.1}x)", excess * 1e3))
        .collect();
    let _ = writeln!(out, "    most time above the floor: {}", far.join(", "));
}

/// The kernel variants and weight storage in use, for the record.
fn kernel_choices(gpu: &Gpu) -> String {
    format!(
        "{}, weights {}",
        gpu.kernel_summary(),
        if gpu.f16_weights() { "f16" } else { "f32" }
    )
}

/// A timed forward of a standard config with random weights, and what it ran on.
struct TimedForward<'a> {
    cfg: crate::model::ViTConfig,
    vit: GpuViT,
    pixels: HostTensor,
    opts: ForwardOptions<'a>,
    /// Seconds per forward of the batch, after one warm-up.
    secs: f64,
}

fn timed_forward(
    gpu: &Gpu,
    name: &str,
    batch: usize,
    iters: usize,
) -> Result<TimedForward<'static>> {
    let cfg = config(name)?;
    let backbone = random_backbone(&cfg, 0);
    let vit = GpuViT::new(gpu, &backbone, None)?;
    let (h, w) = cfg.image_size;
    let mut rng = Rng::new(1);
    let pixels = HostTensor::new(vec![batch, 3, h, w], rng.normal_vec(batch * 3 * h * w, 1.0));
    let opts = ForwardOptions {
        max_batch: Some(batch),
        ..Default::default()
    };
    vit.forward(gpu, &pixels, &opts)?; // warm-up: pipelines and pool
    let start = Instant::now();
    for _ in 0..iters.max(1) {
        vit.forward(gpu, &pixels, &opts)?;
    }
    let secs = start.elapsed().as_secs_f64() / iters.max(1) as f64;
    Ok(TimedForward {
        cfg,
        vit,
        pixels,
        opts,
        secs,
    })
}

/// Images per second of a forward of config `name` (random weights) at `batch`.
pub fn forward_images_per_s(gpu: &Gpu, name: &str, batch: usize, iters: usize) -> Result<f64> {
    Ok(batch as f64 / timed_forward(gpu, name, batch, iters)?.secs)
}

/// GFLOP/s of the default matmul kernel on an [m, k] × [n, k]ᵀ product (the weight stored as the backbone's
/// would be, f16 under `VITUNE_WEIGHTS=f16`), after one warm-up: by wall clock, and with `timestamps` (where the
/// adapter has them) by GPU timestamps too.
pub fn matmul_gflops(
    gpu: &Gpu,
    (m, n, k): (usize, usize, usize),
    iters: usize,
    timestamps: bool,
) -> Result<(f64, Option<f64>)> {
    let mut rng = Rng::new(2);
    let a = gpu.upload(&[m, k], &rng.normal_vec(m * k, 1.0))?;
    let w = rng.normal_vec(n * k, 0.02);
    let b = if gpu.f16_weights() {
        gpu.upload_f16(&[n, k], &w)?
    } else {
        gpu.upload(&[n, k], &w)?
    };
    let c = gpu.empty(&[m, n])?;
    let run = |reps: usize, timing: bool| -> Result<(f64, Option<KernelTimes>)> {
        let mut rec = Recorder::new(gpu).with_timing(timing);
        for _ in 0..reps {
            record_linear(&mut rec, (&a, &b, &c), (m, n, k));
        }
        let start = Instant::now();
        let (_, t) = rec.finish()?;
        Ok((start.elapsed().as_secs_f64(), t))
    };
    run(1, false)?;
    let reps = iters.max(1);
    let gflops = |secs: f64| 2.0 * (m * n * k) as f64 * reps as f64 / secs / 1e9;
    let wall = gflops(run(reps, false)?.0);
    let gpu_time = if timestamps && gpu.has_timestamps() {
        run(reps, true)?.1.map(|t| gflops(t.total()))
    } else {
        None
    };
    Ok((wall, gpu_time))
}

/// Forward throughput of a standard config with random weights.
pub fn forward(gpu: &Gpu, name: &str, batch: usize, iters: usize) -> Result<String> {
    let TimedForward {
        cfg,
        vit,
        pixels,
        opts,
        secs,
    } = timed_forward(gpu, name, batch, iters)?;
    let (h, w) = cfg.image_size;
    let flops = cfg.forward_flops((h, w), 0) * batch as f64;
    let mut out = String::new();
    let _ = writeln!(out, "adapter       {}", gpu.describe());
    let _ = writeln!(out, "kernels       {}", kernel_choices(gpu));
    let _ = writeln!(
        out,
        "config        {name} batch {batch} ({} micro-batch)",
        vit.micro_batch(gpu, 0, batch)
    );
    let _ = writeln!(
        out,
        "forward       {:.2} ms  {:.1} images/s",
        secs * 1e3,
        batch as f64 / secs
    );
    let _ = writeln!(
        out,
        "achieved      {:.1} GFLOP/s ({:.2} GFLOP per forward)",
        flops / secs / 1e9,
        flops / 1e9
    );
    let (_, peak) = gpu.pool_bytes();
    let _ = writeln!(
        out,
        "pool peak     {:.1} MiB (weights {:.1} MiB)",
        peak as f64 / (1 << 20) as f64,
        vit.weight_bytes() as f64 / (1 << 20) as f64
    );
    if gpu.has_timestamps() {
        let timed = vit.forward(
            gpu,
            &pixels,
            &ForwardOptions {
                timing: true,
                ..opts
            },
        )?;
        if let Some(t) = timed.times {
            times_table(&mut out, &t, 1);
            floors_table(&mut out, &t, secs, &measure_peaks(gpu)?, "per forward");
        }
    } else {
        let _ = writeln!(
            out,
            "  (adapter has no timestamp queries: no per-kernel times)"
        );
    }
    Ok(out)
}

/// The matmul kernel alone at ViT-B shapes: M = batch·197, K = 768, N ∈ {2304, 768, 3072}.
pub fn matmul(gpu: &Gpu, batch: usize, iters: usize) -> Result<String> {
    let (m, k) = (batch * 197, 768);
    let mut out = String::new();
    let _ = writeln!(out, "adapter       {}", gpu.describe());
    let _ = writeln!(out, "kernels       {}", kernel_choices(gpu));
    for n in [2304usize, 768, 3072] {
        let (wall, timed) = matmul_gflops(gpu, (m, n, k), iters, true)?;
        let ms = |gflops: f64| 2.0 * (m * n * k) as f64 / gflops / 1e6;
        let _ = write!(
            out,
            "matmul M={m} K={k} N={n}: {:.3} ms  {wall:.1} GFLOP/s (wall clock)",
            ms(wall)
        );
        if let Some(g) = timed {
            let _ = write!(out, "; {:.3} ms  {g:.1} GFLOP/s (GPU timestamps)", ms(g));
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

/// What `bench train` runs besides the timed steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainExtras {
    /// Time a forward of the same batch too, for the step / forward ratio.
    pub forward: bool,
    /// Run one more step with timestamp queries, for the per-kernel floors table.
    pub profile: bool,
}

impl Default for TrainExtras {
    fn default() -> Self {
        Self {
            forward: true,
            profile: true,
        }
    }
}

/// A training step (forward, loss, backward, AdamW update) of `method` on a standard config with random
/// weights: images/s, step time over forward time, activation memory per image, trainable parameters.
/// The warm-up step runs one micro-batch (and the batch's shorter last one): the same pipelines and pool buffer
/// sizes as a full step.
pub fn train(
    gpu: &Gpu,
    name: &str,
    method: &str,
    batch: usize,
    iters: usize,
    extras: TrainExtras,
) -> Result<String> {
    use crate::train::{
        compute_grads, train_micro_batch, OptimConfig, Optimizer, OptimizerKind, StepOptions,
    };
    use crate::tuning::GpuTuning;
    use crate::tuning::{Method, MethodOptions, Tuning};

    let cfg = config(name)?;
    let backbone = random_backbone(&cfg, 0);
    let m = Method::from_name(method)?;
    let classes = 10;
    let tuning = Tuning::init(m, MethodOptions::defaults(m), &backbone, classes, 0)?;
    let vit = GpuViT::new(gpu, &backbone, None)?;
    let gt = GpuTuning::upload(gpu, &tuning)?;
    let grads = gt.zeros_like(gpu)?;
    let mut opt = Optimizer::new(
        gpu,
        &gt.params,
        OptimConfig::new(OptimizerKind::Adamw, 1e-3, 1e-4),
    )?;
    let (h, w) = cfg.image_size;
    let mut rng = Rng::new(3);
    let pixels = HostTensor::new(vec![batch, 3, h, w], rng.normal_vec(batch * 3 * h * w, 1.0));
    let labels: Vec<usize> = (0..batch).map(|_| rng.below(classes)).collect();
    let micro = train_micro_batch(gpu, &vit, &gt, batch);
    // The warm-up runs one micro-batch, and the shorter last one where the micro-batch does not divide the batch,
    // so the timed step meets no new pipeline or buffer size.
    let rest = batch % micro;
    let warm = if batch > micro && rest > 0 {
        micro + rest
    } else {
        micro
    };
    let warm_pixels = HostTensor::new(
        vec![warm, 3, h, w],
        pixels.data[..warm * 3 * h * w].to_vec(),
    );
    let step = |opt: &mut Optimizer,
                timing: bool,
                (pixels, labels): (&HostTensor, &[usize])|
     -> Result<(f64, Option<KernelTimes>)> {
        let mut after = |rec: &mut Recorder| opt.record_step(rec, &gt.params, &grads, &gt.shapes);
        let start = Instant::now();
        let out = compute_grads(
            gpu,
            &vit,
            &gt,
            &grads,
            pixels,
            labels,
            StepOptions {
                micro_batch: Some(micro),
                dropout_seed: Some(7),
                timing,
            },
            Some(&mut after),
        )?;
        Ok((start.elapsed().as_secs_f64(), out.times))
    };
    step(&mut opt, false, (&warm_pixels, &labels[..warm]))?; // warm-up
    let (before, _) = gpu.pool_bytes();
    gpu.reset_peak_memory();
    let mut secs = 0.0;
    for _ in 0..iters.max(1) {
        secs += step(&mut opt, false, (&pixels, &labels))?.0;
    }
    let (_, peak) = gpu.pool_bytes();
    let step_s = secs / iters.max(1) as f64;
    let fwd_s = if extras.forward {
        let fopts = ForwardOptions {
            tuning: Some(&gt),
            max_batch: Some(batch),
            ..Default::default()
        };
        vit.forward(gpu, &pixels, &fopts)?;
        let start = Instant::now();
        for _ in 0..iters.max(1) {
            vit.forward(gpu, &pixels, &fopts)?;
        }
        Some(start.elapsed().as_secs_f64() / iters.max(1) as f64)
    } else {
        None
    };
    let mut out = String::new();
    let _ = writeln!(out, "adapter       {}", gpu.describe());
    let _ = writeln!(out, "kernels       {}", kernel_choices(gpu));
    let _ = writeln!(
        out,
        "config        {name} method {m} batch {batch} (micro-batch {micro})"
    );
    let _ = writeln!(
        out,
        "step          {:.2} ms  {:.1} images/s",
        step_s * 1e3,
        batch as f64 / step_s
    );
    match fwd_s {
        Some(f) => {
            let _ = writeln!(
                out,
                "forward       {:.2} ms  (step / forward = {:.2})",
                f * 1e3,
                step_s / f
            );
        }
        None => {
            let _ = writeln!(out, "forward       not timed (--no-forward)");
        }
    }
    let _ = writeln!(
        out,
        "memory        {:.2} MiB per image above the weights (pool peak during a step)",
        peak.saturating_sub(before) as f64 / (1 << 20) as f64 / batch as f64
    );
    let _ = writeln!(out, "trainable     {} parameters", tuning.parameter_count());
    if extras.profile && gpu.has_timestamps() {
        if let (_, Some(t)) = step(&mut opt, true, (&pixels, &labels))? {
            floors_table(
                &mut out,
                &t,
                step_s,
                &measure_peaks(gpu)?,
                "per training step",
            );
        }
    }
    Ok(out)
}
