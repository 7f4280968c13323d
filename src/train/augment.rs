//! Training augmentation: random resized crop and horizontal flip, then the model's normalisation.

use serde::{Deserialize, Serialize};

use crate::model::resample::resize_bicubic;
use crate::preprocess::Transform;
use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Random resized crop: area fraction range (torchvision's default 0.08–1) and aspect-ratio range.
    pub crop: Option<(f32, f32)>,
    pub ratio: (f32, f32),
    pub flip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            crop: Some((0.08, 1.0)),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip: true,
        }
    }
}

impl Augment {
    pub fn none() -> Self {
        Self {
            crop: None,
            ratio: (1.0, 1.0),
            flip: false,
        }
    }

    /// A training view of `img` [3, H, W], normalised as `t` says; without crop it is the eval transform.
    pub fn apply(&self, img: &image::RgbImage, t: &Transform, rng: &mut Rng) -> Vec<f32> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut out = match self.crop {
            None => t.apply(img),
            Some((smin, smax)) => {
                let (x0, y0, cw, ch) = random_crop(w, h, (smin, smax), self.ratio, rng);
                let mut planes = vec![0.0f32; 3 * ch * cw];
                for y in 0..ch {
                    for x in 0..cw {
                        let p = img.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
                        for c in 0..3 {
                            planes[(c * ch + y) * cw + x] = p[c] as f32 / 255.0;
                        }
                    }
                }
                let (th, tw) = t.size;
                let r = resize_bicubic(&planes, 3, (ch, cw), (th, tw), true);
                r.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let c = i / (th * tw);
                        (v.clamp(0.0, 1.0) - t.mean[c]) / t.std[c]
                    })
                    .collect()
            }
        };
        if self.flip && rng.uniform() < 0.5 {
            let (th, tw) = t.size;
            for row in out.chunks_mut(tw) {
                row.reverse();
            }
            debug_assert_eq!(out.len(), 3 * th * tw);
        }
        out
    }
}

/// torchvision's RandomResizedCrop.get_params: ten tries at a crop of the drawn area and aspect ratio, then the
/// central crop at the nearest allowed ratio.
fn random_crop(
    w: usize,
    h: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut Rng,
) -> (usize, usize, usize, usize) {
    let area = (w * h) as f64;
    let (lr0, lr1) = ((ratio.0 as f64).ln(), (ratio.1 as f64).ln());
    for _ in 0..10 {
        let target = area * rng.range(scale.0 as f64, scale.1 as f64);
        let ar = rng.range(lr0, lr1).exp();
        let cw = (target * ar).sqrt().round() as usize;
        let ch = (target / ar).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let x0 = rng.below(w - cw + 1);
            let y0 = rng.below(h - ch + 1);
            return (x0, y0, cw, ch);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 as f64 {
        (w, ((w as f64 / ratio.0 as f64).round() as usize).min(h))
    } else if in_ratio > ratio.1 as f64 {
        (((h as f64 * ratio.1 as f64).round() as usize).min(w), h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw.max(1), ch.max(1))
}
