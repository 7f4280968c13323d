//! The desktop app driven through its real UI state with egui_kittest: classes, images, training with live
//! curves, the attention view, export and import of the tuned file. Snapshots of the main screens are compared
//! with a tolerance suited to lavapipe (regenerate on purpose with UPDATE_SNAPSHOTS=1).

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use vitune::app::project::Project;
use vitune::app::VituneApp;

/// The app tests run one at a time: each starts a UI renderer and a GPU worker, and lavapipe on two cores gains
/// nothing from running two of those side by side.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static APP: Mutex<()> = Mutex::new(());
    APP.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn harness(project: Project) -> Harness<'static, VituneApp> {
    harness_at(project, None)
}

/// The app around `project`, saved at `path` when given (as when it reopens the last project).
fn harness_at(project: Project, path: Option<PathBuf>) -> Harness<'static, VituneApp> {
    let app = VituneApp::new(&egui::Context::default(), project, path);
    let h = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut VituneApp| app.ui(ui), app);
    // Error texts from files may hold any character; draw a box for those the font lacks, as the app does.
    h.ctx
        .set_missing_glyph_policy(egui::MissingGlyphPolicy::Tofu);
    h
}

/// Steps the UI until `done` holds (the worker runs on its own thread), failing after `secs`.
fn wait_for(
    h: &mut Harness<'static, VituneApp>,
    secs: u64,
    what: &str,
    done: impl Fn(&VituneApp) -> bool,
) {
    let start = Instant::now();
    loop {
        h.step();
        if done(h.state()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; errors: {:?}, status: {}",
            h.state().errors,
            h.state().status
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Steps until the thumbnails (decoded off the UI thread) are in, then until the UI settles.
fn settle(h: &mut Harness<'static, VituneApp>) {
    h.step();
    wait_for(h, 60, "the thumbnails", |a| a.thumbnails_loading() == 0);
    h.run();
}

/// Opens the Tune tab, clicks Train and waits (up to `secs`) for the run to end.
fn train_from_tune_tab(h: &mut Harness<'static, VituneApp>, secs: u64, what: &str) {
    h.state_mut().tab = vitune::app::Tab::Tune;
    h.step();
    h.get_by_label("Train").click();
    h.step();
    wait_for(h, secs, what, |a| !a.run.training);
}

fn snapshot(h: &mut Harness<'static, VituneApp>, name: &str) {
    h.snapshot_options(
        name,
        &SnapshotOptions::new().threshold(2.0).max_failed_pixels(200),
    );
}

#[test]
fn create_classes_train_see_attention_export_and_import() {
    let _serial = one_at_a_time();
    // The app needs a GPU adapter; fail loudly without one.
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let images = dir.path().join("glyphs");
    vitune::demo::write_glyph_folders("target", 6, 3, 32, &images).expect("glyphs");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&images)
        .expect("read")
        .map(|e| e.expect("entry").path())
        .collect();
    folders.sort();

    let mut project = Project::default();
    project.settings.epochs = 3;
    project.settings.batch = 6;
    project.settings.options.prompts = 2;
    // The search has its own test below; this one follows a plain run.
    project.settings.auto = false;
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());

    // Two classes through the UI, named by typing, images added as drag-and-drop does.
    h.get_by_label("Add class").click();
    h.step();
    h.get_by_label("Add class").click();
    h.step();
    assert_eq!(h.state().project.classes.len(), 2);
    h.state_mut().project.classes[0].name = "delta".into();
    h.state_mut().project.classes[1].name = "lambda".into();
    h.state_mut().add_images(0, &[folders[0].clone()]);
    h.state_mut().add_images(1, &[folders[1].clone()]);
    assert_eq!(h.state().project.items().len(), 12);
    settle(&mut h);
    snapshot(&mut h, "project");

    // The memory savers: f16 weights and fused attention, on for the training below.
    h.get_by_label("f16 weights").click();
    h.step();
    h.get_by_label("fused attention").click();
    h.step();
    wait_for(&mut h, 30, "the memory settings", |a| {
        a.memory.f16_weights && a.memory.fused_attention && a.status == "memory settings applied"
    });
    assert!(
        h.state().errors.is_empty(),
        "errors: {:?}",
        h.state().errors
    );

    // Train a few steps and watch the curves receive points.
    h.get_by_label("Tune").click();
    h.step();
    h.get_by_label("Train").click();
    h.step();
    assert!(
        h.state().run.training,
        "training should have started: {:?}",
        h.state().errors
    );
    wait_for(&mut h, 300, "training", |a| !a.run.training);
    assert!(
        h.state().errors.is_empty(),
        "errors: {:?}",
        h.state().errors
    );
    assert!(
        h.state().run.curve.len() >= 3,
        "curve points: {}",
        h.state().run.curve.len()
    );
    assert_eq!(
        h.state().run.trained_classes.as_ref().map(|c| c.len()),
        Some(2)
    );

    // The attention view shows before and after maps.
    h.get_by_label("Attention").click();
    h.step();
    let img = h.state().project.classes[0].images[0].path.clone();
    h.state_mut().attention.image = Some(img);
    h.state_mut().attention.mode = "prompt".into();
    h.state_mut().request_attention();
    wait_for(&mut h, 60, "attention maps", |a| {
        a.maps
            .images
            .as_ref()
            .map(|(_, after)| after.is_some())
            .unwrap_or(false)
    });
    settle(&mut h);
    // In the prompt mode the backbone's panel is its CLS map (it has no prompts), and says so.
    h.get_by_label_contains("which has no prompts): CLS to patches");
    // Each control's label comes first; the tuned model's prediction and the colour scale are shown.
    for label in ["Image", "Map", "Heads", "Colours", "Opacity"] {
        h.get_by_label(label);
    }
    h.get_by_label_contains("the tuned model says");
    h.get_by_label_contains("high attention");
    snapshot(&mut h, "attention");
    // A click on a map shows it large, until its window is closed.
    h.get_by_label("after tuning map").click();
    settle(&mut h);
    assert!(h.state().maps.zoomed.is_some());
    h.get_by_label("map, after tuning");
    h.state_mut().maps.zoomed = None;
    settle(&mut h);

    // Export, then import back.
    let out = dir.path().join("tuned.safetensors");
    h.state_mut().export_to(out.clone());
    wait_for(&mut h, 30, "export", |a| a.status.starts_with("exported"));
    let b = vitune::demo::backbone().expect("demo backbone");
    let tf = vitune::tuned::read(&out, &b, false).expect("the exported file reads back");
    assert_eq!(tf.classes, vec!["delta", "lambda"]);

    // The ONNX export: kept only after its self-check, whose verdict the export tab shows.
    let onnx = dir.path().join("model.onnx");
    h.state_mut().export_onnx_to(onnx.clone());
    wait_for(&mut h, 120, "ONNX export", |a| a.last_onnx_export.is_some());
    assert!(onnx.exists(), "no ONNX file");
    let verdict = h.state().last_onnx_export.clone().unwrap_or_default();
    assert!(
        verdict.contains("agrees with vitune on 4 of 4"),
        "{verdict}"
    );
    h.get_by_label("Export / import").click();
    settle(&mut h);
    // On the status line and on the export tab.
    assert_eq!(h.query_all_by_label(&verdict).count(), 2);
    h.get_by_label("Export ONNX model (runs anywhere)...");
    // A prompt method is not a plain ViT: the timm export says so on screen and writes nothing.
    let method = h.state().project.settings.method;
    let merged = dir.path().join("merged.safetensors");
    h.state_mut().export_timm_to(merged.clone());
    wait_for(&mut h, 30, "the timm export's answer", |a| {
        !a.errors.is_empty()
    });
    let error = h.state().errors.join(" ");
    assert!(
        method.uses_prompts() && error.contains("ONNX") && !merged.exists(),
        "{method}: {error}"
    );
    h.state_mut().errors.clear();
    h.state_mut().run.trained_classes = None;
    h.state_mut().import_from(out);
    wait_for(&mut h, 30, "import", |a| a.status.starts_with("imported"));
    assert_eq!(
        h.state().run.trained_classes.as_ref().map(|c| c.len()),
        Some(2)
    );
}

#[test]
fn a_broken_image_shows_an_error_in_the_ui_and_keeps_the_project() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"not a png").expect("write");
    let good = dir.path().join("glyphs");
    vitune::demo::write_glyph_folders("target", 3, 5, 32, &good).expect("glyphs");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&good)
        .expect("read")
        .map(|e| e.expect("e").path())
        .collect();
    folders.sort();
    let mut project = Project::default();
    project.settings.epochs = 1;
    project.settings.auto = false;
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    h.state_mut().add_class();
    h.state_mut().add_class();
    h.state_mut().add_images(0, &[folders[0].clone(), broken]);
    wait_for(&mut h, 30, "the broken image's message", |a| {
        a.errors
            .iter()
            .any(|e| e.starts_with("not used:") && e.contains("broken.png"))
    });
    // The second class through the path field, as where no file dialog opens: a folder's path, typed.
    h.state_mut().selected_class = 1;
    settle(&mut h);
    h.get_by_label("Add from a path:").click();
    settle(&mut h);
    h.get_by_label("Add from a path:")
        .type_text(folders[1].to_str().expect("utf8"));
    settle(&mut h);
    h.get_by_label("Add to the selected class").click();
    settle(&mut h);
    assert_eq!(h.state().project.classes[1].images.len(), 3);
    // A wrong path is a message, not a silent nothing.
    h.get_by_label("Add from a path:").click();
    settle(&mut h);
    h.get_by_label("Add from a path:")
        .type_text("/no/such/folder");
    settle(&mut h);
    h.get_by_label("Add to the selected class").click();
    settle(&mut h);
    assert!(
        h.state()
            .errors
            .iter()
            .any(|e| e.contains("/no/such/folder")),
        "{:?}",
        h.state().errors
    );
    h.state_mut().errors.clear();
    h.state_mut().path_to_add.clear();
    settle(&mut h);
    // Delete class is undone by one click.
    let classes = h.state().project.classes.clone();
    h.get_all_by_label("Delete class")
        .next()
        .expect("a Delete class button")
        .click();
    settle(&mut h);
    assert_eq!(h.state().project.classes.len(), 1);
    settle(&mut h);
    h.get_by_label("Undo delete").click();
    settle(&mut h);
    assert_eq!(h.state().project.classes, classes);
    // The broken image is marked and not counted (thumbnails decode off the UI thread).
    wait_for(&mut h, 30, "the thumbnails", |a| {
        a.thumbnails_loading() == 0
    });
    settle(&mut h);
    h.get_by_label_contains("1 unreadable");
    h.get_by_label("3 of 4 images");
    // Named on its tile at once (the reason on hover, and in the messages when it was found), and left unused.
    h.get_by_label("broken.png");
    let broken = h
        .state()
        .project
        .classes
        .iter()
        .flat_map(|c| &c.images)
        .find(|i| i.path.ends_with("broken.png"));
    assert!(
        !broken.expect("the broken image").enabled,
        "the broken image is still ticked"
    );
    // Ticked again by hand, training skips it and names it.
    let mut ticked = h.state().project.clone();
    for i in ticked.classes.iter_mut().flat_map(|c| &mut c.images) {
        i.enabled = true;
    }
    h.state_mut().project = ticked.clone();
    train_from_tune_tab(&mut h, 120, "training");
    assert!(
        h.state().errors.iter().any(|e| e.contains("broken.png")),
        "the broken image should be named: {:?}",
        h.state().errors
    );
    assert_eq!(h.state().project, ticked, "the project is kept as it was");
}

