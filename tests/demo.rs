//! The embedded demo: its backbone is a real timm checkpoint (parity with timm), it reaches its recorded source
//! accuracy on a fresh sample, and a short demo run beats chance by a wide margin.

mod common;

use vitune::model::{ForwardOptions, GpuViT};

#[test]
fn demo_backbone_matches_timm() {
    let gpu = common::gpu();
    let b = vitune::demo::backbone().expect("embedded backbone");
    assert_eq!(
        (b.config.dim, b.config.depth, b.config.heads, b.config.patch),
        (96, 4, 3, 8)
    );
    let dir = common::fixture("demo_backbone");
    let px = vitune::io::read_tensors(&dir.join("input.safetensors"))
        .expect("input")
        .remove("pixels")
        .expect("pixels");
    let want = vitune::io::read_tensors(&dir.join("expected.safetensors")).expect("expected");
    let vit = GpuViT::new(&gpu, &b, None).expect("vit");
    let out = vit
        .forward(
            &gpu,
            &px,
            &ForwardOptions {
                attn: true,
                ..Default::default()
            },
        )
        .expect("forward");
    assert!(common::rel_err(&out.pooled.data, &want["pooled"].data) < 1e-4);
    assert!(common::rel_err(&out.logits.expect("logits").data, &want["logits"].data) < 1e-4);
    for (l, a) in out.attn.iter().enumerate() {
        assert!(
            common::rel_err(&a.data, &want[&format!("attn.{l}")].data) < 1e-4,
            "attn.{l}"
        );
    }
}

#[test]
fn demo_backbone_reaches_its_recorded_source_accuracy() {
    // TRAINING.md records 93.08% (242/260) for this sample in PyTorch.
    let gpu = common::gpu();
    let b = vitune::demo::backbone().expect("embedded backbone");
    let (classes, samples) = vitune::demo::glyph_samples("source", 5, 12345, 32).expect("render");
    assert_eq!(
        classes,
        vitune::demo::source_class_names(),
        "class order matches the checkpoint's head"
    );
    let vit = GpuViT::new(&gpu, &b, None).expect("vit");
    let t = vitune::job::eval_transform(&b, None);
    let all: Vec<usize> = (0..samples.len()).collect();
    let px = vitune::train::trainer::batch_pixels(&samples, &all, &t, None);
    let logits = vit
        .forward(&gpu, &px, &ForwardOptions::default())
        .expect("forward")
        .logits
        .expect("head");
    let pred = vitune::train::argmax_rows(&logits.data, classes.len());
    let acc = pred
        .iter()
        .zip(&samples.labels)
        .filter(|(p, l)| p == l)
        .count() as f64
        / samples.len() as f64;
    assert!(acc > 0.88, "source accuracy {acc} (recorded 0.9308)");
}

#[test]
fn short_demo_run_beats_chance_by_a_wide_margin() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().expect("tmp");
    let opts = vitune::demo::DemoOptions {
        shots: 2,
        epochs: 3,
        seed: 1,
        test_per_class: 3,
        split: "target".into(),
        auto: None,
        out: dir.path().to_path_buf(),
    };
    let r = vitune::demo::run(&gpu, &opts, &mut |_| {}).expect("demo runs");
    // 20 classes: chance is 5%.
    for row in &r.rows {
        assert!(row.accuracy > 0.3, "{}: {}", row.label, row.accuracy);
    }
    assert!(r.tuned.exists() && r.attention.exists());
    let fig = image::open(&r.attention).expect("png");
    assert_eq!((fig.width(), fig.height()), (384, 512));
}
