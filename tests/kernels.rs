//! Every forward kernel against an f64 CPU reference, on random inputs of awkward sizes (not multiples of the
//! tiles or workgroup widths).

mod common;

use vitune::gpu::{AttentionKernel, Gpu, GpuTensor, Recorder};
use vitune::ops;
use vitune::ops::matmul::{Act, Layout, Matmul, MatmulKernel};
use vitune::rng::Rng;

fn up(gpu: &Gpu, shape: &[usize], data: &[f32]) -> GpuTensor {
    gpu.upload(shape, data).expect("upload")
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    let want32: Vec<f32> = want.iter().map(|v| *v as f32).collect();
    let e = common::rel_err(got, &want32);
    assert!(e < tol, "{what}: relative error {e:e} ≥ {tol:e}");
}

fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2))
}

/// erf to double precision (Numerical Recipes erfc, fractional error < 1.2e-7 is too coarse; use series/cf).
fn libm_erf(x: f64) -> f64 {
    // Abramowitz–Stegun 7.1.28-level accuracy is not enough for a reference: use a Taylor series for small
    // |x| and the continued fraction for large |x|.
    let ax = x.abs();
    let r = if ax < 3.0 {
        let mut sum = ax;
        let mut term = ax;
        let x2 = ax * ax;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

struct MatCase {
    m: usize,
    n: usize,
    k: usize,
    b1: usize,
    b2: usize,
    a_trans: bool,
    b_trans: bool,
    bias: bool,
    gelu: bool,
    residual: bool,
    accumulate: bool,
    alpha: f32,
    /// Also write the pre-activation to a second output (a training forward's fused bias + activation).
    pre_act: bool,
    /// A per-column scale and shift before the activation (SSF's affine folded into the epilogue).
    scale_shift: bool,
}

/// Runs one case; with `b16` B is stored as f16 and the reference uses B rounded to f16.
fn run_matmul(gpu: &Gpu, c: &MatCase, seed: u64, kernel: MatmulKernel, b16: bool) {
    let mut rng = Rng::new(seed);
    let batches = c.b1 * c.b2;
    let (m, n, k) = (c.m, c.n, c.k);
    // A stored as [batches, m, k] or [batches, k, m]; B as [batches, n, k] (weight layout) or [batches, k, n].
    let a = rng.normal_vec(batches * m * k + 3, 1.0);
    let mut b = rng.normal_vec(batches * k * n + 5, 1.0);
    if b16 {
        for v in &mut b {
            *v = half::f16::from_f32(*v).to_f32();
        }
    }
    let bias = rng.normal_vec(n + 2, 1.0);
    let col_scale = rng.normal_vec(n, 1.0);
    let col_shift = rng.normal_vec(n, 1.0);
    let res = rng.normal_vec(batches * m * n, 1.0);
    let c0 = rng.normal_vec(batches * m * n, 1.0);
    let a_off = 3;
    let b_off = 5;
    let al = if c.a_trans {
        Layout {
            off: a_off,
            rs: 1,
            cs: m,
            b1: c.b2 * m * k,
            b2: m * k,
        }
    } else {
        Layout {
            off: a_off,
            rs: k,
            cs: 1,
            b1: c.b2 * m * k,
            b2: m * k,
        }
    };
    let bl = if c.b_trans {
        Layout {
            off: b_off,
            rs: 1,
            cs: k,
            b1: c.b2 * k * n,
            b2: k * n,
        }
    } else {
        Layout {
            off: b_off,
            rs: n,
            cs: 1,
            b1: c.b2 * k * n,
            b2: k * n,
        }
    };
    let cl = Layout {
        off: 0,
        rs: n,
        cs: 1,
        b1: c.b2 * m * n,
        b2: m * n,
    };
    let ga = up(gpu, &[a.len()], &a);
    let gb = if b16 {
        gpu.upload_f16(&[b.len()], &b).expect("upload f16")
    } else {
        up(gpu, &[b.len()], &b)
    };
    let gbias = up(gpu, &[bias.len()], &bias);
    let gres = up(gpu, &[res.len()], &res);
    let gc = up(gpu, &[c0.len()], &c0);
    let gpre = gpu.empty(&[batches * m * n]).expect("pre");
    let gscale = up(gpu, &[n], &col_scale);
    let gshift = up(gpu, &[n], &col_shift);
    let mut rec = Recorder::new(gpu);
    let mut mm = Matmul::new((m, n, k), (&ga, al), (&gb, bl), (&gc, cl));
    mm.batch1 = c.b1;
    mm.batch2 = c.b2;
    mm.alpha = c.alpha;
    mm.bias = c.bias.then_some((&gbias, 2));
    mm.act = if c.gelu { Act::Gelu } else { Act::None };
    mm.residual = c.residual.then_some(&gres);
    mm.accumulate = c.accumulate;
    mm.kernel = Some(kernel);
    mm.pre_act = c.pre_act.then_some(&gpre);
    mm.scale_shift = c.scale_shift.then_some((&gscale, &gshift));
    mm.record(&mut rec);
    let h = rec.read(&gc);
    let hp = rec.read(&gpre);
    let (outs, _) = rec.finish().expect("matmul runs");
    let got = &outs[h.0];
    let mut want_pre = vec![0.0f64; batches * m * n];

    let at = |z: usize, i: usize, j: usize| {
        let (z1, z2) = (z / c.b2, z % c.b2);
        a[al.off + z1 * al.b1 + z2 * al.b2 + i * al.rs + j * al.cs] as f64
    };
    let bt = |z: usize, i: usize, j: usize| {
        let (z1, z2) = (z / c.b2, z % c.b2);
        b[bl.off + z1 * bl.b1 + z2 * bl.b2 + i * bl.rs + j * bl.cs] as f64
    };
    let mut want = vec![0.0f64; batches * m * n];
    for z in 0..batches {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for kk in 0..k {
                    s += at(z, i, kk) * bt(z, kk, j);
                }
                if c.bias {
                    s += bias[2 + j] as f64;
                }
                let mut v = c.alpha as f64 * s;
                let ci = z * m * n + i * n + j;
                want_pre[ci] = v;
                if c.scale_shift {
                    v = v * col_scale[j] as f64 + col_shift[j] as f64;
                }
                if c.gelu {
                    v = gelu64(v);
                }
                if c.residual {
                    v += res[ci] as f64;
                }
                if c.accumulate {
                    v += c0[ci] as f64;
                }
                want[ci] = v;
            }
        }
    }
    let what = format!(
        "matmul {m}x{n}x{k} b{}x{} {kernel:?} f16 B {b16}",
        c.b1, c.b2
    );
    // f16 inputs: the autotuner's tolerance for them (relative to the largest output, as assert_close is).
    let tol = if kernel.half_inputs() {
        vitune::ops::autotune::HALF_TOLERANCE
    } else {
        2e-5
    };
    assert_close(got, &want, tol, &what);
    if c.pre_act {
        assert_close(
            &outs[hp.0],
            &want_pre,
            tol,
            &format!("{what}, pre-activation"),
        );
    }
}