/// A project of two target-glyph classes with `per_class` images each, its method the linear probe.
fn glyph_project(dir: &std::path::Path, per_class: usize) -> Project {
    let images = dir.join("glyphs");
    vitune::demo::write_glyph_folders("shifted", per_class, 7, 32, &images).expect("glyphs");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&images)
        .expect("read")
        .map(|e| e.expect("entry").path())
        .collect();
    folders.sort();
    let mut project = Project::default();
    project.settings = vitune::app::project::Settings::defaults(vitune::tuning::Method::Linear);
    project.settings.epochs = 20;
    project.settings.batch = 4;
    for (name, folder) in ["delta", "lambda"].iter().zip(&folders) {
        let images = std::fs::read_dir(folder)
            .expect("read")
            .map(|e| vitune::app::project::ImageEntry {
                path: e.expect("entry").path(),
                enabled: true,
            })
            .collect();
        project.classes.push(vitune::app::project::ClassEntry {
            name: name.to_string(),
            images,
        });
    }
    project
}

/// Four glyphs per class, two to train and two to validate (so a run has an evaluation), three epochs, no search.
fn validated_glyph_project(dir: &std::path::Path) -> Project {
    let mut project = glyph_project(dir, 4);
    project.settings.auto = false;
    project.settings.epochs = 3;
    project.settings.shots = Some(2);
    project
}

