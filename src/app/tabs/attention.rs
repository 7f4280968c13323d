//! The Attention tab: CLS and prompt heat-maps of one image or a grid, before and after tuning.

use super::*;

pub(super) fn attention_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    if app.maps.stale {
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
            .map(|(c, p)| format!("{c} · {}", crate::app::file_label(p)))
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
                        let text = format!("{class} · {}", crate::app::file_label(p));
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
    match &app.maps.images {
        Some((before, after)) => {
            if let Some((class, p)) = &app.maps.prediction {
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
                app.maps.zoomed = zoom.map(|(t, tex)| (t.to_string(), tex));
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
pub(super) fn zoom_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    let Some((title, tex)) = app.maps.zoomed.clone() else {
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
        app.maps.zoomed = None;
    }
}

/// Many maps at once: a class's images, or the validation images the model gets wrong.
pub(super) fn grid_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.separator();
    let mut sources: Vec<String> = app.project.classes.iter().map(|c| c.name.clone()).collect();
    if app
        .run
        .evaluation
        .as_ref()
        .is_some_and(|e| !e.mistakes.is_empty())
    {
        sources.insert(0, crate::app::GRID_MISTAKES.to_string());
    }
    if !sources.contains(&app.maps.grid_source) {
        app.maps.grid_source = sources.first().cloned().unwrap_or_default();
    }
    ui.horizontal(|ui| {
        choice(ui, "Grid of maps for", &mut app.maps.grid_source, &sources);
        let busy =
            app.run.training || app.run.comparing || app.selftesting || app.maps.grid_pending;
        let ready = !busy && !app.maps.grid_source.is_empty();
        if ui
            .add_enabled(ready, egui::Button::new("Show grid"))
            .on_hover_text(format!(
                "the maps of up to {} images with the settings above",
                crate::app::GRID_MAX
            ))
            .clicked()
        {
            app.request_grid();
        }
    });
    if app.maps.grid.is_empty() {
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
                for (path, tex, pred) in &app.maps.grid {
                    ui.allocate_ui(egui::vec2(158.0, 196.0), |ui| {
                        ui.vertical(|ui| {
                            ui.add(
                                egui::Image::new(tex).fit_to_exact_size(egui::vec2(150.0, 150.0)),
                            )
                            .on_hover_text(path.display().to_string());
                            ui.label(crate::app::file_label(path));
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
pub(super) fn legend_ui(ui: &mut egui::Ui, colormap: &str) {
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
