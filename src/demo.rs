//! The embedded demo: glyph data rendered in-process, a small timm ViT pre-trained on the source glyphs
//! (assets/demo/backbone), few-shot tuning on the target glyphs.

use std::path::Path;

use crate::data::glyphs::{class_dir_name, render_set, source_classes, target_classes, Glyphs};
use crate::error::{Error, Result};

/// The classes of a split: `source` (pre-training) or `target` (few-shot).
pub fn split_classes(split: &str) -> Result<Vec<char>> {
    match split {
        "source" => Ok(source_classes()),
        "target" => Ok(target_classes()),
        s => Err(Error::Input(format!(
            "--split `{s}`: expected source or target"
        ))),
    }
}

/// Writes `per_class` rendered images of every class of `split` as class folders under `out`; returns the count.
pub fn write_glyph_folders(
    split: &str,
    per_class: usize,
    seed: u64,
    size: u32,
    out: &Path,
) -> Result<usize> {
    let classes = split_classes(split)?;
    let glyphs = Glyphs::new()?;
    let set = render_set(&glyphs, &classes, per_class, seed, size);
    let mut counts = vec![0usize; classes.len()];
    for (img, label) in &set {
        let dir = out.join(class_dir_name(classes[*label]));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Input(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(format!("{:05}.png", counts[*label]));
        counts[*label] += 1;
        img.save(&path)
            .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(set.len())
}
