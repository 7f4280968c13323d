//! Export: every method's ONNX file, run by a Rust ONNX runtime (tract), predicts like vitune and like PyTorch
//! (the gradient fixtures' autograd loss); its metadata says how to preprocess; bad inputs leave no file; the
//! merged timm checkpoint reproduces the tuned model.

mod common;

use std::path::Path;

use vitune::export::{check, export_onnx, read_metadata};
use vitune::tuned::{TunedFile, TunedMeta};

/// Within this relative logit difference (max |a − b| / max |b|) the exported model counts as the same.
const TOL: f64 = 1e-4;

fn tuned_file(f: &common::GradFixture) -> TunedFile {
    let t = &f.tuning;
    let classes: Vec<String> = (0..t.num_classes).map(|i| format!("class-{i}")).collect();
    TunedFile {
        tuning: t.clone(),
        classes: classes.clone(),
        meta: Some(TunedMeta::new(t, &f.backbone, classes, "fixture")),
    }
}

#[test]
fn every_method_exports_an_onnx_model_that_predicts_like_vitune_and_pytorch() {
    let gpu = common::gpu();
    let dir = tempfile::tempdir().expect("tempdir");
    for case in common::GRAD_CASES {
        let f = common::grad_fixture(case);
        let tuned = tuned_file(&f);
        let pixels = &f.input["pixels"];
        let out = dir.path().join(format!("{case}.onnx"));
        let report = export_onnx(&gpu, &f.backbone, &tuned, &out, Some(pixels.clone()))
            .unwrap_or_else(|e| panic!("{case}: export failed: {e}"));
        assert!(out.exists(), "{case}: no file");
        assert_eq!(report.check.images, pixels.shape[0]);
        assert_eq!(report.check.top1_agree, report.check.images, "{case}");
        assert!(
            (report.check.max_rel_diff as f64) < TOL,
            "{case}: ONNX vs vitune logits: {}",
            report.check.describe()
        );

        // Independently of vitune's forward: the ONNX runtime's logits give autograd's loss.
        let logits = check::run_onnx(&out, pixels).expect("tract runs it");
        let labels: Vec<usize> = f.input["labels"].data.iter().map(|v| *v as usize).collect();
        let loss = common::cross_entropy(&logits, &labels);
        let want = f.expected["loss"].data[0] as f64;
        assert!(
            (loss - want).abs() / want.abs() < TOL,
            "{case}: ONNX loss {loss} vs PyTorch's {want}"
        );

        let meta = read_metadata(&out).expect("metadata");
        let classes: Vec<String> = serde_json::from_str(&meta["classes"]).expect("classes");
        assert_eq!(classes, tuned.classes, "{case}");
        let c = &f.backbone.config;
        let size: [usize; 2] = serde_json::from_str(&meta["image_size"]).expect("size");
        assert_eq!((size[0], size[1]), c.image_size, "{case}");
        let mean: [f32; 3] = serde_json::from_str(&meta["mean"]).expect("mean");
        let std: [f32; 3] = serde_json::from_str(&meta["std"]).expect("std");
        assert_eq!((mean, std), (c.mean, c.std), "{case}");
        assert_eq!(meta["method"], f.tuning.method.name(), "{case}");
        assert_eq!(meta["backbone_sha256"], f.backbone.sha256, "{case}");
        assert_eq!(meta["vitune_version"], env!("CARGO_PKG_VERSION"));
        let crop: f32 = meta["crop_pct"].parse().expect("crop_pct");
        assert_eq!(crop, c.crop_pct);
    }
}

/// A vitune tuned file for `case` in `dir`, and its backbone's path.
fn write_tuned(dir: &Path, case: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let f = common::grad_fixture(case);
    let t = tuned_file(&f);
    let path = dir.join(format!("{case}.tuned.safetensors"));
    vitune::tuned::write(&path, &t.tuning, t.meta.as_ref().expect("meta")).expect("write");
    (path, f.backbone_path)
}

