//! Hyper-parameter selection and method comparison as users run them: `train --auto` on class folders (the
//! choice recorded in the tuned file), the one-shot fallback, `compare --json`, and Stop during a search.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::vitune;

fn backbone() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/demo/backbone/model.safetensors")
        .display()
        .to_string()
}

/// `per_class` shifted glyphs of the first `classes` target classes as class folders.
fn glyph_folders(dir: &Path, classes: usize, per_class: usize) -> PathBuf {
    let out = dir.join("data");
    vitune::demo::write_glyph_folders("shifted", per_class, 5, 32, &out).expect("glyphs");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for extra in names.iter().skip(classes) {
        std::fs::remove_dir_all(extra).expect("trim classes");
    }
    out
}

/// `vitune CMD --backbone <demo> --data DATA EXTRA…`.
fn on_data(cmd: &str, data: &Path, extra: &[&str]) -> (bool, String, String) {
    let (b, d) = (backbone(), data.display().to_string());
    let mut args = vec![cmd, "--backbone", &b, "--data", &d];
    args.extend_from_slice(extra);
    vitune(&args)
}

#[test]
fn train_auto_searches_records_the_choice_and_info_shows_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = glyph_folders(dir.path(), 3, 4);
    let out = dir.path().join("tuned.safetensors");
    let (ok, json, err) = on_data(
        "train",
        &data,
        &[
            "--method",
            "linear",
            "--shots",
            "4",
            "--epochs",
            "20",
            "--batch",
            "8",
            "--no-aug",
            "--auto",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    // At most two folds (SEARCH_FOLDS): 2 images per class train, 2 score.
    assert!(err.contains("2-fold cross-validation"), "{err}");
    assert!(err.contains("planned cost"), "{err}");
    let sel: serde_json::Value = serde_json::from_str(&json).expect("selection JSON");
    let table = sel["table"].as_array().expect("table");
    // SGD: 5 learning rates x 2 weight decays, plus the probe's own recipe (base lr 10 is off the thinned grid).
    assert_eq!(table.len(), 11, "{json}");
    assert_eq!(sel["chosen"], table[0]["candidate"]);
    assert_eq!(table[0]["folds"].as_array().map(Vec::len), Some(2));
    let cost = sel["schedule"]["cost"].as_f64().expect("cost");
    assert!(cost <= 6.0 + 1e-9, "planned cost {cost}");

    // The tuned file carries the search; `info --tuned` prints it.
    let (ok, info, err) = vitune(&["info", "--tuned", out.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let meta: serde_json::Value = serde_json::from_str(&info).expect("meta JSON");
    assert_eq!(meta["selection"]["chosen"], sel["chosen"]);
    assert_eq!(
        meta["selection"]["table"].as_array().map(Vec::len),
        Some(11)
    );
    let (ok, text, err) = vitune(&["info", "--tuned", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(text.contains("chosen by 2-fold cross-validation"), "{text}");
    assert!(text.contains("<- chosen"), "{text}");
}

#[test]
fn one_shot_without_validation_images_trains_the_defaults_and_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = glyph_folders(dir.path(), 3, 1);
    let out = dir.path().join("tuned.safetensors");
    let (ok, _, err) = on_data(
        "train",
        &data,
        &[
            "--method",
            "linear",
            "--epochs",
            "2",
            "--no-aug",
            "--auto",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("one image per class and no validation images"),
        "{err}"
    );
    let (ok, info, _) = vitune(&["info", "--tuned", out.to_str().unwrap()]);
    assert!(ok && info.contains("selection     none"), "{info}");
}

#[test]
fn auto_refuses_a_fixed_learning_rate() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = glyph_folders(dir.path(), 2, 2);
    let (ok, _, err) = on_data(
        "train",
        &data,
        &[
            "--method",
            "linear",
            "--auto",
            "--lr",
            "0.1",
            "--out",
            "/tmp/never.safetensors",
        ],
    );
    assert!(!ok);
    assert!(err.contains("--auto chooses the learning rate"), "{err}");
    // The same rule for pretrain-prompts (which then trains without the search).
    let (ok, _, err) = on_data(
        "pretrain-prompts",
        &data,
        &[
            "--method",
            "vpt-deep",
            "--auto",
            "--lr",
            "0.1",
            "--out",
            "/tmp/never.safetensors",
        ],
    );
    assert!(!ok);
    assert!(err.contains("--auto chooses the learning rate"), "{err}");
}

#[test]
fn compare_ranks_methods_as_json_and_writes_their_tuned_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = glyph_folders(dir.path(), 3, 3);
    let out = dir.path().join("compared");
    let (ok, json, err) = on_data(
        "compare",
        &data,
        &[
            "--methods",
            "linear,vpt-shallow",
            "--epochs",
            "2",
            "--batch",
            "8",
            "--no-aug",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores[0] >= scores[1], "ranked best first: {scores:?}");
    for r in rows {
        assert!(r["parameters"].as_u64().unwrap() > 0);
        assert!(r["protocol"].as_str().unwrap().contains("3-fold"), "{r}");
        let tuned = r["tuned"].as_str().expect("tuned path");
        assert!(Path::new(tuned).exists(), "{tuned}");
    }
}

#[test]
fn stop_during_a_search_ends_it_with_nothing_kept() {
    let gpu = common::gpu();
    let b = vitune::demo::backbone().expect("backbone");
    let (classes, train) = vitune::demo::glyph_samples("shifted", 2, 1, 32).expect("glyphs");
    let mut config = vitune::demo::glyph_recipe(vitune::tuning::Method::Linear, 2, train.len(), 0);
    config.batch = 8;
    let job = vitune::job::TrainJob {
        auto: Some(vitune::select::SearchOptions::default()),
        data: vitune::job::Data::Samples {
            classes,
            train,
            val: None,
        },
        shots: None,
        val_per_class: 0,
        method: vitune::tuning::Method::Linear,
        options: vitune::tuning::MethodOptions::defaults(vitune::tuning::Method::Linear),
        init: vitune::job::Init::Method,
        config,
        image_size: None,
        warm_head: false,
    };
    let stop = AtomicBool::new(true);
    let r = vitune::job::run_train(&gpu, &b, &job, &stop, &mut |_| {}, &mut |_| {});
    assert!(matches!(r, Err(vitune::Error::Stopped(_))), "{:?}", r.err());
}

/// LP-FT's warm head: a LoRA run with `warm_head` starts from the head a linear probe (its recipe, same seed and
/// epochs) learns on the same images, and from LoRA's own initialisation everywhere else.
#[test]
fn a_warm_head_starts_from_the_linear_probes_head() {
    use vitune::train::{initial_tuning, Init, Recipe, Session};
    use vitune::tuning::{Method, MethodOptions};
    let gpu = common::gpu();
    let b = vitune::demo::backbone().expect("backbone");
    let (classes, train) = vitune::demo::glyph_samples("shifted", 2, 1, 32).expect("glyphs");
    let transform = vitune::job::eval_transform(&b, None);
    let vit = vitune::model::GpuViT::new(&gpu, &b, Some(transform.size)).expect("upload");
    let session = Session::new(&gpu, &b, &vit, &transform);
    let recipe = |method: Method, warm_head: bool| {
        let mut config =
            vitune::train::TrainConfig::defaults(method, 3, 8, train.len().div_ceil(8));
        config.augment = vitune::train::Augment::none();
        config.seed = 4;
        Recipe {
            method,
            options: MethodOptions::defaults(method),
            init: Init::Method,
            config,
            warm_head,
        }
    };
    let n = classes.len();
    let cold = initial_tuning(&session, &recipe(Method::Lora, false), n, &train).expect("cold");
    let warm = initial_tuning(&session, &recipe(Method::Lora, true), n, &train).expect("warm");
    let probe = session
        .fit(
            &recipe(Method::Linear, false),
            n,
            &train,
            None,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect("probe")
        .best;
    for (name, t) in &warm.tensors {
        if name.starts_with("head.") {
            assert_eq!(t.data, probe.tensors[name].data, "{name}: the probe's");
            assert_ne!(
                t.data, cold.tensors[name].data,
                "{name}: not the fresh head"
            );
        } else {
            assert_eq!(t.data, cold.tensors[name].data, "{name}: LoRA's own init");
        }
    }
    // The probe itself ignores the flag.
    let linear =
        initial_tuning(&session, &recipe(Method::Linear, true), n, &train).expect("linear");
    let fresh = initial_tuning(&session, &recipe(Method::Linear, false), n, &train).expect("fresh");
    assert_eq!(
        linear.tensors["head.weight"].data,
        fresh.tensors["head.weight"].data
    );
}

/// With `matching_steps`, each fold of the search trains with as many optimizer steps as the final run on all the
/// shots (a smaller batch); without it, a fold of half the shots takes fewer.
#[test]
fn matched_folds_take_the_final_runs_steps() {
    use vitune::select::folds::Protocol;
    use vitune::select::{apply_candidate, Candidate, Scorer};
    use vitune::train::{Init, Recipe, Session};
    use vitune::tuning::{Method, MethodOptions};
    let gpu = common::gpu();
    let b = vitune::demo::backbone().expect("backbone");
    // 4 shots of each class: two folds of 2 per class.
    let (classes, train) = vitune::demo::glyph_samples("shifted", 4, 1, 32).expect("glyphs");
    let transform = vitune::job::eval_transform(&b, None);
    let vit = vitune::model::GpuViT::new(&gpu, &b, Some(transform.size)).expect("upload");
    let session = Session::new(&gpu, &b, &vit, &transform);
    let method = Method::VptDeep;
    let config = vitune::demo::glyph_recipe(method, 8, train.len(), 0);
    assert_eq!(config.batch, 16);
    let recipe = Recipe {
        method,
        options: MethodOptions::defaults(method),
        init: Init::Method,
        config,
        warm_head: false,
    };
    let c = Candidate {
        lr: 0.05,
        weight_decay: 1e-4,
        prompts: None,
        optimizer: None,
        warm_head: false,
    };
    let mut full = recipe.clone();
    apply_candidate(&mut full, &c, 8, train.len());
    let protocol = Protocol::CrossValidation { folds: 2 };
    let scorer = |matching: bool| {
        Scorer::new(
            &session,
            &recipe,
            classes.len(),
            &train,
            None,
            protocol.clone(),
        )
        .expect("scorer")
        .matching_steps(matching)
    };
    let (plain, matched) = (scorer(false), scorer(true));
    let sizes = matched.fold_sizes();
    assert_eq!(sizes.len(), 2);
    for &n in &sizes {
        assert_eq!(n, train.len() / 2);
        let m = matched.fold_recipe(&c, 8, n);
        assert_eq!(m.config.batch, 8);
        assert_eq!(m.config.optim.total_steps, full.config.optim.total_steps);
        assert_eq!(m.config.optim.warmup_steps, full.config.optim.warmup_steps);
        assert_eq!(
            m.config.optim.lr, c.lr,
            "the candidate's learning rate, unscaled"
        );
        let p = plain.fold_recipe(&c, 8, n);
        assert_eq!(p.config.batch, 16);
        // 40 images at 16 take 3 steps an epoch, 80 take 5.
        assert_eq!(
            (p.config.optim.total_steps, full.config.optim.total_steps),
            (24, 40)
        );
    }
}
