//! The screens of the app, one function each.

use egui::{Color32, RichText};

use super::files::FilePurpose;
use egui_plot::{Legend, Line, Plot};

use super::{Tab, VituneApp};
use crate::tuning::{ConvInit, Method, MethodOptions};

pub fn app_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    egui::Panel::top("tabs").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("vitune");
            ui.separator();
            for (tab, label) in [
                (Tab::Project, "Project"),
                (Tab::Tune, "Tune"),
                (Tab::Attention, "Attention"),
                (Tab::Try, "Try"),
                (Tab::Export, "Export / import"),
                (Tab::Gpu, "GPU"),
            ] {
                ui.selectable_value(&mut app.tab, tab, label);
            }
        });
    });
    // Status and messages at the bottom: they never push the controls down, and a long status wraps.
    egui::Panel::bottom("messages").show(ui, |ui| {
        errors_ui(app, ui);
        ui.add(egui::Label::new(app.status.as_str()).wrap());
    });
    egui::CentralPanel::default().show(ui, |ui| match app.tab {
        Tab::Project => project_ui(app, ui),
        // Long screens scroll: a run's results and its mistakes, maps and their grid.
        Tab::Tune => {
            egui::ScrollArea::vertical()
                .id_salt("tune")
                .show(ui, |ui| tune_ui(app, ui));
        }
        Tab::Attention => {
            egui::ScrollArea::vertical()
                .id_salt("attention")
                .show(ui, |ui| attention_ui(app, ui));
        }
        Tab::Try => try_ui(app, ui),
        Tab::Export => export_ui(app, ui),
        Tab::Gpu => gpu_ui(app, ui),
    });
}

/// The messages, a repeated one once with its count, newest first; the four newest shown, the rest in a scroll.
fn errors_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    if let (Some((description, true)), false) = (&app.adapter, app.cpu_notice_dismissed) {
        let text = format!(
            "No GPU was found: vitune runs on the CPU adapter {description}, so tuning is slow (minutes for what \
             a GPU does in seconds); small backbones and few epochs work. The GPU tab says more."
        );
        ui.horizontal(|ui| {
            if ui.small_button("dismiss").clicked() {
                app.cpu_notice_dismissed = true;
            }
            ui.add(
                egui::Label::new(RichText::new(text).color(Color32::from_rgb(220, 150, 60))).wrap(),
            );
        });
    }
    let merged = merged_messages(&app.errors);
    if merged.is_empty() {
        return;
    }
    let mut dismiss = None;
    let mut dismiss_all = false;
    egui::ScrollArea::vertical()
        .id_salt("messages")
        .max_height(88.0)
        .show(ui, |ui| {
            for (text, count) in merged.iter().rev() {
                ui.horizontal(|ui| {
                    if ui.small_button("dismiss").clicked() {
                        dismiss = Some(text.clone());
                    }
                    let shown = if *count > 1 {
                        format!("! {text} (×{count})")
                    } else {
                        format!("! {text}")
                    };
                    ui.add(
                        egui::Label::new(
                            RichText::new(shown).color(Color32::from_rgb(220, 80, 60)),
                        )
                        .wrap(),
                    );
                });
            }
        });
    if merged.len() > 1 && ui.small_button("dismiss all").clicked() {
        dismiss_all = true;
    }
    if dismiss_all {
        app.errors.clear();
    } else if let Some(text) = dismiss {
        app.errors.retain(|e| *e != text);
    }
}

/// Each distinct message once, with how often it came, in the order of its last coming.
pub fn merged_messages(messages: &[String]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for m in messages {
        match out.iter().position(|(t, _)| t == m) {
            Some(i) => {
                let (t, n) = out.remove(i);
                out.push((t, n + 1));
            }
            None => out.push((m.clone(), 1)),
        }
    }
    out
}

