//! The Tune tab: the method and its settings, the run's curves, the search, the comparison and the mistakes.

use super::*;
use crate::records::OptimizerKind;
use crate::select::Trial;

pub(super) fn tune_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    // A run uses the settings it started with: they are locked until it ends.
    let busy = app.run.training || app.run.comparing;
    if busy {
        ui.label(RichText::new("the run uses these settings: they unlock when it ends").weak());
    }
    ui.add_enabled_ui(!busy, |ui| settings_ui(&mut app.project.settings, ui));
    ui.separator();
    ui.horizontal(|ui| {
        let ready = app.backbone_info.is_some() && app.backbone.loading.is_none() && !app.run.training;
        if ui.add_enabled(ready, egui::Button::new("Train")).clicked() {
            app.start_training();
        }
        if ui
            .add_enabled(app.run.training, egui::Button::new("Stop"))
            .clicked()
        {
            app.stop_training();
        }
        let model = app.run.trained_classes.is_some();
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
                100.0 * app.run.progress,
                crate::words::duration_words(s)
            ),
            None => format!("{:.0}%", 100.0 * app.run.progress),
        };
        ui.add(egui::ProgressBar::new(app.run.progress).text(text));
    });
    if let (Some(lr), false) = (app.run.retry_lr, app.run.training) {
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
    if let Some((done, total)) = app.run.decoding {
        ui.horizontal(|ui| {
            ui.label("decoding images");
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .text(format!("{done} of {total}")),
            );
        });
    }
    if let Some(s) = &app.run.search {
        ui.label(format!(
            "choosing the learning rate: {} of {} settings scored; then the chosen one trains on all images",
            s.scored, s.total
        ));
    }
    selection_ui(app, ui);
    compare_ui(app, ui);
    let loss: Vec<[f64; 2]> = app.run.curve.iter().map(|(x, l, _)| [*x, *l]).collect();
    let acc: Vec<[f64; 2]> = app.run.curve.iter().map(|(x, _, a)| [*x, *a]).collect();
    let val: Vec<[f64; 2]> = app.run.val_curve.iter().map(|(x, v)| [*x, *v]).collect();
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
    if let Some(ev) = &app.run.evaluation {
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

/// The run's settings: method and options, epochs, batch, Auto, learning rate, seed, shots.
pub(super) fn settings_ui(s: &mut crate::app::project::Settings, ui: &mut egui::Ui) {
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
            *s = crate::app::project::Settings::defaults(s.method);
            s.shots = shots;
            s.seed = seed;
        }
    });
    ui.label(egui::RichText::new(s.method.description()).weak());
    method_options_ui(ui, s.method, &mut s.options);
    let recipe = crate::app::project::Settings::defaults(s.method);
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

/// The method's own options, each as its file declares it: a slider, a choice or letters.
pub(super) fn method_options_ui(ui: &mut egui::Ui, method: Method, o: &mut MethodOptions) {
    let specs = method.spec().options();
    if specs.is_empty() {
        ui.label("no options");
    }
    for spec in specs {
        option_ui(ui, spec, o);
    }
}

fn option_ui(ui: &mut egui::Ui, spec: &OptionSpec, o: &mut MethodOptions) {
    match spec.kind {
        OptionKind::Count { min, max, get, set } => {
            let mut v = get(o);
            let slider = egui::Slider::new(&mut v, min..=max)
                .logarithmic(max >= 100 * min.max(1))
                .text(spec.label);
            if ui.add(slider).on_hover_text(spec.help).changed() {
                set(o, v);
            }
        }
        OptionKind::Real {
            min,
            max,
            open,
            log,
            get,
            set,
        } => {
            // An open range's end is not a value: the slider stops short of it.
            let top = if open { max - 0.05 * (max - min) } else { max };
            let mut v = get(o);
            let slider = egui::Slider::new(&mut v, min..=top)
                .logarithmic(log)
                .text(spec.label);
            if ui.add(slider).on_hover_text(spec.help).changed() {
                set(o, v);
            }
        }
        OptionKind::Choice { choices, get, set } => {
            ui.horizontal(|ui| {
                ui.label(spec.label).on_hover_text(spec.help);
                for &c in choices {
                    if ui.selectable_label(get(o) == c, c).clicked() {
                        set(o, c);
                    }
                }
            });
        }
        OptionKind::Letters { alphabet, get, set } => {
            ui.horizontal(|ui| {
                ui.label(spec.label).on_hover_text(spec.help);
                let now = get(o);
                for c in alphabet.chars() {
                    let mut on = now.contains(c);
                    if ui.checkbox(&mut on, c.to_string()).changed() {
                        let next: String = alphabet
                            .chars()
                            .filter(|&x| if x == c { on } else { now.contains(x) })
                            .collect();
                        // At least one letter stays.
                        if !next.is_empty() {
                            set(o, &next);
                        }
                    }
                }
            });
        }
    }
}

