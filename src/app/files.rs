//! Choosing files: the platform's dialog first, and where it cannot open (no xdg-desktop-portal and no zenity, as
//! on minimal Linux desktops and under Xvfb) vitune's own file browser, said once. Every open, save, export and
//! import asks through here with a purpose, and the answer is applied by the purpose, whichever dialog gave it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::VituneApp;

/// What a chosen file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilePurpose {
    OpenProject,
    SaveProject,
    /// Images (or folders of them) for the class at this index.
    AddImages(usize),
    TryImages,
    Backbone,
    ExportTuned,
    ExportOnnx,
    ExportTimm,
    ImportTuned,
}

use crate::decode::IMAGE_EXTENSIONS;

impl FilePurpose {
    fn title(self) -> &'static str {
        match self {
            FilePurpose::OpenProject => "Open a project",
            FilePurpose::SaveProject => "Save the project as",
            FilePurpose::AddImages(_) => "Add images (files or folders)",
            FilePurpose::TryImages => "Pick images to classify",
            FilePurpose::Backbone => "Choose a backbone checkpoint",
            FilePurpose::ExportTuned => "Export the tuned file as",
            FilePurpose::ExportOnnx => "Export the ONNX model as",
            FilePurpose::ExportTimm => "Export the merged timm checkpoint as",
            FilePurpose::ImportTuned => "Import a tuned file",
        }
    }

    /// (filter name, extensions)
    fn filter(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FilePurpose::OpenProject | FilePurpose::SaveProject => ("vitune project", &["json"]),
            FilePurpose::AddImages(_) | FilePurpose::TryImages => ("images", IMAGE_EXTENSIONS),
            FilePurpose::Backbone
            | FilePurpose::ImportTuned
            | FilePurpose::ExportTuned
            | FilePurpose::ExportTimm => ("safetensors", &["safetensors"]),
            FilePurpose::ExportOnnx => ("onnx", &["onnx"]),
        }
    }

    /// The file name a save starts from; `None` for the purposes that open files.
    fn save_name(self) -> Option<&'static str> {
        match self {
            FilePurpose::SaveProject => Some("project.json"),
            FilePurpose::ExportTuned => Some("tuned.safetensors"),
            FilePurpose::ExportOnnx => Some("model.onnx"),
            FilePurpose::ExportTimm => Some("merged.safetensors"),
            _ => None,
        }
    }

    fn many(self) -> bool {
        matches!(self, FilePurpose::AddImages(_) | FilePurpose::TryImages)
    }
}

/// vitune's own file browser, open while a choice is pending.
pub struct FileBrowser {
    pub purpose: FilePurpose,
    pub dir: PathBuf,
    /// The folder field (edited, then Enter).
    pub dir_field: String,
    /// The save name, or the files picked (many).
    pub name: String,
    pub picked: Vec<PathBuf>,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct Files {
    /// The platform dialog came back at once with nothing: it cannot open here, use the browser.
    pub native_unavailable: bool,
    /// Use vitune's browser without trying the platform's (tests, or `VITUNE_FILE_DIALOG=builtin`).
    pub builtin_only: bool,
    pub browser: Option<FileBrowser>,
    /// The folder the browser showed last.
    last_dir: Option<PathBuf>,
}

impl Files {
    pub fn new() -> Self {
        Self {
            builtin_only: std::env::var("VITUNE_FILE_DIALOG").is_ok_and(|v| v == "builtin"),
            ..Default::default()
        }
    }
}

impl VituneApp {
    /// A dialog's title: the purpose's, naming the class that images are added to.
    fn file_title(&self, purpose: FilePurpose) -> String {
        match purpose {
            FilePurpose::AddImages(i) => match self.project.classes.get(i) {
                Some(c) => format!("Add images to class \"{}\" (files or folders)", c.name),
                None => purpose.title().into(),
            },
            _ => purpose.title().into(),
        }
    }

    /// Asks for a file (or files) for `purpose`; the answer is applied by `file_chosen`.
    pub fn ask_file(&mut self, purpose: FilePurpose) {
        if !self.files.builtin_only && !self.files.native_unavailable {
            let asked = Instant::now();
            match native_dialog(purpose, &self.file_title(purpose)) {
                Some(paths) => return self.file_chosen(purpose, paths),
                // Back at once with nothing: no dialog could open (no desktop portal, no zenity).
                None if asked.elapsed() < Duration::from_millis(300) => {
                    self.files.native_unavailable = true;
                    self.errors.push(
                        "the system's file dialog cannot open here (no xdg-desktop-portal or zenity): vitune's own \
                         file browser is used instead"
                            .into(),
                    );
                }
                None => return,
            }
        }
        let dir = self
            .files
            .last_dir
            .clone()
            .or_else(|| {
                self.project_path
                    .as_ref()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
            })
            .or_else(dirs::home_dir)
            .unwrap_or_else(|| PathBuf::from("/"));
        self.files.browser = Some(FileBrowser {
            purpose,
            dir_field: dir.display().to_string(),
            dir,
            name: purpose.save_name().unwrap_or_default().to_string(),
            picked: Vec::new(),
            error: None,
        });
    }

