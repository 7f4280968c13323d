//! Image decoding and the eval transforms: timm's (resize the shorter side to size/crop_pct, bicubic,
//! center crop) and Hugging Face's (resize straight to the size), then mean/std normalisation.

use std::path::Path;

use crate::error::Result;
use crate::model::resample::resize_bicubic;
use crate::model::HostTensor;

/// How an image becomes the model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    pub size: (usize, usize),
    /// timm's crop_pct; 1.0 means resize straight to `size` (Hugging Face style).
    pub crop_pct: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

pub use crate::decode::load_rgb;

/// Planar f32 [3, H, W] in 0..1.
fn planes(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0.0; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = p.0[c] as f32 / 255.0;
        }
    }
    out
}

impl Transform {
    /// The model input [3, H, W] for one image.
    pub fn apply(&self, img: &image::RgbImage) -> Vec<f32> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (th, tw) = self.size;
        let src = planes(img);
        let resized;
        let (rh, rw, data) = if self.crop_pct >= 1.0 {
            resized = resize_bicubic(&src, 3, (h, w), (th, tw), true);
            (th, tw, &resized)
        } else {
            // torchvision Resize(int): the shorter side becomes floor(size / crop_pct).
            let short = ((th.min(tw) as f32) / self.crop_pct).floor() as usize;
            let (nh, nw) = if h <= w {
                (short, (short as f64 * w as f64 / h as f64) as usize)
            } else {
                ((short as f64 * h as f64 / w as f64) as usize, short)
            };
            resized = resize_bicubic(&src, 3, (h, w), (nh.max(th), nw.max(tw)), true);
            (nh.max(th), nw.max(tw), &resized)
        };
        let top = ((rh - th) as f64 / 2.0).round() as usize;
        let left = ((rw - tw) as f64 / 2.0).round() as usize;
        let mut out = vec![0.0; 3 * th * tw];
        for c in 0..3 {
            for y in 0..th {
                for x in 0..tw {
                    let v = data[(c * rh + top + y) * rw + left + x].clamp(0.0, 1.0);
                    out[(c * th + y) * tw + x] = (v - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }

    /// The part of a w×h image the model sees, in its pixels: (x0, y0, x1, y1).
    pub fn crop_box(&self, w: usize, h: usize) -> (u32, u32, u32, u32) {
        if self.crop_pct >= 1.0 {
            return (0, 0, w as u32, h as u32);
        }
        let (th, tw) = self.size;
        let short = ((th.min(tw) as f32) / self.crop_pct).floor() as f64;
        let scale = w.min(h) as f64 / short;
        let (rh, rw) = (h as f64 / scale, w as f64 / scale);
        let top = ((rh - th as f64) / 2.0).round().max(0.0);
        let left = ((rw - tw as f64) / 2.0).round().max(0.0);
        let x0 = (left * scale).round() as u32;
        let y0 = (top * scale).round() as u32;
        let x1 = (((left + tw as f64) * scale).round() as u32).min(w as u32);
        let y1 = (((top + th as f64) * scale).round() as u32).min(h as u32);
        (x0, y0, x1, y1)
    }

    /// Loads and transforms images into one batch [N, 3, H, W]; the first that does not decode is the error.
    pub fn batch(&self, paths: &[impl AsRef<Path>]) -> Result<HostTensor> {
        let (pixels, _, failed) = self.batch_readable(paths);
        match failed.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(pixels),
        }
    }

    /// The images that decode, in order, as one batch [n, 3, H, W], with their indices in `paths`; the others
    /// with their errors.
    pub fn batch_readable(
        &self,
        paths: &[impl AsRef<Path>],
    ) -> (HostTensor, Vec<usize>, Vec<(usize, crate::Error)>) {
        let (mut data, mut good, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, p) in paths.iter().enumerate() {
            match load_rgb(p.as_ref()) {
                Ok(img) => {
                    data.extend(self.apply(&img));
                    good.push(i);
                }
                Err(e) => failed.push((i, e)),
            }
        }
        let shape = vec![good.len(), 3, self.size.0, self.size.1];
        (HostTensor::new(shape, data), good, failed)
    }
}