fn project_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    super::backbone::backbone_ui(app, ui);
    ui.horizontal(|ui| {
        ui.label("GPU memory:");
        let mut want = app.memory;
        ui.checkbox(&mut want.f16_weights, "f16 weights")
            .on_hover_text("Store the frozen backbone weights in half precision: half their memory, compute stays f32 (needs SHADER_F16)");
        ui.checkbox(&mut want.fused_attention, "fused attention")
            .on_hover_text("Flash-style attention that never stores the token-by-token score matrix while training; maps still use the full one");
        if want != app.memory {
            app.memory = want;
            app.send(super::worker::Command::Memory(want));
        }
    });
    ui.horizontal(|ui| {
        if ui.button("Open project...").clicked() {
            app.ask_file(FilePurpose::OpenProject);
        }
        if ui.button("Save project").clicked() {
            match app.project_path.clone() {
                Some(p) => app.save_project(&p),
                None => app.ask_file(FilePurpose::SaveProject),
            }
        }
        if ui.button("Save project as...").clicked() {
            app.ask_file(FilePurpose::SaveProject);
        }
        if ui.button("New project").clicked() {
            app.new_project();
        }
        ui.menu_button("Recent projects", |ui| {
            let recent = super::project::recent_projects();
            if recent.is_empty() {
                ui.label("none yet: saved and opened projects appear here");
            }
            for p in recent {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if ui
                    .button(name)
                    .on_hover_text(p.display().to_string())
                    .clicked()
                {
                    app.open_project(&p);
                    ui.close();
                }
            }
        });
        if ui.button("Add class").clicked() {
            app.add_class();
        }
    });
    ui.horizontal(|ui| {
        ui.label("Project:");
        match &app.project_path {
            Some(p) => ui.label(format!("{} (changes save themselves)", p.display())),
            None => ui.label(
                "not saved yet: \"Save project\" gives it a file, then changes save themselves",
            ),
        };
    });
    let undo = app.deleted_class.as_ref().map(|(_, c)| c.name.clone());
    if let Some(name) = undo {
        ui.horizontal(|ui| {
            ui.label(format!("Deleted class \"{name}\"."));
            if ui.button("Undo delete").clicked() {
                app.undo_delete();
            }
        });
    }
    // Typed or pasted paths: the way in where no file dialog can open (and for pasting a folder's path).
    ui.horizontal(|ui| {
        let label = ui.label("Add from a path:");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut app.path_to_add)
                    .hint_text("an image or a folder of images")
                    .desired_width(360.0),
            )
            .labelled_by(label.id);
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Add to the selected class").clicked() || entered {
            app.add_typed_path();
        }
    });
    // Files dropped on a class go to it; dropped elsewhere, or pasted, to the selected class.
    let (dropped, hovering, pointer) = ui.ctx().input(|i| {
        let dropped: Vec<std::path::PathBuf> = i
            .raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect();
        (
            dropped,
            !i.raw.hovered_files.is_empty(),
            i.pointer.latest_pos(),
        )
    });
    let pasted = pasted_paths(ui);
    let loading = app.thumbnails_loading();
    if loading > 0 {
        ui.label(RichText::new(format!("decoding {loading} thumbnails...")).weak());
    }
    ui.separator();
    // Where each class is on screen, for drops.
    let mut class_rects: Vec<(usize, egui::Rect)> = Vec::new();
    let mut delete = None;
    let ctx = ui.ctx().clone();
    // Images per class that do not decode, all of them and those still ticked: marked on their tile, never
    // counted as used.
    let unreadable: Vec<(usize, usize)> = (0..app.project.classes.len())
        .map(|ci| {
            let items: Vec<(std::path::PathBuf, bool)> = app.project.classes[ci]
                .images
                .iter()
                .map(|i| (i.path.clone(), i.enabled))
                .collect();
            let (mut all, mut ticked) = (0, 0);
            for (path, enabled) in &items {
                if app.unreadable(&ctx, path).is_some() {
                    all += 1;
                    ticked += usize::from(*enabled);
                }
            }
            (all, ticked)
        })
        .collect();
    egui::ScrollArea::vertical().show(ui, |ui| {
        for ci in 0..app.project.classes.len() {
            let block = ui.vertical(|ui| {
            let enabled = app.project.classes[ci]
                .images
                .iter()
                .filter(|i| i.enabled)
                .count();
            let total = app.project.classes[ci].images.len();
            ui.horizontal(|ui| {
                let selected = app.selected_class == ci;
                if ui
                    .selectable_label(selected, "select")
                    .on_hover_text("pasted files, and files dropped outside any class, go to the selected class")
                    .clicked()
                {
                    app.selected_class = ci;
                }
                let label = ui.label("name");
                ui.add(
                    egui::TextEdit::singleline(&mut app.project.classes[ci].name)
                        .desired_width(160.0),
                )
                .labelled_by(label.id);
                let (unreadable, ticked) = unreadable.get(ci).copied().unwrap_or((0, 0));
                ui.label(format!("{} of {total} images", enabled - ticked));
                if unreadable > 0 {
                    ui.colored_label(
                        Color32::from_rgb(220, 80, 60),
                        format!("{unreadable} unreadable, not used"),
                    );
                }
                if ui.button("Add images...").clicked() {
                    app.ask_file(FilePurpose::AddImages(ci));
                }
                if ui.button("Delete class").clicked() {
                    delete = Some(ci);
                }
            });
            let mut remove = None;
            ui.horizontal_wrapped(|ui| {
                for ii in 0..app.project.classes[ci].images.len() {
                    let path = app.project.classes[ci].images[ii].path.clone();
                    // A tile of fixed size, so that the row wraps (a `vertical` child takes the rest of the row).
                    ui.allocate_ui(egui::vec2(72.0, 84.0), |ui| {
                    ui.vertical(|ui| {
                        match app.thumbnail(&ctx, &path) {
                            Some(t) => {
                                ui.add_sized(
                                    [56.0, 56.0],
                                    egui::Image::new(&t).max_size(egui::vec2(56.0, 56.0)),
                                );
                            }
                            None => match app.unreadable(&ctx, &path) {
                                Some(why) => {
                                    let name = path
                                        .file_name()
                                        .map(|n| n.to_string_lossy().into_owned())
                                        .unwrap_or_default();
                                    ui.colored_label(Color32::from_rgb(220, 80, 60), "unreadable")
                                        .on_hover_text(&why);
                                    ui.add(egui::Label::new(RichText::new(name).small()).truncate())
                                        .on_hover_text(why);
                                }
                                // Still decoding: a still placeholder (a spinner would repaint every frame).
                                None => {
                                    ui.add_sized(
                                        [56.0, 56.0],
                                        egui::Label::new(RichText::new("...").weak()),
                                    );
                                }
                            },
                        }
                        ui.horizontal(|ui| {
                            ui.checkbox(&mut app.project.classes[ci].images[ii].enabled, "use");
                            if ui.small_button("x").on_hover_text("remove").clicked() {
                                remove = Some(ii);
                            }
                        });
                    });
                    });
                }
            });
            if let Some(ii) = remove {
                app.project.classes[ci].images.remove(ii);
            }
            });
            // Only the part in view: a class scrolled away is no drop target.
            let rect = block.response.rect.intersect(ui.clip_rect());
            if hovering && rect.is_positive() && pointer.is_some_and(|p| rect.contains(p)) {
                ui.painter().rect_stroke(
                    rect.expand(2.0),
                    4.0,
                    egui::Stroke::new(2.0, Color32::from_rgb(90, 170, 250)),
                    egui::StrokeKind::Outside,
                );
            }
            if rect.is_positive() {
                class_rects.push((ci, rect));
            }
            ui.separator();
        }
    });
    let target = |app: &mut VituneApp, at: Option<egui::Pos2>| {
        if app.project.classes.is_empty() {
            app.add_class();
        }
        at.and_then(|p| {
            class_rects
                .iter()
                .find(|(_, r)| r.contains(p))
                .map(|(c, _)| *c)
        })
        .unwrap_or(app.selected_class.min(app.project.classes.len() - 1))
    };
    if !dropped.is_empty() {
        let c = target(app, pointer);
        app.add_images(c, &dropped);
    }
    if !pasted.is_empty() {
        let c = target(app, None);
        app.add_images(c, &pasted);
    }
    if let Some(ci) = delete {
        app.delete_class(ci);
    }
    if app.project.classes.is_empty() {
        ui.label("Add a class, then add images to it (or drop files and folders on this window).");
    }
}