    /// Applies a chosen file (or files) for `purpose`.
    pub fn file_chosen(&mut self, purpose: FilePurpose, paths: Vec<PathBuf>) {
        let Some(first) = paths.first().cloned() else {
            return;
        };
        match purpose {
            FilePurpose::OpenProject => self.open_project(&first),
            FilePurpose::SaveProject => self.save_project(&first),
            FilePurpose::AddImages(class) => self.add_images(class, &paths),
            FilePurpose::TryImages => self.predict(paths),
            FilePurpose::Backbone => self.choose_backbone(Some(first)),
            FilePurpose::ExportTuned => self.export_to(first),
            FilePurpose::ExportOnnx => self.export_onnx_to(first),
            FilePurpose::ExportTimm => self.export_timm_to(first),
            FilePurpose::ImportTuned => self.import_from(first),
        }
    }
}

fn native_dialog(purpose: FilePurpose, title: &str) -> Option<Vec<PathBuf>> {
    let (name, exts) = purpose.filter();
    let d = rfd::FileDialog::new()
        .add_filter(name, exts)
        .set_title(title);
    match purpose.save_name() {
        Some(file) => d.set_file_name(file).save_file().map(|p| vec![p]),
        None if purpose.many() => d.pick_files(),
        None => d.pick_file().map(|p| vec![p]),
    }
}

/// The browser's window, while a choice is pending.
pub fn file_browser_ui(app: &mut VituneApp, ctx: &egui::Context) {
    let Some(mut b) = app.files.browser.take() else {
        return;
    };
    let mut done: Option<Vec<PathBuf>> = None;
    let (filter_name, exts) = b.purpose.filter();
    let saving = b.purpose.save_name().is_some();
    let title = app.file_title(b.purpose);
    // Modal: while a choice is pending the project beneath takes no clicks.
    let modal = egui::Modal::new(egui::Id::unique("vitune-file-browser")).show(ctx, |ui| {
        ui.set_width(560.0);
        ui.heading(title.as_str());
        ui.horizontal(|ui| {
            if ui.button("Up").clicked() {
                if let Some(parent) = b.dir.parent() {
                    b.dir = parent.to_path_buf();
                    b.dir_field = b.dir.display().to_string();
                }
            }
            let label = ui.label("Folder:");
            let field = ui
                .add(egui::TextEdit::singleline(&mut b.dir_field).desired_width(400.0))
                .labelled_by(label.id);
            if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                let typed = PathBuf::from(b.dir_field.trim());
                if typed.is_dir() {
                    b.dir = typed;
                    b.error = None;
                } else if typed.is_file() {
                    // A file typed whole: take it.
                    done = Some(vec![typed]);
                } else {
                    b.error = Some(format!("no folder at {}", typed.display()));
                }
            }
        });
        let entries = list(&b.dir, exts);
        egui::ScrollArea::vertical()
            .max_height(280.0)
            .show(ui, |ui| match &entries {
                Err(e) => {
                    ui.colored_label(egui::Color32::from_rgb(220, 80, 60), e);
                }
                Ok(entries) if entries.is_empty() => {
                    ui.label(format!("no folders or {filter_name} files here"));
                }
                Ok(entries) => {
                    for (path, is_dir) in entries {
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if *is_dir {
                            if ui
                                .selectable_label(false, format!("[folder] {name}"))
                                .clicked()
                            {
                                b.dir = path.clone();
                                b.dir_field = b.dir.display().to_string();
                            }
                        } else {
                            let picked = b.picked.contains(path);
                            if ui.selectable_label(picked, name.clone()).clicked() {
                                if saving {
                                    b.name = name;
                                } else if b.purpose.many() {
                                    if picked {
                                        b.picked.retain(|p| p != path);
                                    } else {
                                        b.picked.push(path.clone());
                                    }
                                } else {
                                    b.picked = vec![path.clone()];
                                }
                            }
                        }
                    }
                }
            });
        if let Some(e) = &b.error {
            ui.colored_label(egui::Color32::from_rgb(220, 80, 60), e);
        }
        ui.separator();
        ui.horizontal(|ui| {
            if saving {
                let label = ui.label("File name:");
                ui.add(egui::TextEdit::singleline(&mut b.name).desired_width(240.0))
                    .labelled_by(label.id);
                if ui
                    .add_enabled(!b.name.trim().is_empty(), egui::Button::new("Save"))
                    .clicked()
                {
                    done = Some(vec![b.dir.join(b.name.trim())]);
                }
            } else {
                ui.label(format!("{} picked", b.picked.len()));
                if ui
                    .add_enabled(!b.picked.is_empty(), egui::Button::new("Open"))
                    .clicked()
                {
                    done = Some(b.picked.clone());
                }
                if b.purpose.many() && ui.button("Add this whole folder").clicked() {
                    done = Some(vec![b.dir.clone()]);
                }
            }
            if ui.button("Cancel").clicked() {
                done = Some(Vec::new());
            }
        });
    });
    app.files.last_dir = Some(b.dir.clone());
    match done {
        Some(paths) => app.file_chosen(b.purpose, paths),
        // A click beside the browser is taken by its backdrop and changes nothing: the picks stay until Cancel or
        // Escape.
        None if !modal.should_close() || modal.backdrop_response.clicked() => {
            app.files.browser = Some(b)
        }
        None => {}
    }
}

/// Folders first, then the files with one of `exts`, each sorted by name; hidden entries left out.
fn list(dir: &Path, exts: &[&str]) -> Result<Vec<(PathBuf, bool)>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out: Vec<(PathBuf, bool)> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let p = e.path();
            let is_dir = p.is_dir();
            let wanted = is_dir
                || p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| exts.iter().any(|e| e.eq_ignore_ascii_case(x)));
            wanted.then_some((p, is_dir))
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// The image files among `paths`, a folder standing for the images directly in it (sorted).
pub fn image_files_in(paths: &[PathBuf]) -> Vec<PathBuf> {
    let is_image = crate::decode::is_image_file;
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|f| f.is_file() && is_image(f))
                        .collect()
                })
                .unwrap_or_default();
            inside.sort();
            out.extend(inside);
        } else if is_image(p) {
            out.push(p.clone());
        }
    }
    out
}
