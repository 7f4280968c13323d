//! Validated autotuning: the first time vitune meets an adapter, every variant of each kernel family (matmul per
//! shape class, the row kernels, attention) is checked against the CPU reference **on that adapter** at awkward
//! sizes, the variants that pass are timed on a shape of their class, and the fastest is kept. A variant that fails
//! its check is never used. The choices are cached in the user's cache folder (`autotune.json`), keyed by adapter,
//! driver, vitune version and a hash of every shader source, so later runs start at once.
//!
//! `VITUNE_AUTOTUNE=off` keeps the adapter type's rules, `VITUNE_AUTOTUNE=force` tunes again (once per process);
//! the user's forced variants (`VITUNE_MATMUL`, `VITUNE_ROWS`, `VITUNE_ATTENTION`) still win.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::gpu::choices::{FamilyChoice, Trial, Tuned};
use crate::gpu::{
    AttentionKernel, Gpu, GpuError, GpuTensor, MatmulClass, MatmulKernel, Recorder, RowKernel,
};
use crate::ops::matmul::{Act, Layout, Matmul};
use crate::ops::reference;
use crate::rng::Rng;

/// Relative error within which a variant passes (the selftest's f32 tolerance).
pub const TOLERANCE: f64 = 1e-4;

/// Relative error within which a variant with f16 inputs and f32 accumulation passes: about eight units of f16's
/// rounding (2^-11), the inputs' and the products' roundings summed over the awkward sizes' dot products. A kernel
/// that skips or repeats work is off by far more.
pub const HALF_TOLERANCE: f64 = 4e-3;

/// Whether the user allows f16-input kernels (`VITUNE_PRECISION=mixed`; the default, `f32`, keeps every product
/// in f32 so results match timm to 1e-4): only then does the autotuner try the `half` and `coop` matmuls.
pub fn half_allowed() -> bool {
    match std::env::var("VITUNE_PRECISION").as_deref() {
        Ok("mixed") => true,
        Ok("f32") | Ok("") | Err(_) => false,
        Ok(other) => {
            eprintln!("warning: VITUNE_PRECISION={other:?} ignored; expected f32 or mixed");
            false
        }
    }
}

/// `VITUNE_AUTOTUNE`: on (the default), off, or force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    On,
    Off,
    Force,
}

impl Mode {
    pub fn from_env() -> Self {
        match std::env::var("VITUNE_AUTOTUNE").as_deref() {
            Ok("off") | Ok("0") => Mode::Off,
            Ok("force") => Mode::Force,
            Ok("on") | Ok("1") | Ok("") | Err(_) => Mode::On,
            Ok(other) => {
                eprintln!("warning: VITUNE_AUTOTUNE={other:?} ignored; expected on, off or force");
                Mode::On
            }
        }
    }
}

