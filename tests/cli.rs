//! The CLI on bad input: a non-zero exit and one line naming the problem, never a panic.

mod common;

use common::vitune;

use std::path::Path;

/// Fails with an `error:` line containing every needle, and no panic.
fn fails_with(args: &[&str], needles: &[&str]) {
    let (ok, _, err) = vitune(args);
    assert!(!ok, "vitune {args:?} should fail");
    assert!(!err.contains("panicked"), "vitune {args:?} panicked: {err}");
    // The last `error:` line is vitune's (drivers may print their own before it).
    let line = err
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line for {args:?}: {err}"));
    for n in needles {
        assert!(
            line.contains(n),
            "error for {args:?} should mention `{n}`: {line}"
        );
    }
}

fn model() -> String {
    common::fixture("timm_cls")
        .join("model.safetensors")
        .display()
        .to_string()
}

#[test]
fn info_describes_a_timm_checkpoint() {
    let (ok, out, err) = vitune(&["info", &model()]);
    assert!(ok, "{err}");
    assert!(out.contains("Timm"), "{out}");
    assert!(out.contains("heads         3 (from config.json)"), "{out}");
    assert!(out.contains("head classes  5"), "{out}");
}

#[test]
fn a_missing_file_is_named() {
    fails_with(
        &["info", "/nonexistent/model.safetensors"],
        &["/nonexistent/model.safetensors"],
    );
}

#[test]
fn a_file_that_is_not_safetensors_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("junk.safetensors");
    std::fs::write(&p, b"this is not a safetensors file at all").expect("write");
    fails_with(
        &["info", p.to_str().expect("utf8")],
        &["junk.safetensors", "not a valid safetensors"],
    );
}

#[test]
fn a_truncated_checkpoint_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = std::fs::read(model()).expect("read");
    let p = dir.path().join("cut.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("write");
    fails_with(
        &["info", p.to_str().expect("utf8")],
        &["cut.safetensors", "truncated"],
    );
}

fn rewrite_checkpoint(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, vitune::model::HostTensor>),
) -> String {
    let mut t = vitune::io::read_tensors(Path::new(&model())).expect("read");
    edit(&mut t);
    let p = dir.join("edited.safetensors");
    vitune::io::write_tensors(&p, &t, None).expect("write");
    std::fs::copy(
        common::fixture("timm_cls").join("config.json"),
        dir.join("config.json"),
    )
    .expect("copy");
    p.display().to_string()
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = rewrite_checkpoint(dir.path(), |t| {
        t.remove("blocks.1.mlp.fc2.weight");
    });
    fails_with(&["info", &p], &["blocks.1.mlp.fc2.weight"]);
}

#[test]
fn a_wrong_shape_names_tensor_and_expected_shape() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = rewrite_checkpoint(dir.path(), |t| {
        let q = t.get_mut("blocks.0.attn.qkv.weight").expect("qkv");
        q.shape = vec![48, 144];
    });
    fails_with(&["info", &p], &["blocks.0.attn.qkv.weight", "[144, 48]"]);
}

#[test]
fn an_image_that_does_not_decode_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("broken.png");
    std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    fails_with(
        &["predict", "--backbone", &model(), p.to_str().expect("utf8")],
        &["broken.png"],
    );
}

#[test]
fn forward_rejects_pixels_of_the_wrong_shape() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in.safetensors");
    let mut t = std::collections::BTreeMap::new();
    t.insert(
        "pixels".to_string(),
        vitune::model::HostTensor::zeros(&[2, 4, 32, 32]),
    );
    vitune::io::write_tensors(&input, &t, None).expect("write");
    let out = dir.path().join("out.safetensors");
    fails_with(
        &[
            "forward",
            "--backbone",
            &model(),
            "--input",
            input.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ],
        &["pixels", "[N, 3, H, W]"],
    );
}

#[test]
fn forward_writes_the_tensor_contract() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.safetensors");
    let input = common::fixture("timm_cls").join("input.safetensors");
    let (ok, _, err) = vitune(&[
        "forward",
        "--backbone",
        &model(),
        "--input",
        input.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--attn",
    ]);
    assert!(ok, "{err}");
    let got = vitune::io::read_tensors(&out).expect("output");
    let want = vitune::io::read_tensors(&common::fixture("timm_cls").join("expected.safetensors"))
        .expect("expected");
    for key in ["pooled", "logits", "attn.0", "attn.1"] {
        let e = common::rel_err(&got[key].data, &want[key].data);
        assert!(e < 1e-4, "{key}: {e:e}");
    }
}