/// `vitune export --backbone B --tuned T --out O` with `extra` arguments: (success, stdout, stderr).
fn export(backbone: &Path, tuned: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let (b, t, o) = (s(backbone), s(tuned), s(out));
    let mut args = vec!["export", "--backbone", &b, "--tuned", &t, "--out", &o];
    args.extend_from_slice(extra);
    common::vitune(&args)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn export_refuses_bad_input_with_one_sentence_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (tuned, backbone) = write_tuned(d, "vpt-deep");
    let (_, other_backbone) = write_tuned(d, "ssf-avg");
    let before = files_in(d);
    let out = d.join("model.onnx");

    // A tuned file made for another backbone.
    let (ok, _, err) = export(&other_backbone, &tuned, &out, &["--heads", "3"]);
    assert!(!ok, "another backbone's tuned file was exported");
    assert!(err.contains("was tuned for"), "{err}");

    // A truncated tuned file.
    let bytes = std::fs::read(&tuned).expect("read");
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let (ok, _, err) = export(&backbone, &cut, &out, &[]);
    assert!(!ok, "a truncated tuned file was exported");
    assert!(
        err.contains("cut.safetensors"),
        "the error names the file: {err}"
    );
    std::fs::remove_file(&cut).expect("rm");

    // An output path that cannot be written.
    let nowhere = d.join("no-such-folder").join("model.onnx");
    let (ok, _, err) = export(&backbone, &tuned, &nowhere, &[]);
    assert!(!ok, "an unwritable path was accepted");
    assert!(
        err.contains("no-such-folder"),
        "the error names the path: {err}"
    );

    // Prompts are not a plain ViT: the timm format says to use ONNX.
    let merged = d.join("merged.safetensors");
    let (ok, _, err) = export(&backbone, &tuned, &merged, &["--format", "timm"]);
    assert!(!ok, "vpt-deep was exported as a plain timm ViT");
    assert!(err.contains("ONNX"), "{err}");

    for (ok, what) in [(!out.exists(), "model.onnx"), (!merged.exists(), "merged")] {
        assert!(ok, "{what} was left behind");
    }
    assert_eq!(files_in(d), before, "a partial file was left behind");

    // And the good case through the CLI prints the self-check.
    let (ok, stdout, err) = export(&backbone, &tuned, &out, &[]);
    assert!(ok, "{err}");
    assert!(stdout.contains("agrees with vitune on 4 of 4"), "{stdout}");
    assert!(out.exists());
}

/// LoRA (and SSF) merged into a plain timm checkpoint: loaded back by vitune as a backbone, its own head gives the
/// tuned model's logits.
#[test]
fn merged_timm_checkpoints_reproduce_the_tuned_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for (case, heads) in [
        ("lora", None),
        ("ssf-avg", Some("3")),
        ("bitfit", None),
        ("dinov3-lora", None),
        ("dinov3-linear", None),
        ("dinov2g-lora", None),
        ("dinov2g-bitfit", None),
        ("eva02-lora", None),
    ] {
        let (tuned, backbone) = write_tuned(d, case);
        let merged = d.join(format!("{case}-merged.safetensors"));
        let mut extra = vec!["--format", "timm"];
        if let Some(h) = heads {
            extra.extend(["--heads", h]);
        }
        let (ok, _, err) = export(&backbone, &tuned, &merged, &extra);
        assert!(ok, "{case}: {err}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).expect("config"))
                .expect("json");
        assert_eq!(config["num_classes"], config["model_args"]["num_classes"]);

        let f = common::grad_fixture(case);
        let gpu = common::gpu();
        let want = vitune::job::forward_tensors(
            &gpu,
            &f.backbone,
            Some(&f.tuning),
            &f.input["pixels"],
            false,
        )
        .expect("tuned forward");
        let plain = vitune::model::load_backbone(
            &merged,
            &vitune::model::LoadOptions {
                heads: heads.map(|h| h.parse().expect("heads")),
                ..Default::default()
            },
        )
        .expect("the merged checkpoint loads as a backbone");
        let got = vitune::job::forward_tensors(&gpu, &plain, None, &f.input["pixels"], false)
            .expect("merged forward");
        let e = common::rel_err(&got["logits"].data, &want["logits"].data);
        assert!(e < TOL, "{case}: merged logits rel err {e:e}");
        std::fs::remove_file(d.join("config.json")).expect("rm");
    }
}