#[test]
fn auto_searches_before_training_compare_ranks_methods_and_stop_ends_a_search() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let project = glyph_project(dir.path(), 4);
    assert!(project.settings.auto, "Auto is on by default");
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());

    // Train with Auto: the search runs first, its table arrives with the model.
    train_from_tune_tab(&mut h, 300, "the searched training");
    assert!(
        h.state().errors.is_empty(),
        "errors: {:?}",
        h.state().errors
    );
    let sel = h.state().run.selection.clone().expect("a search ran");
    assert!(sel.protocol.contains("2-fold"), "{}", sel.protocol);
    assert_eq!(sel.table.len(), 11);
    assert!(
        h.state().status.contains("chosen by the search"),
        "{}",
        h.state().status
    );
    settle(&mut h);
    h.get_by_label_contains("Search: lr");

    // Stop during a search ends it, says so, and keeps the model trained before.
    h.state_mut().project.settings.epochs = 60;
    h.get_by_label("Train").click();
    h.step();
    wait_for(&mut h, 60, "the search to start", |a| {
        a.run.search.is_some()
    });
    // One counter: the status says what the body says, settings scored of all the rungs' settings.
    wait_for(&mut h, 120, "a scored setting", |a| {
        a.run.search.as_ref().is_some_and(|s| s.scored >= 1) || !a.run.training
    });
    let counts = h.state().run.search.as_ref().map(|s| (s.scored, s.total));
    if let Some((done, total)) = counts {
        let status = h.state().status.clone();
        if status.contains("settings scored") {
            assert!(
                status.contains(&format!("{done} of {total} settings scored")),
                "{status} (body: {done} of {total})"
            );
        }
        assert!(!status.contains("setting 1/"), "{status}");
        // The settings scored so far are shown as they come, before the search ends.
        let so_far = h
            .state()
            .run
            .search
            .as_ref()
            .expect("the search's live table");
        // One row a setting: a setting scored again at a later rung replaces its row.
        assert!(!so_far.trials.is_empty() && so_far.trials.len() <= done);
        h.step();
        if h.state().run.search.is_some() {
            h.get_by_label_contains("Search under way:");
        }
    }
    h.get_by_label("Stop").click();
    wait_for(&mut h, 120, "the stop", |a| !a.run.training);
    assert!(
        h.state()
            .errors
            .iter()
            .any(|e| e.contains("stopped during the hyper-parameter search")),
        "{:?}",
        h.state().errors
    );
    assert!(
        h.state().run.search.is_none(),
        "the live table outlived its search"
    );
    h.state_mut().errors.clear();

    // Compare methods (the recipes, Auto off, to keep the test short): a ranked table, one click to keep.
    h.state_mut().project.settings.auto = false;
    h.state_mut().project.settings.epochs = 2;
    settle(&mut h);
    h.get_by_label("Compare methods").click();
    h.step();
    assert!(
        h.state().run.comparing,
        "status: {}, errors: {:?}",
        h.state().status,
        h.state().errors
    );
    wait_for(&mut h, 900, "the comparison", |a| !a.run.comparing);
    assert!(
        h.state().errors.is_empty(),
        "errors: {:?}",
        h.state().errors
    );
    let rows = h.state().run.comparison.clone().expect("a ranked table");
    // Every method but full fine-tuning.
    assert_eq!(rows.len(), vitune::tuning::Method::ALL.len() - 1);
    assert!(rows.windows(2).all(|w| w[0].score >= w[1].score));
    settle(&mut h);
    let winner = rows[0].clone();
    h.get_all_by_label("Keep")
        .next()
        .expect("a Keep button")
        .click();
    h.step();
    wait_for(&mut h, 30, "the kept model", |a| {
        a.status.starts_with("imported")
    });
    assert_eq!(h.state().project.settings.method, winner.method);
}

