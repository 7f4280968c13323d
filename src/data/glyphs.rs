//! A small, self-made few-shot testbed: images of single characters rendered from free fonts.
//!
//! Five fonts are embedded (see `assets/fonts/README.md`): DejaVu Serif, Liberation Serif
//! Italic, Liberation Sans, DejaVu Sans Condensed Bold and DejaVu Sans Mono — a serif, an
//! italic, a plain sans, a bold condensed sans and a monospace design. All of them cover every
//! class below, which [`Glyphs::new`] checks.
//!
//! * [`source_classes`] — 52 classes for pre-training: `A`–`Z`, `0`–`9`, and the 16 lowercase
//!   letters whose shape differs from their capital: `a b d e f g h i j k m n q r t y`.
//! * [`target_classes`] — 20 classes for few-shot tuning, disjoint from the source and not
//!   look-alikes of Latin letters or digits: Greek `Δ Λ Ξ Π Σ Φ Ψ Ω`, Cyrillic
//!   `Б Ж И Ч Ш Э Ю Я`, and the symbols `§ ¶ ∞ ♣`.
//!
//! Each image ([`Glyphs::render`]) draws its parameters from the given [`Rng`], in this order:
//!
//! 1. a font, uniformly among the fonts that have a glyph for the character;
//! 2. the glyph's ink height, uniformly 45–80 % of the image side (the glyph is shrunk if its
//!    rotated bounding box would not fit inside the image less a small margin — wide glyphs
//!    such as `∞`, `Ж` or `Ш` end up less tall);
//! 3. a rotation, uniformly in ±15°;
//! 4. a position, uniform over the places where the rotated ink box stays inside the image;
//! 5. a stroke-weight change, uniformly in −0.6…+0.75 px: the anti-aliased coverage map is
//!    blended towards its grey-level dilation (bolder) or erosion (thinner) with a plus-shaped
//!    3×3 element by that fraction of a pixel (erosion is capped at 0.6 px so that the thin
//!    strokes of small serif glyphs survive); the coverage is then scaled so that its peak is 1,
//!    keeping thin or eroded strokes at full contrast;
//! 6. background and foreground colours, uniform in RGB, redrawn until the difference of their
//!    luminances (Rec. 709 weights on the 0..1 sRGB values) is at least 0.35;
//! 7. the standard deviation of additive Gaussian pixel noise, uniformly 0–0.06 (in 0..1 units,
//!    drawn independently per pixel and channel).
//!
//! The coverage is used as alpha between background and foreground. All arithmetic is plain
//! sequential `f32`/`f64` code driven by the seeded [`Rng`]: the same seed gives the same bytes.
//! (Across machines, rare one-level differences are possible: `ab_glyph`'s rasterizer picks an
//! AVX2/SSE or scalar path at run time, and `ln`/`sin`/`cos` come from the platform's libm.)

use ab_glyph::{
    point, Font, FontRef, Glyph, GlyphId, Outline, OutlineCurve, OutlinedGlyph, Point,
    PxScaleFactor, Rect,
};
use image::{Rgb, RgbImage};

use super::shift::Shift;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// How a set is rendered: as the backbone was pre-trained (clean), or under a domain shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Clean,
    /// Stronger rotation, elastically warped strokes and textured backgrounds ([`crate::data::shift`]).
    Shifted,
}

/// The embedded font files: (file name, family and style).
const FONTS: [(&str, &str, &[u8]); 5] = [
    (
        "DejaVuSerif.ttf",
        "DejaVu Serif",
        include_bytes!("../../assets/fonts/DejaVuSerif.ttf"),
    ),
    (
        "LiberationSerif-Italic.ttf",
        "Liberation Serif Italic",
        include_bytes!("../../assets/fonts/LiberationSerif-Italic.ttf"),
    ),
    (
        "LiberationSans-Regular.ttf",
        "Liberation Sans",
        include_bytes!("../../assets/fonts/LiberationSans-Regular.ttf"),
    ),
    (
        "DejaVuSansCondensed-Bold.ttf",
        "DejaVu Sans Condensed Bold",
        include_bytes!("../../assets/fonts/DejaVuSansCondensed-Bold.ttf"),
    ),
    (
        "DejaVuSansMono.ttf",
        "DejaVu Sans Mono",
        include_bytes!("../../assets/fonts/DejaVuSansMono.ttf"),
    ),
];

