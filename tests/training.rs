//! Few-shot training end to end on a small generated data set, the tuned file round trip, SPT and PVP inits, and
//! the documented behaviour on bad inputs.

mod common;

use common::vitune;

use std::path::Path;

use vitune::rng::Rng;

/// Three classes told apart by colour and shape placement, with noise: learnable by a linear probe even on a
/// random-weight backbone.
fn make_dataset(dir: &Path, per_class: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let colours = [[220u8, 40, 40], [40, 200, 60], [50, 70, 230]];
    for (c, name) in ["red", "green", "blue"].iter().enumerate() {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        for i in 0..per_class {
            let mut img = image::RgbImage::new(40, 40);
            let (x0, y0) = (rng.below(16) as u32, rng.below(16) as u32);
            for (x, y, p) in img.enumerate_pixels_mut() {
                let inside = x >= x0 && x < x0 + 20 && y >= y0 && y < y0 + 20;
                let base = if inside { colours[c] } else { [128, 128, 128] };
                for (ch, b) in p.0.iter_mut().zip(base) {
                    *ch = (b as f64 + rng.normal() * 20.0).clamp(0.0, 255.0) as u8;
                }
            }
            img.save(d.join(format!("{i:03}.png"))).expect("save");
        }
    }
}

fn model() -> String {
    common::fixture("timm_cls")
        .join("model.safetensors")
        .display()
        .to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn train_eval_predict_round_trip_beats_chance() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    make_dataset(&data, 14, 1);
    let tuned = dir.path().join("tuned.safetensors");
    let (ok, _, err) = vitune(&[
        "train",
        "--backbone",
        &model(),
        "--data",
        s(&data),
        "--method",
        "vpt-shallow",
        "--prompts",
        "2",
        "--shots",
        "6",
        "--epochs",
        "15",
        "--batch",
        "9",
        "--optimizer",
        "adamw",
        "--lr",
        "0.02",
        "--no-flip",
        "--crop-scale",
        "0.7",
        "--out",
        s(&tuned),
    ]);
    assert!(ok, "train failed: {err}");
    assert!(err.contains("val acc"), "per-epoch summary expected: {err}");
    // Evaluate on the images that were not training shots (the held-out split of the same folders).
    let (ok, out, err) = vitune(&[
        "eval",
        "--backbone",
        &model(),
        "--tuned",
        s(&tuned),
        "--data",
        s(&data),
        "--json",
    ]);
    assert!(ok, "eval failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let acc = v["accuracy"].as_f64().expect("accuracy");
    assert!(
        acc > 0.8,
        "accuracy {acc} should beat chance (0.33) by a wide margin"
    );
    assert_eq!(v["classes"].as_array().map(|a| a.len()), Some(3));
    assert_eq!(v["confusion"].as_array().map(|a| a.len()), Some(3));
    // predict names classes from the tuned file.
    let img = data.join("green").join("013.png");
    let (ok, out, err) = vitune(&[
        "predict",
        "--backbone",
        &model(),
        "--tuned",
        s(&tuned),
        "--json",
        s(&img),
    ]);
    assert!(ok, "predict failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let class = v[0]["top"][0]["class"].as_str().expect("class");
    assert!(["red", "green", "blue"].contains(&class));
}

#[test]
fn tuned_file_round_trip_reproduces_logits_exactly() {
    use vitune::model::{load_backbone, ForwardOptions, GpuViT, HostTensor, LoadOptions};
    use vitune::tuning::{GpuTuning, Method, MethodOptions, Tuning};
    let gpu = common::gpu();
    let b = load_backbone(Path::new(&model()), &LoadOptions::default()).expect("backbone");
    let mut opts = MethodOptions::defaults(Method::Convpass);
    opts.convpass_dim = 4;
    let mut t = Tuning::init(Method::Convpass, opts, &b, 3, 5).expect("init");
    // Make every tensor non-trivial (up-projections start at zero).
    let mut rng = Rng::new(9);
    for v in t.tensors.values_mut() {
        v.data = rng.normal_vec(v.numel(), 0.1);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.safetensors");
    let meta =
        vitune::tuned::TunedMeta::new(&t, &b, vec!["a".into(), "b".into(), "c".into()], "method");
    vitune::tuned::write(&path, &t, &meta).expect("write");
    let back = vitune::tuned::read(&path, &b, false).expect("read");
    assert_eq!(back.classes, vec!["a", "b", "c"]);
    assert_eq!(back.meta.as_ref().map(|m| &m.options), Some(&t.options));
    let vit = GpuViT::new(&gpu, &b, None).expect("vit");
    let px = HostTensor::new(vec![2, 3, 32, 32], rng.normal_vec(2 * 3 * 32 * 32, 1.0));
    let run = |t: &Tuning| {
        let g = GpuTuning::upload(&gpu, t).expect("upload");
        vit.forward(
            &gpu,
            &px,
            &ForwardOptions {
                tuning: Some(&g),
                ..Default::default()
            },
        )
        .expect("forward")
        .logits
        .expect("logits")
    };
    assert_eq!(
        run(&t).data,
        run(&back.tuning).data,
        "logits must be bit-identical"
    );
}

#[test]
fn spt_mean_prototypes_are_window_means_of_the_patch_embeddings() {
    use vitune::model::{load_backbone, ForwardOptions, GpuViT, HostTensor, LoadOptions};
    use vitune::tuning::spt::{apply, SptKind};
    use vitune::tuning::{Method, MethodOptions, Tuning};
    let gpu = common::gpu();
    let b = load_backbone(Path::new(&model()), &LoadOptions::default()).expect("backbone");
    let mut rng = Rng::new(2);
    let n = 2;
    let px = HostTensor::new(vec![n, 3, 32, 32], rng.normal_vec(n * 3 * 32 * 32, 1.0));
    let vit = GpuViT::new(&gpu, &b, None).expect("vit");
    let out = vit
        .forward(
            &gpu,
            &px,
            &ForwardOptions {
                tokens: true,
                ..Default::default()
            },
        )
        .expect("forward");
    let mut opts = MethodOptions::defaults(Method::VptDeep);
    opts.prompts = 3;
    let mut t = Tuning::init(Method::VptDeep, opts, &b, 2, 0).expect("init");
    apply(&mut t, &out.tokens, SptKind::Mean, 7).expect("spt");
    // CPU reference: the stride-8 patch convolution in f64, then adaptive-average windows of the 16 patches.
    let w = b.get("patch_embed.proj.weight").expect("w");
    let bias = b.get("patch_embed.proj.bias").expect("b");
    let (d, p, m, grid) = (48, 8, 16, 4);
    let mut pooled: Vec<Vec<f64>> = Vec::new();
    for img in 0..n {
        let emb: Vec<Vec<f64>> = (0..m)
            .map(|t| {
                let (gy, gx) = (t / grid, t % grid);
                (0..d)
                    .map(|o| {
                        let mut s = bias.data[o] as f64;
                        for c in 0..3 {
                            for ky in 0..p {
                                for kx in 0..p {
                                    s += w.data[((o * 3 + c) * p + ky) * p + kx] as f64
                                        * px.data
                                            [((img * 3 + c) * 32 + gy * p + ky) * 32 + gx * p + kx]
                                            as f64;
                                }
                            }
                        }
                        s
                    })
                    .collect()
            })
            .collect();
        for win in 0..3 {
            let (a, e) = (win * m / 3, ((win + 1) * m).div_ceil(3));
            pooled.push(
                (0..d)
                    .map(|o| (a..e).map(|t| emb[t][o]).sum::<f64>() / (e - a) as f64)
                    .collect(),
            );
        }
    }
    let prompts = &t.tensors["prompt_embeddings"].data;
    for k in 0..3 {
        let row = &prompts[k * d..(k + 1) * d];
        let best = pooled
            .iter()
            .map(|v| {
                v.iter()
                    .zip(row)
                    .map(|(a, b)| (a - *b as f64).abs())
                    .fold(0.0, f64::max)
            })
            .fold(f64::INFINITY, f64::min);
        assert!(
            best < 1e-4,
            "prompt {k} is no window mean of the CPU patch embeddings (closest {best:e})"
        );
    }
    // The deep prompts come from block outputs and must differ from layer 0's.
    assert_ne!(
        &t.tensors["deep_prompt_embeddings"].data[..d],
        &prompts[..d]
    );
}

#[test]
fn pvp_init_carries_prompts_over_bit_exactly_and_records_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    make_dataset(&data, 4, 3);
    let pre = dir.path().join("pre.safetensors");
    let (ok, _, err) = vitune(&[
        "pretrain-prompts",
        "--backbone",
        &model(),
        "--data",
        s(&data),
        "--method",
        "vpt-deep",
        "--prompts",
        "2",
        "--epochs",
        "1",
        "--batch",
        "6",
        "--out",
        s(&pre),
    ]);
    assert!(ok, "pretrain failed: {err}");
    let tuned = dir.path().join("t.safetensors");
    let (ok, _, err) = vitune(&[
        "train",
        "--backbone",
        &model(),
        "--data",
        s(&data),
        "--method",
        "vpt-deep",
        "--prompts",
        "2",
        "--shots",
        "2",
        "--epochs",
        "1",
        "--lr",
        "0",
        "--init-from",
        s(&pre),
        "--out",
        s(&tuned),
    ]);
    assert!(ok, "train failed: {err}");
    let (a, _) = vitune::io::read_tensors_with_metadata(&pre).expect("pre");
    let (b, meta) = vitune::io::read_tensors_with_metadata(&tuned).expect("tuned");
    for k in ["prompt_embeddings", "deep_prompt_embeddings"] {
        assert_eq!(
            a[k].data, b[k].data,
            "`{k}` must carry over bit-exactly (lr 0)"
        );
    }
    let init = meta.expect("metadata")["init"].clone();
    assert!(
        init.starts_with("pvp:") && init.contains("pre.safetensors"),
        "init provenance: {init}"
    );
}

#[test]
fn bad_inputs_give_the_documented_behaviour() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    make_dataset(&data, 3, 4);
    // A broken image is reported by path and skipped.
    std::fs::write(data.join("red").join("broken.png"), b"not an image").expect("write");
    let tuned = dir.path().join("t.safetensors");
    let (ok, _, err) = vitune(&[
        "train",
        "--backbone",
        &model(),
        "--data",
        s(&data),
        "--method",
        "linear",
        "--epochs",
        "1",
        "--out",
        s(&tuned),
    ]);
    assert!(ok, "train should skip the broken image: {err}");
    assert!(
        err.contains("broken.png"),
        "the broken image is named: {err}"
    );
    // An empty class is an error naming it.
    std::fs::create_dir_all(data.join("empty")).expect("mkdir");
    let (ok, _, err) = vitune(&[
        "train",
        "--backbone",
        &model(),
        "--data",
        s(&data),
        "--method",
        "linear",
        "--epochs",
        "1",
        "--out",
        s(&tuned),
    ]);
    assert!(!ok && err.contains("`empty`"), "{err}");
    std::fs::remove_dir(data.join("empty")).expect("rmdir");
    // A tuned file for another backbone: one clear error naming both, --force overrides the hash check.
    let other = common::fixture("timm_heads4").join("model.safetensors");
    let img = data.join("red").join("000.png");
    let (ok, _, err) = vitune(&[
        "predict",
        "--backbone",
        s(&other),
        "--tuned",
        s(&tuned),
        s(&img),
    ]);
    assert!(
        !ok && err.contains("model.safetensors") && err.contains("--force"),
        "{err}"
    );
    let (ok, _, err) = vitune(&[
        "predict",
        "--backbone",
        s(&other),
        "--tuned",
        s(&tuned),
        "--force",
        s(&img),
    ]);
    assert!(ok, "--force should accept a same-shaped backbone: {err}");
    // A truncated tuned file.
    let bytes = std::fs::read(&tuned).expect("read");
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).expect("write");
    let (ok, _, err) = vitune(&[
        "predict",
        "--backbone",
        &model(),
        "--tuned",
        s(&cut),
        s(&img),
    ]);
    assert!(
        !ok && err.contains("cut.safetensors") && !err.contains("panicked"),
        "{err}"
    );
}