/// The search's table: while it runs, each setting as it is scored (ranked as the search ranks); after,
/// the last search's every setting, the chosen one marked.
pub(super) fn selection_ui(app: &VituneApp, ui: &mut egui::Ui) {
    if let Some(s) = &app.run.search {
        if s.trials.is_empty() {
            return;
        }
        // As the search's table ranks them.
        let mut rows: Vec<&Trial> = s.trials.iter().collect();
        rows.sort_by(|a, b| s.rank_by.compare_trials(a, b));
        egui::CollapsingHeader::new(format!(
            "Search under way: {} settings, each at the last rung it reached",
            s.trials.len()
        ))
        .id_salt("search so far")
        .default_open(true)
        .show(ui, |ui| {
            search_grid(ui, "search so far grid", |ui| {
                for t in rows {
                    trial_cells(ui, t, s.optimizer);
                    ui.label(format!("rung {}", t.rung + 1));
                    ui.end_row();
                }
            });
        });
        return;
    }
    let Some(sel) = &app.run.selection else {
        return;
    };
    egui::CollapsingHeader::new(format!(
        "Search: {} chosen ({:.1}% ± {:.1}, {})",
        sel.chosen.describe(),
        100.0 * sel.score,
        100.0 * sel.score_std,
        sel.protocol
    ))
    .id_salt("search table")
    .show(ui, |ui| {
        search_grid(ui, "search grid", |ui| {
            for t in &sel.table {
                trial_cells(ui, t, sel.optimizer);
                ui.label(if t.candidate == sel.chosen {
                    "chosen"
                } else if t.diverged {
                    "diverged"
                } else if t.candidate == sel.default {
                    "recipe"
                } else {
                    ""
                });
                ui.end_row();
            }
        });
    });
}

/// A search table's grid: the header, then `rows`.
fn search_grid(ui: &mut egui::Ui, id: &str, rows: impl FnOnce(&mut egui::Ui)) {
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        for h in [
            "lr",
            "wd",
            "optimizer",
            "also",
            "accuracy",
            "loss",
            "epochs",
            "",
        ] {
            ui.strong(h);
        }
        ui.end_row();
        rows(ui);
    });
}

/// One setting's cells (all but the last column); `optimizer` is the recipe's, for a setting without its own.
fn trial_cells(ui: &mut egui::Ui, t: &Trial, optimizer: OptimizerKind) {
    let c = &t.candidate;
    ui.label(format!("{:.2e}", c.lr));
    ui.label(format!("{:.0e}", c.weight_decay));
    ui.label(c.optimizer.unwrap_or(optimizer).name());
    let mut also: Vec<String> = c
        .prompts
        .map(|p| format!("{p} prompts"))
        .into_iter()
        .collect();
    if c.warm_head {
        also.push("warm head".into());
    }
    ui.label(also.join(", "));
    ui.label(format!("{:.1}% ± {:.1}", 100.0 * t.mean, 100.0 * t.std));
    ui.label(t.loss.map_or_else(|| "-".into(), |l| format!("{l:.3}")));
    ui.label(t.epochs.to_string());
}

/// "Compare methods": every method scored on the project's images, ranked, each one click from being kept.
pub(super) fn compare_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        let ready = app.backbone_info.is_some()
            && app.backbone.loading.is_none()
            && !app.run.training
            && !app.run.comparing;
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
        if app.run.comparing {
            if ui.button("Stop").clicked() {
                app.stop_training();
            }
            ui.spinner();
        }
    });
    let Some(rows) = app.run.comparison.clone() else {
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

/// What a click on a mistake asks for.
pub(super) enum MistakeAction {
    Move(std::path::PathBuf, usize),
    Disable(std::path::PathBuf),
    Map(std::path::PathBuf),
}

/// The validation images the model gets wrong, most confident first: move one to another class, leave it out, or
/// see its heat-map; then "Continue training".
pub(super) fn mistakes_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    let Some(ev) = &app.run.evaluation else {
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
                        ui.label(crate::app::file_label(&m.path))
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