#[test]
fn the_gpu_panel_runs_the_selftest() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let mut h = harness(Project::default());
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    h.get_by_label("GPU").click();
    h.step();
    h.get_by_label("Run selftest").click();
    h.step();
    wait_for(&mut h, 300, "the selftest", |a| a.selftest.is_some());
    let r = h.state().selftest.clone().expect("report");
    assert!(r.passed, "{}", r.text());
    assert!(
        h.state().status.contains("checks passed"),
        "{}",
        h.state().status
    );
    settle(&mut h);
    h.get_by_label("all checks passed");
}

/// The trained model is kept with the project: after a run, the tuned file and the run's curves and metrics sit
/// beside the project file, and a restarted app (or Open) brings them back.
#[test]
fn the_trained_model_and_its_curves_come_back_with_the_project() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let project = validated_glyph_project(dir.path());
    let path = dir.path().join("glyphs.json");
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    h.state_mut().save_project(&path);
    // Once the project has a file, edits save themselves.
    h.state_mut().project.classes[0].name = "Delta".into();
    h.step();
    let on_disk = Project::load(&path).expect("saved project");
    assert_eq!(on_disk.classes[0].name, "Delta");
    train_from_tune_tab(&mut h, 300, "the training");
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let tuned = vitune::app::project::tuned_path(&path);
    wait_for(&mut h, 60, "the kept model", |_| tuned.exists());
    let curve = h.state().run.curve.clone();
    let evaluation = h.state().run.evaluation.clone();
    let summary = h.state().status.clone();
    assert!(!curve.is_empty());
    assert!(
        evaluation.is_some(),
        "the run validated on the held-out images"
    );
    // One validation point per epoch, at the step that ended it, drawn beside the step curves.
    let val_curve = h.state().run.val_curve.clone();
    assert_eq!(val_curve.len(), 3);
    assert_eq!(val_curve.last().map(|p| p.0), curve.last().map(|p| p.0));
    assert!(vitune::app::project::results_path(&path).exists());

    // A run that cannot start (a class without images) says so and leaves the last run's curves on screen.
    for image in &mut h.state_mut().project.classes[0].images {
        image.enabled = false;
    }
    h.get_by_label("Train").click();
    h.step();
    wait_for(&mut h, 60, "the refused run", |a| !a.run.training);
    assert!(
        h.state().errors.iter().any(|e| e.contains("has no images")),
        "{:?}",
        h.state().errors
    );
    assert!(
        h.state().status.starts_with("the run ended with an error"),
        "{}",
        h.state().status
    );
    assert_eq!(h.state().run.curve, curve, "the previous curves stay");
    drop(h);

    // A new app on the saved project: the model is back (Try and Attention can use it) with its curves.
    let reopened = Project::load(&path).expect("project");
    let mut h = harness_at(reopened, Some(path.clone()));
    wait_for(&mut h, 120, "the restored model", |a| {
        a.run.trained_classes.is_some()
    });
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    // JSON keeps the curves to display precision (serde_json's float parsing may differ in the last digit).
    let back = &h.state().run.curve;
    assert_eq!(back.len(), curve.len());
    for (a, b) in back.iter().zip(&curve) {
        for (x, y) in [(a.0, b.0), (a.1, b.1), (a.2, b.2)] {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }
    assert_eq!(h.state().run.evaluation, evaluation);
    assert_eq!(h.state().run.val_curve.len(), val_curve.len());
    assert_eq!(
        h.state().status,
        format!("restored the last run: {summary}")
    );

    // Try: results accumulate, and below the threshold the verdict is "unknown"; the suggestion comes from the
    // validation images' confidences.
    let image = h.state().project.classes[1].images[0].path.clone();
    h.state_mut().predict(vec![image.clone()]);
    wait_for(&mut h, 60, "a prediction", |a| {
        a.trial.predictions.len() == 1
    });
    h.state_mut().predict(vec![image]);
    wait_for(&mut h, 60, "a second prediction", |a| {
        a.trial.predictions.len() == 2
    });
    h.get_by_label("Try").click();
    settle(&mut h);
    let suggested = h
        .state()
        .run
        .evaluation
        .as_ref()
        .and_then(|e| e.suggested_threshold(0.95))
        .expect("a run with validation images suggests a threshold");
    h.get_by_label(&format!("Suggested: {:.0}%", 100.0 * suggested))
        .click();
    settle(&mut h);
    assert_eq!(h.state().trial.unknown_below, suggested);
    h.state_mut().trial.unknown_below = 1.0;
    settle(&mut h);
    let top = h.state().trial.predictions[0].1[0].clone();
    let unknown = vitune::app::verdict(&h.state().trial.predictions[0].1, 1.0);
    assert!(unknown.starts_with("unknown (closest: "), "{unknown}");
    assert_eq!(h.query_all_by_label(&unknown).count(), 2);
    h.state_mut().trial.unknown_below = 0.0;
    settle(&mut h);
    let known = format!("{} ({:.1}%)", top.0, 100.0 * top.1);
    assert_eq!(
        h.query_all_by_label(&known).count(),
        2,
        "both results say {known}"
    );
    h.get_by_label("Clear results").click();
    settle(&mut h);
    assert!(h.state().trial.predictions.is_empty());

    // "Save project as..." moves the project (and its kept model) to a new file; "New project" starts empty,
    // with nothing of the last run on screen; opening the first file brings its model back.
    let copy = dir.path().join("copy.json");
    h.state_mut().save_project(&copy);
    assert_eq!(h.state().project_path.as_deref(), Some(copy.as_path()));
    assert!(Project::load(&copy).is_ok());
    wait_for(&mut h, 60, "the copy's kept model", |_| {
        vitune::app::project::tuned_path(&copy).exists()
    });
    h.state_mut().tab = vitune::app::Tab::Project;
    settle(&mut h);
    h.get_by_label("New project").click();
    h.step();
    let fresh = h.state();
    assert!(fresh.project.classes.is_empty() && fresh.project_path.is_none());
    assert!(
        fresh.run.trained_classes.is_none()
            && fresh.run.curve.is_empty()
            && fresh.run.evaluation.is_none()
    );
    // The first project is among the recent ones (the menu shows file names, the path on hover).
    h.get_by_label("Recent projects").click();
    settle(&mut h);
    h.get_by_label("glyphs.json").click();
    settle(&mut h);
    assert_eq!(h.state().project_path.as_deref(), Some(path.as_path()));
    wait_for(&mut h, 120, "the first project's model", |a| {
        a.run.trained_classes.is_some()
    });
    assert_eq!(h.state().run.curve.len(), curve.len());
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
}

