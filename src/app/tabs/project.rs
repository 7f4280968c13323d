//! The Project tab: the backbone, the classes and their images.

use super::*;

pub(super) fn project_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    crate::app::backbone::backbone_ui(app, ui);
    ui.horizontal(|ui| {
        ui.label("GPU memory:");
        let mut want = app.memory;
        ui.checkbox(&mut want.f16_weights, "f16 weights")
            .on_hover_text("Store the frozen backbone weights in half precision: half their memory, compute stays f32 (needs SHADER_F16)");
        ui.checkbox(&mut want.fused_attention, "fused attention")
            .on_hover_text("Flash-style attention that never stores the token-by-token score matrix while training; maps still use the full one");
        if want != app.memory {
            app.memory = want;
            app.send(crate::app::worker::Command::Memory(want));
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
            let recent = crate::app::project::recent_projects();
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
pub(super) fn pasted_paths(ui: &egui::Ui) -> Vec<std::path::PathBuf> {
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
