//! Bad files never panic: the backbone loader, the tuned-file loader (against a backbone) and the project file,
//! each fed a few hundred seeded mutations of a real file (bit flips, overwritten bytes, truncations, insertions,
//! a corrupted header length). Each must return (Ok or a clear error) without panicking. The seed files are the
//! committed fixtures; a finding would be kept below as a named regression case.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use vitune::rng::Rng;

const MUTATIONS: usize = 300;

/// The `i`-th mutation of `seed` (deterministic).
fn mutate(seed: &[u8], i: usize) -> Vec<u8> {
    let mut rng = Rng::new(0xF022 + i as u64);
    let mut b = seed.to_vec();
    let pos = |rng: &mut Rng, len: usize| rng.below(len.max(1));
    match i % 6 {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let p = pos(&mut rng, b.len());
                if p < b.len() {
                    b[p] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            for _ in 0..1 + rng.below(16) {
                let p = pos(&mut rng, b.len());
                if p < b.len() {
                    b[p] = rng.below(256) as u8;
                }
            }
        }
        2 => {
            let keep = pos(&mut rng, b.len());
            b.truncate(keep);
        }
        3 => {
            let p = pos(&mut rng, b.len());
            let extra: Vec<u8> = (0..1 + rng.below(64))
                .map(|_| rng.below(256) as u8)
                .collect();
            b.splice(p..p, extra);
        }
        4 if b.len() >= 8 => {
            // safetensors starts with the header's length: make it lie.
            let n = [0u64, 1, 7, u64::MAX, (b.len() as u64) * 2, rng.next_u64()][rng.below(6)];
            b[..8].copy_from_slice(&n.to_le_bytes());
        }
        _ => {
            // Corrupt inside the header (JSON for safetensors and projects): digits, quotes and brackets.
            let head = b.len().min(400);
            let chars = b"0123456789\"[]{},:-eE.";
            for _ in 0..1 + rng.below(4) {
                let p = pos(&mut rng, head);
                if p < b.len() {
                    b[p] = chars[rng.below(chars.len())];
                }
            }
        }
    }
    b
}

/// Runs `load` on every mutation of `seed` written to a file; returns the mutations that panicked.
fn fuzz(name: &str, seed: &[u8], load: impl Fn(&Path)) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join(name);
    let mut panics = Vec::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..MUTATIONS {
        std::fs::write(&path, mutate(seed, i)).expect("write");
        if catch_unwind(AssertUnwindSafe(|| load(&path))).is_err() {
            panics.push(format!("{name}: mutation {i} panicked"));
        }
    }
    std::panic::set_hook(hook);
    panics
}

fn fixture_bytes(case: &str, file: &str) -> Vec<u8> {
    std::fs::read(common::fixture(case).join(file)).expect("fixture")
}

#[test]
fn mutated_backbones_never_panic() {
    let seed = fixture_bytes("timm_cls", "model.safetensors");
    let opts = vitune::model::LoadOptions {
        heads: Some(3),
        ..Default::default()
    };
    let panics = fuzz("model.safetensors", &seed, |p| {
        let _ = vitune::model::load_backbone(p, &opts);
    });
    assert!(panics.is_empty(), "{panics:?}");
}

#[test]
fn mutated_tuned_files_never_panic() {
    let backbone = vitune::model::load_backbone(
        &common::fixture("timm_cls").join("model.safetensors"),
        &Default::default(),
    )
    .expect("backbone");
    for case in ["grad_lora", "grad_vpt-deep", "grad_convpass"] {
        let seed = fixture_bytes(case, "tuned.safetensors");
        let panics = fuzz("tuned.safetensors", &seed, |p| {
            let _ = vitune::tuned::read(p, &backbone, true);
            let _ = vitune::tuned::read_meta(p);
        });
        assert!(panics.is_empty(), "{case}: {panics:?}");
    }
}

#[test]
fn mutated_projects_never_panic() {
    let mut project = vitune::app::project::Project::default();
    project.classes.push(vitune::app::project::ClassEntry {
        name: "delta".into(),
        images: vec![vitune::app::project::ImageEntry {
            path: "/images/delta/0.png".into(),
            enabled: true,
        }],
    });
    let seed = serde_json::to_vec_pretty(&project).expect("json");
    let panics = fuzz("project.json", &seed, |p| {
        let _ = vitune::app::project::Project::load(p);
    });
    assert!(panics.is_empty(), "{panics:?}");
}

#[test]
fn the_harness_reports_a_panicking_loader() {
    // The property can fail: a loader that panics on truncated input is caught and named.
    let seed = vec![7u8; 64];
    let panics = fuzz("any.bin", &seed, |p| {
        let n = std::fs::metadata(p).expect("meta").len();
        assert!(n >= 64, "truncated");
    });
    assert!(!panics.is_empty());
    assert!(panics[0].contains("any.bin: mutation"), "{panics:?}");
}