/// Learn from mistakes: a wrongly labelled validation image is moved to the class the model saw, another is left
/// out, and training goes on from the model (no new search).
#[test]
fn a_mistake_is_moved_and_training_continues_from_the_model() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let project = validated_glyph_project(dir.path());
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    train_from_tune_tab(&mut h, 300, "training");
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert!(h.state().run.evaluation.is_some(), "validation images");
    // Two "delta" images the model (say) takes for "lambda": the list shows both, most confident first.
    let delta = h.state().project.classes[0].images.clone();
    let (moved, left_out) = (delta[0].path.clone(), delta[1].path.clone());
    let mistake = |path: &PathBuf, confidence| vitune::train::Mistake {
        path: path.clone(),
        truth: 0,
        predicted: 1,
        confidence,
    };
    h.state_mut()
        .run
        .evaluation
        .as_mut()
        .expect("evaluation")
        .mistakes = vec![mistake(&moved, 0.9), mistake(&left_out, 0.6)];
    settle(&mut h);
    h.get_by_label_contains("2 validation images the model gets wrong")
        .scroll_to_me();
    settle(&mut h);
    h.get_by_label("labelled delta, taken for lambda (90%)");
    snapshot(&mut h, "mistakes");
    h.get_all_by_label("Move to lambda")
        .next()
        .expect("a move button")
        .click();
    settle(&mut h);
    let p = &h.state().project;
    assert!(p.classes[1]
        .images
        .iter()
        .any(|i| i.path == moved && i.enabled));
    assert!(!p.classes[0].images.iter().any(|i| i.path == moved));
    h.get_by_label("Leave out").click();
    settle(&mut h);
    let p = &h.state().project;
    assert!(p.classes[0]
        .images
        .iter()
        .any(|i| i.path == left_out && !i.enabled));
    assert!(h
        .state()
        .run
        .evaluation
        .as_ref()
        .expect("ev")
        .mistakes
        .is_empty());
    h.get_by_label("Continue training").click();
    h.step();
    wait_for(&mut h, 300, "the continued run", |a| !a.run.training);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert!(
        h.state().status.contains("on from the previous model"),
        "{}",
        h.state().status
    );
    // A linear probe has no prompts: its prompt maps are offered disabled (their reason on hover).
    h.state_mut().tab = vitune::app::Tab::Attention;
    settle(&mut h);
    // The "Map" label, then its combo (labelled by it).
    h.get_all_by_label("Map")
        .last()
        .expect("the map combo")
        .click();
    settle(&mut h);
    use egui_kittest::kittest::NodeT;
    assert!(h
        .get_by_label("prompts to patches (one layer)")
        .accesskit_node()
        .is_disabled());
    // The grid view: the maps of one class's images, each with the model's class.
    h.key_press(egui::Key::Escape);
    h.state_mut().maps.grid_source = "lambda".into();
    settle(&mut h);
    h.get_by_label("Show grid").click();
    h.step();
    wait_for(&mut h, 120, "the grid of maps", |a| !a.maps.grid_pending);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let lambda = h.state().grid_images("lambda");
    assert_eq!(h.state().maps.grid.len(), lambda.len());
    assert!(h.state().maps.grid.iter().all(|t| t.2.is_some()));
    settle(&mut h);
    // Each tile says the image's class in the project beside the model's.
    assert_eq!(
        h.query_all_by_label_contains("labelled lambda, model: ")
            .count(),
        lambda.len()
    );

    // A stopped run says which epoch's weights it kept, and its bar stays where it stopped.
    h.state_mut().tab = vitune::app::Tab::Tune;
    h.state_mut().project.settings.epochs = 2000;
    settle(&mut h);
    h.get_by_label("Train").click();
    h.step();
    // The new run's own steps (the last run's curve stays until the first of them).
    wait_for(&mut h, 120, "the first steps", |a| {
        a.status.starts_with("epoch ") && a.run.curve.len() >= 3
    });
    h.get_by_label("Stop").click();
    wait_for(&mut h, 120, "the stop", |a| !a.run.training);
    let status = h.state().status.clone();
    assert!(
        status.starts_with("stopped") && status.contains("kept epoch"),
        "{status}"
    );
    assert!(h.state().run.progress < 1.0, "{}", h.state().run.progress);
}

