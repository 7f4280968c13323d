//! `vitune selftest`: does vitune compute correctly, and how fast, on the adapter at hand? Golden data from the
//! committed fixtures is embedded in the binary: the forward of three fixture ViTs (EVA-02 among them: RoPE and
//! SwiGLU) against timm's outputs (with every row and attention kernel the adapter could use), every method's loss
//! and gradients against PyTorch autograd (LoRA on EVA-02 too), and the matmul kernels (tiled and direct, f32 and f16 weights) against a CPU reference at awkward
//! sizes. Then two speed figures. A report, never a panic: each check says its worst error and its tolerance.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{AttentionKernel, Gpu, MatmulClass, MatmulKernel, RowKernel};
use crate::model::{
    download_named, load_backbone_bytes, Backbone, ForwardOptions, GpuViT, HostTensor, LoadOptions,
};
use crate::ops::autotune::{self, MatmulCase};
use crate::train::{compute_grads, StepOptions};
use crate::tuning::{GpuTuning, Method, MethodOptions, Tuning};

/// Relative error (max |a − b| / max |b|) within which vitune's f32 path matches timm and autograd.
pub const TOL: f64 = 1e-4;
/// The same for f16-stored matmul weights against a reference that rounds them to f16 too.
pub const F16_TOL: f64 = 1e-3;

macro_rules! fixture {
    ($case:literal, $file:literal) => {
        include_bytes!(concat!("../tests/fixtures/", $case, "/", $file)).as_slice()
    };
}

/// A backbone fixture: weights, config.json (when it has one), input and timm's outputs.
struct ForwardFixture {
    name: &'static str,
    what: &'static str,
    model: &'static [u8],
    config: Option<&'static str>,
    heads: Option<usize>,
    input: &'static [u8],
    expected: &'static [u8],
}

const FORWARDS: [ForwardFixture; 3] = [
    ForwardFixture {
        name: "timm_cls",
        what: "timm, CLS pooling, f32",
        model: fixture!("timm_cls", "model.safetensors"),
        config: Some(include_str!("../tests/fixtures/timm_cls/config.json")),
        heads: None,
        input: fixture!("timm_cls", "input.safetensors"),
        expected: fixture!("timm_cls", "expected.safetensors"),
    },
    ForwardFixture {
        name: "timm_avg_bf16",
        what: "timm, average pooling, LayerScale, bf16",
        model: fixture!("timm_avg_bf16", "model.safetensors"),
        config: None,
        heads: Some(3),
        input: fixture!("timm_avg_bf16", "input.safetensors"),
        expected: fixture!("timm_avg_bf16", "expected.safetensors"),
    },
    ForwardFixture {
        name: "timm_eva02",
        what: "timm EVA-02: RoPE, SwiGLU with a sub-LayerNorm, q/k/v joined",
        model: fixture!("timm_eva02", "model.safetensors"),
        config: Some(include_str!("../tests/fixtures/timm_eva02/config.json")),
        heads: None,
        input: fixture!("timm_eva02", "input.safetensors"),
        expected: fixture!("timm_eva02", "expected.safetensors"),
    },
];

/// A method's gradient fixture: (case, meta.json, tuned tensors, input, autograd's loss and gradients).
type GradFixture = (
    &'static str,
    &'static str,
    &'static [u8],
    &'static [u8],
    &'static [u8],
);

macro_rules! grad_fixture {
    ($case:literal) => {
        (
            $case,
            include_str!(concat!("../tests/fixtures/grad_", $case, "/meta.json")),
            include_bytes!(concat!(
                "../tests/fixtures/grad_",
                $case,
                "/tuned.safetensors"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../tests/fixtures/grad_",
                $case,
                "/input.safetensors"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../tests/fixtures/grad_",
                $case,
                "/expected.safetensors"
            ))
            .as_slice(),
        )
    };
}

