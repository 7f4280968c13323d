//! The screens of the app: one file per tab, each a `*_ui` function; the tab bar and the messages here.

mod attention;
mod export;
mod gpu;
mod project;
mod trial;
mod tune;
mod widgets;

use attention::*;
use export::*;
use gpu::*;
use project::*;
use trial::*;
use tune::*;
use widgets::*;

use egui::{Color32, RichText};

use super::files::FilePurpose;
use egui_plot::{Legend, Line, Plot};

use super::{Tab, VituneApp};
use crate::tuning::{Method, MethodOptions, OptionKind, OptionSpec};

/// A tab's screen.
type Screen = fn(&mut VituneApp, &mut egui::Ui);

/// The tabs in the bar's order: the tab, its label, its screen, and whether the screen scrolls (a run's results
/// and its mistakes, maps and their grid are long).
const TABS: [(Tab, &str, Screen, bool); 6] = [
    (Tab::Project, "Project", project_ui, false),
    (Tab::Tune, "Tune", tune_ui, true),
    (Tab::Attention, "Attention", attention_ui, true),
    (Tab::Try, "Try", try_ui, false),
    (Tab::Export, "Export / import", export_ui, false),
    (Tab::Gpu, "GPU", gpu_ui, false),
];

pub fn app_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    egui::Panel::top("tabs").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("vitune");
            ui.separator();
            for (tab, label, _, _) in TABS {
                ui.selectable_value(&mut app.tab, tab, label);
            }
        });
    });
    // Status and messages at the bottom: they never push the controls down, and a long status wraps.
    egui::Panel::bottom("messages").show(ui, |ui| {
        errors_ui(app, ui);
        ui.add(egui::Label::new(app.status.as_str()).wrap());
    });
    let Some(&(_, label, screen, scrolls)) = TABS.iter().find(|t| t.0 == app.tab) else {
        return;
    };
    egui::CentralPanel::default().show(ui, |ui| {
        if scrolls {
            egui::ScrollArea::vertical()
                .id_salt(label)
                .show(ui, |ui| screen(app, ui));
        } else {
            screen(app, ui);
        }
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
