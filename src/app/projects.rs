//! The project on disk: opening, saving and the autosave, a new project, the last run's results kept beside the
//! project and restored with it, and the demo project.

use std::path::{Path, PathBuf};

use super::project::{self, Project};
use super::worker::Command;
use super::VituneApp;
use crate::error::Result;

impl VituneApp {
    /// With the last run's tuned model and results restored from beside the project file, where they are.
    pub(super) fn restored(mut self) -> Self {
        if let Some(path) = self.project_path.clone() {
            self.restore_results(&path);
        }
        self
    }

    /// Brings back the tuned model and the curves and metrics kept beside `project` (see `keep_results`).
    pub(super) fn restore_results(&mut self, project: &Path) {
        let tuned = project::tuned_path(project);
        let results = project::results_path(project);
        if !tuned.exists() {
            return;
        }
        match project::Results::load(&results) {
            Ok(r) => {
                self.run.curve = r.curve;
                self.run.val_curve = r.val_curve;
                self.run.evaluation = r.evaluation;
                self.run.selection = r.selection;
                self.run.steps_seen = self.run.curve.len();
                self.run.progress = 1.0;
                self.restored_summary = Some(r.summary);
            }
            Err(e) => self
                .errors
                .push(format!("the last run's curves were not restored: {e}")),
        }
        self.send(Command::Import(tuned));
    }

    /// Keeps the trained model (atomically, as every tuned file is written) and the run's curves and metrics
    /// beside the project file, so that reopening the project shows them again.
    pub(super) fn keep_results(&mut self) {
        let Some(path) = self.project_path.clone() else {
            return;
        };
        if self.run.trained_classes.is_none() {
            return;
        }
        self.send(Command::Export(project::tuned_path(&path)));
        let r = project::Results {
            curve: self.run.curve.clone(),
            val_curve: self.run.val_curve.clone(),
            evaluation: self.run.evaluation.clone(),
            selection: self.run.selection.clone(),
            summary: self.status.clone(),
        };
        if let Err(e) = r.save(&project::results_path(&path)) {
            self.errors.push(format!(
                "the run's curves were not kept with the project: {e}"
            ));
        }
    }

    /// Remembers the project for the next start; a failure is shown, not fatal.
    pub(super) fn remember_last(&mut self, path: &Path) {
        if let Err(e) = project::remember_last(path) {
            self.errors.push(format!(
                "the project will not reopen by itself next time: {e}"
            ));
        }
    }

    /// Writes the project to its file when it changed since it was last written or read (every frame calls
    /// this: edits save themselves). A failure is shown once per change.
    pub fn autosave(&mut self) {
        let Some(path) = self.project_path.clone() else {
            return;
        };
        if self.saved.as_ref() == Some(&self.project) {
            return;
        }
        let first = !path.exists();
        match self.project.save(&path) {
            Ok(()) if first => self.remember_last(&path),
            Ok(()) => {}
            Err(e) => self
                .errors
                .push(format!("your changes were not saved: {e}")),
        }
        self.saved = Some(self.project.clone());
    }

    pub fn save_project(&mut self, path: &Path) {
        match self.project.save(path) {
            Ok(()) => {
                self.saved = Some(self.project.clone());
                self.remember_last(path);
                self.project_path = Some(path.to_path_buf());
                self.status = format!("saved {}", path.display());
                self.keep_results();
            }
            Err(e) => self.errors.push(e.to_string()),
        }
    }

    /// An empty project on the same backbone; the one open was saved by autosave if it had a file, and its model
    /// stays beside it.
    pub fn new_project(&mut self) {
        let backbone = self.project.backbone.clone();
        self.project = Project {
            backbone,
            ..Project::default()
        };
        self.project_path = None;
        self.saved = None;
        self.selected_class = 0;
        self.deleted_class = None;
        self.forget_results();
        self.status =
            "new project: add classes and images, then \"Save project as...\" gives it a file"
                .into();
    }

    /// Clears what the last run left on screen and the worker's model, so that nothing of one project shows in
    /// another.
    pub(crate) fn forget_results(&mut self) {
        self.run.curve.clear();
        self.run.val_curve.clear();
        self.run.evaluation = None;
        self.run.selection = None;
        self.run.steps_seen = 0;
        self.run.progress = 0.0;
        self.run.trained_classes = None;
        self.model_method = None;
        self.restored_summary = None;
        self.last_onnx_export = None;
        self.send(Command::Forget);
    }

    pub fn open_project(&mut self, path: &Path) {
        match Project::load(path) {
            Ok(p) => {
                self.forget_results();
                let backbone_changed = p.backbone != self.project.backbone;
                self.saved = Some(p.clone());
                self.project = p;
                self.project_path = Some(path.to_path_buf());
                self.selected_class = 0;
                self.remember_last(path);
                if backbone_changed || self.backbone.failed.is_some() {
                    self.load_project_backbone();
                }
                self.restore_results(path);
            }
            Err(e) => self.errors.push(e.to_string()),
        }
    }
}

/// The demo project: a few target glyph classes rendered into the user's data folder, on the embedded backbone.
pub fn demo_project() -> Result<(Project, PathBuf)> {
    let base = dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("vitune")
        .join("demo");
    let images = base.join("images");
    if !images.exists() {
        crate::demo::write_glyph_folders("target", 8, 7, 32, &images)?;
    }
    let mut p = Project::default();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&images)
        .map_err(crate::Error::io("read", &images))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs.into_iter().take(5) {
        let name = d
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        p.classes.push(project::ClassEntry {
            name,
            images: Vec::new(),
        });
        let idx = p.classes.len() - 1;
        p.add_images(idx, &[d]);
    }
    p.settings.shots = Some(4);
    Ok((p, base.join("demo-project.json")))
}
