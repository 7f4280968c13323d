//! Small widgets the tabs share.

/// An export button, enabled when there is a model; whether it was clicked.
pub(super) fn export_button(
    ui: &mut egui::Ui,
    enabled: bool,
    label: &str,
    hover: Option<&str>,
) -> bool {
    let mut button = ui.add_enabled(enabled, egui::Button::new(label));
    if let Some(h) = hover {
        button = button.on_hover_text(h).on_disabled_hover_text(h);
    }
    button.clicked()
}

/// A labelled choice among `options` (the label before it); whether it changed.
pub(super) fn choice(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut String,
    options: &[String],
) -> bool {
    let mut changed = false;
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(label)
        .selected_text(value.clone())
        .show_ui(ui, |ui| {
            for o in options {
                changed |= ui.selectable_value(value, o.clone(), o).changed();
            }
        })
        .response
        .labelled_by(l.id);
    changed
}