/// Files or folders pasted while no text field has the keyboard: each line that names an existing path (plain, or a
/// file manager's `file://` URI).
fn pasted_paths(ui: &egui::Ui) -> Vec<std::path::PathBuf> {
    if ui.ctx().memory(|m| m.focused().is_some()) {
        return Vec::new();
    }
    ui.ctx().input(|i| {
        i.events
            .iter()
            .filter_map(|e| match e {
                egui::Event::Paste(text) => Some(text.clone()),
                _ => None,
            })
            .flat_map(|text| {
                text.lines()
                    .map(|l| {
                        let l = l.trim();
                        let l = l.strip_prefix("file://").unwrap_or(l);
                        std::path::PathBuf::from(l.replace("%20", " "))
                    })
                    .filter(|p| p.exists())
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

fn method_options_ui(ui: &mut egui::Ui, method: Method, o: &mut MethodOptions) {
    match method {
        Method::VptShallow | Method::VptDeep => {
            ui.add(egui::Slider::new(&mut o.prompts, 1..=50).text("prompts"));
            ui.add(egui::Slider::new(&mut o.dropout, 0.0..=0.9).text("prompt dropout"));
        }
        Method::Lora => {
            ui.add(egui::Slider::new(&mut o.rank, 1..=64).text("rank"));
            ui.add(egui::Slider::new(&mut o.alpha, 1.0..=64.0).text("alpha"));
        }
        Method::Adaptformer => {
            ui.add(egui::Slider::new(&mut o.bottleneck, 1..=256).text("bottleneck"));
            ui.add(
                egui::Slider::new(&mut o.scale, 0.01..=10.0)
                    .logarithmic(true)
                    .text("scale"),
            );
        }
        Method::Convpass => {
            ui.add(egui::Slider::new(&mut o.convpass_dim, 1..=64).text("convpass dim"));
            ui.add(
                egui::Slider::new(&mut o.scale, 0.01..=100.0)
                    .logarithmic(true)
                    .text("scale"),
            );
            ui.horizontal(|ui| {
                ui.label("conv init");
                ui.selectable_value(&mut o.conv_init, ConvInit::Xavier, "xavier");
                ui.selectable_value(&mut o.conv_init, ConvInit::Identity, "identity");
            });
            ui.add(egui::Slider::new(&mut o.dropout, 0.0..=0.9).text("dropout"));
        }
        Method::Linear | Method::Bitfit | Method::Ssf | Method::Full => {
            ui.label("no options");
        }
    }
}

/// The GPU panel: `vitune selftest` on the app's adapter, its report as the CLI prints it.
fn gpu_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    match &app.adapter {
        Some((description, true)) => {
            ui.colored_label(
                Color32::from_rgb(220, 150, 60),
                format!("Adapter: {description}. This is a CPU driver, not a GPU: everything works, slowly."),
            );
        }
        Some((description, false)) => {
            ui.label(format!("Adapter: {description}"));
        }
        None => {
            ui.label("Adapter: opening...");
        }
    }
    ui.label(
        "Does vitune compute correctly on this GPU? The selftest checks the forward against timm, every \
         method's gradients against autograd and the matmul kernels against a CPU reference, with every \
         kernel variant this adapter could use.",
    );
    ui.horizontal(|ui| {
        let idle = !app.selftesting && !app.training && !app.comparing;
        if ui
            .add_enabled(idle, egui::Button::new("Run selftest"))
            .clicked()
        {
            app.start_selftest(true);
        }
        if ui
            .add_enabled(idle, egui::Button::new("Run selftest with speed figures"))
            .on_hover_text("also a ViT-B matmul and a ViT-B/16 forward (minutes on a CPU adapter)")
            .clicked()
        {
            app.start_selftest(false);
        }
        if app.selftesting {
            ui.spinner();
        }
    });
    if let Some(r) = &app.selftest {
        ui.colored_label(
            if r.passed {
                egui::Color32::from_rgb(60, 160, 60)
            } else {
                egui::Color32::from_rgb(200, 60, 60)
            },
            if r.passed {
                "all checks passed"
            } else {
                "some checks FAILED"
            },
        );
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.monospace(r.text());
        });
    }
}

/// The last search's table: every setting tried, the chosen one marked.
fn selection_ui(app: &VituneApp, ui: &mut egui::Ui) {
    let Some(sel) = &app.selection else { return };
    egui::CollapsingHeader::new(format!(
        "Search: lr {:.2e}, wd {:.0e} chosen ({:.1}% ± {:.1}, {})",
        sel.chosen.lr,
        sel.chosen.weight_decay,
        100.0 * sel.score,
        100.0 * sel.score_std,
        sel.protocol
    ))
    .id_salt("search table")
    .show(ui, |ui| {
        egui::Grid::new("search grid").striped(true).show(ui, |ui| {
            for h in ["lr", "wd", "accuracy", "epochs", ""] {
                ui.strong(h);
            }
            ui.end_row();
            for t in &sel.table {
                ui.label(format!("{:.2e}", t.candidate.lr));
                ui.label(format!("{:.0e}", t.candidate.weight_decay));
                ui.label(format!("{:.1}% ± {:.1}", 100.0 * t.mean, 100.0 * t.std));
                ui.label(t.epochs.to_string());
                ui.label(if t.candidate == sel.chosen {
                    "chosen"
                } else if t.diverged {
                    "diverged"
                } else {
                    ""
                });
                ui.end_row();
            }
        });
    });
}

/// "Compare methods": every method scored on the project's images, ranked, each one click from being kept.
fn compare_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        let ready = app.backbone_info.is_some()
            && app.backbone.loading.is_none()
            && !app.training
            && !app.comparing;
        if ui
            .add_enabled(ready, egui::Button::new("Compare methods"))
            .on_hover_text(
                "Score linear, bitfit, vpt-shallow, vpt-deep, lora, adaptformer and convpass by \
                 cross-validation on these images (each with its own search when Auto is on)",
            )
            .clicked()
        {
            app.start_compare();
        }
        if app.comparing {
            if ui.button("Stop").clicked() {
                app.stop_training();
            }
            ui.spinner();
        }
    });
    let Some(rows) = app.comparison.clone() else {
        return;
    };
    egui::Grid::new("compare grid")
        .striped(true)
        .show(ui, |ui| {
            for h in ["rank", "method", "accuracy", "parameters", "lr", "time", ""] {
                ui.strong(h);
            }
            ui.end_row();
            for (i, r) in rows.iter().enumerate() {
                ui.label((i + 1).to_string());
                ui.label(&r.label);
                ui.label(format!("{:.1}% ± {:.1}", 100.0 * r.score, 100.0 * r.std));
                ui.label(r.parameters.to_string());
                ui.label(format!("{:.2e}", r.setting.lr));
                ui.label(format!("{:.0}s", r.seconds));
                if ui
                    .add_enabled(r.tuned.is_some(), egui::Button::new("Keep"))
                    .on_hover_text("use this method and its tuned model")
                    .clicked()
                {
                    app.keep_compared(r);
                }
                ui.end_row();
            }
        });
}

