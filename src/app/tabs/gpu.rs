//! The GPU tab: the adapter, the kernels chosen for it, the self-test.

use super::*;

/// The GPU panel: `vitune selftest` on the app's adapter, its report as the CLI prints it.
pub(super) fn gpu_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
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
    match &app.kernels {
        Some((summary, table)) => {
            ui.label(format!("Kernels: {summary}"));
            if !table.is_empty() {
                ui.collapsing("Each variant's check and rate on this adapter", |ui| {
                    ui.monospace(table);
                });
            }
        }
        None => {
            ui.label(
                "Kernels: choosing (each variant is checked and timed once on a new adapter)...",
            );
        }
    }
    ui.label(
        "Does vitune compute correctly on this GPU? The selftest checks the forward against timm, every \
         method's gradients against autograd and the matmul kernels against a CPU reference, with every \
         kernel variant this adapter could use.",
    );
    ui.horizontal(|ui| {
        let idle = !app.selftesting && !app.run.training && !app.run.comparing;
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