/// A file the window receives is dropped.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// A file dropped on a class lands in that class (not the selected one); pasted paths go to the selected class.
#[test]
fn a_file_dropped_on_a_class_lands_there_and_pasted_paths_in_the_selected_class() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let mut project = glyph_project(dir.path(), 2);
    project.settings.auto = false;
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    let extra = dir.path().join("extra");
    vitune::demo::write_glyph_folders("target", 2, 9, 32, &extra).expect("glyphs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&extra)
        .expect("read")
        .flat_map(|e| std::fs::read_dir(e.expect("e").path()).expect("class"))
        .map(|e| e.expect("e").path())
        .collect();
    files.sort();
    h.state_mut().selected_class = 0;
    settle(&mut h);
    let before = h.state().project.classes[1].images.len();
    // Over the second class (its "Delete class" button lies inside its block), then the drop.
    let at = h
        .get_all_by_label("Delete class")
        .nth(1)
        .expect("the second class")
        .rect()
        .center();
    h.event(egui::Event::PointerMoved(at));
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(files[0].clone())));
    settle(&mut h);
    let p = &h.state().project;
    assert_eq!(p.classes[1].images.len(), before + 1, "dropped on class 1");
    assert!(p.classes[1].images.iter().any(|i| i.path == files[0]));
    // A pasted file URI and a plain path: the selected class (0) gets both.
    let before = h.state().project.classes[0].images.len();
    let text = format!("file://{}\n{}", files[1].display(), files[2].display());
    h.event(egui::Event::Paste(text));
    settle(&mut h);
    assert_eq!(h.state().project.classes[0].images.len(), before + 2);
}

/// A backbone file that fails to load changes nothing the project records; a project whose own backbone fails
/// says which file and why, never "loading..." once the load has ended, and Train stays off until one loads.
/// Switching to another backbone (here DINOv3's layout: RoPE, registers) keeps the classes but not the model trained
/// on the old one: its curves and classes go, and the status says to train again.
#[test]
fn a_new_backbone_drops_the_old_model_and_keeps_the_classes() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let mut h = harness(Project::default());
    wait_for(&mut h, 60, "the demo backbone", |a| {
        a.backbone_info.is_some() && a.backbone.loading.is_none()
    });
    let classes = h.state().project.classes.len();
    // As a finished run leaves them.
    h.state_mut().run.curve.push((1.0, 2.0, 0.5));
    h.state_mut().run.trained_classes = Some(vec!["a".into()]);
    let dinov3 = common::fixture("timm_dinov3").join("model.safetensors");
    h.state_mut().choose_backbone(Some(dinov3.clone()));
    h.step();
    wait_for(&mut h, 60, "the new backbone", |a| {
        a.backbone.loading.is_none() && a.project.backbone.is_some()
    });
    h.run();
    let a = h.state();
    assert_eq!(a.project.backbone.as_deref(), Some(dinov3.as_path()));
    let info = a.backbone_info.clone().unwrap_or_default();
    assert!(info.contains("DINOv3") && info.contains("RoPE"), "{info}");
    assert!(a.run.curve.is_empty() && a.run.trained_classes.is_none());
    assert!(a.status.contains("train again"), "{}", a.status);
    assert_eq!(a.project.classes.len(), classes);
}

#[test]
fn a_refused_backbone_is_never_kept() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("model.safetensors");
    std::fs::write(&bad, "this is a text file, not a checkpoint").expect("write");

    let mut h = harness(Project::default());
    wait_for(&mut h, 60, "the demo backbone", |a| {
        a.backbone_info.is_some() && a.backbone.loading.is_none()
    });
    // What "Choose backbone..." does with the file the dialog returns.
    h.state_mut().choose_backbone(Some(bad.clone()));
    h.step();
    wait_for(&mut h, 60, "the refusal", |a| a.backbone.loading.is_none());
    assert_eq!(
        h.state().project.backbone,
        None,
        "the refused file was kept"
    );
    assert!(
        h.state().backbone_info.is_some(),
        "the demo backbone was dropped"
    );
    assert!(
        h.state()
            .errors
            .iter()
            .any(|e| e.contains("model.safetensors")),
        "{:?}",
        h.state().errors
    );

    // A project that names the refused file (saved by an older vitune) opens with the reason and no "loading".
    let project = Project {
        backbone: Some(bad.clone()),
        ..Default::default()
    };
    let mut h = harness(project);
    wait_for(&mut h, 60, "the project's backbone to fail", |a| {
        a.backbone.loading.is_none()
    });
    h.run();
    let failed = h.state().backbone.failed.clone().expect("a reason");
    assert!(failed.contains("model.safetensors"), "{failed}");
    assert!(h.state().backbone_info.is_none());
    h.get_by_label_contains("not loaded:");
    assert!(
        h.query_by_label_contains("loading").is_none(),
        "still says loading"
    );
    // The demo backbone is one click away, and then the project records it.
    h.get_by_label("Demo backbone").click();
    h.step();
    wait_for(&mut h, 60, "the demo backbone", |a| {
        a.backbone_info.is_some()
    });
    assert_eq!(h.state().project.backbone, None);
    assert!(h.state().backbone.failed.is_none());
}