/// The run's settings: method and options, epochs, batch, Auto, learning rate, seed, shots.
fn settings_ui(s: &mut super::project::Settings, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        let label = ui.label("Method");
        egui::ComboBox::from_id_salt("method")
            .selected_text(s.method.name())
            .show_ui(ui, |ui| {
                for m in Method::ALL {
                    let item = ui
                        .selectable_value(&mut s.method, m, m.name())
                        .on_hover_text(m.description());
                    if item.changed() {
                        // Another method: its own options and its recipe's learning rate (a rate chosen for
                        // the previous method, say by "Retry", is not this one's).
                        s.options = MethodOptions::defaults(m);
                        s.lr = None;
                    }
                }
            })
            .response
            .labelled_by(label.id);
        if ui.button("Reset to defaults").clicked() {
            // The method's settings go back to the papers'; the data split (shots, seed) stays the user's.
            let (shots, seed) = (s.shots, s.seed);
            *s = super::project::Settings::defaults(s.method);
            s.shots = shots;
            s.seed = seed;
        }
    });
    ui.label(egui::RichText::new(s.method.description()).weak());
    method_options_ui(ui, s.method, &mut s.options);
    let recipe = super::project::Settings::defaults(s.method);
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut s.epochs, 1..=200).text("epochs"));
        if s.epochs != recipe.epochs {
            ui.label(RichText::new(format!("(default {})", recipe.epochs)).weak());
        }
    });
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut s.batch, 1..=128).text("batch"));
        if s.batch != recipe.batch {
            ui.label(RichText::new(format!("(default {})", recipe.batch)).weak());
        }
    });
    ui.checkbox(&mut s.auto, "Auto (choose learning rate)")
        .on_hover_text(
        "Before training, score the papers' grid of learning rates and weight decays by k-fold \
             cross-validation over your images (successive halving, at most about 6 default runs), \
             then train the best on all of them.",
    );
    ui.add_enabled_ui(!s.auto, |ui| {
        ui.horizontal(|ui| {
            let mut custom = s.lr.is_some();
            ui.checkbox(&mut custom, "learning rate");
            if custom {
                let mut lr = s.lr.unwrap_or(1e-3);
                ui.add(egui::Slider::new(&mut lr, 1e-5..=10.0).logarithmic(true));
                s.lr = Some(lr);
            } else {
                s.lr = None;
                ui.label("(the method's default)");
            }
        })
    });
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut s.seed).prefix("seed "));
        let mut limit = s.shots.is_some();
        let label = ui.checkbox(&mut limit, "shots per class");
        if limit {
            let mut k = s.shots.unwrap_or(4);
            ui.add(egui::DragValue::new(&mut k).range(1..=1000))
                .labelled_by(label.id);
            s.shots = Some(k);
            ui.label("(the other images validate)");
        } else {
            s.shots = None;
        }
    });
}

