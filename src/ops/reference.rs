//! CPU references in f64 for the kernels the autotuner and the selftest check on the adapter at hand.

/// max |a − b| / max |b| (infinite when the lengths differ or `a` is not finite): the measure every check states
/// its tolerance in.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale.max(1e-30)
}

/// erf by its Maclaurin series (the reference GELU must be exact to far below the 1e-4 checks; Rust's std has no
/// erf). Beyond |x| = 5, erf is ±1 to 2e-12; below, the series' cancellation costs at most ~1e-6 absolute.
pub fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    if x > 5.0 {
        return s;
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0f64);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) && n < 200.0 {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    s * (2.0 / std::f64::consts::PI.sqrt()) * sum
}

/// GELU(A·B + bias) per batch: A [batches, m, k], B [batches, n, k] when `b_trans` (a weight) else
/// [batches, k, n].
pub fn matmul_bias_gelu(
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    (m, n, k): (usize, usize, usize),
    batches: usize,
    b_trans: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; batches * m * n];
    for z in 0..batches {
        for i in 0..m {
            for j in 0..n {
                let mut acc = bias[j] as f64;
                for p in 0..k {
                    let bv = if b_trans {
                        b[z * k * n + j * k + p]
                    } else {
                        b[z * k * n + p * n + j]
                    };
                    acc += a[z * m * k + i * k + p] as f64 * bv as f64;
                }
                out[z * m * n + i * n + j] =
                    (0.5 * acc * (1.0 + erf(acc / std::f64::consts::SQRT_2))) as f32;
            }
        }
    }
    out
}

/// LayerNorm of each row of x [rows, d].
pub fn layernorm(x: &[f32], d: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().map(|v| *v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter().enumerate().map(|(i, v)| {
                ((*v as f64 - mean) * rstd * gamma[i] as f64 + beta[i] as f64) as f32
            }),
        );
    }
    out
}

/// Softmax of each row of x [rows, d].
pub fn softmax(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let m = row.iter().fold(f64::MIN, |m, v| m.max(*v as f64));
        let z: f64 = row.iter().map(|v| (*v as f64 - m).exp()).sum();
        out.extend(row.iter().map(|v| ((*v as f64 - m).exp() / z) as f32));
    }
    out
}

/// Attention in f64 from qkv [n, t, 3·heads·hd], scores scaled by hd^-1/2: the probabilities [n, heads, t, t], the
/// context [n, t, heads·hd] and the log-sum-exp of the scaled scores [n·heads, t].
pub fn attention(
    qkv: &[f32],
    (n, t, heads, hd): (usize, usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = heads * hd;
    let at = |img: usize, tok: usize, which: usize, h: usize, c: usize| {
        qkv[(img * t + tok) * 3 * d + which * d + h * hd + c] as f64
    };
    let scale = (hd as f64).powf(-0.5);
    let mut probs = vec![0.0; n * heads * t * t];
    let mut ctx = vec![0.0; n * t * d];
    let mut lse = vec![0.0; n * heads * t];
    for img in 0..n {
        for h in 0..heads {
            for i in 0..t {
                let s: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..hd)
                            .map(|c| at(img, i, 0, h, c) * at(img, j, 1, h, c))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                lse[(img * heads + h) * t + i] = m + z.ln();
                for j in 0..t {
                    probs[((img * heads + h) * t + i) * t + j] = e[j] / z;
                }
                for c in 0..hd {
                    ctx[(img * t + i) * d + h * hd + c] =
                        (0..t).map(|j| e[j] / z * at(img, j, 2, h, c)).sum();
                }
            }
        }
    }
    (probs, ctx, lse)
}

/// Attention's context [n, t, heads·hd] (see `attention`), as f32.
pub fn attention_context(qkv: &[f32], dims: (usize, usize, usize, usize)) -> Vec<f32> {
    attention(qkv, dims)
        .1
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-2.0, -0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
        ] {
            assert!(
                (super::erf(x) - want).abs() < 1e-12,
                "erf({x}) = {}",
                super::erf(x)
            );
        }
    }
}
