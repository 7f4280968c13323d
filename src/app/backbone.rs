//! The project's backbone row: a file, the demo, or a hub model (the curated list, or any hub name), loaded by the
//! worker with the download's progress and a Cancel. A backbone that fails to load changes nothing the project
//! records; the project's own backbone that fails (missing, refused) is said once, with the ways out beside it.

use std::path::PathBuf;

use egui::{Color32, RichText};

use crate::hub::{self, human_bytes, HubConfig, HubName, Progress};

use super::worker::Command;
use super::VituneApp;

pub struct BackbonePanel {
    /// The hub and its cache (from the environment; tests point it at a stand-in).
    pub hub: HubConfig,
    /// What is loading, until the worker answers: never shown once a load has ended.
    pub loading: Option<String>,
    /// The download's progress while a hub model downloads.
    pub download: Option<Progress>,
    /// Why the project's own backbone did not load, until another one does.
    pub failed: Option<String>,
    /// The "any hub name" field.
    pub name_field: String,
    /// The curated list is open.
    pub show_hub: bool,
    /// Bytes in the cache for each curated entry (`None`: not cached), refreshed after each load.
    pub cached: Vec<Option<u64>>,
    /// The project's hub backbone is not on this machine: asked before it downloads.
    pub offer: Option<PathBuf>,
}

impl BackbonePanel {
    pub fn new(hub: HubConfig) -> Self {
        let mut p = Self {
            hub,
            loading: None,
            download: None,
            failed: None,
            name_field: String::new(),
            show_hub: false,
            cached: Vec::new(),
            offer: None,
        };
        p.refresh_cached();
        p
    }

    pub fn refresh_cached(&mut self) {
        self.cached = hub::curated()
            .iter()
            .map(|m| m.cached_bytes(&self.hub))
            .collect();
    }
}

impl VituneApp {
    /// Asks the worker for a backbone the user chose: the project records it only once it has loaded.
    pub fn choose_backbone(&mut self, spec: Option<PathBuf>) {
        self.backbone.offer = None;
        self.send_load(spec, true);
    }

    /// Loads the project's own backbone (at start, or when another project opens). A hub backbone that this
    /// machine's cache lacks is offered for download rather than fetched unasked.
    pub(crate) fn load_project_backbone(&mut self) {
        let spec = self.project.backbone.clone();
        let missing_hub = spec
            .as_ref()
            .and_then(|p| p.to_str())
            .and_then(HubName::from_spec)
            .and_then(Result::ok)
            .filter(|n| {
                !self.backbone.hub.offline && hub::find_cached(&self.backbone.hub, n).is_none()
            });
        if missing_hub.is_some() {
            self.backbone.offer = spec;
            self.backbone_info = None;
            self.backbone_heads = 0;
            self.status =
                "the project's backbone is not on this machine: download it, or choose another"
                    .into();
            return;
        }
        self.backbone.offer = None;
        self.send_load(spec, false);
    }

    /// Downloads the project's hub backbone that `offer` names.
    pub fn accept_offer(&mut self) {
        if let Some(spec) = self.backbone.offer.take() {
            self.send_load(Some(spec), false);
        }
    }

    fn send_load(&mut self, spec: Option<PathBuf>, keep_on_failure: bool) {
        let what = spec
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the demo backbone".into());
        self.backbone.loading = Some(what.clone());
        self.backbone.download = None;
        self.status = format!("loading {what}...");
        // A download is cancelled through the stop flag; a stop meant for an earlier run must not cancel it.
        self.worker
            .stop
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let hub = self.backbone.hub.clone();
        self.send(Command::LoadBackbone {
            spec,
            hub,
            keep_on_failure,
        });
    }

    pub(crate) fn backbone_loaded(
        &mut self,
        spec: Option<PathBuf>,
        description: String,
        heads: usize,
    ) {
        self.backbone.loading = None;
        self.backbone.download = None;
        self.backbone.failed = None;
        // Another backbone: the worker dropped the model trained on the old one, so its curves, search, classes
        // and export state go too (the project's classes and images stay).
        let switched = spec != self.project.backbone;
        let had_model = self.run.trained_classes.is_some() || !self.run.curve.is_empty();
        if switched {
            self.forget_results();
        }
        self.project.backbone = spec;
        self.status = if switched && had_model {
            "backbone ready; the model trained on the previous one is gone: train again".into()
        } else {
            "backbone ready".into()
        };
        self.backbone_info = Some(description);
        self.backbone_heads = heads;
        self.backbone.refresh_cached();
    }

    pub(crate) fn backbone_failed(&mut self, spec: Option<PathBuf>, error: String) {
        self.backbone.loading = None;
        self.backbone.download = None;
        self.backbone.refresh_cached();
        if spec == self.project.backbone {
            // The project's own backbone: nothing else is loaded in its place.
            self.backbone_info = None;
            self.backbone_heads = 0;
            self.status = "the project's backbone did not load: choose one".into();
            self.backbone.failed = Some(error);
        } else if error.starts_with("the download was cancelled") {
            self.status = "download cancelled; the project keeps its backbone".into();
            self.errors.push(error);
        } else {
            self.status = "that backbone did not load; the project keeps its backbone".into();
            self.errors.push(error);
        }
    }

