//! A few optimizer steps match PyTorch's SGD (momentum, weight decay) and AdamW on the same gradients
//! (fixture by tools/make_grad_fixtures.py), with no decay on the 1-D tensor.

mod common;

use std::collections::BTreeMap;

use vitune::gpu::Recorder;
use vitune::model::download_named;
use vitune::train::{OptimConfig, Optimizer, OptimizerKind};

fn run(kind: OptimizerKind, lr: f32, wd: f32, prefix: &str) {
    let gpu = common::gpu();
    let f = vitune::io::read_tensors(&common::fixture("optim").join("optim.safetensors"))
        .expect("fixture");
    let mut params = BTreeMap::new();
    let mut shapes = BTreeMap::new();
    for k in ["w", "b"] {
        params.insert(
            k.to_string(),
            gpu.upload(&f[k].shape, &f[k].data).expect("upload"),
        );
        shapes.insert(k.to_string(), f[k].shape.clone());
    }
    let grads: BTreeMap<String, _> = params
        .iter()
        .map(|(k, p)| (k.clone(), gpu.zeros(&p.shape).expect("zeros")))
        .collect();
    let mut opt = Optimizer::new(&gpu, &params, OptimConfig::new(kind, lr, wd)).expect("optimizer");
    for step in 0..4 {
        for k in ["w", "b"] {
            gpu.write(&grads[k], &f[&format!("grad.{step}.{k}")].data);
        }
        let mut rec = Recorder::new(&gpu);
        opt.record_step(&mut rec, &params, &grads, &shapes);
        rec.finish().expect("step");
        let got = download_named(&gpu, &params, &shapes).expect("download");
        for k in ["w", "b"] {
            let want = &f[&format!("{prefix}.{step}.{k}")];
            let e = common::rel_err(&got[k].data, &want.data);
            assert!(e < 1e-5, "{prefix} step {step} `{k}`: rel err {e:e}");
        }
    }
}

#[test]
fn sgd_with_momentum_matches_pytorch() {
    run(OptimizerKind::Sgd, 0.1, 1e-2, "sgd");
}

#[test]
fn adamw_matches_pytorch() {
    run(OptimizerKind::Adamw, 0.01, 0.05, "adamw");
}

#[test]
fn schedule_warms_up_then_decays_to_zero() {
    let mut c = OptimConfig::new(OptimizerKind::Sgd, 1.0, 0.0);
    c.warmup_steps = 4;
    c.total_steps = 14;
    assert!((c.lr_at(0) - 0.25).abs() < 1e-6);
    assert!((c.lr_at(3) - 1.0).abs() < 1e-6);
    assert!((c.lr_at(9) - 0.5).abs() < 1e-6);
    assert!(c.lr_at(14).abs() < 1e-6);
    assert!(c.lr_at(8) > c.lr_at(10));
}
