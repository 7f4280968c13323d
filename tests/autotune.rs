//! The autotuner: a variant that fails its check on the adapter is never chosen, however fast; the choices are
//! cached under their adapter key and read back; `off` keeps the rules; a family the user pinned is left alone.

mod common;

use std::sync::LazyLock;

use vitune::gpu::{Kernel, MatmulClass, MatmulKernel, RowKernel, TuneState};
use vitune::ops::autotune::{self, Mode};

/// The direct matmul with its first k loop stepping by two: half the work, so faster than any right variant, and
/// wrong.
static BROKEN_SOURCE: LazyLock<String> = LazyLock::new(|| {
    let right = "for (var k = 0u; k < p.k; k++) {";
    assert!(
        vitune::ops::shaders::MATMUL.contains(right),
        "matmul.wgsl's direct k loop changed"
    );
    vitune::ops::shaders::MATMUL.replacen(right, "for (var k = 0u; k < p.k; k += 2u) {", 1)
});
static BROKEN: LazyLock<Kernel> = LazyLock::new(|| Kernel {
    family: "matmul",
    source: BROKEN_SOURCE.as_str(),
    entry: "matmul_direct",
});

#[test]
fn a_broken_variant_is_rejected_and_never_chosen_however_fast() {
    let gpu = common::gpu();
    let right = autotune::matmul_candidate(&gpu, MatmulClass::Large, "direct".into(), |mm, rec| {
        mm.kernel = Some(MatmulKernel::Direct);
        mm.record(rec);
    });
    let broken =
        autotune::matmul_candidate(&gpu, MatmulClass::Large, "broken".into(), |mm, rec| {
            mm.record_with(rec, &BROKEN, (64, 64))
        });
    let choice = autotune::pick("matmul", "large", "GFLOP", 1.0, vec![broken, right]);
    assert_eq!(choice.chosen, "direct", "{choice:?}");
    let b = &choice.trials[0];
    assert!(!b.passed && b.rate.is_none(), "{b:?}");
    assert!(
        b.worst.is_some_and(|w| w > 1e-2),
        "the broken kernel's error: {b:?}"
    );
    assert_eq!(choice.rejected().count(), 1);
    let r = &choice.trials[1];
    assert!(r.passed && r.rate.is_some_and(|v| v > 0.0), "{r:?}");
    assert!(r.worst.is_some_and(|w| w <= autotune::TOLERANCE), "{r:?}");
}

#[test]
fn tuning_checks_every_variant_and_the_cache_gives_the_same_choices_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("autotune.json");
    let gpu = common::gpu();
    assert_eq!(gpu.tune_state(), TuneState::NotYet);
    autotune::ensure_at(&gpu, Mode::On, Some(&path));
    assert_eq!(gpu.tune_state(), TuneState::Done);
    let tuned = gpu.tuned().expect("tuned");
    assert_eq!(tuned.key, autotune::cache_key(&gpu));
    // Every class of every family, every variant tried and (on a correct build) passing; the choice is the fastest.
    let families: Vec<(String, String)> = tuned
        .choices
        .iter()
        .map(|c| (c.family.clone(), c.class.clone()))
        .collect();
    assert_eq!(families.len(), MatmulClass::ALL.len() + 2, "{families:?}");
    for c in &tuned.choices {
        assert!(
            c.rejected().next().is_none(),
            "a variant failed on {}: {c:?}",
            gpu.describe()
        );
        let fastest = c
            .trials
            .iter()
            .max_by(|a, b| a.rate.partial_cmp(&b.rate).expect("rates are numbers"))
            .expect("trials");
        assert_eq!(c.chosen, fastest.variant, "{c:?}");
    }
    let matmul: Vec<&str> = tuned.choices[0]
        .trials
        .iter()
        .map(|t| t.variant.as_str())
        .collect();
    assert_eq!(matmul, ["tiled", "direct", "register"]);
    let rows: Vec<&str> = tuned.choices[3]
        .trials
        .iter()
        .map(|t| t.variant.as_str())
        .collect();
    assert_eq!(
        rows,
        ["workgroup", "serial", "subgroup"],
        "{}",
        gpu.describe()
    );
    // What the tuner chose is what runs.
    for (i, &class) in MatmulClass::ALL.iter().enumerate() {
        assert_eq!(gpu.matmul_kernel_for(class).name(), tuned.choices[i].chosen);
    }
    assert_eq!(gpu.row_kernel().name(), tuned.choices[3].chosen);
    assert_eq!(gpu.attention_kernel().name(), tuned.choices[4].chosen);

    // A second device on the same adapter reads the file instead of measuring (the same seconds prove it).
    let again = common::gpu();
    autotune::ensure_at(&again, Mode::On, Some(&path));
    let read = again.tuned().expect("read from the cache");
    let chosen = |t: &vitune::gpu::Tuned| {
        t.choices
            .iter()
            .map(|c| c.chosen.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (read.key.as_str(), chosen(&read)),
        (tuned.key.as_str(), chosen(&tuned))
    );
    assert!(
        (read.seconds - tuned.seconds).abs() < 1e-9,
        "{} vs {}",
        read.seconds,
        tuned.seconds
    );
    assert_eq!(again.matmul_kernel(), gpu.matmul_kernel());
    // A different key (another driver or shader build) is not served from the cache.
    assert!(autotune::load(&path, "another adapter").is_none());
}

#[test]
fn off_keeps_the_rules_and_a_pinned_family_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("autotune.json");
    let gpu = common::gpu();
    let rule = (gpu.matmul_kernel(), gpu.row_kernel());
    autotune::ensure_at(&gpu, Mode::Off, Some(&path));
    assert_eq!(gpu.tune_state(), TuneState::Done);
    assert!(gpu.tuned().is_none() && !path.exists());
    assert_eq!((gpu.matmul_kernel(), gpu.row_kernel()), rule);

    // The user's row kernel stays whatever the tuner measures; the other families take its choices.
    let pinned = common::gpu();
    let mine = if rule.1 == RowKernel::Workgroup {
        RowKernel::Serial
    } else {
        RowKernel::Workgroup
    };
    pinned.set_row_kernel(mine);
    autotune::ensure_at(&pinned, Mode::Force, Some(&path));
    let tuned = pinned.tuned().expect("tuned");
    assert_eq!(pinned.row_kernel(), mine);
    assert_eq!(pinned.matmul_kernel().name(), tuned.choices[0].chosen);
    assert!(path.exists(), "force tunes and saves");
}