const GRADIENTS: [GradFixture; 12] = [
    grad_fixture!("linear"),
    grad_fixture!("bitfit"),
    grad_fixture!("vpt-shallow"),
    grad_fixture!("vpt-deep"),
    grad_fixture!("vpt-deep-avg"),
    grad_fixture!("lora"),
    grad_fixture!("adaptformer"),
    grad_fixture!("convpass"),
    grad_fixture!("ssf"),
    grad_fixture!("ssf-avg"),
    grad_fixture!("full"),
    grad_fixture!("eva02-lora"),
];

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// The largest relative error found (max |got − want| / max |want| over the check's tensors).
    pub worst: f64,
    pub tolerance: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    /// The default matmul kernel on ViT-B's fc1 shape (M = 8·197, K = 768, N = 3072), wall clock.
    pub matmul_gflops: f64,
    /// A ViT-B/16 forward (random weights) at batch 8.
    pub vit_b16_images_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamps: bool,
    /// The cooperative matrices the coop matmul uses here (subgroup size and matrix side), if any.
    pub cooperative_matrix: Option<(u32, u32)>,
    /// The kernels this adapter runs by default.
    pub defaults: String,
    /// The autotuner's choice for each family and shape class, with every variant's check and rate (None with
    /// `VITUNE_AUTOTUNE=off`).
    pub autotune: Option<crate::gpu::Tuned>,
    /// Variants that failed their check on this adapter (family/class/variant): never used.
    pub rejected: Vec<String>,
    pub checks: Vec<Check>,
    pub speed: Option<Speed>,
    pub passed: bool,
}