/// Glyph ink height as a fraction of the image side.
const HEIGHT_FRAC: (f64, f64) = (0.45, 0.80);
/// Largest rotation either way, in degrees.
const MAX_ROTATION_DEG: f64 = 15.0;
/// Stroke-weight change in pixels: negative erodes, positive dilates.
const WEIGHT_PX: (f64, f64) = (-0.6, 0.75);
/// Least luminance difference between foreground and background.
const MIN_CONTRAST: f64 = 0.35;
/// Largest standard deviation of the pixel noise (0..1 units).
const MAX_NOISE_STD: f64 = 0.06;

/// The embedded fonts, parsed.
pub struct Glyphs {
    fonts: Vec<(&'static str, FontRef<'static>)>,
}

impl std::fmt::Debug for Glyphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Glyphs")
            .field("fonts", &self.font_names())
            .finish()
    }
}

impl Glyphs {
    /// Parses the embedded fonts and checks that every one of them has a glyph for every source
    /// and target class.
    ///
    /// # Errors
    /// [`Error::Input`] naming the font, if one cannot be parsed or lacks a class character.
    pub fn new() -> Result<Self> {
        let mut fonts = Vec::with_capacity(FONTS.len());
        for (file, _family, data) in FONTS {
            let font = FontRef::try_from_slice(data).map_err(|e| {
                Error::Input(format!("embedded font {file} could not be parsed: {e}"))
            })?;
            fonts.push((file, font));
        }
        let glyphs = Self { fonts };
        let mut classes = source_classes();
        classes.extend(target_classes());
        glyphs.check_coverage(&classes)?;
        Ok(glyphs)
    }

    pub fn font_count(&self) -> usize {
        self.fonts.len()
    }