/// SSF (whose shifts fold into biases the layout may lack) merged into timm checkpoints of every layout: CLIP (no
/// patch bias: it moves into the position embeddings), no qkv bias (qkv gets its biases back), registers with and
/// without a CLS position row (timm's no_embed_class), registers with average pooling, no class token. Loaded back
/// by vitune, each gives the tuned logits. A distilled DeiT is refused with a sentence pointing to ONNX.
#[test]
fn ssf_merges_into_timm_checkpoints_of_every_layout() {
    use vitune::model::{load_backbone, LoadOptions};
    use vitune::tuning::{Method, MethodOptions, Tuning};
    let gpu = common::gpu();
    let dir = tempfile::tempdir().expect("tempdir");
    for case in [
        "timm_clip",
        "timm_gap",
        "timm_reg",
        "hf_dinov2_reg",
        "timm_reg_avg",
        "timm_nocls",
        "timm_siglip",
    ] {
        let src = common::fixture(case);
        let b =
            load_backbone(&src.join("model.safetensors"), &LoadOptions::default()).expect("loads");
        let ssf = Method::Ssf;
        let tuning = Tuning::init(ssf, MethodOptions::defaults(ssf), &b, 3, 7).expect("init");
        let classes: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
        let tuned = TunedFile {
            tuning: tuning.clone(),
            classes: classes.clone(),
            meta: Some(TunedMeta::new(&tuning, &b, classes, "test")),
        };
        let out_dir = dir.path().join(case);
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let merged = out_dir.join("merged.safetensors");
        vitune::export::timm::export_timm(&b, &tuned, &merged)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let pixels = vitune::io::read_tensors(&src.join("input.safetensors")).expect("input")
            ["pixels"]
            .clone();
        let want =
            vitune::job::forward_tensors(&gpu, &b, Some(&tuning), &pixels, false).expect("tuned");
        let plain = load_backbone(&merged, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{case}: the merged checkpoint does not load: {e}"));
        assert_eq!(plain.config.eps, b.config.eps, "{case}: eps");
        let got = vitune::job::forward_tensors(&gpu, &plain, None, &pixels, false).expect("merged");
        let e = common::rel_err(&got["logits"].data, &want["logits"].data);
        assert!(e < TOL, "{case}: merged logits rel err {e:e}");
    }
    let f = common::grad_fixture("distilled-lora");
    let e = vitune::export::timm::export_timm(
        &f.backbone,
        &tuned_file(&f),
        &dir.path().join("d.safetensors"),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("--format onnx"), "{e}");
    // The RoPE and SwiGLU families merge under timm's own names for their own architecture; EVA-02 has no key
    // bias, so SSF's shift after its qkv (which moves the joined bias's k third) is refused with a pointer to ONNX.
    let e = vitune::export::timm::export_timm(
        &common::grad_fixture("eva02-ssf").backbone,
        &tuned_file(&common::grad_fixture("eva02-ssf")),
        &dir.path().join("eva02-ssf.safetensors"),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("--format onnx"), "{e}");
    // A backbone's own config.json is never overwritten.
    let hub = dir.path().join("hub");
    std::fs::create_dir_all(&hub).expect("mkdir");
    std::fs::write(hub.join("config.json"), "{\"architecture\": \"x\"}").expect("write");
    let f = common::grad_fixture("lora");
    let e =
        vitune::export::timm::export_timm(&f.backbone, &tuned_file(&f), &hub.join("m.safetensors"))
            .expect_err("refused");
    assert!(e.to_string().contains("not written by vitune"), "{e}");
    assert!(!hub.join("m.safetensors").exists());
}
