//! The Try tab: new images through the tuned model, their top classes.

use super::*;

pub(super) fn try_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        if ui.button("Pick images...").clicked() {
            app.ask_file(FilePurpose::TryImages);
        }
        ui.label("or drop or paste images here");
        if ui
            .add_enabled(
                !app.trial.predictions.is_empty(),
                egui::Button::new("Clear results"),
            )
            .clicked()
        {
            app.trial.predictions.clear();
        }
    });
    // Typed or pasted paths, as in the Project tab: the way in where no file dialog can open.
    ui.horizontal(|ui| {
        let label = ui.label("Classify a path:");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut app.trial.path)
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
        app.predict(crate::app::files::image_files_in(&pasted));
    }
    if app.trial.stale {
        ui.colored_label(
            Color32::from_rgb(220, 150, 60),
            "The results below were made with the previous model: classify the images again, or Clear results.",
        );
    }
    ui.horizontal(|ui| {
        let label = ui
            .label("Call it unknown below")
            .on_hover_text("When the top class is less likely than this, Try says \"unknown\" instead");
        ui.add(egui::Slider::new(&mut app.trial.unknown_below, 0.0..=1.0).show_value(false))
            .labelled_by(label.id);
        ui.label(format!("{:.0}%", 100.0 * app.trial.unknown_below));
        let suggested = app
            .run.evaluation
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
                    app.trial.unknown_below = t;
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
        for (path, ranked, tex) in &app.trial.predictions {
            ui.horizontal(|ui| {
                ui.add(egui::Image::new(tex).max_width(160.0));
                ui.vertical(|ui| {
                    ui.label(
                        RichText::new(crate::app::verdict(ranked, app.trial.unknown_below))
                            .strong(),
                    );
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
