//! Heat-map overlays: bilinear upsampling of a patch-grid map and alpha blending over the image.

use super::Colormap;

/// Bilinear upsampling (half-pixel centres, clamped edges) of a [gh, gw] map to [h, w].
pub fn upsample_bilinear(
    map: &[f32],
    (gh, gw): (usize, usize),
    (h, w): (usize, usize),
) -> Vec<f32> {
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let sy = ((y as f32 + 0.5) * gh as f32 / h as f32 - 0.5).clamp(0.0, (gh - 1) as f32);
        let y0 = sy.floor() as usize;
        let y1 = (y0 + 1).min(gh - 1);
        let fy = sy - y0 as f32;
        for x in 0..w {
            let sx = ((x as f32 + 0.5) * gw as f32 / w as f32 - 0.5).clamp(0.0, (gw - 1) as f32);
            let x0 = sx.floor() as usize;
            let x1 = (x0 + 1).min(gw - 1);
            let fx = sx - x0 as f32;
            let top = map[y0 * gw + x0] * (1.0 - fx) + map[y0 * gw + x1] * fx;
            let bottom = map[y1 * gw + x0] * (1.0 - fx) + map[y1 * gw + x1] * fx;
            out[y * w + x] = top * (1.0 - fy) + bottom * fy;
        }
    }
    out
}

/// The image with the map (over `region` = (x0, y0, x1, y1) in image pixels, the part the model saw) blended in
/// at `alpha`; outside the region the image is dimmed.
pub fn overlay(
    img: &image::RgbImage,
    map: &[f32],
    grid: (usize, usize),
    region: (u32, u32, u32, u32),
    cmap: Colormap,
    alpha: f32,
) -> image::RgbImage {
    let (x0, y0, x1, y1) = region;
    let (rw, rh) = ((x1 - x0).max(1) as usize, (y1 - y0).max(1) as usize);
    let up = upsample_bilinear(map, grid, (rh, rw));
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        if x >= x0 && x < x1 && y >= y0 && y < y1 {
            let v = up[(y - y0) as usize * rw + (x - x0) as usize];
            let c = cmap.rgb(v);
            for (ch, col) in p.0.iter_mut().zip(c) {
                *ch = ((1.0 - alpha) * *ch as f32 + alpha * 255.0 * col)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        } else {
            for ch in p.0.iter_mut() {
                *ch /= 2;
            }
        }
    }
    out
}