    /// File names of the embedded fonts, in the order they are drawn from.
    pub fn font_names(&self) -> Vec<&'static str> {
        self.fonts.iter().map(|(name, _)| *name).collect()
    }

    /// Whether font `font` (an index below [`Self::font_count`]) has an outline for `ch`.
    pub fn font_covers(&self, font: usize, ch: char) -> bool {
        self.fonts.get(font).is_some_and(|(_, f)| has_glyph(f, ch))
    }

    /// Whether font `font` maps `ch` to a glyph (a cheap character-map look-up; the outline
    /// itself is checked by [`Self::font_covers`]).
    fn font_maps(&self, font: usize, ch: char) -> bool {
        self.fonts
            .get(font)
            .is_some_and(|(_, f)| f.glyph_id(ch).0 != 0)
    }

    /// Checks that every font has a glyph for every character of `classes`.
    ///
    /// # Errors
    /// [`Error::Input`] naming the first font and character without a glyph.
    pub fn check_coverage(&self, classes: &[char]) -> Result<()> {
        for (name, font) in &self.fonts {
            for &ch in classes {
                if !has_glyph(font, ch) {
                    return Err(Error::Input(format!(
                        "font {name} has no glyph for {ch:?} ({})",
                        class_dir_name(ch)
                    )));
                }
            }
        }
        Ok(())
    }

    /// One image of `ch`, `size`×`size` RGB, deterministic given the rng state (see the module
    /// documentation for the parameters drawn). A character that no embedded font covers gives
    /// an image of background and noise only.
    pub fn render(&self, ch: char, rng: &mut Rng, size: u32) -> RgbImage {
        self.render_styled(ch, rng, size, Style::Clean)
    }

    /// One image of `ch` in `style`: a clean render, or the same render under the domain shift of
    /// [`crate::data::shift`] (its parameters drawn after the clean ones).
    pub fn render_styled(&self, ch: char, rng: &mut Rng, size: u32, style: Style) -> RgbImage {
        let n = size as usize;
        let covering: Vec<usize> = (0..self.fonts.len())
            .filter(|&i| self.font_maps(i, ch))
            .collect();
        let font_idx = covering.get(rng.below(covering.len().max(1))).copied();
        let height_frac = rng.range(HEIGHT_FRAC.0, HEIGHT_FRAC.1);
        let angle = rng.range(-MAX_ROTATION_DEG, MAX_ROTATION_DEG).to_radians();
        let (pos_u, pos_v) = (rng.uniform(), rng.uniform());
        let weight = rng.range(WEIGHT_PX.0, WEIGHT_PX.1);
        let (fg, bg) = pick_colours(rng);
        let noise_std = rng.range(0.0, MAX_NOISE_STD);
        let shift = (style == Style::Shifted).then(|| Shift::draw(rng, n, &bg));
        let angle = shift.as_ref().map_or(angle, |s| s.angle);

        let mut cov = vec![0f32; n * n];
        if let Some((_, font)) = font_idx.and_then(|i| self.fonts.get(i)) {
            let place = Placement {
                height_frac,
                angle,
                pos_u,
                pos_v,
            };
            rasterize(font, ch, &place, n, &mut cov);
            adjust_weight(&mut cov, n, weight as f32);
            // Thin strokes, small sizes and erosion can leave no pixel fully covered; stretch the
            // coverage so that its peak is 1 and the glyph keeps the full colour contrast.
            let peak = cov.iter().fold(0f32, |a, &b| a.max(b));
            if peak > 0.05 && peak < 1.0 {
                cov.iter_mut().for_each(|c| *c = (*c / peak).min(1.0));
            }
            if let Some(s) = &shift {
                cov = s.warp(&cov, n);
            }
        }

        let mut img = RgbImage::new(size, size);
        let mut noise = GaussianPairs::default();
        for (idx, px) in img.pixels_mut().enumerate() {
            let a = f64::from(cov[idx]);
            let bg = match &shift {
                Some(s) => s.background(&bg, n, idx % n, idx / n),
                None => bg,
            };
            let mut out = [0u8; 3];
            for c in 0..3 {
                let v = bg[c] + (fg[c] - bg[c]) * a + noise_std * noise.next(rng);
                // `+ 0.5` then truncation rounds to nearest (the value is never negative) and,
                // unlike `f64::round`, needs no libm call.
                out[c] = (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            }
            *px = Rgb(out);
        }
        img
    }
}

/// Standard normal deviates, two at a time (Marsaglia's polar method): about three times
/// cheaper per pixel than [`Rng::normal`], which spends two uniforms and a `cos` on each.
#[derive(Default)]
struct GaussianPairs {
    spare: Option<f64>,
}

impl GaussianPairs {
    fn next(&mut self, rng: &mut Rng) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u = 2.0 * rng.uniform() - 1.0;
            let v = 2.0 * rng.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }
}

fn has_glyph(font: &FontRef<'_>, ch: char) -> bool {
    let id = font.glyph_id(ch);
    id.0 != 0 && font.outline(id).is_some()
}

/// Geometry drawn for one image.
struct Placement {
    height_frac: f64,
    angle: f64,
    /// Position of the glyph centre within the free room, 0..1 on each axis.
    pos_u: f64,
    pos_v: f64,
}

