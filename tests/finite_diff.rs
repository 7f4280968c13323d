//! Finite-difference checks of every backward kernel: for a random projection L = Σ w ⊙ f(x), the kernel's
//! gradient (given dy = w) must match central differences of the GPU forward at sampled coordinates.

mod common;

use vitune::gpu::{AttentionKernel, Gpu, GpuTensor, Recorder};
use vitune::ops;
use vitune::ops::layernorm::Rows;
use vitune::ops::matmul::Act;
use vitune::rng::Rng;

fn up(gpu: &Gpu, shape: &[usize], data: &[f32]) -> GpuTensor {
    gpu.upload(shape, data).expect("upload")
}

/// Runs `record` in one submit and reads back the tensor it returns.
fn run(gpu: &Gpu, record: impl FnOnce(&mut Recorder) -> GpuTensor) -> Vec<f32> {
    let mut rec = Recorder::new(gpu);
    let t = record(&mut rec);
    let h = rec.read(&t);
    let (mut outs, _) = rec.finish().expect("runs");
    std::mem::take(&mut outs[h.0])
}

/// Compares `analytic` (dL/dx) with central differences of L(x) = Σ w·f(x) at a few coordinates.
fn check(
    what: &str,
    x: &[f32],
    w: &[f32],
    analytic: &[f32],
    f: impl Fn(&[f32]) -> Vec<f32>,
    eps: f32,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let loss = |x: &[f32]| -> f64 { f(x).iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum() };
    let scale = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    assert!(scale > 0.0, "{what}: gradient is identically zero");
    let mut rng = Rng::new(99);
    let mut coords: Vec<usize> = (0..6).map(|_| rng.below(x.len())).collect();
    // Also the coordinate of the largest gradient.
    let argmax = analytic
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i)
        .unwrap_or(0);
    coords.push(argmax);
    for i in coords {
        let mut xp = x.to_vec();
        xp[i] += eps;
        let mut xm = x.to_vec();
        xm[i] -= eps;
        let fd = (loss(&xp) - loss(&xm)) / (2.0 * eps as f64);
        let an = analytic[i] as f64;
        assert!(
            (fd - an).abs() <= 2e-2 * scale.max(an.abs()),
            "{what}: coordinate {i}: finite difference {fd:.6} vs kernel {an:.6} (scale {scale:.4})"
        );
    }
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let gpu = common::gpu();
    for &k in common::row_kernels(&gpu) {
        gpu.set_row_kernel(k);
        layernorm_backward_case(&gpu);
    }
}

fn layernorm_backward_case(gpu: &Gpu) {
    let mut rng = Rng::new(1);
    let (rows, d) = (3, 37);
    let x = rng.normal_vec(rows * d, 1.0);
    let g = rng.normal_vec(d, 1.0);
    let b = rng.normal_vec(d, 1.0);
    let w = rng.normal_vec(rows * d, 1.0);
    let (gg, gb) = (up(gpu, &[d], &g), up(gpu, &[d], &b));
    let fwd = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        run(gpu, |rec| {
            let gx = up(gpu, &[rows, d], x);
            let (g2, b2) = (up(gpu, &[d], gamma), up(gpu, &[d], beta));
            ops::layernorm::layernorm(rec, &gx, &g2, &b2, 1e-6)
                .expect("ln")
                .y
        })
    };
    let gx = up(gpu, &[rows, d], &x);
    let gw = up(gpu, &[rows, d], &w);
    let dx = gpu.empty(&[rows, d]).expect("dx");
    let dgamma = gpu.zeros(&[d]).expect("z");
    let dbeta = gpu.zeros(&[d]).expect("z");
    let mut rec = Recorder::new(gpu);
    let o = ops::layernorm::layernorm(&mut rec, &gx, &gg, &gb, 1e-6).expect("ln");
    ops::layernorm::layernorm_backward(
        &mut rec,
        &gx,
        Rows::all(&gx),
        &o.stats,
        &gg,
        &gw,
        None,
        &dx,
    );
    ops::layernorm::layernorm_param_grads(
        &mut rec,
        &gx,
        Rows::all(&gx),
        &o.stats,
        &gw,
        &dgamma,
        &dbeta,
    );
    let (hx, hg, hb) = (rec.read(&dx), rec.read(&dgamma), rec.read(&dbeta));
    let (outs, _) = rec.finish().expect("runs");
    check(
        "layernorm dx",
        &x,
        &w,
        &outs[hx.0],
        |x| fwd(x, &g, &b),
        1e-2,
    );
    check(
        "layernorm dgamma",
        &g,
        &w,
        &outs[hg.0],
        |g| fwd(&x, g, &b),
        1e-2,
    );
    check(
        "layernorm dbeta",
        &b,
        &w,
        &outs[hb.0],
        |b| fwd(&x, &g, b),
        1e-2,
    );
}