#[test]
fn predict_prints_top_classes_as_json() {
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/circle.png");
    let (ok, out, err) = vitune(&[
        "predict",
        "--backbone",
        &model(),
        "--top",
        "2",
        "--json",
        img.to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let top = v[0]["top"].as_array().expect("top");
    assert_eq!(top.len(), 2);
    let p0 = top[0]["probability"].as_f64().expect("p");
    let p1 = top[1]["probability"].as_f64().expect("p");
    assert!(p0 >= p1 && p0 <= 1.0 && p1 >= 0.0);
}

#[test]
fn grad_writes_loss_and_gradients_matching_autograd() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("g.safetensors");
    let case = common::fixture("grad_lora");
    let (ok, stdout, err) = vitune(&[
        "grad",
        "--backbone",
        &model(),
        "--method",
        "lora",
        "--alpha",
        "8",
        "--tuned",
        case.join("tuned.safetensors").to_str().expect("utf8"),
        "--input",
        case.join("input.safetensors").to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("loss"), "{stdout}");
    let got = vitune::io::read_tensors(&out).expect("output");
    let want = vitune::io::read_tensors(&case.join("expected.safetensors")).expect("expected");
    assert_eq!(got.len(), want.len());
    for (k, w) in &want {
        let e = common::rel_err(&got[k].data, &w.data);
        assert!(e < 1e-4, "{k}: {e:e}");
    }
}

/// `forward --tuned` runs the tuned model: its logits give the gradient fixture's autograd loss (SSF's file, read as
/// plain tensors whose method comes from their names).
#[test]
fn forward_with_a_tuned_file_gives_the_tuned_logits() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("y.safetensors");
    let case = common::fixture("grad_ssf");
    let (ok, _, err) = vitune(&[
        "forward",
        "--backbone",
        &model(),
        "--tuned",
        case.join("tuned.safetensors").to_str().expect("utf8"),
        "--input",
        case.join("input.safetensors").to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    let y = vitune::io::read_tensors(&out).expect("output");
    let logits = &y["logits"];
    let input = vitune::io::read_tensors(&case.join("input.safetensors")).expect("input");
    let labels: Vec<usize> = input["labels"].data.iter().map(|&l| l as usize).collect();
    let loss = common::cross_entropy(logits, &labels);
    let want = vitune::io::read_tensors(&case.join("expected.safetensors")).expect("expected")
        ["loss"]
        .data[0] as f64;
    assert!((loss - want).abs() < 1e-4 * want, "loss {loss} vs {want}");
}

#[test]
fn grad_from_the_methods_own_init_runs_for_every_method() {
    let input = common::fixture("grad_linear").join("input.safetensors");
    for method in vitune::tuning::Method::ALL {
        let m = method.name();
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("g.safetensors");
        let model = model();
        let mut args = vec![
            "grad",
            "--backbone",
            &model,
            "--method",
            m,
            "--num-classes",
            "5",
        ];
        // Few prompts where the method has them (an option a method does not offer is refused).
        if method.uses_prompts() {
            args.extend(["--prompts", "2"]);
        }
        let (ok, _, err) = vitune(
            &[
                args.as_slice(),
                &[
                    "--input",
                    input.to_str().expect("utf8"),
                    "--out",
                    out.to_str().expect("utf8"),
                ],
            ]
            .concat(),
        );
        assert!(ok, "{m}: {err}");
        let got = vitune::io::read_tensors(&out).expect("output");
        let loss = got["loss"].data[0];
        assert!(loss.is_finite() && loss > 0.0, "{m}: loss {loss}");
        assert!(got.contains_key("head.weight"), "{m}: head gradient");
    }
}

#[test]
fn grad_rejects_an_unknown_method_and_a_tuned_file_of_wrong_shape() {
    let input = common::fixture("grad_linear").join("input.safetensors");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("g.safetensors");
    fails_with(
        &[
            "grad",
            "--backbone",
            &model(),
            "--method",
            "prompt-magic",
            "--num-classes",
            "3",
            "--input",
            input.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ],
        &["prompt-magic", "vpt-deep"],
    );
    let tuned = common::fixture("grad_vpt-deep").join("tuned.safetensors");
    fails_with(
        &[
            "grad",
            "--backbone",
            &model(),
            "--method",
            "lora",
            "--tuned",
            tuned.to_str().expect("utf8"),
            "--input",
            input.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ],
        &["lora"],
    );
}

#[test]
fn bench_method_labels_are_checked() {
    fails_with(
        &["bench", "regret", "--methods", "linear,vpt-dep"],
        &["--methods", "`vpt-dep`", "vpt-deep + SPT"],
    );
}

#[test]
fn an_option_the_method_does_not_offer_is_refused_by_name() {
    let input = common::fixture("grad_linear").join("input.safetensors");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("g.safetensors");
    let model = model();
    fails_with(
        &[
            "grad",
            "--backbone",
            &model,
            "--method",
            "vpt-deep",
            "--rank",
            "4",
            "--num-classes",
            "5",
            "--input",
            input.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ],
        &["--rank", "lora", "vpt-deep"],
    );
    // A value outside what the option takes names the flag and the range.
    fails_with(
        &[
            "grad",
            "--backbone",
            &model,
            "--method",
            "lora",
            "--rank",
            "0",
            "--num-classes",
            "5",
            "--input",
            input.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ],
        &["--rank", "`0`", "from 1"],
    );
}

#[test]
fn dropout_option_is_checked_and_named() {
    let input = common::fixture("grad_linear").join("input.safetensors");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("g.safetensors");
    let args = |method: &'static str, rate: &'static str| {
        vec![
            "grad".to_string(),
            "--backbone".into(),
            model(),
            "--method".into(),
            method.into(),
            "--num-classes".into(),
            "5".into(),
            "--dropout".into(),
            rate.into(),
            "--input".into(),
            input.to_str().expect("utf8").into(),
            "--out".into(),
            out.to_str().expect("utf8").into(),
        ]
    };
    let a = args("vpt-deep", "1.5");
    fails_with(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--dropout", "1.5"],
    );
    let a = args("lora", "0.2");
    fails_with(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--dropout", "lora"],
    );
    // A valid rate is accepted; `grad` still computes without dropout.
    let a = args("vpt-deep", "0.3");
    let (ok, _, err) = vitune(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
}

#[test]
fn selftest_checks_every_kernel_family_against_golden_data() {
    let (ok, out, err) = vitune(&["selftest", "--quick", "--json"]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(r["passed"], true, "{out}");
    let checks = r["checks"].as_array().expect("checks");
    let named = |what: &str| {
        checks
            .iter()
            .filter(|c| c["name"].as_str().unwrap_or("").contains(what))
            .count()
    };
    // 3 fixture ViTs (EVA-02: RoPE and SwiGLU) x 3 row kernels (workgroup, serial, subgroup: lavapipe and
    // SwiftShader have SUBGROUP) x 3 attention kernels (matmul, fused per row, fused tiled); 12 gradient
    // fixtures (LoRA on EVA-02 among them); tiled, direct, register (and half) matmul (x f16).
    assert_eq!(r["subgroup"], true, "{out}");
    assert_eq!(named("forward"), 27, "{out}");
    assert!(named("forward timm EVA-02") == 9, "{out}");
    assert_eq!(named("gradients"), 12, "{out}");
    let f16 = r["shader_f16"].as_bool().expect("shader_f16");
    // With SHADER_F16 the f16-compute kernel too (cooperative matrices: not on the distribution's lavapipe).
    assert_eq!(named("matmul"), if f16 { 8 } else { 3 }, "{out}");
    // The autotuner's record: every family and matmul class, each with its trials; nothing rejected.
    let tuned = r["autotune"]["choices"]
        .as_array()
        .expect("autotune choices");
    let families: Vec<String> = tuned
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["family"].as_str().unwrap_or(""),
                c["class"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        families,
        [
            "matmul/large",
            "matmul/small",
            "matmul/narrow",
            "rows/all",
            "attention/all"
        ],
        "{out}"
    );
    for c in tuned {
        let chosen = c["chosen"].as_str().expect("chosen");
        let trials = c["trials"].as_array().expect("trials");
        assert!(
            trials
                .iter()
                .any(|t| t["variant"] == chosen && t["passed"] == true),
            "{c}"
        );
    }
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(0), "{out}");
    for c in checks {
        assert!(
            c["worst"].as_f64().expect("worst") < c["tolerance"].as_f64().expect("tol"),
            "{c}"
        );
    }
    assert!(r["adapter"].as_str().is_some_and(|a| !a.is_empty()));
}

#[test]
fn a_headless_machine_gets_a_clean_console() {
    // Over SSH or in a container XDG_RUNTIME_DIR is unset; the windowing stack's complaint must not reach the user.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitune"))
        .args(["selftest", "--quick", "--json"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("vitune runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

/// The CLIP and DINOv2-with-registers layouts train with prompts and with LoRA from the command line, and `info`
/// names their family.
#[test]
fn vpt_deep_and_lora_train_on_every_family_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = |p: &Path| p.display().to_string();
    let data = common::demo_data(d, "target", 2);
    for (case, family) in [
        ("timm_clip", "CLIP-style (pre-norm, QuickGELU)"),
        ("timm_reg", "4 register tokens"),
        ("timm_nocls", "no class token"),
        ("timm_distilled", "distillation token"),
        ("timm_siglip", "attention pooling"),
    ] {
        let backbone = common::fixture(case).join("model.safetensors");
        let (ok, out, err) = vitune(&["info", &s(&backbone)]);
        assert!(ok, "{err}");
        assert!(out.contains(family), "{case}: {out}");
        for method in ["vpt-deep", "lora", "linear"] {
            let out = d.join(format!("{case}-{method}.safetensors"));
            let (ok, _, err) = vitune(&[
                "train",
                "--backbone",
                &s(&backbone),
                "--data",
                &s(&data),
                "--method",
                method,
                "--shots",
                "1",
                "--epochs",
                "1",
                "--out",
                &s(&out),
            ]);
            assert!(ok, "{case} {method}: {err}");
            assert!(err.contains("wrote"), "{case} {method}: {err}");
            assert!(out.exists(), "{case} {method}: no tuned file");
        }
    }
}

/// A learning rate far too high diverges on purpose: the run stops, says so in words with what to try, writes no
/// tuned file (nothing good was trained) and exits non-zero, never "val acc ..." as if it had worked.
#[test]
fn a_diverging_run_is_caught_and_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = |p: &Path| p.display().to_string();
    let data = common::demo_data(d, "target", 3);
    let backbone = common::fixture("timm_cls").join("model.safetensors");
    let out = d.join("tuned.safetensors");
    let (ok, _, err) = vitune(&[
        "train",
        "--backbone",
        &s(&backbone),
        "--data",
        &s(&data),
        "--method",
        "linear",
        "--optimizer",
        "sgd",
        "--lr",
        "1e7",
        "--shots",
        "2",
        "--epochs",
        "3",
        "--out",
        &s(&out),
    ]);
    assert!(!ok, "a diverged run reported success: {err}");
    assert!(err.contains("training diverged at epoch"), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert!(err.contains("try --auto or a smaller --lr"), "{err}");
    assert!(!out.exists(), "a diverged first epoch wrote a tuned file");
}

/// Written to a file or a pipe (not a terminal), train's output is whole lines: no carriage returns, each epoch on
/// its own line with the time left; the options line names no empty options.
#[test]
fn train_writes_whole_lines_to_a_non_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = |p: &Path| p.display().to_string();
    let data = common::demo_data(d, "target", 2);
    let backbone = common::fixture("timm_cls").join("model.safetensors");
    let out = d.join("tuned.safetensors");
    let (ok, _, err) = vitune(&[
        "train",
        "--backbone",
        &s(&backbone),
        "--data",
        &s(&data),
        "--method",
        "linear",
        "--shots",
        "1",
        "--epochs",
        "3",
        "--out",
        &s(&out),
    ]);
    assert!(ok, "{err}");
    assert!(
        !err.contains('\r'),
        "carriage returns in piped output: {err:?}"
    );
    let epochs: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("epoch"))
        .collect();
    assert_eq!(epochs.len(), 3, "{err}");
    assert!(epochs[0].contains("left"), "{err}");
    assert!(!err.contains("options:  |"), "{err}");
}

/// Every argument of every command says what it is in `--help` (a flag line with nothing after its value name was
/// a bare `--backbone <BACKBONE>` before).
#[test]
fn help_describes_every_argument() {
    let (ok, top, _) = vitune(&["--help"]);
    assert!(ok);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "{top}");
    for c in &commands {
        let (ok, help, err) = vitune(&[c, "--help"]);
        assert!(ok, "{c}: {err}");
        let flag_or_argument = |l: &&str| {
            let t = l.trim_start();
            l.starts_with("  ") && (t.starts_with('-') || t.starts_with('<') || t.starts_with('['))
        };
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| flag_or_argument(l))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            // `--flag <VALUE>  text` or `-h, --help  text`: something after the names; or, in clap's long
            // layout, the description on the next line.
            let names = words
                .iter()
                .take_while(|w| {
                    w.starts_with('-')
                        || w.starts_with('<')
                        || w.starts_with('[')
                        || w.ends_with(',')
                })
                .count();
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            let described = words.len() > names || (!next.is_empty() && !next.starts_with('-'));
            assert!(
                described,
                "`vitune {c} --help`: no description for `{}`",
                line.trim()
            );
        }
    }
    let (_, train, _) = vitune(&["train", "--help"]);
    assert!(train.contains("ssf"), "{train}");
}
