#![allow(dead_code)]
//! Helpers shared by the integration tests.

pub mod hub_stand_in;

use std::path::PathBuf;

use vitune::gpu::Gpu;

/// The GPU for tests: fails loudly when there is none (CI installs lavapipe), never skips.
pub fn gpu() -> Gpu {
    match Gpu::new() {
        Ok(g) => g,
        Err(e) => panic!("these tests need a GPU adapter (lavapipe is enough): {e}"),
    }
}

/// Whether the caller declared (`VITUNE_TEST_WITHOUT_F16=1`, as `.ci/run` does for SwiftShader) that this
/// adapter has no SHADER_F16. A declaration on an adapter that has it is an error, so the switch cannot hide a
/// regression on lavapipe or a GPU.
pub fn f16_declared_absent(gpu: &Gpu) -> bool {
    let declared = std::env::var("VITUNE_TEST_WITHOUT_F16").is_ok_and(|v| v == "1");
    assert!(
        !(declared && gpu.has_shader_f16()),
        "VITUNE_TEST_WITHOUT_F16=1, but {} has SHADER_F16",
        gpu.describe()
    );
    declared
}

/// Every row-kernel variant, the subgroup one included: lavapipe and SwiftShader both have `SUBGROUP`, so its
/// absence fails loudly rather than quietly testing one variant less.
pub fn row_kernels(gpu: &Gpu) -> &'static [vitune::gpu::RowKernel] {
    assert!(
        gpu.has_subgroups(),
        "{} has no SUBGROUP, which the subgroup row kernels need (lavapipe and SwiftShader have it)",
        gpu.describe()
    );
    vitune::gpu::RowKernel::ALL
}

/// Whether to run matmul variant `kernel` on this adapter, never quietly: `half` needs SHADER_F16 (absent only
/// where `VITUNE_TEST_WITHOUT_F16=1` declares it); `coop` needs cooperative matrices, which only newer drivers
/// offer (Mesa 26's lavapipe: `.ci/run` sets `VITUNE_TEST_COOP=1` there, and then their absence fails).
pub fn runs_matmul(gpu: &Gpu, kernel: vitune::gpu::MatmulKernel) -> bool {
    use vitune::gpu::MatmulKernel;
    let runs = gpu.supports_matmul(kernel);
    match kernel {
        MatmulKernel::Half if !f16_declared_absent(gpu) => {
            assert!(
                runs,
                "{} has no SHADER_F16 for the half matmul",
                gpu.describe()
            );
        }
        MatmulKernel::Coop if std::env::var("VITUNE_TEST_COOP").is_ok_and(|v| v == "1") => {
            assert!(
                runs,
                "VITUNE_TEST_COOP=1, but {} offers no f16 → f32 8x8x8 or 16x16x16 cooperative matrices",
                gpu.describe()
            );
        }
        _ if !runs => eprintln!("{kernel:?} matmul not run: {} cannot", gpu.describe()),
        _ => {}
    }
    runs
}

pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

/// max |a − b| / max |b|: the relative error the parity tests state their tolerance in (the selftest's measure).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "length mismatch {} vs {}",
        a.len(),
        b.len()
    );
    vitune::selftest::rel_err(a, b)
}

/// The demo's glyph classes (`split`, `per_class` images each) written into `dir/data` by `vitune demo-data`.
pub fn demo_data(dir: &std::path::Path, split: &str, per_class: usize) -> PathBuf {
    let data = dir.join("data");
    let (ok, _, err) = vitune(&[
        "demo-data",
        "--split",
        split,
        "--per-class",
        &per_class.to_string(),
        "--out",
        &data.display().to_string(),
    ]);
    assert!(ok, "{err}");
    data
}

/// Runs the vitune binary: (success, stdout, stderr).
pub fn vitune(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitune"))
        .args(args)
        .output()
        .expect("vitune runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Mean cross-entropy of `logits` [N, C] against class indices `labels`, in f64.
pub fn cross_entropy(logits: &vitune::model::HostTensor, labels: &[usize]) -> f64 {
    let c = logits.shape[1];
    let total: f64 = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row: Vec<f64> = logits.data[i * c..(i + 1) * c]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            lse - row[y]
        })
        .sum();
    total / labels.len() as f64
}

/// Every gradient fixture case (tools/make_grad_fixtures.py), one or more per method.
pub const GRAD_CASES: [&str; 42] = [
    "linear",
    "bitfit",
    "vpt-shallow",
    "vpt-deep",
    "vpt-deep-avg",
    "lora",
    "adaptformer",
    "convpass",
    "ssf",
    "ssf-avg",
    "full",
    "clip-vpt-deep",
    "clip-lora",
    "reg-vpt-deep",
    "reg-lora",
    "gap-bitfit",
    "nocls-vpt-deep",
    "nocls-lora",
    "distilled-vpt-deep",
    "distilled-lora",
    "siglip-vpt-deep",
    "siglip-lora",
    "siglip-bitfit",
    "siglip-full",
    "dinov3-vpt-deep",
    "dinov3-lora",
    "dinov3-ssf",
    "dinov3-adaptformer",
    "dinov2g-vpt-deep",
    "dinov2g-lora",
    "dinov2g-bitfit",
    "eva02-vpt-deep",
    "eva02-lora",
    "eva02-ssf",
    "eva02-convpass",
    "dinov3-linear",
    "dinov3-vpt-shallow",
    "rope-vpt-deep",
    "eva02-bitfit",
    "eva02-full",
    "dinov3-full",
    "dinov2g-full",
];

/// A gradient fixture: its backbone, the tuning (random values, so every tensor matters), the input (`pixels`,
/// `labels`) and autograd's loss and gradients.
pub struct GradFixture {
    pub backbone: vitune::model::Backbone,
    pub tuning: vitune::tuning::Tuning,
    pub input: std::collections::BTreeMap<String, vitune::model::HostTensor>,
    pub expected: std::collections::BTreeMap<String, vitune::model::HostTensor>,
    /// The backbone's checkpoint.
    pub backbone_path: PathBuf,
}

pub fn grad_fixture(case: &str) -> GradFixture {
    use vitune::model::{load_backbone, LoadOptions};
    let dir = fixture(&format!("grad_{case}"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
            .expect("json");
    let bb = meta["backbone"].as_str().unwrap_or("timm_cls").to_string();
    let heads = if bb == "timm_avg_bf16" { Some(3) } else { None };
    let backbone_path = fixture(&bb).join("model.safetensors");
    let backbone = load_backbone(
        &backbone_path,
        &LoadOptions {
            heads,
            ..Default::default()
        },
    )
    .expect("backbone");
    let (m, opts) = vitune::selftest::fixture_method(&meta).expect("known method");
    let tuned = vitune::io::read_tensors(&dir.join("tuned.safetensors")).expect("tuned");
    let tuning =
        vitune::tuning::Tuning::from_tensors(m, opts, &backbone, tuned).expect("tuning accepted");
    GradFixture {
        backbone,
        tuning,
        input: vitune::io::read_tensors(&dir.join("input.safetensors")).expect("input"),
        expected: vitune::io::read_tensors(&dir.join("expected.safetensors")).expect("expected"),
        backbone_path,
    }
}
