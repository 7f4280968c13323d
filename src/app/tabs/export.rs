//! The Export / import tab: the tuned file, ONNX and timm exports, importing a tuned file.

use super::*;

pub(super) fn export_ui(app: &mut VituneApp, ui: &mut egui::Ui) {
    ui.label(match &app.run.trained_classes {
        Some(c) => format!("current tuning: {} classes ({})", c.len(), c.join(", ")),
        None => "no tuning yet: train one, or import a tuned file".into(),
    });
    ui.horizontal(|ui| {
        let model = app.run.trained_classes.is_some();
        if export_button(ui, model, "Export tuned file...", None) {
            app.ask_file(FilePurpose::ExportTuned);
        }
        let hover = "One .onnx file with the classes and preprocessing in its metadata; vitune runs it with an \
                     ONNX runtime and compares it with its own predictions before keeping it";
        let label = "Export ONNX model (runs anywhere)...";
        if export_button(ui, model, label, Some(hover)) {
            app.ask_file(FilePurpose::ExportOnnx);
        }
        let mergeable = app.model_method.is_some_and(|m| m.merges_into_vit());
        let hover = if model && !mergeable {
            "This model's method adds prompt tokens or branches to the ViT, so it is not a plain timm ViT: \
             export it as ONNX"
        } else {
            "For linear, BitFit, LoRA, SSF and full fine-tuning: the backbone with the tuning folded in, \
             under timm's names, and a config.json beside it that timm reads"
        };
        if export_button(ui, model && mergeable, "Export merged timm checkpoint...", Some(hover)) {
            app.ask_file(FilePurpose::ExportTimm);
        }
        if ui.button("Import tuned file...").clicked() {
            app.ask_file(FilePurpose::ImportTuned);
        }
    });
    if let Some(line) = &app.last_onnx_export {
        ui.label(line);
    }
}
