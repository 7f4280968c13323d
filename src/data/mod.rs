//! The embedded demo's data: glyph images rendered from the fonts under assets/fonts.

pub mod glyphs;
pub mod shift;