fn tune_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    // A run uses the settings it started with: they are locked until it ends.
    let busy = app.training || app.comparing;
    if busy {
        ui.label(RichText::new("the run uses these settings: they unlock when it ends").weak());
    }
    ui.add_enabled_ui(!busy, |ui| settings_ui(&mut app.project.settings, ui));
    ui.separator();
    ui.horizontal(|ui| {
        let ready = app.backbone_info.is_some() && app.backbone.loading.is_none() && !app.training;
        if ui.add_enabled(ready, egui::Button::new("Train")).clicked() {
            app.start_training();
        }
        if ui
            .add_enabled(app.training, egui::Button::new("Stop"))
            .clicked()
        {
            app.stop_training();
        }
        let model = app.trained_classes.is_some();
        if ui
            .add_enabled(ready && model, egui::Button::new("Continue training"))
            .on_hover_text(
                "Train on from the current model (after moving or leaving out the images it gets wrong): the \
                 same method and classes, the learning rate the last search chose, no new search.",
            )
            .clicked()
        {
            app.continue_training();
        }
        let text = match app.seconds_left() {
            Some(s) => format!(
                "{:.0}% · {} left",
                100.0 * app.progress,
                crate::words::duration_words(s)
            ),
            None => format!("{:.0}%", 100.0 * app.progress),
        };
        ui.add(egui::ProgressBar::new(app.progress).text(text));
    });
    if let (Some(lr), false) = (app.retry_lr, app.training) {
        ui.horizontal(|ui| {
            ui.colored_label(Color32::from_rgb(220, 80, 60), "the last run diverged");
            if ui
                .add_enabled(app.backbone_info.is_some(), egui::Button::new(format!("Retry with lr {lr:.2e}")))
                .on_hover_text("Train again with the learning rate divided by 10 (Auto off: this learning rate is used as it is)")
                .clicked()
            {
                app.retry_with_lr(lr);
            }
        });
    }
    if let Some((done, total)) = app.decoding {
        ui.horizontal(|ui| {
            ui.label("decoding images");
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .text(format!("{done} of {total}")),
            );
        });
    }
    if let Some((done, total)) = app.search_progress {
        ui.label(format!(
            "choosing the learning rate: {done} of {total} settings scored; then the chosen one trains on all images"
        ));
    }
    selection_ui(app, ui);
    compare_ui(app, ui);
    let loss: Vec<[f64; 2]> = app.curve.iter().map(|(x, l, _)| [*x, *l]).collect();
    let acc: Vec<[f64; 2]> = app.curve.iter().map(|(x, _, a)| [*x, *a]).collect();
    let val: Vec<[f64; 2]> = app.val_curve.iter().map(|(x, v)| [*x, *v]).collect();
    ui.columns(2, |cols| {
        cols[0].label("loss per step");
        Plot::new("loss")
            .height(180.0)
            .legend(Legend::default())
            .show(&mut cols[0], |p| {
                p.line(Line::new("loss", loss));
            });
        cols[1].label("accuracy: train batch per step, validation per epoch");
        Plot::new("accuracy")
            .height(180.0)
            .include_y(0.0)
            .include_y(1.0)
            .legend(Legend::default())
            .show(&mut cols[1], |p| {
                p.line(Line::new("train accuracy", acc));
                if !val.is_empty() {
                    p.line(Line::new("validation accuracy", val));
                }
            });
    });
    if let Some(ev) = &app.evaluation {
        ui.label(
            RichText::new(format!(
                "validation accuracy {:.1}% on {} images",
                100.0 * ev.accuracy,
                ev.images
            ))
            .strong(),
        );
        egui::Grid::new("confusion").striped(true).show(ui, |ui| {
            ui.label("true \\ predicted");
            for c in &ev.classes {
                ui.label(c);
            }
            ui.label("accuracy");
            ui.end_row();
            for (i, row) in ev.confusion.iter().enumerate() {
                ui.label(&ev.classes[i]);
                for v in row {
                    ui.label(v.to_string());
                }
                ui.label(format!("{:.0}%", 100.0 * ev.per_class[i]));
                ui.end_row();
            }
        });
    }
    mistakes_ui(app, ui);
}

/// What a click on a mistake asks for.
enum MistakeAction {
    Move(std::path::PathBuf, usize),
    Disable(std::path::PathBuf),
    Map(std::path::PathBuf),
}

/// The validation images the model gets wrong, most confident first: move one to another class, leave it out, or
/// see its heat-map; then "Continue training".
fn mistakes_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    let Some(ev) = &app.evaluation else {
        return;
    };
    if ev.mistakes.is_empty() {
        return;
    }
    let (mistakes, classes) = (ev.mistakes.clone(), ev.classes.clone());
    ui.separator();
    ui.label(
        RichText::new(format!(
            "Learn from mistakes: {} validation image{} the model gets wrong, most confident first",
            mistakes.len(),
            if mistakes.len() == 1 { "" } else { "s" }
        ))
        .strong(),
    );
    ui.label(
        RichText::new(
            "Move an image to its right class or leave it out, then \"Continue training\" from this model.",
        )
        .weak(),
    );
    // Classes by the evaluation's names (the project's may have changed since).
    let names: Vec<String> = app.project.classes.iter().map(|c| c.name.clone()).collect();
    let index_of = |name: &str| names.iter().position(|c| c == name);
    let targets: Vec<(usize, String)> = classes
        .iter()
        .filter_map(|c| index_of(c).map(|i| (i, c.clone())))
        .collect();
    let ctx = ui.ctx().clone();
    let mut action = None;
    egui::ScrollArea::vertical()
        .id_salt("mistakes")
        .max_height(360.0)
        .show(ui, |ui| {
            for m in &mistakes {
                let name = |i: usize| classes.get(i).cloned().unwrap_or_default();
                ui.horizontal(|ui| {
                    if let Some(tex) = app.thumbnail(&ctx, &m.path) {
                        ui.add_sized(
                            [56.0, 56.0],
                            egui::Image::new(&tex).max_size(egui::vec2(56.0, 56.0)),
                        );
                    }
                    ui.vertical(|ui| {
                        ui.label(super::file_label(&m.path))
                            .on_hover_text(m.path.display().to_string());
                        ui.label(format!(
                            "labelled {}, taken for {} ({:.0}%)",
                            name(m.truth),
                            name(m.predicted),
                            100.0 * m.confidence
                        ));
                    });
                    if let Some(i) = index_of(&name(m.predicted)) {
                        if ui
                            .button(format!("Move to {}", name(m.predicted)))
                            .clicked()
                        {
                            action = Some(MistakeAction::Move(m.path.clone(), i));
                        }
                    }
                    ui.menu_button("Move to...", |ui| {
                        for (i, c) in &targets {
                            if ui.button(c).clicked() {
                                action = Some(MistakeAction::Move(m.path.clone(), *i));
                            }
                        }
                    });
                    if ui.button("Leave out").clicked() {
                        action = Some(MistakeAction::Disable(m.path.clone()));
                    }
                    if ui.button("Show map").clicked() {
                        action = Some(MistakeAction::Map(m.path.clone()));
                    }
                });
            }
        });
    match action {
        Some(MistakeAction::Move(path, to)) => app.move_image(&path, to),
        Some(MistakeAction::Disable(path)) => app.disable_image(&path),
        Some(MistakeAction::Map(path)) => {
            app.attention.image = Some(path);
            app.tab = Tab::Attention;
            app.request_attention();
        }
        None => {}
    }
}