/// The cache file: `VITUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/vitune`, else `~/.cache/vitune` (on Windows
/// `%LOCALAPPDATA%\vitune`), then `autotune.json`.
pub fn cache_path() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("VITUNE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("vitune")))
        .or_else(|| var("LOCALAPPDATA").map(|d| d.join("vitune")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/vitune")))?;
    Some(dir.join("autotune.json"))
}

/// Tunes `gpu` unless done: from the cache at the default path when it holds this adapter's key, else by
/// measuring (and then saved there). Called where a model meets a device; errors only warn (the rules stay).
pub fn ensure(gpu: &Gpu) {
    ensure_at(gpu, Mode::from_env(), cache_path().as_deref());
}

/// `ensure` with its mode and cache file given (tests use their own).
pub fn ensure_at(gpu: &Gpu, mode: Mode, cache: Option<&Path>) {
    if !gpu.begin_tuning() {
        return;
    }
    if mode == Mode::Off {
        gpu.finish_tuning(None);
        return;
    }
    let key = cache_key(gpu);
    if mode == Mode::On {
        if let Some(t) = cache.and_then(|p| load(p, &key)) {
            gpu.finish_tuning(Some(t));
            return;
        }
    }
    eprintln!(
        "tuning the kernels for {} (once per adapter and driver; cached in {})",
        gpu.info.name,
        cache.map_or("nowhere".into(), |p| p.display().to_string())
    );
    match tune(gpu, key) {
        Ok(t) => {
            if let Some(p) = cache {
                if let Err(e) = save(p, &t) {
                    eprintln!(
                        "warning: the kernel choices were not cached ({}): {e}",
                        p.display()
                    );
                }
            }
            gpu.finish_tuning(Some(t));
        }
        Err(e) => {
            eprintln!("warning: kernel tuning failed ({e}); the adapter type's rules stay");
            gpu.finish_tuning(None);
        }
    }
}

/// Adapter, backend, driver, vitune version and the hash of every shader source.
pub fn cache_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!(
        "{} | {:?} | {} {} | vitune {} | shaders {:016x}{}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        env!("CARGO_PKG_VERSION"),
        shader_hash(),
        if half_allowed() {
            " | f16 inputs allowed"
        } else {
            ""
        }
    )
}

/// FNV-1a over every shader source and generated variant (stable across builds, unlike std's hasher).
fn shader_hash() -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |s: &str| {
        for b in s.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    for (_, s) in crate::ops::shaders::ALL {
        eat(s);
    }
    eat(&crate::ops::shaders::subgroup_source(
        crate::ops::shaders::LAYERNORM,
    ));
    eat(&crate::ops::shaders::matmul_half_source(false));
    eat(&crate::ops::shaders::matmul_coop_source(false, 32, 16));
    h
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct CacheFile {
    entries: Vec<Tuned>,
}

/// The cached choices for `key`, if the file holds them.
pub fn load(path: &Path, key: &str) -> Option<Tuned> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: CacheFile = serde_json::from_str(&text).ok()?;
    file.entries.into_iter().find(|t| t.key == key)
}

/// Adds (or replaces) `tuned` in the cache file, keeping the 16 most recent adapters; written to a temporary file
/// and renamed, so concurrent runs never read half a file.
pub fn save(path: &Path, tuned: &Tuned) -> std::io::Result<()> {
    let mut file: CacheFile = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    file.entries.retain(|t| t.key != tuned.key);
    file.entries.push(tuned.clone());
    let excess = file.entries.len().saturating_sub(16);
    file.entries.drain(..excess);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(&file)?)?;
    std::fs::rename(&tmp, path)
}

/// A variant on trial: its check (worst relative error against the CPU reference) and one timed run of its timing
/// shape (seconds; see `timed`).
pub struct Candidate<'a> {
    pub variant: String,
    /// The worst relative error it may have and pass (`TOLERANCE`, or `HALF_TOLERANCE` for f16 inputs).
    pub tolerance: f64,
    pub check: Box<dyn Fn() -> Result<f64, GpuError> + 'a>,
    pub run: Box<dyn Fn() -> Result<f64, GpuError> + 'a>,
}

/// Seconds the kernels `record` records take: their GPU time from timestamp queries where the adapter has them
/// (on a fast GPU the timing shapes take microseconds, which a submit and wait would drown), else wall clock.
pub fn timed(
    gpu: &Gpu,
    record: impl FnOnce(&mut Recorder) -> Result<(), GpuError>,
) -> Result<f64, GpuError> {
    let mut rec = Recorder::new(gpu).with_timing(true);
    let start = Instant::now();
    record(&mut rec)?;
    let (_, times) = rec.finish()?;
    let wall = start.elapsed().as_secs_f64();
    Ok(times
        .map(|t| t.total())
        .filter(|s| *s > 0.0)
        .unwrap_or(wall))
}