#[test]
fn matmul_matches_reference_across_layouts_and_epilogues() {
    let gpu = common::gpu();
    let base = MatCase {
        m: 67,
        n: 45,
        k: 37,
        b1: 1,
        b2: 1,
        a_trans: false,
        b_trans: true,
        bias: false,
        gelu: false,
        residual: false,
        accumulate: false,
        alpha: 1.0,
        pre_act: false,
        scale_shift: false,
    };
    let cases = [
        MatCase { ..base },
        MatCase {
            bias: true,
            gelu: true,
            pre_act: true,
            ..base
        },
        MatCase {
            a_trans: true,
            b_trans: false,
            residual: true,
            ..base
        },
        MatCase {
            m: 130,
            n: 70,
            k: 100,
            accumulate: true,
            alpha: 0.37,
            ..base
        },
        MatCase {
            m: 13,
            n: 5,
            k: 129,
            b1: 2,
            b2: 3,
            a_trans: true,
            b_trans: true,
            bias: true,
            gelu: true,
            alpha: 0.5,
            pre_act: true,
            ..base
        },
        MatCase {
            m: 1,
            n: 1,
            k: 1,
            ..base
        },
        // The direct kernel's three tile shapes: 32 columns at most with 64-row tiles' worth of rows (32x32),
        // many rows over 32 columns (64x64), a few rows over 32 columns (32x64).
        MatCase {
            m: 101,
            n: 30,
            k: 19,
            bias: true,
            residual: true,
            ..base
        },
        MatCase {
            m: 97,
            n: 40,
            k: 9,
            bias: true,
            gelu: true,
            pre_act: true,
            ..base
        },
        MatCase {
            m: 40,
            n: 33,
            k: 7,
            a_trans: true,
            b_trans: false,
            accumulate: true,
            ..base
        },
        // SSF's affine in the epilogue: before GELU keeping its input, and before a residual keeping its input.
        MatCase {
            m: 71,
            n: 29,
            k: 23,
            bias: true,
            gelu: true,
            pre_act: true,
            scale_shift: true,
            ..base
        },
        MatCase {
            m: 130,
            n: 66,
            k: 41,
            bias: true,
            residual: true,
            pre_act: true,
            scale_shift: true,
            alpha: 0.7,
            ..base
        },
    ];
    // A driver known to lack SHADER_F16 (SwiftShader) is named by the caller; anywhere else the f16 cases fail
    // loudly without it.
    let without_f16 = common::f16_declared_absent(&gpu);
    for b16 in [false, true] {
        if b16 && without_f16 {
            eprintln!(
                "f16 cases not run: VITUNE_TEST_WITHOUT_F16 says this adapter has no SHADER_F16"
            );
            continue;
        }
        // The f32 cases run first; the f16 ones then fail loudly where the adapter lacks SHADER_F16.
        assert!(
            !b16 || gpu.has_shader_f16(),
            "this adapter ({}) has no SHADER_F16, which the f16-weight matmul needs (lavapipe has it)",
            gpu.describe()
        );
        for &kernel in MatmulKernel::ALL {
            if !common::runs_matmul(&gpu, kernel) {
                continue;
            }
            for (i, c) in cases.iter().enumerate() {
                run_matmul(&gpu, c, 10 + i as u64, kernel, b16);
            }
        }
    }
}

#[test]
fn layernorm_matches_reference_with_strided_rows() {
    let gpu = common::gpu();
    for &k in common::row_kernels(&gpu) {
        gpu.set_row_kernel(k);
        layernorm_case(&gpu);
    }
}