/// Rasterizes `ch` from `font` into the `n`×`n` coverage map `cov` (values 0..1).
fn rasterize(font: &FontRef<'_>, ch: char, place: &Placement, n: usize, cov: &mut [f32]) {
    let Some(outline) = font.outline(font.glyph_id(ch)) else {
        return;
    };
    // Ink box in font units (y up); ab_glyph stores min = (x_min, y_max), max = (x_max, y_min).
    let (x0, x1) = (
        f64::from(outline.bounds.min.x),
        f64::from(outline.bounds.max.x),
    );
    let (y0, y1) = (
        f64::from(outline.bounds.max.y),
        f64::from(outline.bounds.min.y),
    );
    let (w_u, h_u) = (x1 - x0, y1 - y0);
    if w_u <= 0.0 || h_u <= 0.0 || n == 0 {
        return;
    }
    let side = n as f64;
    let margin = (0.04 * side).min(1.5);
    let room = side - 2.0 * margin;
    let (sin, cos) = place.angle.sin_cos();
    let mut scale = place.height_frac * side / h_u;
    // Rotated extent of the ink box at this scale; shrink to fit inside the room.
    let extent = |s: f64| {
        let (w, h) = (w_u * s, h_u * s);
        (w * cos.abs() + h * sin.abs(), w * sin.abs() + h * cos.abs())
    };
    let (ew, eh) = extent(scale);
    let fit = (room / ew).min(room / eh).min(1.0);
    scale *= fit;
    let (ew, eh) = extent(scale);
    let cx = margin + ew / 2.0 + place.pos_u * (room - ew).max(0.0);
    let cy = margin + eh / 2.0 + place.pos_v * (room - eh).max(0.0);
    let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);

    // Font units -> image pixels (y down), rotated about the ink-box centre. The outline handed
    // to ab_glyph is stored with y negated, because it flips y with a unit vertical scale.
    let map = |p: &Point| -> Point {
        let dx = (f64::from(p.x) - mx) * scale;
        let dy = -(f64::from(p.y) - my) * scale;
        let x = cx + dx * cos - dy * sin;
        let y = cy + dx * sin + dy * cos;
        point(x as f32, -(y as f32))
    };
    let curves: Vec<OutlineCurve> = outline
        .curves
        .iter()
        .map(|c| match c {
            OutlineCurve::Line(a, b) => OutlineCurve::Line(map(a), map(b)),
            OutlineCurve::Quad(a, b, c) => OutlineCurve::Quad(map(a), map(b), map(c)),
            OutlineCurve::Cubic(a, b, c, d) => OutlineCurve::Cubic(map(a), map(b), map(c), map(d)),
        })
        .collect();
    // Bounds over every point, control points included, so every curve lies inside the canvas.
    let (mut lo_x, mut hi_x, mut lo_y, mut hi_y) = (
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    for c in &curves {
        let pts: &[Point] = match c {
            OutlineCurve::Line(a, b) => &[*a, *b],
            OutlineCurve::Quad(a, b, c) => &[*a, *b, *c],
            OutlineCurve::Cubic(a, b, c, d) => &[*a, *b, *c, *d],
        };
        for p in pts {
            lo_x = lo_x.min(p.x);
            hi_x = hi_x.max(p.x);
            lo_y = lo_y.min(p.y);
            hi_y = hi_y.max(p.y);
        }
    }
    if !(lo_x.is_finite() && hi_x.is_finite() && lo_y.is_finite() && hi_y.is_finite()) {
        return;
    }
    let bounds = Rect {
        min: point(lo_x - 1.0, hi_y + 1.0),
        max: point(hi_x + 1.0, lo_y - 1.0),
    };
    let glyph = Glyph {
        id: GlyphId(0),
        scale: 1.0.into(),
        position: point(0.0, 0.0),
    };
    let outlined = OutlinedGlyph::new(
        glyph,
        Outline { bounds, curves },
        PxScaleFactor {
            horizontal: 1.0,
            vertical: 1.0,
        },
    );
    let origin = outlined.px_bounds().min;
    let (ox, oy) = (origin.x as i64, origin.y as i64);
    outlined.draw(|x, y, c| {
        let (ix, iy) = (ox + i64::from(x), oy + i64::from(y));
        if (0..n as i64).contains(&ix) && (0..n as i64).contains(&iy) {
            cov[iy as usize * n + ix as usize] = c.clamp(0.0, 1.0);
        }
    });
}