    pub fn cancel_download(&mut self) {
        self.worker
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The backbone row of the Project tab, and the hub list under it when open.
pub fn backbone_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    let busy = app.backbone.loading.is_some();
    ui.horizontal_wrapped(|ui| {
        ui.label("Backbone:");
        ui.add_enabled_ui(!busy, |ui| {
            if ui.button("Choose backbone...").clicked() {
                app.ask_file(super::files::FilePurpose::Backbone);
            }
            if ui.button("Demo backbone").clicked() {
                app.choose_backbone(None);
            }
            let label = if app.backbone.show_hub {
                "Hide the hub list"
            } else {
                "From the hub..."
            };
            if ui.button(label).clicked() {
                app.backbone.show_hub = !app.backbone.show_hub;
                app.backbone.refresh_cached();
            }
        });
        // After the buttons, so that a long description never pushes them out of the window.
        if let Some(what) = &app.backbone.loading {
            ui.label(format!("loading {what}..."));
        } else if let Some(spec) = app.backbone.offer.clone() {
            ui.colored_label(
                Color32::from_rgb(220, 150, 60),
                format!(
                    "this project's backbone {} is not on this machine",
                    spec.display()
                ),
            );
            if ui.button("Download it").clicked() {
                app.accept_offer();
            }
        } else if let Some(why) = &app.backbone.failed {
            ui.colored_label(Color32::from_rgb(220, 80, 60), format!("not loaded: {why}"));
        } else {
            ui.label(app.backbone_info.as_deref().unwrap_or("no backbone"));
        }
    });
    if busy {
        download_ui(app, ui);
    }
    if app.backbone.show_hub {
        hub_list_ui(app, ui, busy);
    }
}

fn download_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        match &app.backbone.download {
            Some(p) => {
                let frac = p.total.map_or(0.0, |t| p.done as f32 / t.max(1) as f32);
                let left = p
                    .seconds_left()
                    .map(|s| format!(", {:.0} s left", s.ceil()))
                    .unwrap_or_default();
                let text = format!(
                    "downloading {}: {}{} at {}/s{left}",
                    p.file,
                    human_bytes(p.done),
                    p.total
                        .map(|t| format!(" of {}", human_bytes(t)))
                        .unwrap_or_default(),
                    human_bytes(p.bytes_per_s as u64),
                );
                ui.add(egui::ProgressBar::new(frac).desired_width(240.0));
                ui.label(text);
            }
            None => {
                ui.spinner();
            }
        }
        if ui.button("Cancel").clicked() {
            app.cancel_download();
        }
    });
}

fn hub_list_ui(app: &mut VituneApp, ui: &mut egui::Ui, busy: bool) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(RichText::new("Backbones from the Hugging Face hub").strong());
        ui.label(format!(
            "Downloaded once into the cache timm and transformers share ({}); cached ones load without the network.",
            app.backbone.hub.cache.display()
        ));
        let mut order: Vec<usize> = (0..hub::curated().len()).collect();
        // Cached ones first.
        order.sort_by_key(|&i| app.backbone.cached.get(i).copied().flatten().is_none());
        let mut chosen = None;
        egui::Grid::new("hub-list").striped(true).show(ui, |ui| {
            for i in order {
                let m = &hub::curated()[i];
                let cached = app.backbone.cached.get(i).copied().flatten();
                ui.label(RichText::new(m.title).strong())
                    .on_hover_text(m.spec());
                ui.label(format!("{} · {:.0}M · {} px · {}", m.family, m.params_m, m.input, m.licence));
                ui.label(match cached {
                    Some(n) => format!("in the cache ({})", human_bytes(n)),
                    None => format!("≈ {} to download", human_bytes(m.download_bytes())),
                });
                let action = if cached.is_some() { "Use" } else { "Download" };
                if ui
                    .add_enabled(!busy, egui::Button::new(action))
                    .on_hover_text(m.pick)
                    .clicked()
                {
                    chosen = Some(m.spec());
                }
                ui.end_row();
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Any hub name:");
            ui.add(
                egui::TextEdit::singleline(&mut app.backbone.name_field)
                    .hint_text("ORG/NAME or ORG/NAME@REVISION")
                    .desired_width(320.0),
            )
            .labelled_by(label.id);
            if ui
                .add_enabled(!busy && !app.backbone.name_field.trim().is_empty(), egui::Button::new("Get"))
                .clicked()
            {
                match HubName::parse(app.backbone.name_field.trim()) {
                    Ok(n) => chosen = Some(n.to_string()),
                    Err(e) => app.errors.push(e.to_string()),
                }
            }
        });
        if let Some(spec) = chosen {
            app.choose_backbone(Some(PathBuf::from(spec)));
        }
    });
}