fn attention_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    if app.attention_stale {
        ui.colored_label(
            Color32::from_rgb(220, 150, 60),
            "These maps were made with the previous model: Redraw (or Show grid) draws the current one's.",
        );
    }
    // (class, path) of every image, for the picker.
    let images: Vec<(String, std::path::PathBuf)> = app
        .project
        .classes
        .iter()
        .flat_map(|c| c.images.iter().map(|i| (c.name.clone(), i.path.clone())))
        .collect();
    let ctx = ui.ctx().clone();
    // Prompt maps need a model with prompts; the layer applies to CLS and prompt maps only.
    let prompts = app.model_method.is_some_and(|m| m.uses_prompts());
    if !prompts && app.attention.mode == "prompt" {
        app.attention.mode = "cls".into();
    }
    let per_layer = matches!(app.attention.mode.as_str(), "cls" | "prompt");
    let mut changed = false;
    ui.horizontal(|ui| {
        let label = ui.label("Image");
        let selected = app
            .attention
            .image
            .as_ref()
            .and_then(|p| images.iter().find(|(_, q)| q == p))
            .map(|(c, p)| format!("{c} · {}", super::file_label(p)))
            .unwrap_or_else(|| "pick an image".into());
        egui::ComboBox::from_id_salt("attention image")
            .selected_text(selected)
            .height(420.0)
            .show_ui(ui, |ui| {
                for (class, p) in &images {
                    ui.horizontal(|ui| {
                        if let Some(tex) = app.thumbnail(&ctx, p) {
                            ui.add_sized(
                                [32.0, 32.0],
                                egui::Image::new(&tex).max_size(egui::vec2(32.0, 32.0)),
                            );
                        }
                        let text = format!("{class} · {}", super::file_label(p));
                        changed |= ui
                            .selectable_value(&mut app.attention.image, Some(p.clone()), text)
                            .changed();
                    });
                }
            })
            .response
            .labelled_by(label.id);
        let label = ui.label("Map");
        let modes: [(&str, &str, Option<&str>); 4] = [
            ("cls", "CLS to patches (one layer)", None),
            (
                "prompt",
                "prompts to patches (one layer)",
                (!prompts).then_some("needs a trained model whose method has prompts (VPT)"),
            ),
            ("rollout", "rollout (all layers)", None),
            (
                "grad-rollout",
                "gradient rollout (for the predicted class)",
                None,
            ),
        ];
        let shown = modes
            .iter()
            .find(|m| m.0 == app.attention.mode)
            .map(|m| m.1)
            .unwrap_or("?");
        egui::ComboBox::from_id_salt("attention mode")
            .selected_text(shown)
            .show_ui(ui, |ui| {
                for (mode, text, why_not) in modes {
                    let item = ui.add_enabled(
                        why_not.is_none(),
                        egui::Button::selectable(app.attention.mode == mode, text),
                    );
                    if let Some(why) = why_not {
                        item.clone().on_disabled_hover_text(why);
                    }
                    if item.clicked() {
                        app.attention.mode = mode.into();
                        changed = true;
                    }
                }
            })
            .response
            .labelled_by(label.id);
        let heads: Vec<String> = ["mean", "max", "min"]
            .into_iter()
            .map(String::from)
            .chain((0..app.backbone_heads).map(|h| h.to_string()))
            .collect();
        changed |= choice(ui, "Heads", &mut app.attention.head, &heads);
        let colormaps = ["inferno", "viridis", "jet"].map(String::from);
        changed |= choice(ui, "Colours", &mut app.attention.colormap, &colormaps);
    });
    ui.horizontal(|ui| {
        ui.add_enabled_ui(per_layer, |ui| {
            let mut last = app.attention.layer == usize::MAX;
            changed |= ui.checkbox(&mut last, "last layer").changed();
            if last {
                app.attention.layer = usize::MAX;
            } else {
                if app.attention.layer == usize::MAX {
                    app.attention.layer = 0;
                }
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut app.attention.layer)
                            .range(0..=64)
                            .prefix("layer "),
                    )
                    .changed();
            }
        })
        .response
        .on_disabled_hover_text("rollouts combine every layer");
        ui.add_enabled_ui(app.attention.mode == "prompt", |ui| {
            let mut all = app.attention.prompt.is_none();
            changed |= ui.checkbox(&mut all, "mean over prompts").changed();
            if all {
                app.attention.prompt = None;
            } else {
                let mut k = app.attention.prompt.unwrap_or(0);
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut k)
                            .range(0..=200)
                            .prefix("prompt "),
                    )
                    .changed();
                app.attention.prompt = Some(k);
            }
        })
        .response
        .on_disabled_hover_text("for prompt maps");
        let label = ui.label("Opacity");
        changed |= ui
            .add(egui::Slider::new(&mut app.attention.alpha, 0.0..=1.0).show_value(false))
            .labelled_by(label.id)
            .changed();
        if ui
            .button("Redraw")
            .on_hover_text("Draw the map again (after training, or a changed image file)")
            .clicked()
        {
            changed = true;
        }
    });
    if changed {
        app.request_attention();
    }
    match &app.attention_images {
        Some((before, after)) => {
            if let Some((class, p)) = &app.attention_prediction {
                ui.label(
                    RichText::new(format!("the tuned model says {class} ({:.1}%)", 100.0 * p))
                        .strong(),
                );
            }
            legend_ui(ui, &app.attention.colormap);
            // The maps fill the width: two columns, square.
            let side = ((ui.available_width() - 24.0) / 2.0).clamp(160.0, 720.0);
            let size = egui::vec2(side, side);
            let mut zoom = None;
            let map = |ui: &mut egui::Ui, t: &egui::TextureHandle, what: &str| {
                ui.add(
                    egui::Image::new(t)
                        .fit_to_exact_size(size)
                        .alt_text(format!("{what} map"))
                        .sense(egui::Sense::click()),
                )
                .on_hover_text("click to zoom")
                .clicked()
            };
            ui.columns(2, |cols| {
                // The backbone alone has no prompts: in the prompt mode its panel is the CLS map, and says so.
                cols[0].label(if app.attention.mode == "prompt" {
                    "before tuning (backbone only, which has no prompts): CLS to patches"
                } else {
                    "before tuning (backbone only)"
                });
                if map(&mut cols[0], before, "before tuning") {
                    zoom = Some(("before tuning", before.clone()));
                }
                cols[1].label("after tuning");
                match after {
                    Some(a) => {
                        if map(&mut cols[1], a, "after tuning") {
                            zoom = Some(("after tuning", a.clone()));
                        }
                    }
                    None => {
                        cols[1].label("train or import a tuned file to compare");
                    }
                }
            });
            if zoom.is_some() {
                app.zoomed = zoom.map(|(t, tex)| (t.to_string(), tex));
            }
        }
        None => {
            ui.label("Pick an image to see where the model looks.");
        }
    }
    grid_ui(app, ui);
    zoom_ui(app, ui);
}