/// Blends the coverage towards its plus-shaped grey-level dilation (`weight > 0`) or erosion
/// (`weight < 0`) by `|weight|` (at most one pixel).
fn adjust_weight(cov: &mut [f32], n: usize, weight: f32) {
    let t = weight.abs().min(1.0);
    if t == 0.0 || n == 0 {
        return;
    }
    let dilate = weight > 0.0;
    let src = cov.to_vec();
    let at = |x: usize, y: usize| src[y * n + x];
    for y in 0..n {
        for x in 0..n {
            let c = at(x, y);
            // Outside the image counts as background (0).
            let nb = [
                if x > 0 { at(x - 1, y) } else { 0.0 },
                if x + 1 < n { at(x + 1, y) } else { 0.0 },
                if y > 0 { at(x, y - 1) } else { 0.0 },
                if y + 1 < n { at(x, y + 1) } else { 0.0 },
            ];
            let m = if dilate {
                nb.iter().fold(c, |a, &b| a.max(b))
            } else {
                nb.iter().fold(c, |a, &b| a.min(b))
            };
            cov[y * n + x] = c + (m - c) * t;
        }
    }
}

fn luminance(c: &[f64; 3]) -> f64 {
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

/// Foreground and background colours (0..1 RGB) whose luminances differ by at least
/// [`MIN_CONTRAST`].
fn pick_colours(rng: &mut Rng) -> ([f64; 3], [f64; 3]) {
    let mut bg = [0.0; 3];
    for _ in 0..64 {
        bg = [rng.uniform(), rng.uniform(), rng.uniform()];
        let fg = [rng.uniform(), rng.uniform(), rng.uniform()];
        if (luminance(&fg) - luminance(&bg)).abs() >= MIN_CONTRAST {
            return (fg, bg);
        }
    }
    // Practically unreachable (each try succeeds with probability ~0.4); keep the last
    // background and take black or white, whichever is farther.
    let fg = if luminance(&bg) > 0.5 {
        [0.0; 3]
    } else {
        [1.0; 3]
    };
    (fg, bg)
}

/// Source classes for pre-training (52): `A`–`Z`, `0`–`9`, then the lowercase letters whose
/// shape differs from their capital: `a b d e f g h i j k m n q r t y`.
pub fn source_classes() -> Vec<char> {
    let mut v: Vec<char> = ('A'..='Z').chain('0'..='9').collect();
    v.extend("abdefghijkmnqrty".chars());
    v
}

/// Target classes for few-shot tuning (20), disjoint from [`source_classes`] and not look-alikes
/// of Latin letters or digits (Greek `Γ`, `Θ` and Cyrillic `Д`, `Л`, `П`, `Ф` are left out as too
/// close to `r`/`F`, `O`/`0` or to the Greek letters kept):
/// Greek `Δ Λ Ξ Π Σ Φ Ψ Ω`, Cyrillic `Б Ж И Ч Ш Э Ю Я`, symbols `§ ¶ ∞ ♣`.
pub fn target_classes() -> Vec<char> {
    "ΔΛΞΠΣΦΨΩБЖИЧШЭЮЯ§¶∞♣".chars().collect()
}

/// Seed of image `index` of class `ch` in [`render_set`]: a SplitMix64 mix of the three.
fn item_seed(seed: u64, ch: char, index: usize) -> u64 {
    let a = Rng::new(seed).next_u64();
    let b = Rng::new(a ^ u64::from(u32::from(ch))).next_u64();
    Rng::new(b ^ index as u64).next_u64()
}

/// `per_class` images of each class, labelled with their index into `classes`.
///
/// The order is round-robin — image 0 of every class, then image 1 of every class, … — and image
/// `i` of class `ch` is rendered with its own [`Rng`] seeded from `(seed, ch, i)` (the character,
/// not its position in `classes`). So the result is a pure function of
/// `(classes, per_class, seed, size)`, asking for more images per class keeps the earlier result
/// as a prefix, and a class renders the same images whatever list it is part of.
pub fn render_set(
    glyphs: &Glyphs,
    classes: &[char],
    per_class: usize,
    seed: u64,
    size: u32,
    style: Style,
) -> Vec<(RgbImage, usize)> {
    let mut out = Vec::with_capacity(classes.len() * per_class);
    for i in 0..per_class {
        for (label, &ch) in classes.iter().enumerate() {
            let mut rng = Rng::new(item_seed(seed, ch, i));
            out.push((glyphs.render_styled(ch, &mut rng, size, style), label));
        }
    }
    out
}

/// A class folder name safe on every filesystem (ASCII letters, digits, `+` and `_` only) and
/// unique per character, also on case-insensitive filesystems: `U+` and the code point, then a
/// readable name where one is known — `U+0041_A`, `U+0061_a`, `U+03A3_Sigma`, `U+0416_Zhe`,
/// `U+00A7_section`; other characters give `U+XXXX` alone.
pub fn class_dir_name(ch: char) -> String {
    let code = format!("U+{:04X}", u32::from(ch));
    let name: Option<String> = if ch.is_ascii_alphanumeric() {
        Some(ch.to_string())
    } else {
        let known = match ch {
            'Γ' => "Gamma",
            'Δ' => "Delta",
            'Θ' => "Theta",
            'Λ' => "Lambda",
            'Ξ' => "Xi",
            'Π' => "Pi",
            'Σ' => "Sigma",
            'Φ' => "Phi",
            'Ψ' => "Psi",
            'Ω' => "Omega",
            'Б' => "Be",
            'Д' => "De",
            'Ж' => "Zhe",
            'И' => "I",
            'Л' => "El",
            'Ц' => "Tse",
            'Ч' => "Che",
            'Ш' => "Sha",
            'Щ' => "Shcha",
            'Э' => "E",
            'Ю' => "Yu",
            'Я' => "Ya",
            '§' => "section",
            '¶' => "pilcrow",
            '∞' => "infinity",
            '±' => "plusminus",
            '≈' => "approx",
            '♣' => "club",
            '♠' => "spade",
            '♥' => "heart",
            '♦' => "diamond",
            _ => "",
        };
        (!known.is_empty()).then(|| known.to_string())
    };
    match name {
        Some(n) => format!("{code}_{n}"),
        None => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma(p: &Rgb<u8>) -> f64 {
        (0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2])) / 255.0
    }

    #[test]
    fn fonts_parse_and_cover_every_class() {
        let g = Glyphs::new().unwrap();
        assert_eq!(g.font_count(), 5);
        for f in 0..g.font_count() {
            for ch in source_classes().into_iter().chain(target_classes()) {
                assert!(
                    g.font_covers(f, ch),
                    "font {} lacks {ch:?}",
                    g.font_names()[f]
                );
            }
        }
        // A missing glyph is reported with the font and the character.
        let err = g
            .check_coverage(&['A', '\u{E000}'])
            .unwrap_err()
            .to_string();
        assert!(err.contains(".ttf") && err.contains("U+E000"), "{err}");
    }

    #[test]
    fn class_lists() {
        let s = source_classes();
        let t = target_classes();
        assert_eq!(s.len(), 52);
        assert_eq!(t.len(), 20);
        assert_eq!(
            &s[..36],
            &('A'..='Z').chain('0'..='9').collect::<Vec<_>>()[..]
        );
        let mut all: Vec<char> = s.iter().chain(t.iter()).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 72, "classes repeat or overlap");
        assert!(t.iter().all(|c| !c.is_ascii()));
        assert_eq!(t, target_classes(), "fixed order");
    }

    #[test]
    fn dir_names_unique_and_safe() {
        let mut names: Vec<String> = source_classes()
            .into_iter()
            .chain(target_classes())
            .map(class_dir_name)
            .collect();
        for n in &names {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '_'),
                "{n}"
            );
        }
        assert_eq!(class_dir_name('Σ'), "U+03A3_Sigma");
        assert_eq!(class_dir_name('a'), "U+0061_a");
        assert_eq!(class_dir_name('★'), "U+2605");
        // Unique even when compared case-insensitively.
        names.iter_mut().for_each(|n| *n = n.to_lowercase());
        names.sort();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
    }

    #[test]
    fn deterministic() {
        let g = Glyphs::new().unwrap();
        for ch in ['A', 'Ж', '∞'] {
            let a = g.render(ch, &mut Rng::new(7), 32);
            let b = g.render(ch, &mut Rng::new(7), 32);
            let c = g.render(ch, &mut Rng::new(8), 32);
            assert_eq!(a.dimensions(), (32, 32));
            assert_eq!(a.as_raw(), b.as_raw());
            assert_ne!(a.as_raw(), c.as_raw());
        }
        let s1 = render_set(&g, &target_classes(), 2, 3, 32, Style::Clean);
        let s2 = render_set(&g, &target_classes(), 2, 3, 32, Style::Clean);
        let s3 = render_set(&g, &target_classes(), 2, 4, 32, Style::Clean);
        assert!(s1
            .iter()
            .zip(&s2)
            .all(|(a, b)| a.0.as_raw() == b.0.as_raw() && a.1 == b.1));
        assert!(s1
            .iter()
            .zip(&s3)
            .all(|(a, b)| a.0.as_raw() != b.0.as_raw()));
    }

    #[test]
    fn images_have_glyph_and_contrast() {
        let g = Glyphs::new().unwrap();
        let classes: Vec<char> = source_classes()
            .into_iter()
            .chain(target_classes())
            .collect();
        let set = render_set(&g, &classes, 6, 11, 32, Style::Clean);
        assert_eq!(set.len(), classes.len() * 6);
        for (k, (img, label)) in set.iter().enumerate() {
            assert_eq!(*label, k % classes.len());
            // Corners are background (the glyph keeps a margin): take their median luma.
            let mut corners = [
                img.get_pixel(0, 0),
                img.get_pixel(31, 0),
                img.get_pixel(0, 31),
                img.get_pixel(31, 31),
            ]
            .map(luma);
            corners.sort_by(f64::total_cmp);
            let bg = (corners[1] + corners[2]) / 2.0;
            let far = img.pixels().filter(|p| (luma(p) - bg).abs() > 0.2).count();
            let spread = img
                .pixels()
                .map(|p| (luma(p) - bg).abs())
                .fold(0.0, f64::max);
            assert!(
                far >= 8,
                "image {k} ({:?}) has only {far} foreground pixels",
                classes[*label]
            );
            assert!(
                spread > 0.25,
                "image {k} ({:?}) has contrast {spread}",
                classes[*label]
            );
            assert!(
                far < 32 * 32 * 7 / 10,
                "image {k} ({:?}) is mostly foreground",
                classes[*label]
            );
        }
    }

    #[test]
    fn render_set_prefix_stable() {
        let g = Glyphs::new().unwrap();
        let classes = target_classes();
        let small = render_set(&g, &classes, 2, 5, 24, Style::Clean);
        let big = render_set(&g, &classes, 5, 5, 24, Style::Clean);
        assert_eq!(big.len(), 100);
        for (a, b) in small.iter().zip(&big) {
            assert_eq!(a.0.as_raw(), b.0.as_raw());
            assert_eq!(a.1, b.1);
        }
        // A class renders the same images wherever it sits in the list.
        let rev: Vec<char> = classes.iter().rev().copied().collect();
        let r = render_set(&g, &rev, 2, 5, 24, Style::Clean);
        assert_eq!(r[19].0.as_raw(), small[0].0.as_raw());
        assert_eq!(r[19].1, 19);
    }

    #[test]
    fn odd_sizes_do_not_panic() {
        let g = Glyphs::new().unwrap();
        let mut rng = Rng::new(1);
        for size in [0, 1, 2, 5, 64, 224] {
            let img = g.render('Ω', &mut rng, size);
            assert_eq!(img.dimensions(), (size, size));
        }
        // Characters no font covers give background only.
        let img = g.render('\u{E000}', &mut rng, 16);
        assert_eq!(img.dimensions(), (16, 16));
    }
}
