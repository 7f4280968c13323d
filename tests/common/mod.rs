#![allow(dead_code)]
//! Helpers shared by the integration tests.

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
