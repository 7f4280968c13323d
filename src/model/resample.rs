//! Separable bicubic resampling of [C, H, W] planes, as PyTorch's `F.interpolate(mode='bicubic',
//! align_corners=False)` does it: the plain kernel (a = −0.75, clamped borders), or with `antialias=True`
//! the filter whose support widens by the scale when downsampling (a = −0.5, window clipped to the image
//! and its weights renormalised) — which is also what PIL's bicubic resize computes.

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// For each output index: the first input index and the weights of the taps from there.
fn weights(input: usize, output: usize, antialias: bool) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|i| {
            if antialias {
                let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
                let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
                let center = scale * (i as f64 + 0.5);
                let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
                let xmax = ((center + support + 0.5).floor() as usize).min(input);
                let mut w: Vec<f64> = (xmin..xmax)
                    .map(|j| cubic((j as f64 - center + 0.5) * inv, -0.5))
                    .collect();
                let total: f64 = w.iter().sum();
                if total != 0.0 {
                    w.iter_mut().for_each(|x| *x /= total);
                }
                (xmin, w)
            } else {
                let src = scale * (i as f64 + 0.5) - 0.5;
                let f = src.floor();
                let t = src - f;
                let a = -0.75;
                let taps = [
                    cubic(t + 1.0, a),
                    cubic(t, a),
                    cubic(1.0 - t, a),
                    cubic(2.0 - t, a),
                ];
                // Expand clamped taps into a dense window over [lo, hi].
                let idx: Vec<usize> = (-1..3)
                    .map(|o| (f as i64 + o).clamp(0, input as i64 - 1) as usize)
                    .collect();
                let lo = *idx.iter().min().unwrap_or(&0);
                let hi = *idx.iter().max().unwrap_or(&0);
                let mut w = vec![0.0; hi - lo + 1];
                for (j, tap) in idx.iter().zip(taps) {
                    w[j - lo] += tap;
                }
                (lo, w)
            }
        })
        .collect()
}

/// Resizes `c` planes of `h`×`w` (row-major) to `oh`×`ow`.
pub fn resize_bicubic(
    data: &[f32],
    c: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    antialias: bool,
) -> Vec<f32> {
    let wx = weights(w, ow, antialias);
    let wy = weights(h, oh, antialias);
    let mut tmp = vec![0.0f64; c * h * ow];
    for ch in 0..c {
        for y in 0..h {
            let row = &data[(ch * h + y) * w..(ch * h + y + 1) * w];
            for (x, (start, ws)) in wx.iter().enumerate() {
                tmp[(ch * h + y) * ow + x] = ws
                    .iter()
                    .enumerate()
                    .map(|(j, wt)| wt * row[start + j] as f64)
                    .sum();
            }
        }
    }
    let mut out = vec![0.0f32; c * oh * ow];
    for ch in 0..c {
        for (y, (start, ws)) in wy.iter().enumerate() {
            for x in 0..ow {
                let v: f64 = ws
                    .iter()
                    .enumerate()
                    .map(|(j, wt)| wt * tmp[(ch * h + start + j) * ow + x])
                    .sum();
                out[(ch * oh + y) * ow + x] = v as f32;
            }
        }
    }
    out
}

/// Resamples a position embedding [1, prefix + gh·gw, D] to a new grid, keeping the prefix (CLS) rows,
/// as timm's `resample_abs_pos_embed` does.
pub fn resample_pos_embed(
    pos: &[f32],
    dim: usize,
    prefix: usize,
    from: (usize, usize),
    to: (usize, usize),
    antialias: bool,
) -> Vec<f32> {
    if from == to {
        return pos.to_vec();
    }
    let (gh, gw) = from;
    // [gh·gw, D] → [D, gh, gw]
    let mut planes = vec![0.0f32; dim * gh * gw];
    for p in 0..gh * gw {
        for d in 0..dim {
            planes[d * gh * gw + p] = pos[(prefix + p) * dim + d];
        }
    }
    let out = resize_bicubic(&planes, dim, from, to, antialias);
    let mut res = pos[..prefix * dim].to_vec();
    let n = to.0 * to.1;
    res.resize(prefix * dim + n * dim, 0.0);
    for p in 0..n {
        for d in 0..dim {
            res[(prefix + p) * dim + d] = out[d * n + p];
        }
    }
    res
}