fn layernorm_case(gpu: &Gpu) {
    let mut rng = Rng::new(3);
    let (rows, d, stride, off) = (5, 77, 100, 3);
    let x: Vec<f32> = rng
        .normal_vec(off + rows * stride, 2.0)
        .into_iter()
        .map(|v| v + 1.5)
        .collect();
    let g = rng.normal_vec(d, 1.0);
    let b = rng.normal_vec(d, 1.0);
    let (gx, gg, gb) = (
        up(gpu, &[x.len()], &x),
        up(gpu, &[d], &g),
        up(gpu, &[d], &b),
    );
    let mut rec = Recorder::new(gpu);
    let out = ops::layernorm::layernorm_rows(&mut rec, &gx, rows, off, stride, &gg, &gb, 1e-6)
        .expect("ln");
    let hy = rec.read(&out.y);
    let hs = rec.read(&out.stats);
    let (outs, _) = rec.finish().expect("runs");
    let mut want = Vec::new();
    let mut want_stats = Vec::new();
    for r in 0..rows {
        let row: Vec<f64> = (0..d).map(|i| x[off + r * stride + i] as f64).collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + 1e-6).sqrt();
        want_stats.extend([mean, rstd]);
        want.extend((0..d).map(|i| (row[i] - mean) * rstd * g[i] as f64 + b[i] as f64));
    }
    let k = gpu.row_kernel();
    assert_close(&outs[hy.0], &want, 1e-5, &format!("layernorm {k:?}"));
    assert_close(
        &outs[hs.0],
        &want_stats,
        1e-5,
        &format!("layernorm stats {k:?}"),
    );
}

#[test]
fn softmax_is_stable_and_matches_reference() {
    let gpu = common::gpu();
    for &k in common::row_kernels(&gpu) {
        gpu.set_row_kernel(k);
        softmax_case(&gpu);
    }
}