/// Checks every candidate, times those that pass (the best of a few runs after a warm-up) and chooses the fastest.
/// `work` is the timing shape's work in `unit`s (GFLOP or Melem) per run.
pub fn pick(
    family: &str,
    class: &str,
    unit: &str,
    work: f64,
    candidates: Vec<Candidate>,
) -> FamilyChoice {
    let mut trials = Vec::new();
    for c in &candidates {
        let worst = (c.check)().ok().filter(|w| w.is_finite());
        let passed = worst.is_some_and(|w| w <= c.tolerance);
        let rate = if passed {
            best_time(&*c.run).map(|s| work / s)
        } else {
            None
        };
        trials.push(Trial {
            variant: c.variant.clone(),
            worst,
            tolerance: c.tolerance,
            passed: passed && rate.is_some(),
            rate,
        });
    }
    let chosen = trials
        .iter()
        .filter(|t| t.passed)
        .max_by(|a, b| {
            a.rate
                .partial_cmp(&b.rate)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|t| t.variant.clone())
        .unwrap_or_default();
    FamilyChoice {
        family: family.into(),
        class: class.into(),
        chosen,
        unit: format!("{unit}/s"),
        trials,
    }
}

/// Seconds of the fastest of up to three runs after a warm-up (one run when a run takes over 0.2 s).
fn best_time(run: &dyn Fn() -> Result<f64, GpuError>) -> Option<f64> {
    run().ok()?;
    let mut best = f64::INFINITY;
    for i in 0..3 {
        best = best.min(run().ok()?);
        if i == 0 && best > 0.2 {
            break;
        }
    }
    Some(best.max(1e-12))
}

/// Measures every family on `gpu` (nothing is applied: `ensure` does that).
pub fn tune(gpu: &Gpu, key: String) -> Result<Tuned, GpuError> {
    let start = Instant::now();
    let mut choices = Vec::new();
    for &class in MatmulClass::ALL {
        let candidates = MatmulKernel::ALL
            .iter()
            .filter(|&&k| gpu.supports_matmul(k) && (!k.half_inputs() || half_allowed()))
            .map(|&k| {
                let mut c = matmul_candidate(gpu, class, k.name().into(), move |mm, rec| {
                    mm.kernel = Some(k);
                    mm.record(rec);
                });
                if k.half_inputs() {
                    c.tolerance = HALF_TOLERANCE;
                }
                c
            })
            .collect();
        let c = pick(
            "matmul",
            class.name(),
            "GFLOP",
            matmul_timing(class).gflop(),
            candidates,
        );
        gpu.apply_choice(&c);
        choices.push(c);
    }
    let rows = RowKernel::ALL
        .iter()
        .filter(|&&k| k != RowKernel::Subgroup || gpu.has_subgroups())
        .map(|&k| rows_candidate(gpu, k))
        .collect();
    let c = pick("rows", "all", "Melem", ROWS_TIMING_MELEM, rows);
    gpu.apply_choice(&c);
    choices.push(c);
    let attention = AttentionKernel::ALL
        .iter()
        .map(|&k| attention_candidate(gpu, k))
        .collect();
    let c = pick(
        "attention",
        "all",
        "GFLOP",
        ATTENTION_TIMING.gflop(),
        attention,
    );
    choices.push(c);
    gpu.check_faults()?;
    Ok(Tuned {
        key,
        choices,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A matmul check case: (m, n, k), batches, B read transposed (a weight) or not.
#[derive(Debug, Clone, Copy)]
pub struct MatmulCase {
    pub dims: (usize, usize, usize),
    pub batches: usize,
    pub b_trans: bool,
}

impl MatmulCase {
    fn gflop(&self) -> f64 {
        let (m, n, k) = self.dims;
        2.0 * (self.batches * m * n * k) as f64 * 1e-9
    }
}

const fn case(dims: (usize, usize, usize), batches: usize, b_trans: bool) -> MatmulCase {
    MatmulCase {
        dims,
        batches,
        b_trans,
    }
}

/// Awkward sizes of each class (no multiple of any tile), batched and not, B transposed and not.
pub fn matmul_checks(class: MatmulClass) -> &'static [MatmulCase] {
    const LARGE: [MatmulCase; 2] = [case((130, 67, 77), 2, true), case((197, 100, 40), 1, false)];
    const SMALL: [MatmulCase; 2] = [case((37, 45, 29), 3, true), case((5, 200, 3), 2, false)];
    const NARROW: [MatmulCase; 2] = [case((130, 19, 45), 1, true), case((50, 32, 70), 2, false)];
    match class {
        MatmulClass::Large => &LARGE,
        MatmulClass::Small => &SMALL,
        MatmulClass::Narrow => &NARROW,
    }
}

/// The timing shape of each class: a ViT's linear layer at a small batch, attention's per-head products, a
/// narrow projection.
fn matmul_timing(class: MatmulClass) -> MatmulCase {
    match class {
        MatmulClass::Large => case((394, 384, 384), 1, true),
        MatmulClass::Small => case((65, 65, 64), 12, false),
        MatmulClass::Narrow => case((788, 16, 384), 1, true),
    }
}

/// The GPU's operands of a case (B rounded to f16 and stored so with `f16`), with the CPU reference's output.
struct MatmulOperands {
    a: GpuTensor,
    b: GpuTensor,
    bias: GpuTensor,
    c: GpuTensor,
    want: Vec<f32>,
}

fn matmul_operands(
    gpu: &Gpu,
    c: &MatmulCase,
    f16: bool,
    seed: u64,
    reference: bool,
) -> Result<MatmulOperands, GpuError> {
    let (m, n, k) = c.dims;
    let mut rng = Rng::new(seed);
    let a = rng.normal_vec(c.batches * m * k, 1.0);
    let mut b = rng.normal_vec(c.batches * k * n, 1.0);
    if f16 {
        b.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    let bias = rng.normal_vec(n, 1.0);
    Ok(MatmulOperands {
        a: gpu.upload(&[a.len()], &a)?,
        b: if f16 {
            gpu.upload_f16(&[b.len()], &b)?
        } else {
            gpu.upload(&[b.len()], &b)?
        },
        bias: gpu.upload(&[n], &bias)?,
        c: gpu.empty(&[c.batches * m * n])?,
        want: if reference {
            reference::matmul_bias_gelu(&a, &b, &bias, c.dims, c.batches, c.b_trans)
        } else {
            Vec::new()
        },
    })
}

/// Records GELU(A·B + bias) for a case's operands through `run` (which picks the kernel).
fn record_case(
    rec: &mut Recorder,
    c: &MatmulCase,
    o: &MatmulOperands,
    run: &dyn Fn(&mut Matmul, &mut Recorder),
) {
    let (m, n, k) = c.dims;
    let bl = if c.b_trans {
        Layout::transposed(k, k * n)
    } else {
        Layout::row_major(n, k * n)
    };
    let mut mm = Matmul::new(
        c.dims,
        (&o.a, Layout::row_major(k, m * k)),
        (&o.b, bl),
        (&o.c, Layout::row_major(n, m * n)),
    );
    mm.batch1 = c.batches;
    mm.bias = Some((&o.bias, 0));
    mm.act = Act::Gelu;
    run(&mut mm, rec);
}

/// The worst relative error of `run` over `cases` against the CPU reference.
pub fn matmul_error(
    gpu: &Gpu,
    cases: &[MatmulCase],
    f16: bool,
    run: &dyn Fn(&mut Matmul, &mut Recorder),
) -> Result<f64, GpuError> {
    let mut worst = 0.0f64;
    for (i, c) in cases.iter().enumerate() {
        let o = matmul_operands(gpu, c, f16, 100 + i as u64, true)?;
        let mut rec = Recorder::new(gpu);
        record_case(&mut rec, c, &o, run);
        let h = rec.read(&o.c);
        let (outs, _) = rec.finish()?;
        worst = worst.max(reference::rel_err(&outs[h.0], &o.want));
    }
    Ok(worst)
}

/// A matmul variant on trial for a class: `run` records a product with it.
pub fn matmul_candidate<'a>(
    gpu: &'a Gpu,
    class: MatmulClass,
    variant: String,
    run: impl Fn(&mut Matmul, &mut Recorder) + Clone + 'a,
) -> Candidate<'a> {
    let check_run = run.clone();
    let timing = matmul_timing(class);
    let operands = std::cell::OnceCell::new();
    Candidate {
        variant,
        tolerance: TOLERANCE,
        check: Box::new(move || matmul_error(gpu, matmul_checks(class), false, &check_run)),
        run: Box::new(move || {
            if operands.get().is_none() {
                let _ = operands.set(matmul_operands(gpu, &timing, false, 7, false)?);
            }
            let o = operands.get().expect("set above");
            timed(gpu, |rec| {
                record_case(rec, &timing, o, &run);
                Ok(())
            })
        }),
    }
}

/// The row kernels' timing: LayerNorm and softmax over 788 rows of 384 (a ViT-S block's tokens at batch 4), softmax
/// over 2364 rows of 197 (attention probabilities).
const ROWS_TIMING: [(usize, usize); 2] = [(788, 384), (2364, 197)];
const ROWS_TIMING_MELEM: f64 = (788.0 * 384.0 * 2.0 + 2364.0 * 197.0) * 1e-6;

/// LayerNorm and softmax with the row variant `k`, checked at awkward widths (fewer and more columns than lanes).
fn rows_candidate(gpu: &Gpu, k: RowKernel) -> Candidate<'_> {
    Candidate {
        variant: k.name().into(),
        tolerance: TOLERANCE,
        check: Box::new(move || {
            gpu.with_row_kernel(k, || {
                let mut worst = 0.0f64;
                for (i, &(rows, d)) in [(7usize, 197usize), (5, 770), (3, 40)].iter().enumerate() {
                    worst = worst.max(rows_error(gpu, rows, d, 30 + i as u64)?);
                }
                Ok(worst)
            })
        }),
        run: Box::new(move || {
            let [(r, d), (r2, d2)] = ROWS_TIMING;
            let x = random(gpu, &[r, d], 1)?;
            let (g, b) = (random(gpu, &[d], 2)?, random(gpu, &[d], 3)?);
            let p = random(gpu, &[r2, d2], 4)?;
            gpu.with_row_kernel(k, || {
                timed(gpu, |rec| {
                    let ln = crate::ops::layernorm::layernorm(rec, &x, &g, &b, 1e-6)?;
                    crate::ops::softmax::softmax_inplace(rec, &ln.y);
                    crate::ops::softmax::softmax_inplace(rec, &p);
                    Ok(())
                })
            })
        }),
    }
}

fn rows_error(gpu: &Gpu, rows: usize, d: usize, seed: u64) -> Result<f64, GpuError> {
    let mut rng = Rng::new(seed);
    let x = rng.normal_vec(rows * d, 2.0);
    let gamma = rng.normal_vec(d, 1.0);
    let beta = rng.normal_vec(d, 1.0);
    let gx = gpu.upload(&[rows, d], &x)?;
    let (gg, gb) = (gpu.upload(&[d], &gamma)?, gpu.upload(&[d], &beta)?);
    let gs = gpu.upload(&[rows, d], &x)?;
    let mut rec = Recorder::new(gpu);
    let ln = crate::ops::layernorm::layernorm(&mut rec, &gx, &gg, &gb, 1e-6)?;
    crate::ops::softmax::softmax_inplace(&mut rec, &gs);
    let (h1, h2) = (rec.read(&ln.y), rec.read(&gs));
    let (outs, _) = rec.finish()?;
    Ok(reference::rel_err(
        &outs[h1.0],
        &reference::layernorm(&x, d, &gamma, &beta, 1e-6),
    )
    .max(reference::rel_err(&outs[h2.0], &reference::softmax(&x, d))))
}

/// (n, t, heads, hd) of attention's timing: ViT-S/16 at batch 2.
const ATTENTION_TIMING: AttentionShape = AttentionShape(2, 197, 6, 64);

struct AttentionShape(usize, usize, usize, usize);

impl AttentionShape {
    fn gflop(&self) -> f64 {
        4.0 * (self.0 * self.2 * self.1 * self.1 * self.3) as f64 * 1e-9
    }
}

/// Attention's context through `k`, checked at a partial key block, a crossed row block, head sizes 5 and 64.
fn attention_candidate(gpu: &Gpu, k: AttentionKernel) -> Candidate<'_> {
    let record = move |rec: &mut Recorder,
                       qkv: &GpuTensor,
                       heads: usize|
          -> Result<GpuTensor, GpuError> {
        Ok(match k {
            AttentionKernel::Matmul => crate::ops::attention::attention(rec, qkv, heads)?.context,
            AttentionKernel::Fused | AttentionKernel::Tiled => {
                crate::ops::attention::flash_attention_as(rec, qkv, heads, k)?.context
            }
        })
    };
    Candidate {
        variant: k.name().into(),
        tolerance: TOLERANCE,
        check: Box::new(move || {
            let mut worst = 0.0f64;
            for (i, &(n, t, heads, hd)) in [(2usize, 13usize, 3usize, 5usize), (1, 70, 2, 64)]
                .iter()
                .enumerate()
            {
                let qkv = Rng::new(50 + i as u64).normal_vec(n * t * 3 * heads * hd, 1.5);
                let g = gpu.upload(&[n, t, 3 * heads * hd], &qkv)?;
                let mut rec = Recorder::new(gpu);
                let ctx = record(&mut rec, &g, heads)?;
                let h = rec.read(&ctx);
                let (outs, _) = rec.finish()?;
                let want = reference::attention_context(&qkv, (n, t, heads, hd));
                worst = worst.max(reference::rel_err(&outs[h.0], &want));
            }
            Ok(worst)
        }),
        run: Box::new(move || {
            let AttentionShape(n, t, heads, hd) = ATTENTION_TIMING;
            let qkv = random(gpu, &[n, t, 3 * heads * hd], 5)?;
            timed(gpu, |rec| record(rec, &qkv, heads).map(|_| ()))
        }),
    }
}

/// A tensor of normal values (timing inputs: finite, so no variant is timed on NaNs or denormals).
fn random(gpu: &Gpu, shape: &[usize], seed: u64) -> Result<GpuTensor, GpuError> {
    gpu.upload(
        shape,
        &Rng::new(seed).normal_vec(shape.iter().product(), 1.0),
    )
}