/// The hub list downloads a curated backbone from a stand-in for the hub (on 127.0.0.1), and the project
/// remembers it by hub name and commit.
#[test]
fn a_curated_backbone_downloads_from_the_hub_list() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    use common::hub_stand_in::{Behaviour, Repo, StandIn};
    let name = "timm/deit_small_patch16_224.fb_in1k";
    let repo = Repo::from_fixture(name, &common::fixture("timm_cls"));
    let commit = repo.commit.clone();
    let hub = StandIn::start(vec![repo], Behaviour::default());
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = vitune::hub::HubConfig {
        endpoint: hub.endpoint.clone(),
        cache: dir.path().join("hub"),
        token: None,
        offline: false,
    };
    let app = VituneApp::with_hub(&egui::Context::default(), Project::default(), None, cfg);
    let mut h = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut VituneApp| app.ui(ui), app);
    wait_for(&mut h, 60, "the demo backbone", |a| {
        a.backbone_info.is_some()
    });
    h.get_by_label("From the hub...").click();
    h.run();
    // Nothing cached: six "Download" buttons in the curated order; DeiT-S is the fifth.
    let deit = vitune::hub::curated()
        .iter()
        .position(|m| m.repo == name)
        .expect("curated");
    h.get_all_by_label("Download")
        .nth(deit)
        .expect("its button")
        .click();
    h.step();
    wait_for(&mut h, 60, "the download", |a| {
        a.backbone.loading.is_none() && a.backbone_info.as_deref().is_some_and(|i| i.contains(name))
    });
    let pinned = format!("hf-hub:{name}@{commit}");
    assert_eq!(h.state().project.backbone, Some(PathBuf::from(&pinned)));
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    h.run();
    // Now cached: listed first, with "Use".
    h.get_by_label("Use");
    assert!(hub.requests().iter().any(|r| r.starts_with("GET /cdn/")));
}

/// Where the system's file dialog cannot open (no xdg-desktop-portal, no zenity: CI, Xvfb, minimal desktops),
/// vitune says so once and its own file browser saves the project; the Try tab classifies a typed path.
#[test]
fn without_a_dialog_service_the_builtin_browser_saves_and_try_takes_a_path() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let images = dir.path().join("glyphs");
    vitune::demo::write_glyph_folders("target", 2, 2, 32, &images).expect("glyphs");
    let mut h = harness(Project::default());
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        // A desktop session may have a portal whose dialog would wait for a person: use the browser directly.
        h.state_mut().files.builtin_only = true;
    }
    h.get_by_label("Save project as...").click();
    h.run();
    assert!(h.state().files.browser.is_some(), "no file browser opened");
    let notices = |a: &VituneApp| {
        a.errors
            .iter()
            .filter(|e| e.contains("file browser"))
            .count()
    };
    assert!(notices(h.state()) <= 1);
    h.state_mut().files.browser.as_mut().expect("browser").dir = dir.path().to_path_buf();
    h.run();
    h.get_by_label("Save").click();
    h.run();
    let saved = dir.path().join("project.json");
    assert!(
        saved.is_file(),
        "the project was not saved through the browser"
    );
    assert_eq!(h.state().project_path.as_deref(), Some(saved.as_path()));
    // Asked again: the browser at once, no second notice.
    h.get_by_label("Open project...").click();
    h.run();
    assert!(h.state().files.browser.is_some());
    assert!(notices(h.state()) <= 1, "{:?}", h.state().errors);
    h.get_by_label("Cancel").click();
    h.run();
    assert!(h.state().files.browser.is_none());
    // The browser is modal: a click on the project beneath does nothing and keeps the browser; Escape cancels it,
    // and the project stays where it was saved.
    h.get_by_label("Open project...").click();
    h.run();
    assert!(h.state().files.browser.is_some());
    let classes = h.state().project.classes.len();
    h.get_by_label("Add class").click();
    h.run();
    assert_eq!(
        h.state().project.classes.len(),
        classes,
        "a click went through the browser"
    );
    assert!(
        h.state().files.browser.is_some(),
        "a click beside the browser closed it"
    );
    h.key_press(egui::Key::Escape);
    h.run();
    assert!(
        h.state().files.browser.is_none(),
        "Escape left the browser open"
    );
    assert_eq!(h.state().project_path.as_deref(), Some(saved.as_path()));
    // Adding images: the browser names the class they go to.
    h.get_by_label("Add class").click();
    h.run();
    let class = h
        .state()
        .project
        .classes
        .last()
        .expect("a class")
        .name
        .clone();
    h.get_by_label("Add images...").click();
    h.run();
    h.get_by_label(&format!(
        "Add images to class \"{class}\" (files or folders)"
    ));
    h.get_by_label("Cancel").click();
    h.run();
    assert!(h.state().files.browser.is_none());

    // Try: a typed path that is no file says so; a typed folder goes to the classifier (which, with no model
    // yet, asks for one: the classification itself is tested with a trained model above).
    h.state_mut().tab = vitune::app::Tab::Try;
    h.run();
    h.state_mut().trial.path = dir.path().join("nothing-here").display().to_string();
    h.get_by_label("Classify").click();
    h.run();
    assert!(
        h.state()
            .errors
            .iter()
            .any(|e| e.contains("no file or folder at")),
        "{:?}",
        h.state().errors
    );
    let class_dir = std::fs::read_dir(&images)
        .expect("read")
        .next()
        .expect("a class")
        .expect("entry")
        .path();
    h.state_mut().trial.path = class_dir.display().to_string();
    h.get_by_label("Classify").click();
    h.step();
    wait_for(&mut h, 60, "the classifier's answer", |a| {
        a.errors
            .iter()
            .any(|e| e.contains("train or import a tuned file first"))
    });
    assert!(
        h.state().trial.path.is_empty(),
        "the typed path was not taken"
    );
}

/// After another run the Attention view says its maps are the previous model's until Redraw.
#[test]
fn maps_of_the_previous_model_are_marked_until_redrawn() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    let dir = tempfile::tempdir().expect("tmp");
    let mut project = glyph_project(dir.path(), 3);
    project.settings.epochs = 2;
    project.settings.auto = false;
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone", |a| a.backbone_info.is_some());
    settle(&mut h);
    train_from_tune_tab(&mut h, 120, "the first run");
    h.state_mut().tab = vitune::app::Tab::Attention;
    h.run();
    let img = h.state().project.classes[0].images[0].path.clone();
    h.state_mut().attention.image = Some(img);
    h.run();
    h.get_by_label("Redraw").click();
    h.step();
    wait_for(&mut h, 60, "the maps", |a| a.maps.images.is_some());
    assert!(!h.state().maps.stale);
    train_from_tune_tab(&mut h, 120, "the second run");
    assert!(
        h.state().maps.stale,
        "the maps of the first model are not marked"
    );
    h.state_mut().tab = vitune::app::Tab::Attention;
    h.run();
    h.get_by_label_contains("made with the previous model");
    h.get_by_label("Redraw").click();
    h.step();
    wait_for(&mut h, 60, "the redrawn maps", |a| !a.maps.stale);
}