fn softmax_case(gpu: &Gpu) {
    let mut rng = Rng::new(4);
    let (rows, cols) = (7, 133);
    let x: Vec<f32> = rng
        .normal_vec(rows * cols, 30.0)
        .into_iter()
        .map(|v| v + 80.0)
        .collect();
    let gx = up(gpu, &[rows, cols], &x);
    let mut rec = Recorder::new(gpu);
    ops::softmax::softmax_inplace(&mut rec, &gx);
    let h = rec.read(&gx);
    let (outs, _) = rec.finish().expect("runs");
    let mut want = Vec::new();
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().fold(f64::MIN, |a, v| a.max(*v as f64));
        let e: Vec<f64> = row.iter().map(|v| (*v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        want.extend(e.iter().map(|v| v / s));
    }
    let k = gpu.row_kernel();
    assert_close(&outs[h.0], &want, 1e-5, &format!("softmax {k:?}"));
}

#[test]
fn patch_embedding_equals_strided_convolution() {
    let gpu = common::gpu();
    let mut rng = Rng::new(5);
    let (n, h, w, p, d) = (2, 24, 16, 8, 19);
    let px = rng.normal_vec(n * 3 * h * w, 1.0);
    let wt = rng.normal_vec(d * 3 * p * p, 0.1);
    let bias = rng.normal_vec(d, 1.0);
    let gpx = up(&gpu, &[n, 3, h, w], &px);
    let gw = up(&gpu, &[d, 3 * p * p], &wt);
    let gb = up(&gpu, &[d], &bias);
    let mut rec = Recorder::new(&gpu);
    let out = ops::embed::patch_embed(&mut rec, &gpx, &gw, &gb, p).expect("embed");
    let hd = rec.read(&out);
    let (outs, _) = rec.finish().expect("runs");
    let (gh, gwid) = (h / p, w / p);
    let mut want = Vec::new();
    for img in 0..n {
        for gy in 0..gh {
            for gx in 0..gwid {
                for o in 0..d {
                    let mut s = bias[o] as f64;
                    for c in 0..3 {
                        for ky in 0..p {
                            for kx in 0..p {
                                let wv = wt[((o * 3 + c) * p + ky) * p + kx] as f64;
                                let pv =
                                    px[((img * 3 + c) * h + gy * p + ky) * w + gx * p + kx] as f64;
                                s += wv * pv;
                            }
                        }
                    }
                    want.push(s);
                }
            }
        }
    }
    assert_close(&outs[hd.0], &want, 1e-5, "patch embedding");
}

#[test]
fn tokens_are_prefix_prompts_then_patches_with_positions() {
    let gpu = common::gpu();
    let mut rng = Rng::new(6);
    let (n, m, d, p) = (2, 6, 5, 3);
    // CLS (1), no class token (0), CLS and the distillation token (2).
    for k in [1, 0, 2] {
        let patches = rng.normal_vec(n * m * d, 1.0);
        let cls = rng.normal_vec(k.max(1) * d, 1.0);
        let pos = rng.normal_vec((k + m) * d, 1.0);
        let prompts = rng.normal_vec(p * d, 1.0);
        let gp = up(&gpu, &[n * m, d], &patches);
        let gc = up(&gpu, &[1, k.max(1), d], &cls);
        let gpos = up(&gpu, &[1, k + m, d], &pos);
        let gpr = up(&gpu, &[1, p, d], &prompts);
        let mut rec = Recorder::new(&gpu);
        let prompts_arg = ops::embed::Prompts {
            tokens: &gpr,
            count: p,
            per_image: false,
        };
        let prefix = (k > 0).then_some(&gc);
        let x = ops::embed::assemble_tokens(&mut rec, &gp, n, prefix, &gpos, Some(prompts_arg))
            .expect("tokens");
        assert_eq!(x.shape, vec![n, k + p + m, d]);
        let h = rec.read(&x);
        let (outs, _) = rec.finish().expect("runs");
        let mut want = Vec::new();
        for img in 0..n {
            want.extend((0..k * d).map(|i| (cls[i] + pos[i]) as f64));
            want.extend(prompts.iter().map(|v| *v as f64));
            for t in 0..m {
                want.extend(
                    (0..d).map(|i| (patches[(img * m + t) * d + i] + pos[(k + t) * d + i]) as f64),
                );
            }
        }
        assert_close(
            &outs[h.0],
            &want,
            1e-6,
            &format!("token assembly, {k} prefix tokens"),
        );
    }
}

#[test]
fn mean_pooling_and_gelu_match_reference() {
    let gpu = common::gpu();
    let mut rng = Rng::new(7);
    let (n, t, d) = (3, 11, 70);
    let x = rng.normal_vec(n * t * d, 2.0);
    let gx = up(&gpu, &[n, t, d], &x);
    let mut rec = Recorder::new(&gpu);
    // After CLS (1), with no class token (0), after CLS and the distillation token (2).
    let starts = [1, 0, 2];
    let pooled: Vec<_> = starts
        .iter()
        .map(|&s| ops::reduce::mean_tokens(&mut rec, &gx, s).expect("pool"))
        .collect();
    let g = ops::activation::gelu(&mut rec, &gx).expect("gelu");
    let hp: Vec<_> = pooled.iter().map(|p| rec.read(p)).collect();
    let hg = rec.read(&g);
    let (outs, _) = rec.finish().expect("runs");
    for (&start, h) in starts.iter().zip(&hp) {
        let mut want = Vec::new();
        for img in 0..n {
            for c in 0..d {
                let s: f64 = (start..t).map(|k| x[(img * t + k) * d + c] as f64).sum();
                want.push(s / (t - start) as f64);
            }
        }
        assert_close(
            &outs[h.0],
            &want,
            1e-6,
            &format!("mean pooling from {start}"),
        );
    }
    let want_g: Vec<f64> = x.iter().map(|v| gelu64(*v as f64)).collect();
    assert_close(&outs[hg.0], &want_g, 1e-6, "gelu");
}

/// Attention pooling against f64: one shared query, softmax over each image's keys per head, then ·V.
#[test]
fn pool_attention_matches_reference() {
    let gpu = common::gpu();
    let mut rng = Rng::new(17);
    let (n, t, heads, hd) = (3, 9, 3, 4);
    let d = heads * hd;
    let q = rng.normal_vec(d, 1.0);
    let kv = rng.normal_vec(n * t * 2 * d, 1.0);
    let mut rec = Recorder::new(&gpu);
    let out = ops::attention::pool_attention(
        &mut rec,
        &up(&gpu, &[1, d], &q),
        &up(&gpu, &[n, t, 2 * d], &kv),
        heads,
    )
    .expect("pool");
    let (hp, hc) = (rec.read(&out.probs), rec.read(&out.context));
    let (outs, _) = rec.finish().expect("runs");
    let (mut probs, mut ctx) = (Vec::new(), vec![0.0f64; n * d]);
    for img in 0..n {
        for h in 0..heads {
            let s: Vec<f64> = (0..t)
                .map(|j| {
                    (0..hd)
                        .map(|c| {
                            q[h * hd + c] as f64 * kv[(img * t + j) * 2 * d + h * hd + c] as f64
                        })
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
            let p: Vec<f64> = s.iter().map(|v| (v - m).exp() / z).collect();
            for (j, pj) in p.iter().enumerate() {
                for c in 0..hd {
                    ctx[img * d + h * hd + c] +=
                        pj * kv[(img * t + j) * 2 * d + d + h * hd + c] as f64;
                }
            }
            probs.extend(p);
        }
    }
    assert_close(&outs[hp.0], &probs, 1e-5, "pool attention probabilities");
    assert_close(&outs[hc.0], &ctx, 1e-5, "pool attention context");
}

/// Reference attention in f64: probabilities [N,H,T,T], context [N,T,D] and log-sum-exp of the scaled scores
/// [N·H,T], from qkv [N,T,3D] (the autotuner's reference).
fn attention_reference(
    qkv: &[f32],
    dims: (usize, usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    vitune::ops::reference::attention(qkv, dims)
}

#[test]
fn attention_matches_reference() {
    let gpu = common::gpu();
    let mut rng = Rng::new(8);
    let (n, t, heads, hd) = (2, 13, 3, 5);
    let d = heads * hd;
    let qkv = rng.normal_vec(n * t * 3 * d, 1.0);
    let g = up(&gpu, &[n, t, 3 * d], &qkv);
    let mut rec = Recorder::new(&gpu);
    let out = ops::attention::attention(&mut rec, &g, heads).expect("attention");
    let hp = rec.read(&out.probs);
    let hc = rec.read(&out.context);
    let (outs, _) = rec.finish().expect("runs");
    let (probs, ctx, _) = attention_reference(&qkv, (n, t, heads, hd));
    assert_close(&outs[hp.0], &probs, 1e-5, "attention probabilities");
    assert_close(&outs[hc.0], &ctx, 1e-5, "attention context");
}

/// Both fused variants' context and log-sum-exp against the reference, at sizes that leave partial key blocks (T
/// not a multiple of 8 or of the tiled kernel's 16 or 32), cross 16- and 32-row workgroup blocks (T = 70), and use
/// the built-in (64) and generated head sizes (128: the tiled kernel's 8-key tiles).
#[test]
fn fused_attention_matches_reference() {
    let gpu = common::gpu();
    let mut rng = Rng::new(18);
    for kernel in FUSED {
        for (n, t, heads, hd) in [(2, 13, 3, 5), (1, 70, 2, 64), (3, 1, 1, 3), (1, 37, 1, 128)] {
            let d = heads * hd;
            let qkv = rng.normal_vec(n * t * 3 * d, 1.5);
            let g = up(&gpu, &[n, t, 3 * d], &qkv);
            let mut rec = Recorder::new(&gpu);
            let out =
                ops::attention::flash_attention_as(&mut rec, &g, heads, kernel).expect("attention");
            let hc = rec.read(&out.context);
            let hl = rec.read(&out.lse);
            let (outs, _) = rec.finish().expect("runs");
            let (_, ctx, lse) = attention_reference(&qkv, (n, t, heads, hd));
            let what = format!("{kernel:?} attention n{n} t{t} h{heads} hd{hd}");
            assert_close(&outs[hc.0], &ctx, 1e-5, &format!("{what} context"));
            assert_close(&outs[hl.0], &lse, 1e-5, &format!("{what} log-sum-exp"));
        }
    }
}

/// The fused variants of attention: one invocation per row, and workgroup-tiled.
const FUSED: [AttentionKernel; 2] = [AttentionKernel::Fused, AttentionKernel::Tiled];

/// Both fused backwards give the matmul path's d qkv (both are checked by finite differences separately).
#[test]
fn fused_attention_backward_matches_the_matmul_backward() {
    let gpu = common::gpu();
    let mut rng = Rng::new(19);
    for kernel in FUSED {
        for (n, t, heads, hd) in [(2, 13, 3, 5), (1, 70, 2, 64), (1, 37, 1, 128)] {
            let d = heads * hd;
            let qkv = up(&gpu, &[n, t, 3 * d], &rng.normal_vec(n * t * 3 * d, 1.5));
            let dctx = up(&gpu, &[n, t, d], &rng.normal_vec(n * t * d, 1.0));
            let mut rec = Recorder::new(&gpu);
            let a = ops::attention::attention(&mut rec, &qkv, heads).expect("attention");
            let want =
                ops::attention::attention_backward(&mut rec, &qkv, &a.probs, &dctx, heads, None)
                    .expect("backward");
            let f =
                ops::attention::flash_attention_as(&mut rec, &qkv, heads, kernel).expect("fused");
            let got = ops::attention::flash_attention_backward_as(
                &mut rec,
                (&qkv, &f.context, &f.lse, &dctx),
                heads,
                kernel,
            )
            .expect("fused backward");
            let (hw, hg) = (rec.read(&want), rec.read(&got));
            let (outs, _) = rec.finish().expect("runs");
            let want: Vec<f64> = outs[hw.0].iter().map(|v| *v as f64).collect();
            assert_close(
                &outs[hg.0],
                &want,
                1e-4,
                &format!("{kernel:?} d qkv n{n} t{t} hd{hd}"),
            );
        }
    }
}

#[test]
fn dropout_masks_match_the_cpu_mirror_and_replay() {
    use ops::dropout::{dropout_rows, kept, Band, Dropout};
    let gpu = common::gpu();
    let mut rng = Rng::new(9);
    let (n, t, d) = (3, 9, 37);
    let band = Band {
        images: n,
        tokens: t,
        start: 2,
        count: 4,
        dim: d,
    };
    let drop = Dropout {
        rate: 0.3,
        seed: 1234,
        first_image: 5,
    };
    let x = rng.normal_vec(n * t * d, 1.0);
    let gx = up(&gpu, &[n, t, d], &x);
    let mut rec = Recorder::new(&gpu);
    dropout_rows(&mut rec, &gx, band, &drop, 3);
    let once = rec.read(&gx);
    let (outs, _) = rec.finish().expect("runs");
    // The same call again (the backward) applies the same mask: kept values scaled twice, dropped still 0.
    let mut rec = Recorder::new(&gpu);
    dropout_rows(&mut rec, &gx, band, &drop, 3);
    let twice = rec.read(&gx);
    let (outs2, _) = rec.finish().expect("runs");
    let scale = 1.0 / (1.0 - 0.3f64);
    let (mut want, mut want2) = (Vec::new(), Vec::new());
    for img in 0..n {
        for row in 0..t {
            for col in 0..d {
                let v = x[(img * t + row) * d + col] as f64;
                let in_band = (band.start..band.start + band.count).contains(&row);
                let m = if !in_band {
                    1.0
                } else if kept(&drop, 3, &band, 5 + img, row - band.start, col) {
                    scale
                } else {
                    0.0
                };
                want.push(v * m);
                want2.push(v * m * m);
            }
        }
    }
    assert_close(&outs[once.0], &want, 1e-6, "dropout");
    assert_close(&outs2[twice.0], &want2, 1e-6, "dropout replayed");
    // Another tag draws another mask.
    let other = (0..band.count * d)
        .filter(|&i| {
            kept(&drop, 3, &band, 5, i / d, i % d) != kept(&drop, 4, &band, 5, i / d, i % d)
        })
        .count();
    assert!(
        other > 10,
        "tags 3 and 4 share {other} differing elements only"
    );
}

#[test]
fn dropout_drops_the_requested_fraction() {
    use ops::dropout::{dropout_rows, Band, Dropout};
    let gpu = common::gpu();
    let (n, t, d) = (4, 50, 500);
    let gx = up(&gpu, &[n, t, d], &vec![1.0; n * t * d]);
    let mut rec = Recorder::new(&gpu);
    let band = Band {
        images: n,
        tokens: t,
        start: 0,
        count: t,
        dim: d,
    };
    let drop = Dropout {
        rate: 0.1,
        seed: 77,
        first_image: 0,
    };
    dropout_rows(&mut rec, &gx, band, &drop, 0);
    let h = rec.read(&gx);
    let (outs, _) = rec.finish().expect("runs");
    let zeros = outs[h.0].iter().filter(|v| **v == 0.0).count() as f64 / (n * t * d) as f64;
    assert!((zeros - 0.1).abs() < 0.005, "dropped fraction {zeros}");
    let mean = outs[h.0].iter().map(|v| *v as f64).sum::<f64>() / (n * t * d) as f64;
    assert!(
        (mean - 1.0).abs() < 0.01,
        "inverted dropout keeps the mean: {mean}"
    );
}

#[test]
fn timed_recordings_report_each_familys_work() {
    let gpu = common::gpu();
    let (m, n, k) = (13, 9, 21);
    let a = up(&gpu, &[m, k], &vec![1.0; m * k]);
    let b = up(&gpu, &[n, k], &vec![1.0; n * k]);
    let c = gpu.empty(&[m, n]).expect("c");
    let mut rec = Recorder::new(&gpu).with_timing(true);
    // The linear layer's product (B read along k), then an input gradient's (B read along n) and a weight
    // gradient's (A read along m): each is reported under its layout class.
    let layouts = [
        (Layout::row_major(k, 0), Layout::transposed(k, 0)),
        (Layout::row_major(k, 0), Layout::row_major(n, 0)),
        (Layout::transposed(m, 0), Layout::row_major(n, 0)),
    ];
    for (la, lb) in layouts {
        Matmul::new((m, n, k), (&a, la), (&b, lb), (&c, Layout::row_major(n, 0))).record(&mut rec);
    }
    ops::softmax::softmax_inplace(&mut rec, &c);
    let (_, times) = rec.finish().expect("runs");
    match times {
        None => assert!(
            !gpu.has_timestamps(),
            "timing was asked for on an adapter with timestamp queries"
        ),
        Some(t) => {
            for class in ["matmul NT", "matmul NN", "matmul TN"] {
                let mm = t.work[class];
                assert_eq!(mm.flops, 2.0 * (m * n * k) as f64, "{class}");
                assert_eq!(mm.bytes, 4.0 * (m * k + k * n + m * n) as f64, "{class}");
                assert!(t.by_family[class] > 0.0, "{class}");
            }
            // Softmax reads and writes c in place.
            assert_eq!(t.work["softmax"].bytes, 8.0 * (m * n) as f64);
            assert_eq!(t.by_family.len(), 4, "{:?}", t.by_family);
        }
    }
}

/// The affine kernels against f64 references: y = γ⊙z + β on rows, its folding into a LayerNorm's parameters
/// (the folded LayerNorm equals the affine after the plain one), and dγ = Σ dy⊙z, dβ = Σ dy, the fold's gradients,
/// checked by central differences of the scalar Σ w⊙y.
#[test]
fn affine_kernels_match_reference_and_finite_differences() {
    use vitune::ops::affine::{affine_grads, fold_norm, fold_norm_grads, scale_rows};
    let gpu = common::gpu();
    let mut rng = Rng::new(77);
    let (rows, d) = (37, 19);
    let z = rng.normal_vec(rows * d, 1.0);
    let g = rng.normal_vec(d, 0.5);
    let b = rng.normal_vec(d, 0.5);
    let dy = rng.normal_vec(rows * d, 1.0);
    let (gz, gg, gb, gdy) = (
        up(&gpu, &[rows, d], &z),
        up(&gpu, &[d], &g),
        up(&gpu, &[d], &b),
        up(&gpu, &[rows, d], &dy),
    );
    let zeros = vec![0.0f32; d];
    let (ds, dsh) = (up(&gpu, &[d], &zeros), up(&gpu, &[d], &zeros));
    let w = rng.normal_vec(d, 1.0);
    let lb = rng.normal_vec(d, 1.0);
    let gw_in = rng.normal_vec(d, 1.0);
    let gb_in = rng.normal_vec(d, 1.0);
    let (gw, glb, ggw, ggb) = (
        up(&gpu, &[d], &w),
        up(&gpu, &[d], &lb),
        up(&gpu, &[d], &gw_in),
        up(&gpu, &[d], &gb_in),
    );
    let (fs, fsh) = (up(&gpu, &[d], &zeros), up(&gpu, &[d], &zeros));
    let mut rec = Recorder::new(&gpu);
    let y = scale_rows(&mut rec, &gz, &gg, Some(&gb)).expect("scale_rows");
    let y_no_shift = scale_rows(&mut rec, &gz, &gg, None).expect("scale_rows");
    affine_grads(&mut rec, &gdy, &gz, (&ds, &dsh));
    let (w2, b2) = fold_norm(&mut rec, (&gw, &glb), (&gg, &gb)).expect("fold");
    fold_norm_grads(&mut rec, (&gw, &glb), (&ggw, &ggb), (&fs, &fsh));
    let h = [&y, &y_no_shift, &ds, &dsh, &w2, &b2, &fs, &fsh].map(|t| rec.read(t));
    let (outs, _) = rec.finish().expect("runs");
    let want_y: Vec<f64> = (0..rows * d)
        .map(|i| z[i] as f64 * g[i % d] as f64 + b[i % d] as f64)
        .collect();
    let want_y0: Vec<f64> = (0..rows * d)
        .map(|i| z[i] as f64 * g[i % d] as f64)
        .collect();
    assert_close(&outs[h[0].0], &want_y, 1e-6, "scale_rows with shift");
    assert_close(&outs[h[1].0], &want_y0, 1e-6, "scale_rows without shift");
    // L = Σ dy⊙y(γ, β): central differences in f64 of the f64 forward give dγ and dβ.
    let loss = |g: &[f64], b: &[f64]| -> f64 {
        (0..rows * d)
            .map(|i| dy[i] as f64 * (z[i] as f64 * g[i % d] + b[i % d]))
            .sum()
    };
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let eps = 1e-4;
    let fd = |j: usize, shift: bool| {
        let (mut gp, mut bp) = (g64.clone(), b64.clone());
        let (mut gm, mut bm) = (g64.clone(), b64.clone());
        if shift {
            bp[j] += eps;
            bm[j] -= eps;
        } else {
            gp[j] += eps;
            gm[j] -= eps;
        }
        (loss(&gp, &bp) - loss(&gm, &bm)) / (2.0 * eps)
    };
    let want_ds: Vec<f64> = (0..d).map(|j| fd(j, false)).collect();
    let want_dsh: Vec<f64> = (0..d).map(|j| fd(j, true)).collect();
    assert_close(
        &outs[h[2].0],
        &want_ds,
        1e-4,
        "dγ against finite differences",
    );
    assert_close(
        &outs[h[3].0],
        &want_dsh,
        1e-4,
        "dβ against finite differences",
    );
    let want_w2: Vec<f64> = (0..d).map(|j| g[j] as f64 * w[j] as f64).collect();
    let want_b2: Vec<f64> = (0..d)
        .map(|j| g[j] as f64 * lb[j] as f64 + b[j] as f64)
        .collect();
    assert_close(&outs[h[4].0], &want_w2, 1e-6, "folded LayerNorm weight");
    assert_close(&outs[h[5].0], &want_b2, 1e-6, "folded LayerNorm bias");
    let want_fs: Vec<f64> = (0..d)
        .map(|j| w[j] as f64 * gw_in[j] as f64 + lb[j] as f64 * gb_in[j] as f64)
        .collect();
    let want_fsh: Vec<f64> = gb_in.iter().map(|&v| v as f64).collect();
    assert_close(&outs[h[6].0], &want_fs, 1e-6, "dγ through the fold");
    assert_close(&outs[h[7].0], &want_fsh, 1e-6, "dβ through the fold");
}

/// Row moves: `gather_tokens` compacts rows start..start+count of every image, `scatter_tokens` writes them back
/// per image (the inverse), leaving the other rows as they were.
#[test]
fn gather_and_scatter_tokens_match_reference() {
    let gpu = common::gpu();
    let mut rng = Rng::new(23);
    let (n, t, d, start, count) = (3, 7, 5, 1, 2);
    let x = rng.normal_vec(n * t * d, 1.0);
    let src = rng.normal_vec(n * count * d, 1.0);
    let gx = up(&gpu, &[n, t, d], &x);
    let mut rec = Recorder::new(&gpu);
    let g = ops::reduce::gather_tokens(&mut rec, &gx, start, count).expect("gather");
    let hg = rec.read(&g);
    ops::reduce::scatter_tokens(
        &mut rec,
        &gx,
        start,
        count,
        &up(&gpu, &[n * count, d], &src),
    );
    let hx = rec.read(&gx);
    let (outs, _) = rec.finish().expect("runs");
    let mut want_g = Vec::new();
    let mut want_x: Vec<f64> = x.iter().map(|v| *v as f64).collect();
    for img in 0..n {
        for j in 0..count {
            for c in 0..d {
                want_g.push(x[(img * t + start + j) * d + c] as f64);
                want_x[(img * t + start + j) * d + c] = src[(img * count + j) * d + c] as f64;
            }
        }
    }
    assert_close(&outs[hg.0], &want_g, 1e-7, "gather");
    assert_close(&outs[hx.0], &want_x, 1e-7, "scatter");
}

/// RoPE turns q and k of the patch tokens only, by the pair each layout names; its backward is the transpose
/// (checked against the f64 rotation and by ⟨R·x, dy⟩ = ⟨x, Rᵀ·dy⟩), on a non-square grid with prefix tokens.
#[test]
fn rope_matches_reference_and_its_backward_is_the_transpose() {
    use vitune::model::{Rope, RopeKind};
    use vitune::ops::rope::{rope, RopeTables};
    let gpu = common::gpu();
    let mut rng = Rng::new(91);
    let (n, heads, hd, grid, start) = (2, 3, 8, (3, 5), 4);
    let (m, d) = (grid.0 * grid.1, heads * hd);
    let t = start + m + 1; // one token after the patches stays too
    for (kind, rotate_half) in [(RopeKind::DinoV3, true), (RopeKind::Cat, false)] {
        let r = Rope {
            kind,
            temperature: if kind == RopeKind::DinoV3 {
                100.0
            } else {
                10000.0
            },
            rotate_half,
            grid_offset: 0.0,
            xy: false,
            ref_grid: (kind == RopeKind::Cat).then_some((4, 4)),
        };
        let (cos, sin) = r.tables(grid, hd);
        let x = rng.normal_vec(n * t * 3 * d, 1.0);
        let dy = rng.normal_vec(n * t * 3 * d, 1.0);
        let tables = RopeTables {
            cos: up(&gpu, &[m, hd], &cos),
            sin: up(&gpu, &[m, hd], &sin),
            count: m,
            head_dim: hd,
            per_head: false,
            interleaved: !rotate_half,
        };
        let gx = up(&gpu, &[n, t, 3 * d], &x);
        let gdy = up(&gpu, &[n, t, 3 * d], &dy);
        let mut rec = Recorder::new(&gpu);
        rope(&mut rec, &gx, &tables, start, heads, false).expect("rope");
        rope(&mut rec, &gdy, &tables, start, heads, true).expect("rope backward");
        let (hx, hdy) = (rec.read(&gx), rec.read(&gdy));
        let (outs, _) = rec.finish().expect("runs");
        // The f64 rotation: y = x·cos + rot(x)·sin on q and k of the patch tokens.
        let pair = |i: usize| -> (usize, f64) {
            if rotate_half {
                if i < hd / 2 {
                    (i + hd / 2, -1.0)
                } else {
                    (i - hd / 2, 1.0)
                }
            } else if i.is_multiple_of(2) {
                (i + 1, -1.0)
            } else {
                (i - 1, 1.0)
            }
        };
        let mut want = x.iter().map(|v| *v as f64).collect::<Vec<_>>();
        let mut want_t = dy.iter().map(|v| *v as f64).collect::<Vec<_>>();
        for img in 0..n {
            for k in 0..m {
                for part in 0..2 {
                    for h in 0..heads {
                        let row = ((img * t + start + k) * 3 + part) * d + h * hd;
                        for i in 0..hd {
                            let (j, sign) = pair(i);
                            let (c, s) = (cos[k * hd + i] as f64, sin[k * hd + i] as f64);
                            want[row + i] = x[row + i] as f64 * c + sign * x[row + j] as f64 * s;
                            // Rᵀ: dx_j gets dy_i·sign·sin_i from every i that read x_j.
                            let sj = sin[k * hd + j] as f64;
                            let (_, sign_j) = pair(j);
                            want_t[row + i] =
                                dy[row + i] as f64 * c + sign_j * dy[row + j] as f64 * sj;
                        }
                    }
                }
            }
        }
        assert_close(&outs[hx.0], &want, 1e-6, &format!("rope {kind:?}"));
        assert_close(
            &outs[hdy.0],
            &want_t,
            1e-6,
            &format!("rope backward {kind:?}"),
        );
        // Adjoint: ⟨R·x, dy⟩ = ⟨x, Rᵀ·dy⟩.
        let lhs: f64 = outs[hx.0]
            .iter()
            .zip(&dy)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(&outs[hdy.0])
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "rope {kind:?}: ⟨Rx, dy⟩ = {lhs} but ⟨x, Rᵀdy⟩ = {rhs}"
        );
        // The prefix tokens and v are untouched.
        for img in 0..n {
            for tok in (0..start).chain(start + m..t) {
                let row = (img * t + tok) * 3 * d;
                assert_eq!(
                    &outs[hx.0][row..row + 3 * d],
                    &x[row..row + 3 * d],
                    "token {tok}"
                );
            }
        }
    }
}

/// SwiGLU against f64: h = silu(g)·x; its backward against the analytic derivative and central differences of
/// the f64 forward.
#[test]
fn swiglu_matches_reference_and_finite_differences() {
    use vitune::ops::activation::{swiglu, swiglu_backward};
    let gpu = common::gpu();
    let mut rng = Rng::new(93);
    let (rows, hid) = (13, 37);
    let u = rng.normal_vec(rows * 2 * hid, 2.0);
    let dh = rng.normal_vec(rows * hid, 1.0);
    let gu = up(&gpu, &[rows, 2 * hid], &u);
    let gdh = up(&gpu, &[rows, hid], &dh);
    let mut rec = Recorder::new(&gpu);
    let h = swiglu(&mut rec, &gu).expect("swiglu");
    let du = swiglu_backward(&mut rec, &gu, &gdh).expect("swiglu backward");
    let (hh, hdu) = (rec.read(&h), rec.read(&du));
    let (outs, _) = rec.finish().expect("runs");
    let silu = |g: f64| g / (1.0 + (-g).exp());
    let forward = |u: &[f64]| -> Vec<f64> {
        (0..rows * hid)
            .map(|i| {
                let (r, c) = (i / hid, i % hid);
                silu(u[r * 2 * hid + c]) * u[r * 2 * hid + hid + c]
            })
            .collect()
    };
    let u64v: Vec<f64> = u.iter().map(|v| *v as f64).collect();
    assert_close(&outs[hh.0], &forward(&u64v), 1e-6, "swiglu");
    // d⟨dh, h(u)⟩/du by central differences in f64.
    let loss = |u: &[f64]| -> f64 { forward(u).iter().zip(&dh).map(|(a, b)| a * *b as f64).sum() };
    let eps = 1e-6;
    let want: Vec<f64> = (0..u64v.len())
        .map(|i| {
            let (mut p, mut q) = (u64v.clone(), u64v.clone());
            p[i] += eps;
            q[i] -= eps;
            (loss(&p) - loss(&q)) / (2.0 * eps)
        })
        .collect();
    assert_close(&outs[hdu.0], &want, 1e-5, "swiglu backward");
}