/// A clicked map, as large as the window allows, until closed.
fn zoom_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    let Some((title, tex)) = app.zoomed.clone() else {
        return;
    };
    let mut open = true;
    let side = (ui.ctx().content_rect().height() - 80.0).max(200.0);
    egui::Window::new(format!("map, {title}"))
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .show(ui.ctx(), |ui| {
            ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(side, side)));
        });
    if !open {
        app.zoomed = None;
    }
}

/// Many maps at once: a class's images, or the validation images the model gets wrong.
fn grid_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.separator();
    let mut sources: Vec<String> = app.project.classes.iter().map(|c| c.name.clone()).collect();
    if app
        .evaluation
        .as_ref()
        .is_some_and(|e| !e.mistakes.is_empty())
    {
        sources.insert(0, super::GRID_MISTAKES.to_string());
    }
    if !sources.contains(&app.grid_source) {
        app.grid_source = sources.first().cloned().unwrap_or_default();
    }
    ui.horizontal(|ui| {
        choice(ui, "Grid of maps for", &mut app.grid_source, &sources);
        let busy = app.training || app.comparing || app.selftesting || app.grid_pending;
        let ready = !busy && !app.grid_source.is_empty();
        if ui
            .add_enabled(ready, egui::Button::new("Show grid"))
            .on_hover_text(format!(
                "the maps of up to {} images with the settings above",
                super::GRID_MAX
            ))
            .clicked()
        {
            app.request_grid();
        }
    });
    if app.attention_grid.is_empty() {
        return;
    }
    // Each image's class in the project, beside the model's.
    let labels: std::collections::HashMap<&std::path::Path, &str> = app
        .project
        .classes
        .iter()
        .flat_map(|c| {
            c.images
                .iter()
                .map(move |i| (i.path.as_path(), c.name.as_str()))
        })
        .collect();
    egui::ScrollArea::vertical()
        .id_salt("grid")
        .max_height(480.0)
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for (path, tex, pred) in &app.attention_grid {
                    ui.allocate_ui(egui::vec2(158.0, 196.0), |ui| {
                        ui.vertical(|ui| {
                            ui.add(
                                egui::Image::new(tex).fit_to_exact_size(egui::vec2(150.0, 150.0)),
                            )
                            .on_hover_text(path.display().to_string());
                            ui.label(super::file_label(path));
                            let labelled = labels.get(path.as_path()).copied().unwrap_or("?");
                            match pred {
                                Some((class, p)) => ui.label(format!(
                                    "labelled {labelled}, model: {class} ({:.0}%)",
                                    100.0 * p
                                )),
                                None => ui.label(format!("labelled {labelled}")),
                            };
                        });
                    });
                }
            });
        });
}