/// Messages sit below the controls and never move them; a repeated one shows once with its count. While a run
/// uses the settings they are locked. The merged timm export is off for a prompt method, saying why. On a CPU
/// adapter the app says tuning is slow. A new project has the method's recipe, the same defaults as the CLI.
#[test]
fn messages_stay_put_settings_lock_and_defaults_are_one() {
    use egui_kittest::kittest::NodeT;
    let _serial = one_at_a_time();
    drop(common::gpu());
    let project = Project::default();
    let recipe = vitune::app::project::Settings::defaults(project.settings.method);
    assert_eq!(
        project.settings, recipe,
        "a new project is not the method's recipe"
    );
    assert_eq!(project.settings.epochs, vitune::train::DEFAULT_EPOCHS);
    assert_eq!(project.settings.batch, vitune::train::DEFAULT_BATCH);
    assert_eq!(
        project.settings.options.prompts,
        vitune::tuning::MethodOptions::defaults(vitune::tuning::Method::VptDeep).prompts
    );
    let mut h = harness(project);
    wait_for(&mut h, 60, "the backbone and the adapter", |a| {
        a.backbone_info.is_some() && a.adapter.is_some()
    });
    h.state_mut().tab = vitune::app::Tab::Tune;
    h.run();
    let train_at = h.get_by_label("Train").rect();
    for _ in 0..3 {
        h.state_mut()
            .errors
            .push("skipped bad.jpg: not an image".into());
    }
    h.state_mut().errors.push("another message".into());
    h.run();
    assert_eq!(
        h.get_by_label("Train").rect(),
        train_at,
        "the messages moved the controls"
    );
    h.get_by_label_contains("skipped bad.jpg: not an image (×3)");
    assert_eq!(h.get_all_by_label_contains("skipped bad.jpg").count(), 1);
    // On lavapipe (CI) the adapter is a CPU driver: the app says so.
    if h.state().adapter.as_ref().is_some_and(|a| a.1) {
        h.get_by_label_contains("No GPU was found");
    }
    // A run in progress locks the settings it uses.
    h.state_mut().run.training = true;
    h.run();
    h.get_by_label_contains("the run uses these settings");
    assert!(h
        .get_by_label("Auto (choose learning rate)")
        .accesskit_node()
        .is_disabled());
    h.state_mut().run.training = false;
    h.run();
    assert!(!h
        .get_by_label("Auto (choose learning rate)")
        .accesskit_node()
        .is_disabled());
    // A prompt model: the merged timm export is off; ONNX is on.
    h.state_mut().model_method = Some(vitune::tuning::Method::VptDeep);
    h.state_mut().run.trained_classes = Some(vec!["a".into(), "b".into()]);
    h.state_mut().tab = vitune::app::Tab::Export;
    h.run();
    assert!(h
        .get_by_label("Export merged timm checkpoint...")
        .accesskit_node()
        .is_disabled());
    assert!(!h
        .get_by_label("Export ONNX model (runs anywhere)...")
        .accesskit_node()
        .is_disabled());
    // After a divergence, one click retries at a tenth of the learning rate, Auto off.
    h.state_mut().tab = vitune::app::Tab::Tune;
    h.state_mut().run.retry_lr = Some(0.0625);
    h.run();
    h.get_by_label("Retry with lr 6.25e-2").click();
    h.step();
    assert_eq!(h.state().project.settings.lr, Some(0.0625));
    assert!(!h.state().project.settings.auto);
    assert!(h.state().run.retry_lr.is_none());
    wait_for(&mut h, 60, "the retried run to end", |a| !a.run.training);
}

/// A project whose hub backbone this machine lacks asks before downloading it (no request until then), and
/// "Download it" brings it.
#[test]
fn a_projects_missing_hub_backbone_is_offered_for_download() {
    let _serial = one_at_a_time();
    drop(common::gpu());
    use common::hub_stand_in::{Behaviour, Repo, StandIn};
    let name = "timm/vit_tiny_offer.test";
    let hub = StandIn::start(
        vec![Repo::from_fixture(name, &common::fixture("timm_cls"))],
        Behaviour::default(),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = vitune::hub::HubConfig {
        endpoint: hub.endpoint.clone(),
        cache: dir.path().join("hub"),
        token: None,
        offline: false,
    };
    let project = Project {
        backbone: Some(PathBuf::from(format!("hf-hub:{name}@main"))),
        ..Default::default()
    };
    let app = VituneApp::with_hub(&egui::Context::default(), project, None, cfg);
    let mut h = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut VituneApp| app.ui(ui), app);
    h.run();
    h.get_by_label(&format!(
        "this project's backbone hf-hub:{name}@main is not on this machine"
    ));
    assert!(
        hub.requests().is_empty(),
        "asked the hub unasked: {:?}",
        hub.requests()
    );
    h.get_by_label("Download it").click();
    h.step();
    wait_for(&mut h, 60, "the download", |a| {
        a.backbone.loading.is_none() && a.backbone_info.as_deref().is_some_and(|i| i.contains(name))
    });
    assert!(h.state().backbone.offer.is_none());
}