impl Report {
    pub fn text(&self) -> String {
        let mut s = format!(
            "adapter       {}\nbackend       {} ({}), driver {}\nlimits        storage binding {} MiB, workgroup memory {} KiB, {} invocations per workgroup\nfeatures      SHADER_F16 {}, SUBGROUP {}, TIMESTAMP_QUERY {}, COOPERATIVE_MATRIX {}\ndefaults      {}\n",
            self.adapter,
            self.backend,
            self.device_type,
            self.driver,
            self.max_storage_binding_bytes >> 20,
            self.max_workgroup_storage_bytes >> 10,
            self.max_invocations_per_workgroup,
            yes(self.shader_f16),
            yes(self.subgroup),
            yes(self.timestamps),
            match self.cooperative_matrix {
                Some((sg, side)) => format!("{side}x{side}x{side} f16 -> f32, subgroups of {sg}"),
                None => "no".into(),
            },
            self.defaults
        );
        if let Some(t) = &self.autotune {
            s.push_str(&format!(
                "autotuned     (family, class -> choice, each variant's rate)\n{}",
                t.text()
            ));
        }
        for r in &self.rejected {
            s.push_str(&format!(
                "REJECTED      {r}: failed its check on this adapter, never used\n"
            ));
        }
        for c in &self.checks {
            s.push_str(&format!(
                "{}  {:<80} worst {:.1e}  (tolerance {:.0e})\n",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.worst,
                c.tolerance
            ));
        }
        if let Some(sp) = &self.speed {
            s.push_str(&format!(
                "speed         matmul {:.1} GFLOP/s (ViT-B fc1 shape); ViT-B/16 forward {:.2} images/s at batch 8\n",
                sp.matmul_gflops, sp.vit_b16_images_per_s
            ));
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        s.push_str(&if failed == 0 {
            format!("all {} checks passed\n", self.checks.len())
        } else {
            format!("{failed} of {} checks FAILED\n", self.checks.len())
        });
        s
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub use crate::ops::reference::rel_err;

fn tensors(bytes: &[u8], what: &str) -> Result<BTreeMap<String, HostTensor>> {
    crate::io::tensors_from_bytes(bytes, Path::new(what))
}

fn check(name: String, worst: f64, tolerance: f64) -> Check {
    Check {
        name,
        worst,
        tolerance,
        passed: worst < tolerance,
    }
}

fn backbone(f: &ForwardFixture) -> Result<Backbone> {
    let config: Option<serde_json::Value> = f
        .config
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::Input(format!("embedded {} config.json: {e}", f.name)))?;
    Ok(load_backbone_bytes(
        f.model,
        Path::new(f.name),
        config.as_ref(),
        None,
        &LoadOptions {
            heads: f.heads,
            ..Default::default()
        },
    )?)
}

/// The forward of a fixture ViT against timm's logits, with each row kernel and attention kernel.
fn forward_checks(gpu: &Gpu, out: &mut Vec<Check>) -> Result<()> {
    let (rows0, attn0) = (gpu.row_kernel(), gpu.attention_kernel());
    for f in &FORWARDS {
        let b = backbone(f)?;
        let pixels = tensors(f.input, f.name)?
            .remove("pixels")
            .ok_or_else(|| Error::Input(format!("embedded {} input has no pixels", f.name)))?;
        let want = tensors(f.expected, f.name)?;
        let vit = GpuViT::new(gpu, &b, Some((pixels.shape[2], pixels.shape[3])))?;
        for &rows in RowKernel::ALL {
            if rows == RowKernel::Subgroup && !gpu.has_subgroups() {
                continue;
            }
            for &attn in AttentionKernel::ALL {
                gpu.set_row_kernel(rows);
                gpu.set_attention_kernel(attn);
                let got = vit.forward(gpu, &pixels, &ForwardOptions::default())?;
                let worst = match (&got.logits, want.get("logits")) {
                    (Some(g), Some(w)) => rel_err(&g.data, &w.data),
                    _ => f64::INFINITY,
                };
                out.push(check(
                    format!("forward {} ({rows:?} rows, {attn:?} attention)", f.what),
                    worst,
                    TOL,
                ));
            }
        }
    }
    gpu.set_row_kernel(rows0);
    gpu.set_attention_kernel(attn0);
    Ok(())
}

/// The method and options of a gradient fixture's meta.json (tools/make_grad_fixtures.py): the defaults, with the
/// fixture's value of each option the method offers (alpha, scale).
pub fn fixture_method(meta: &serde_json::Value) -> Result<(Method, MethodOptions)> {
    let m = Method::from_name(meta["method"].as_str().unwrap_or_default())?;
    // The fixture's numbers under the keys of options the method offers (LoRA's `scale` there is alpha / r,
    // which LoRA does not offer).
    let given: Vec<(&str, String)> = m
        .spec()
        .options()
        .iter()
        .filter_map(|s| {
            meta["options"][s.key]
                .as_f64()
                .map(|v| (s.key, v.to_string()))
        })
        .collect();
    let opts = MethodOptions::with_values(m, given.iter().map(|(k, v)| (*k, v.as_str())))?;
    Ok((m, opts))
}

/// Every method's loss and gradients against autograd.
fn gradient_checks(gpu: &Gpu, out: &mut Vec<Check>) -> Result<()> {
    let backbones: Vec<Backbone> = FORWARDS.iter().map(backbone).collect::<Result<_>>()?;
    for (case, meta, tuned, input, expected) in GRADIENTS.iter() {
        let meta: serde_json::Value = serde_json::from_str(meta)
            .map_err(|e| Error::Input(format!("embedded grad_{case} meta.json: {e}")))?;
        let b = FORWARDS
            .iter()
            .position(|f| Some(f.name) == meta["backbone"].as_str())
            .map_or(&backbones[0], |i| &backbones[i]);
        let (m, opts) = fixture_method(&meta)?;
        let tuning = Tuning::from_tensors(m, opts, b, tensors(tuned, case)?)?;
        let mut inp = tensors(input, case)?;
        let pixels = inp
            .remove("pixels")
            .ok_or_else(|| Error::Input(format!("embedded grad_{case} has no pixels")))?;
        let labels: Vec<usize> = inp
            .get("labels")
            .map(|l| l.data.iter().map(|v| *v as usize).collect())
            .unwrap_or_default();
        let want = tensors(expected, case)?;
        let vit = GpuViT::new(gpu, b, None)?;
        let gt = GpuTuning::upload(gpu, &tuning)?;
        let grads = gt.zeros_like(gpu)?;
        let step = compute_grads(
            gpu,
            &vit,
            &gt,
            &grads,
            &pixels,
            &labels,
            StepOptions::default(),
            None,
        )?;
        let got = download_named(gpu, &grads, &gt.shapes)?;
        let mut worst = match want.get("loss") {
            Some(l) => rel_err(&[step.loss as f32], &l.data),
            None => f64::INFINITY,
        };
        for (name, g) in &got {
            worst = worst.max(match want.get(name) {
                Some(w) => rel_err(&g.data, &w.data),
                None => f64::INFINITY,
            });
        }
        out.push(check(
            format!("gradients {case} ({} tensors) vs autograd", got.len()),
            worst,
            TOL,
        ));
    }
    Ok(())
}

/// Every matmul kernel this adapter runs (f16-input ones at their own tolerance) on the autotuner's awkward sizes of each shape class (batched and transposed, with bias and
/// GELU) against a CPU f64 reference, with f32 weights and (where the adapter has `SHADER_F16`) f16 ones.
fn matmul_checks(gpu: &Gpu, out: &mut Vec<Check>) -> Result<()> {
    let storages: &[bool] = if gpu.has_shader_f16() {
        &[false, true]
    } else {
        &[false]
    };
    let cases: Vec<MatmulCase> = MatmulClass::ALL
        .iter()
        .flat_map(|&c| autotune::matmul_checks(c).iter().copied())
        .collect();
    for &f16 in storages {
        for &kernel in MatmulKernel::ALL {
            if !gpu.supports_matmul(kernel) {
                continue;
            }
            let worst = autotune::matmul_error(gpu, &cases, f16, &|mm, rec| {
                mm.kernel = Some(kernel);
                mm.record(rec);
            })?;
            let tolerance = match (kernel.half_inputs(), f16) {
                (true, _) => autotune::HALF_TOLERANCE,
                (false, true) => F16_TOL,
                (false, false) => TOL,
            };
            out.push(check(
                format!(
                    "matmul {kernel:?}, {} weights, awkward sizes, bias + GELU",
                    if f16 { "f16" } else { "f32" }
                ),
                worst,
                tolerance,
            ));
        }
    }
    Ok(())
}

/// Runs the checks (and, unless `quick`, the speed figures) on `gpu`.
pub fn run(gpu: &Gpu, quick: bool, log: &mut dyn FnMut(&str)) -> Result<Report> {
    let mut checks = Vec::new();
    log("choosing the kernels (autotuning, or its cache)...");
    autotune::ensure(gpu);
    let defaults = gpu.kernel_summary();
    log("checking the forward against timm...");
    forward_checks(gpu, &mut checks)?;
    log("checking every method's gradients against autograd...");
    gradient_checks(gpu, &mut checks)?;
    log("checking the matmul kernels against a CPU reference...");
    matmul_checks(gpu, &mut checks)?;
    let speed = if quick {
        None
    } else {
        log("measuring speed (ViT-B matmul, ViT-B/16 forward at batch 8)...");
        Some(Speed {
            matmul_gflops: crate::bench::matmul_gflops(gpu, (8 * 197, 3072, 768), 3, false)?.0,
            vit_b16_images_per_s: crate::bench::forward_images_per_s(gpu, "vit-b16", 8, 1)?,
        })
    };
    let info = &gpu.info;
    Ok(Report {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info),
        max_storage_binding_bytes: gpu.max_binding_bytes(),
        max_workgroup_storage_bytes: gpu.limits.max_compute_workgroup_storage_size,
        max_invocations_per_workgroup: gpu.limits.max_compute_invocations_per_workgroup,
        shader_f16: gpu.has_shader_f16(),
        subgroup: gpu.has_subgroups(),
        timestamps: gpu.has_timestamps(),
        cooperative_matrix: gpu.coop_shape(),
        defaults,
        autotune: gpu.tuned(),
        rejected: gpu
            .tuned()
            .map(|t| {
                t.choices
                    .iter()
                    .flat_map(|c| {
                        c.rejected()
                            .map(|r| format!("{}/{}/{}", c.family, c.class, r.variant))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        passed: checks.iter().all(|c| c.passed),
        checks,
        speed,
    })
}
