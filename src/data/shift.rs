//! The domain shift of the demo's second target set: what the backbone never saw while pre-training on clean
//! renders. Stronger rotation, an elastic warp of the strokes (a hand-drawn look), and a textured two-colour
//! background in place of a flat one.

use crate::rng::Rng;

/// Rotation range of shifted renders, in degrees (clean renders: ±15°).
pub const MAX_ROTATION_DEG: f64 = 35.0;
/// Elastic warp: the largest displacement, as a fraction of the image side.
const WARP_AMPLITUDE: f64 = 0.07;
/// Elastic warp: control points per side of the coarse displacement grid.
const WARP_GRID: usize = 4;

/// The shift's parameters, drawn after a clean render's so that clean renders stay as they were.
#[derive(Debug, Clone)]
pub struct Shift {
    pub angle: f64,
    /// Displacements (dx, dy) in pixels at the coarse grid's control points, row-major.
    warp: Vec<(f64, f64)>,
    /// Second background colour and the texture: stripe frequency (cycles per image), direction, phase, and a
    /// blotch field from a coarse grid.
    bg2: [f64; 3],
    freq: f64,
    dir: f64,
    phase: f64,
    blotch: Vec<f64>,
}

impl Shift {
    pub fn draw(rng: &mut Rng, n: usize, bg: &[f64; 3]) -> Self {
        let angle = rng.range(-MAX_ROTATION_DEG, MAX_ROTATION_DEG).to_radians();
        let amp = WARP_AMPLITUDE * n as f64;
        let warp = (0..WARP_GRID * WARP_GRID)
            .map(|_| (rng.range(-amp, amp), rng.range(-amp, amp)))
            .collect();
        let bg2 = [0, 1, 2].map(|c| (bg[c] + rng.range(-0.35, 0.35)).clamp(0.0, 1.0));
        Self {
            angle,
            warp,
            bg2,
            freq: rng.range(1.5, 5.0),
            dir: rng.range(0.0, std::f64::consts::PI),
            phase: rng.range(0.0, std::f64::consts::TAU),
            blotch: (0..WARP_GRID * WARP_GRID).map(|_| rng.uniform()).collect(),
        }
    }

    /// Bilinear interpolation of a coarse WARP_GRID² field at pixel (x, y) of an n-pixel side.
    fn coarse<T: Copy>(field: &[T], n: usize, x: f64, y: f64, lerp: impl Fn(T, T, f64) -> T) -> T {
        let g = WARP_GRID - 1;
        let fx = (x / (n.max(2) - 1) as f64 * g as f64).clamp(0.0, g as f64);
        let fy = (y / (n.max(2) - 1) as f64 * g as f64).clamp(0.0, g as f64);
        let (x0, y0) = ((fx as usize).min(g - 1), (fy as usize).min(g - 1));
        let (tx, ty) = (fx - x0 as f64, fy - y0 as f64);
        let at = |i: usize, j: usize| field[j * WARP_GRID + i];
        let top = lerp(at(x0, y0), at(x0 + 1, y0), tx);
        let bottom = lerp(at(x0, y0 + 1), at(x0 + 1, y0 + 1), tx);
        lerp(top, bottom, ty)
    }

    /// The coverage map warped by the smooth displacement field (bilinear resampling, zero outside).
    pub fn warp(&self, cov: &[f32], n: usize) -> Vec<f32> {
        let sample = |x: f64, y: f64| -> f32 {
            if x < 0.0 || y < 0.0 || x > (n - 1) as f64 || y > (n - 1) as f64 {
                return 0.0;
            }
            let (x0, y0) = (x as usize, y as usize);
            let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
            let (tx, ty) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
            let top = cov[y0 * n + x0] * (1.0 - tx) + cov[y0 * n + x1] * tx;
            let bottom = cov[y1 * n + x0] * (1.0 - tx) + cov[y1 * n + x1] * tx;
            top * (1.0 - ty) + bottom * ty
        };
        let lerp2 =
            |a: (f64, f64), b: (f64, f64), t: f64| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        let mut out = vec![0f32; n * n];
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = Self::coarse(&self.warp, n, x as f64, y as f64, lerp2);
                out[y * n + x] = sample(x as f64 + dx, y as f64 + dy);
            }
        }
        out
    }

    /// The background colour at pixel (x, y): stripes modulated by blotches, between `bg` and the second colour.
    pub fn background(&self, bg: &[f64; 3], n: usize, x: usize, y: usize) -> [f64; 3] {
        let (xf, yf) = (x as f64 / n as f64, y as f64 / n as f64);
        let s = (std::f64::consts::TAU * self.freq * (xf * self.dir.cos() + yf * self.dir.sin())
            + self.phase)
            .sin();
        let b = Self::coarse(&self.blotch, n, x as f64, y as f64, |a, b, t| {
            a + (b - a) * t
        });
        let t = (0.5 + 0.5 * s) * b;
        [0, 1, 2].map(|c| bg[c] + (self.bg2[c] - bg[c]) * t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_moves_ink_but_keeps_most_of_it() {
        let n = 32;
        let mut cov = vec![0f32; n * n];
        for y in 10..22 {
            for x in 14..18 {
                cov[y * n + x] = 1.0;
            }
        }
        let s = Shift::draw(&mut Rng::new(3), n, &[0.2, 0.3, 0.4]);
        let w = s.warp(&cov, n);
        let (a, b): (f32, f32) = (cov.iter().sum(), w.iter().sum());
        assert!(b > 0.5 * a && b < 1.5 * a, "{a} {b}");
        assert_ne!(cov, w);
        let bgc = s.background(&[0.2, 0.3, 0.4], n, 5, 7);
        assert!(bgc.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