/// The colour scale of the maps: low to high attention, each map normalised to its own maximum.
fn legend_ui(ui: &mut egui::Ui, colormap: &str) {
    let cm = crate::viz::Colormap::from_name(colormap).unwrap_or(crate::viz::Colormap::Inferno);
    ui.horizontal(|ui| {
        ui.label("low");
        let (rect, _) = ui.allocate_exact_size(egui::vec2(200.0, 12.0), egui::Sense::hover());
        let steps = 50;
        for i in 0..steps {
            let [r, g, b] = cm.rgb(i as f32 / (steps - 1) as f32);
            let x0 = rect.left() + rect.width() * i as f32 / steps as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / steps as f32;
            let c = Color32::from_rgb((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8);
            ui.painter().rect_filled(
                egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1, rect.bottom())),
                0.0,
                c,
            );
        }
        ui.label("high attention (each map scaled to its own maximum)");
    });
}

fn try_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        if ui.button("Pick images...").clicked() {
            app.ask_file(FilePurpose::TryImages);
        }
        ui.label("or drop or paste images here");
        if ui
            .add_enabled(
                !app.predictions.is_empty(),
                egui::Button::new("Clear results"),
            )
            .clicked()
        {
            app.predictions.clear();
        }
    });
    // Typed or pasted paths, as in the Project tab: the way in where no file dialog can open.
    ui.horizontal(|ui| {
        let label = ui.label("Classify a path:");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut app.try_path)
                    .hint_text("an image or a folder of images")
                    .desired_width(360.0),
            )
            .labelled_by(label.id);
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Classify").clicked() || entered {
            app.predict_typed_path();
        }
    });
    let pasted = pasted_paths(ui);
    if !pasted.is_empty() {
        app.predict(super::files::image_files_in(&pasted));
    }
    if app.predictions_stale {
        ui.colored_label(
            Color32::from_rgb(220, 150, 60),
            "The results below were made with the previous model: classify the images again, or Clear results.",
        );
    }
    ui.horizontal(|ui| {
        let label = ui
            .label("Call it unknown below")
            .on_hover_text("When the top class is less likely than this, Try says \"unknown\" instead");
        ui.add(egui::Slider::new(&mut app.unknown_below, 0.0..=1.0).show_value(false))
            .labelled_by(label.id);
        ui.label(format!("{:.0}%", 100.0 * app.unknown_below));
        let suggested = app
            .evaluation
            .as_ref()
            .and_then(|e| e.suggested_threshold(0.95));
        match suggested {
            Some(t) => {
                if ui
                    .button(format!("Suggested: {:.0}%", 100.0 * t))
                    .on_hover_text(
                        "The confidence that keeps 95% of the validation images the model gets right",
                    )
                    .clicked()
                {
                    app.unknown_below = t;
                }
            }
            None => {
                ui.label("(a run with validation images suggests a value)");
            }
        }
    });
    let dropped: Vec<std::path::PathBuf> = ui.ctx().input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect()
    });
    app.predict(dropped);
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (path, ranked, tex) in &app.predictions {
            ui.horizontal(|ui| {
                ui.add(egui::Image::new(tex).max_width(160.0));
                ui.vertical(|ui| {
                    ui.label(RichText::new(super::verdict(ranked, app.unknown_below)).strong());
                    ui.label(path.display().to_string());
                    for (name, p) in ranked.iter().take(5) {
                        ui.add(
                            egui::ProgressBar::new(*p)
                                .text(format!("{name} {:.1}%", 100.0 * p))
                                .desired_width(260.0),
                        );
                    }
                });
            });
            ui.separator();
        }
    });
}

fn export_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.label(match &app.trained_classes {
        Some(c) => format!("current tuning: {} classes ({})", c.len(), c.join(", ")),
        None => "no tuning yet: train one, or import a tuned file".into(),
    });
    ui.horizontal(|ui| {
        let model = app.trained_classes.is_some();
        if export_button(ui, model, "Export tuned file...", None) {
            app.ask_file(FilePurpose::ExportTuned);
        }
        let hover = "One .onnx file with the classes and preprocessing in its metadata; vitune runs it with an \
                     ONNX runtime and compares it with its own predictions before keeping it";
        let label = "Export ONNX model (runs anywhere)...";
        if export_button(ui, model, label, Some(hover)) {
            app.ask_file(FilePurpose::ExportOnnx);
        }
        let mergeable = app.model_method.is_some_and(|m| m.merges_into_vit());
        let hover = if model && !mergeable {
            "This model's method adds prompt tokens or branches to the ViT, so it is not a plain timm ViT: \
             export it as ONNX"
        } else {
            "For linear, BitFit, LoRA, SSF and full fine-tuning: the backbone with the tuning folded in, \
             under timm's names, and a config.json beside it that timm reads"
        };
        if export_button(ui, model && mergeable, "Export merged timm checkpoint...", Some(hover)) {
            app.ask_file(FilePurpose::ExportTimm);
        }
        if ui.button("Import tuned file...").clicked() {
            app.ask_file(FilePurpose::ImportTuned);
        }
    });
    if let Some(line) = &app.last_onnx_export {
        ui.label(line);
    }
}

/// An export button, enabled when there is a model; whether it was clicked.
fn export_button(ui: &mut egui::Ui, enabled: bool, label: &str, hover: Option<&str>) -> bool {
    let mut button = ui.add_enabled(enabled, egui::Button::new(label));
    if let Some(h) = hover {
        button = button.on_hover_text(h).on_disabled_hover_text(h);
    }
    button.clicked()
}

/// A labelled choice among `options` (the label before it); whether it changed.
fn choice(ui: &mut egui::Ui, label: &str, value: &mut String, options: &[String]) -> bool {
    let mut changed = false;
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(label)
        .selected_text(value.clone())
        .show_ui(ui, |ui| {
            for o in options {
                changed |= ui.selectable_value(value, o.clone(), o).changed();
            }
        })
        .response
        .labelled_by(l.id);
    changed
}