#[test]
fn activation_backwards_match_finite_differences() {
    let gpu = common::gpu();
    let mut rng = Rng::new(2);
    let n = 301;
    // Keep ReLU's inputs away from its kink.
    let x: Vec<f32> = rng
        .normal_vec(n, 1.5)
        .into_iter()
        .map(|v| if v.abs() < 0.05 { v + 0.1 } else { v })
        .collect();
    let w = rng.normal_vec(n, 1.0);
    for act in [Act::Gelu, Act::Relu, Act::QuickGelu] {
        let fwd = |x: &[f32]| {
            run(&gpu, |rec| {
                ops::activation::activation(rec, &up(&gpu, &[n], x), act).expect("act")
            })
        };
        let dy = up(&gpu, &[n], &w);
        let pre = up(&gpu, &[n], &x);
        let an = run(&gpu, |rec| {
            ops::activation::activation_backward(rec, &pre, &dy, act);
            dy.clone()
        });
        check(&format!("{act:?} backward"), &x, &w, &an, fwd, 1e-3);
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    let gpu = common::gpu();
    for &k in common::row_kernels(&gpu) {
        gpu.set_row_kernel(k);
        attention_backward_case(&gpu);
    }
}

fn attention_backward_case(gpu: &Gpu) {
    let mut rng = Rng::new(3);
    let (n, t, heads, hd) = (2, 7, 2, 5);
    let d = heads * hd;
    let qkv = rng.normal_vec(n * t * 3 * d, 1.0);
    let w = rng.normal_vec(n * t * d, 1.0);
    let fwd = |q: &[f32]| {
        run(gpu, |rec| {
            ops::attention::attention(rec, &up(gpu, &[n, t, 3 * d], q), heads)
                .expect("attn")
                .context
        })
    };
    let an = run(gpu, |rec| {
        let g = up(gpu, &[n, t, 3 * d], &qkv);
        let a = ops::attention::attention(rec, &g, heads).expect("attn");
        let dctx = up(gpu, &[n, t, d], &w);
        ops::attention::attention_backward(rec, &g, &a.probs, &dctx, heads, None).expect("backward")
    });
    check("attention dqkv", &qkv, &w, &an, fwd, 1e-2);
}

#[test]
fn fused_attention_backward_matches_finite_differences() {
    let gpu = common::gpu();
    let mut rng = Rng::new(4);
    let (n, t, heads, hd) = (2, 11, 2, 5);
    let d = heads * hd;
    let qkv = rng.normal_vec(n * t * 3 * d, 1.0);
    let w = rng.normal_vec(n * t * d, 1.0);
    for kernel in [AttentionKernel::Fused, AttentionKernel::Tiled] {
        let fwd = |q: &[f32]| {
            run(&gpu, |rec| {
                let g = up(&gpu, &[n, t, 3 * d], q);
                ops::attention::flash_attention_as(rec, &g, heads, kernel)
                    .expect("attn")
                    .context
            })
        };
        let an = run(&gpu, |rec| {
            let g = up(&gpu, &[n, t, 3 * d], &qkv);
            let a = ops::attention::flash_attention_as(rec, &g, heads, kernel).expect("attn");
            let dctx = up(&gpu, &[n, t, d], &w);
            let saved = (&g, &a.context, &a.lse, &dctx);
            ops::attention::flash_attention_backward_as(rec, saved, heads, kernel)
                .expect("backward")
        });
        check(
            &format!("{kernel:?} attention dqkv"),
            &qkv,
            &w,
            &an,
            fwd,
            1e-2,
        );
    }
}

#[test]
fn linear_backwards_match_finite_differences() {
    let gpu = common::gpu();
    let mut rng = Rng::new(4);
    let (rows, k, n) = (9, 13, 7);
    let x = rng.normal_vec(rows * k, 1.0);
    let wt = rng.normal_vec(n * k, 1.0);
    let w = rng.normal_vec(rows * n, 1.0);
    let fwd = |x: &[f32], wt: &[f32]| {
        run(&gpu, |rec| {
            ops::matmul::linear(
                rec,
                &up(&gpu, &[rows, k], x),
                &up(&gpu, &[n, k], wt),
                None,
                Act::None,
                None,
            )
            .expect("linear")
        })
    };
    let dy = up(&gpu, &[rows, n], &w);
    let gw = up(&gpu, &[n, k], &wt);
    let gx = up(&gpu, &[rows, k], &x);
    let dx = run(&gpu, |rec| {
        ops::matmul::linear_input_grad(rec, &dy, &gw, 1.0, None, &[rows, k]).expect("dx")
    });
    let dw_t = gpu.zeros(&[n, k]).expect("z");
    let dw = run(&gpu, |rec| {
        ops::matmul::linear_weight_grad(rec, &dy, &gx, &dw_t, 1.0);
        dw_t.clone()
    });
    check("linear dx", &x, &w, &dx, |x| fwd(x, &wt), 1e-2);
    check("linear dW", &wt, &w, &dw, |wt| fwd(&x, wt), 1e-2);
}

#[test]
fn convpass_convolution_backwards_match_finite_differences() {
    let gpu = common::gpu();
    let mut rng = Rng::new(5);
    let (n, c, prefix, grid) = (2, 3, 2, (3, 4));
    let t = prefix + grid.0 * grid.1;
    let x = rng.normal_vec(n * t * c, 1.0);
    let wt = rng.normal_vec(c * c * 9, 0.5);
    let b = rng.normal_vec(c, 0.5);
    let w = rng.normal_vec(n * t * c, 1.0);
    let gb = up(&gpu, &[c], &b);
    let fwd = |x: &[f32], wt: &[f32]| {
        run(&gpu, |rec| {
            ops::conv::conv_tokens(
                rec,
                &up(&gpu, &[n, t, c], x),
                &up(&gpu, &[c, c, 3, 3], wt),
                &gb,
                prefix,
                grid,
            )
            .expect("conv")
        })
    };
    let dy = up(&gpu, &[n, t, c], &w);
    let gw = up(&gpu, &[c, c, 3, 3], &wt);
    let gx = up(&gpu, &[n, t, c], &x);
    let dx = run(&gpu, |rec| {
        ops::conv::conv_tokens_input_grad(rec, &dy, &gw, prefix, grid).expect("dx")
    });
    let dw_t = gpu.zeros(&[c, c, 3, 3]).expect("z");
    let dw = run(&gpu, |rec| {
        ops::conv::conv_tokens_weight_grad(rec, &dy, &gx, &dw_t, prefix, grid);
        dw_t.clone()
    });
    check("conv dx", &x, &w, &dx, |x| fwd(x, &wt), 1e-2);
    check("conv dW", &wt, &w, &dw, |wt| fwd(&x, wt), 1e-2);
}

#[test]
fn pooling_and_token_moves_backwards_match_finite_differences() {
    let gpu = common::gpu();
    let mut rng = Rng::new(6);
    let (n, t, d) = (3, 6, 5);
    let x = rng.normal_vec(n * t * d, 1.0);
    let w = rng.normal_vec(n * d, 1.0);
    for start in [0, 1, 2] {
        let fwd = |x: &[f32]| {
            run(&gpu, |rec| {
                ops::reduce::mean_tokens(rec, &up(&gpu, &[n, t, d], x), start).expect("pool")
            })
        };
        let an = run(&gpu, |rec| {
            ops::reduce::mean_tokens_backward(rec, &up(&gpu, &[n, d], &w), t, start).expect("back")
        });
        check(
            &format!("mean pooling from {start}"),
            &x,
            &w,
            &an,
            fwd,
            1e-2,
        );
    }

    // Token assembly: gradients of CLS, position embedding and prompts are batch sums of token rows.
    let (m, p) = (4, 2);
    let tt = 1 + p + m;
    let patches = rng.normal_vec(n * m * d, 1.0);
    let cls = rng.normal_vec(d, 1.0);
    let pos = rng.normal_vec((1 + m) * d, 1.0);
    let prompts = rng.normal_vec(p * d, 1.0);
    let w2 = rng.normal_vec(n * tt * d, 1.0);
    let assemble = |cls: &[f32], pos: &[f32], prompts: &[f32]| {
        run(&gpu, |rec| {
            let pr = up(&gpu, &[1, p, d], prompts);
            ops::embed::assemble_tokens(
                rec,
                &up(&gpu, &[n * m, d], &patches),
                n,
                Some(&up(&gpu, &[1, 1, d], cls)),
                &up(&gpu, &[1, 1 + m, d], pos),
                Some(ops::embed::Prompts {
                    tokens: &pr,
                    count: p,
                    per_image: false,
                }),
            )
            .expect("tokens")
        })
    };
    let g = up(&gpu, &[n, tt, d], &w2);
    let sums = |start: usize, count: usize, rows: usize, out_row: usize| {
        let out = gpu.zeros(&[rows, d]).expect("z");
        run(&gpu, |rec| {
            ops::reduce::batch_sum_tokens_into(rec, &g, start, count, &out, out_row);
            out.clone()
        })
    };
    check(
        "cls",
        &cls,
        &w2,
        &sums(0, 1, 1, 0),
        |c| assemble(c, &pos, &prompts),
        1e-2,
    );
    check(
        "prompts",
        &prompts,
        &w2,
        &sums(1, p, p, 0),
        |pr| assemble(&cls, &pos, pr),
        1e-2,
    );
    let mut dpos = sums(0, 1, 1 + m, 0);
    let rest = sums(1 + p, m, 1 + m, 1);
    for (a, b) in dpos.iter_mut().zip(&rest) {
        *a += b;
    }
    check(
        "pos_embed",
        &pos,
        &w2,
        &dpos,
        |ps| assemble(&cls, ps, &prompts),
        1e-2,
    );
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let gpu = common::gpu();
    let mut rng = Rng::new(7);
    let (n, c) = (4, 7);
    let logits = rng.normal_vec(n * c, 2.0);
    let labels = [3.0f32, 0.0, 6.0, 2.0];
    let gl = up(&gpu, &[n], &labels);
    let mean_loss = |x: &[f32]| {
        let rows = run(&gpu, |rec| {
            ops::loss::cross_entropy(rec, &up(&gpu, &[n, c], x), &gl, n)
                .expect("ce")
                .0
        });
        vec![rows.iter().sum::<f32>() / n as f32]
    };
    let an = run(&gpu, |rec| {
        ops::loss::cross_entropy(rec, &up(&gpu, &[n, c], &logits), &gl, n)
            .expect("ce")
            .1
    });
    check("cross-entropy", &logits, &[1.0], &an, mean_loss, 1e-2);
}

/// Attention pooling (one shared query over every image's kv): d kv and d q, both row kernels.
#[test]
fn pool_attention_backward_matches_finite_differences() {
    let gpu = common::gpu();
    for &k in common::row_kernels(&gpu) {
        gpu.set_row_kernel(k);
        pool_attention_backward_case(&gpu);
    }
}

fn pool_attention_backward_case(gpu: &Gpu) {
    let mut rng = Rng::new(31);
    let (n, t, heads, hd) = (2, 7, 2, 5);
    let d = heads * hd;
    let q = rng.normal_vec(d, 1.0);
    let kv = rng.normal_vec(n * t * 2 * d, 1.0);
    let w = rng.normal_vec(n * d, 1.0);
    let fwd = |q: &[f32], kv: &[f32]| {
        run(gpu, |rec| {
            ops::attention::pool_attention(
                rec,
                &up(gpu, &[1, d], q),
                &up(gpu, &[n, t, 2 * d], kv),
                heads,
            )
            .expect("pool")
            .context
        })
    };
    let grads = |want_dq: bool| {
        let mut rec = Recorder::new(gpu);
        let (gq, gkv) = (up(gpu, &[1, d], &q), up(gpu, &[n, t, 2 * d], &kv));
        let a = ops::attention::pool_attention(&mut rec, &gq, &gkv, heads).expect("pool");
        let dctx = up(gpu, &[n, d], &w);
        let (dkv, dq) = ops::attention::pool_attention_backward(
            &mut rec, &gq, &gkv, &a.probs, &dctx, heads, want_dq,
        )
        .expect("backward");
        let hkv = rec.read(&dkv);
        let hq = dq.as_ref().map(|t| rec.read(t));
        let (outs, _) = rec.finish().expect("runs");
        (outs[hkv.0].clone(), hq.map(|h| outs[h.0].clone()))
    };
    let (dkv, dq) = grads(true);
    let (dkv_alone, none) = grads(false);
    assert!(none.is_none());
    assert_eq!(dkv, dkv_alone, "d kv does not depend on asking for d q");
    check("pool attention dkv", &kv, &w, &dkv, |kv| fwd(&q, kv), 1e-2);
    // The shared query's gradient is the sum over images.
    let dq = dq.expect("dq");
    let dq_sum: Vec<f32> = (0..d)
        .map(|j| (0..n).map(|i| dq[i * d + j]).sum())
        .collect();
    check("pool attention dq", &q, &w, &dq_sum, |q| fwd(q, &kv), 1e-2);
}
