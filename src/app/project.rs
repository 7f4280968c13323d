//! The app's project: classes with their images, the backbone, and the tuning settings; saved as JSON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tuning::{Method, MethodOptions};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub path: PathBuf,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    pub name: String,
    pub images: Vec<ImageEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub method: Method,
    pub options: MethodOptions,
    pub epochs: usize,
    pub batch: usize,
    /// Learning rate; the method's default when unset.
    pub lr: Option<f32>,
    pub seed: u64,
    /// Images per class to train on (all enabled ones when unset).
    pub shots: Option<usize>,
    /// Choose the learning rate and weight decay on the training images before the run (`train --auto`).
    #[serde(default = "auto_by_default")]
    pub auto: bool,
}

fn auto_by_default() -> bool {
    true
}

impl Settings {
    pub fn defaults(method: Method) -> Self {
        Self {
            method,
            options: MethodOptions::defaults(method),
            epochs: crate::train::DEFAULT_EPOCHS,
            batch: crate::train::DEFAULT_BATCH,
            lr: None,
            seed: 0,
            shots: None,
            auto: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// The backbone file; the embedded demo backbone when unset.
    pub backbone: Option<PathBuf>,
    pub classes: Vec<ClassEntry>,
    pub settings: Settings,
}

impl Default for Project {
    fn default() -> Self {
        // The method's recipe, as "Reset to defaults" gives it.
        Self {
            backbone: None,
            classes: Vec::new(),
            settings: Settings::defaults(Method::DEFAULT),
        }
    }
}

impl Project {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::Error::io("read project", path))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{} is not a vitune project: {e}", path.display())))
    }

    /// Writes the project atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Input(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Input(format!("cannot save project {}: {e}", path.display())))
    }

    /// A new class name not used yet.
    pub fn fresh_class_name(&self) -> String {
        (1..)
            .map(|i| format!("class {i}"))
            .find(|n| !self.classes.iter().any(|c| &c.name == n))
            .unwrap_or_else(|| "class".into())
    }

    /// (image path, class index) of every enabled image, classes in order.
    pub fn items(&self) -> Vec<(PathBuf, usize)> {
        self.classes
            .iter()
            .enumerate()
            .flat_map(|(c, class)| {
                class
                    .images
                    .iter()
                    .filter(|i| i.enabled)
                    .map(move |i| (i.path.clone(), c))
            })
            .collect()
    }

    /// Moves the image at `path` into class `to`, enabled (a mislabelled image put right).
    pub fn move_image(&mut self, path: &Path, to: usize) -> Result<()> {
        if to >= self.classes.len() {
            return Err(Error::Input(format!(
                "class {to} does not exist; the project has {}",
                self.classes.len()
            )));
        }
        let from = self
            .classes
            .iter()
            .position(|c| c.images.iter().any(|i| i.path == path))
            .ok_or_else(|| Error::Input(format!("{} is not in the project", path.display())))?;
        if from == to {
            return Ok(());
        }
        let images = &mut self.classes[from].images;
        let at = images.iter().position(|i| i.path == path).unwrap_or(0);
        let mut entry = images.remove(at);
        entry.enabled = true;
        self.classes[to].images.push(entry);
        Ok(())
    }

    /// Turns the image at `path` on or off; false when the project does not have it.
    pub fn set_enabled(&mut self, path: &Path, enabled: bool) -> bool {
        let found = self
            .classes
            .iter_mut()
            .flat_map(|c| c.images.iter_mut())
            .find(|i| i.path == path);
        match found {
            Some(i) => {
                i.enabled = enabled;
                true
            }
            None => false,
        }
    }

    /// Adds image files (folders are walked one level) to class `class`, skipping ones it already has.
    pub fn add_images(&mut self, class: usize, paths: &[PathBuf]) -> usize {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                if let Ok(rd) = std::fs::read_dir(p) {
                    let mut v: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file())
                        .collect();
                    v.sort();
                    files.extend(v);
                }
            } else {
                files.push(p.clone());
            }
        }
        let Some(c) = self.classes.get_mut(class) else {
            return 0;
        };
        let mut added = 0;
        for f in files {
            let ok = crate::decode::is_image_file(&f);
            if ok && !c.images.iter().any(|i| i.path == f) {
                c.images.push(ImageEntry {
                    path: f,
                    enabled: true,
                });
                added += 1;
            }
        }
        added
    }
}

/// The tuned model kept beside a project file: `<name>.tuned.safetensors`.
pub fn tuned_path(project: &Path) -> PathBuf {
    project.with_extension("tuned.safetensors")
}

/// The last run's curves and metrics kept beside a project file: `<name>.results.json`.
pub fn results_path(project: &Path) -> PathBuf {
    project.with_extension("results.json")
}

/// What the app shows of the last training run, kept with the project so that it is there after a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// (step, loss, accuracy) of every training step.
    pub curve: Vec<(f64, f64, f64)>,
    /// (step at the end of each epoch, validation accuracy).
    pub val_curve: Vec<(f64, f64)>,
    pub evaluation: Option<crate::train::Evaluation>,
    pub selection: Option<crate::select::Selection>,
    /// The status line the run ended with ("trained (… kept epoch 7 …)").
    pub summary: String,
}

impl Results {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::Error::io("read", path))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{} is not a vitune results file: {e}",
                path.display()
            ))
        })
    }

    /// Writes atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(crate::Error::io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(crate::Error::io("write", path))
    }
}

/// Where the app remembers the last project.
pub fn last_project_file() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("vitune").join("last_project"))
}

/// Projects remembered, newest first.
const RECENT: usize = 8;

/// The recent-projects list (one path a line, newest first) with `path` moved to the front.
fn with_recent(list: &str, path: &Path) -> String {
    let path = path.display().to_string();
    let mut lines: Vec<&str> = vec![&path];
    lines.extend(
        list.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != path),
    );
    lines.truncate(RECENT);
    lines.join("\n")
}

/// Records `path` as the project to reopen next time, at the top of the recent projects.
pub fn remember_last(path: &Path) -> crate::Result<()> {
    let Some(f) = last_project_file() else {
        return Ok(());
    };
    if let Some(dir) = f.parent() {
        std::fs::create_dir_all(dir).map_err(crate::Error::io("create", dir))?;
    }
    let list = std::fs::read_to_string(&f).unwrap_or_default();
    std::fs::write(&f, with_recent(&list, path)).map_err(crate::Error::io("write", &f))
}

/// The projects opened or saved lately that still exist, newest first.
pub fn recent_projects() -> Vec<PathBuf> {
    let Some(text) = last_project_file().and_then(|f| std::fs::read_to_string(f).ok()) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| PathBuf::from(l.trim()))
        .filter(|p| p.exists())
        .collect()
}

pub fn recall_last() -> Option<PathBuf> {
    recent_projects().into_iter().next()
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn the_recent_list_keeps_the_newest_first_without_repeats() {
        let a = Path::new("/p/a.json");
        let b = Path::new("/p/b.json");
        let one = with_recent("", a);
        assert_eq!(one, "/p/a.json");
        let two = with_recent(&one, b);
        assert_eq!(two, "/p/b.json\n/p/a.json");
        assert_eq!(with_recent(&two, a), "/p/a.json\n/p/b.json");
        let many = (0..20).fold(String::new(), |l, i| {
            with_recent(&l, Path::new(&format!("/p/{i}")))
        });
        assert_eq!(many.lines().count(), RECENT);
        assert_eq!(many.lines().next(), Some("/p/19"));
    }
}