/// A GPU too small for the job (`VITUNE_GPU_MEMORY_MB` caps what vitune may allocate, as if the GPU had that
/// much memory) ends training and the forward with one sentence saying what happened and what to try, not a panic.
#[test]
fn running_out_of_gpu_memory_is_one_sentence_with_what_to_try() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    make_dataset(&data, 4, 3);
    let tuned = dir.path().join("t.safetensors");
    let input = common::fixture("grad_linear").join("input.safetensors");
    let y = dir.path().join("y.safetensors");
    let model = model();
    // 1 MiB holds the tiny backbone but not a training step; the forward fits in it, so it gets none.
    let runs: [(&str, Vec<&str>); 2] = [
        (
            "1",
            vec![
                "train",
                "--backbone",
                &model,
                "--data",
                s(&data),
                "--method",
                "vpt-deep",
                "--epochs",
                "1",
                "--out",
                s(&tuned),
            ],
        ),
        (
            "0",
            vec![
                "forward",
                "--backbone",
                &model,
                "--input",
                s(&input),
                "--out",
                s(&y),
            ],
        ),
    ];
    for (cap, args) in runs {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitune"))
            .args(&args)
            .env("VITUNE_GPU_MEMORY_MB", cap)
            .output()
            .expect("vitune runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        let line = err
            .lines()
            .rfind(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line: {err}"));
        for needle in [
            "ran out of memory",
            "--batch",
            "VITUNE_MEMORY_MB",
            "VITUNE_WEIGHTS=f16",
        ] {
            assert!(
                line.contains(needle),
                "{args:?}: `{needle}` missing from: {line}"
            );
        }
        assert!(!tuned.exists(), "a failed run left a tuned file");
    }
}

/// A run that diverged after a good epoch says so in its tuned file: the epoch, the loss and the epoch kept, read
/// back as written; the rule's threshold is 3 × ln C.
#[test]
fn a_divergence_is_recorded_in_the_tuned_file() {
    use vitune::tuning::{Method, MethodOptions, Tuning};
    let backbone = vitune::model::load_backbone(
        &common::fixture("timm_cls").join("model.safetensors"),
        &vitune::model::LoadOptions::default(),
    )
    .expect("fixture");
    let tuning = Tuning::init(
        Method::Linear,
        MethodOptions::defaults(Method::Linear),
        &backbone,
        3,
        0,
    )
    .expect("tuning");
    let mut meta = vitune::tuned::TunedMeta::new(
        &tuning,
        &backbone,
        vec!["a".into(), "b".into(), "c".into()],
        "method",
    );
    let d = vitune::train::Divergence {
        epoch: 2,
        loss: Some(52.5),
        kept_epoch: 1,
    };
    meta.diverged = Some(d.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("tuned.safetensors");
    vitune::tuned::write(&path, &tuning, &meta).expect("write");
    let back = vitune::tuned::read_meta(&path).expect("read");
    assert_eq!(back.diverged, Some(d.clone()));
    assert_eq!(
        d.to_string(),
        "training diverged at epoch 2: loss 52.500; the kept model is epoch 1's; try --auto or a smaller --lr"
    );
    assert!((vitune::train::diverged_above(3) - 3.0 * 3f64.ln()).abs() < 1e-12);
    // A step whose loss was not finite is written as such, and reads back.
    meta.diverged = Some(vitune::train::Divergence { loss: None, ..d });
    vitune::tuned::write(&path, &tuning, &meta).expect("write");
    assert_eq!(
        vitune::tuned::read_meta(&path).expect("read").diverged,
        meta.diverged
    );
}
