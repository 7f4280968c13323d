//! Attention maps against a CPU computation from timm's own `attn.{l}` (the parity fixture), and the
//! `vitune attention` command.

mod common;

use std::path::Path;
use std::process::Command;

use vitune::viz::{attention_map, HeadFusion, MapMode};

fn timm_attention() -> (Vec<Vec<f32>>, usize, usize) {
    let e = vitune::io::read_tensors(&common::fixture("timm_cls").join("expected.safetensors"))
        .expect("fixture");
    let a0 = &e["attn.0"];
    let (heads, t) = (a0.shape[1], a0.shape[2]);
    // Image 0 of each layer.
    let layers = (0..2)
        .map(|l| e[&format!("attn.{l}")].data[..heads * t * t].to_vec())
        .collect();
    (layers, heads, t)
}

fn normalised(v: Vec<f64>) -> Vec<f32> {
    let m = v.iter().cloned().fold(0.0, f64::max);
    v.iter().map(|x| (x / m) as f32).collect()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() < 1e-5, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn cls_map_is_the_head_fused_cls_row() {
    let (a, heads, t) = timm_attention();
    let tt = t * t;
    for (fusion, f) in [
        (
            HeadFusion::Mean,
            (|v: &[f64]| v.iter().sum::<f64>() / v.len() as f64) as fn(&[f64]) -> f64,
        ),
        (HeadFusion::Max, |v: &[f64]| {
            v.iter().cloned().fold(f64::MIN, f64::max)
        }),
        (HeadFusion::Min, |v: &[f64]| {
            v.iter().cloned().fold(f64::MAX, f64::min)
        }),
    ] {
        let got =
            attention_map(&a, None, heads, t, 0, MapMode::Cls { layer: 1 }, fusion).expect("map");
        let want: Vec<f64> = (1..t)
            .map(|j| {
                f(&(0..heads)
                    .map(|h| a[1][h * tt + j] as f64)
                    .collect::<Vec<_>>())
            })
            .collect();
        close(&got, &normalised(want), &format!("{fusion:?}"));
    }
    let got = attention_map(
        &a,
        None,
        heads,
        t,
        0,
        MapMode::Cls { layer: 0 },
        HeadFusion::Head(2),
    )
    .expect("map");
    close(
        &got,
        &normalised((1..t).map(|j| a[0][2 * tt + j] as f64).collect()),
        "head 2",
    );
}

#[test]
fn prompt_map_reads_the_prompt_rows() {
    let (a, heads, t) = timm_attention();
    let tt = t * t;
    // Treat tokens 1 and 2 as prompts: patches start at 3.
    let got = attention_map(
        &a,
        None,
        heads,
        t,
        2,
        MapMode::Prompt {
            layer: 1,
            prompt: None,
        },
        HeadFusion::Mean,
    )
    .expect("map");
    let want: Vec<f64> = (3..t)
        .map(|j| {
            (0..heads)
                .map(|h| (a[1][h * tt + t + j] + a[1][h * tt + 2 * t + j]) as f64 / 2.0)
                .sum::<f64>()
                / heads as f64
        })
        .collect();
    close(&got, &normalised(want), "mean over prompts");
}

/// Rollout written out plainly: fuse (mean), discard the smallest entries but CLS→CLS, (A + I)/2 with rows
/// renormalised, R = Â_L … Â_1.
fn rollout_reference(a: &[Vec<f32>], heads: usize, t: usize, discard: f64) -> Vec<f64> {
    let tt = t * t;
    let mut r = vec![vec![0.0f64; t]; t];
    for (i, row) in r.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for layer in a {
        let mut m: Vec<f64> = (0..tt)
            .map(|i| (0..heads).map(|h| layer[h * tt + i] as f64).sum::<f64>() / heads as f64)
            .collect();
        let k = (tt as f64 * discard) as usize;
        let mut idx: Vec<usize> = (0..tt).collect();
        idx.sort_by(|&x, &y| m[x].partial_cmp(&m[y]).expect("finite"));
        for &i in &idx[..k] {
            if i != 0 {
                m[i] = 0.0;
            }
        }
        let mut ah = vec![vec![0.0f64; t]; t];
        for i in 0..t {
            for j in 0..t {
                ah[i][j] = (m[i * t + j] + if i == j { 1.0 } else { 0.0 }) / 2.0;
            }
            let s: f64 = ah[i].iter().sum();
            ah[i].iter_mut().for_each(|v| *v /= s);
        }
        let mut next = vec![vec![0.0f64; t]; t];
        for i in 0..t {
            for j in 0..t {
                next[i][j] = (0..t).map(|k| ah[i][k] * r[k][j]).sum();
            }
        }
        r = next;
    }
    r[0][1..].to_vec()
}

#[test]
fn rollout_matches_a_plain_cpu_rollout() {
    let (a, heads, t) = timm_attention();
    for discard in [0.0, 0.5, 0.9] {
        let got = attention_map(
            &a,
            None,
            heads,
            t,
            0,
            MapMode::Rollout { discard },
            HeadFusion::Mean,
        )
        .expect("map");
        close(
            &got,
            &normalised(rollout_reference(&a, heads, t, discard as f64)),
            &format!("rollout {discard}"),
        );
    }
}

#[test]
fn grad_rollout_uses_attention_gradients_of_the_class_score() {
    use vitune::model::{load_backbone, GpuViT, LoadOptions};
    let gpu = common::gpu();
    let dir = common::fixture("timm_cls");
    let b =
        load_backbone(&dir.join("model.safetensors"), &LoadOptions::default()).expect("backbone");
    let vit = GpuViT::new(&gpu, &b, None).expect("vit");
    let input = vitune::io::read_tensors(&dir.join("input.safetensors")).expect("input");
    let px = &input["pixels"];
    let one = vitune::model::HostTensor::new(vec![1, 3, 32, 32], px.data[..3 * 32 * 32].to_vec());
    let att =
        vitune::viz::image_attention(&gpu, &vit, None, &one, true, Some(2)).expect("attention");
    let grads = att.grads.as_ref().expect("grads");
    assert_eq!(grads.len(), 2);
    assert!(grads
        .iter()
        .all(|g| g.iter().any(|v| *v != 0.0) && g.iter().all(|v| v.is_finite())));
    // Attention itself matches timm's.
    let e = vitune::io::read_tensors(&dir.join("expected.safetensors")).expect("expected");
    let n = att.attn[1].len();
    assert!(common::rel_err(&att.attn[1], &e["attn.1"].data[..n]) < 1e-4);
    // The map is Chefer's rule applied to these gradients.
    let (heads, t) = (att.heads, att.tokens);
    let tt = t * t;
    let mut r = vec![0.0f64; tt];
    for i in 0..t {
        r[i * t + i] = 1.0;
    }
    for (a, g) in att.attn.iter().zip(grads) {
        let cam: Vec<f64> = (0..tt)
            .map(|i| {
                (0..heads)
                    .map(|h| (g[h * tt + i] * a[h * tt + i]).max(0.0) as f64)
                    .sum::<f64>()
                    / heads as f64
            })
            .collect();
        let mut add = vec![0.0; tt];
        for i in 0..t {
            for j in 0..t {
                add[i * t + j] = (0..t).map(|k| cam[i * t + k] * r[k * t + j]).sum();
            }
        }
        r.iter_mut().zip(add).for_each(|(x, y)| *x += y);
    }
    let got = att
        .map(MapMode::GradRollout, HeadFusion::Mean)
        .expect("map");
    close(&got, &normalised(r[1..t].to_vec()), "grad-rollout");
}

#[test]
fn attention_command_writes_an_overlay_at_the_image_size() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = common::fixture("timm_cls").join("model.safetensors");
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/rotated_exif.jpg");
    for mode in ["cls", "rollout", "grad-rollout"] {
        let out = dir.path().join(format!("{mode}.png"));
        let o = Command::new(env!("CARGO_BIN_EXE_vitune"))
            .args(["attention", "--backbone"])
            .arg(&model)
            .arg(&img)
            .args(["--mode", mode, "--colormap", "viridis", "--out"])
            .arg(&out)
            .output()
            .expect("runs");
        assert!(
            o.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let written = image::open(&out).expect("png").to_rgb8();
        // EXIF-rotated 40x20 → shown 20x40.
        assert_eq!((written.width(), written.height()), (20, 40), "{mode}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_vitune"))
        .args(["attention", "--backbone"])
        .arg(&model)
        .arg(&img)
        .args(["--mode", "prompt", "--out"])
        .arg(dir.path().join("p.png"))
        .output()
        .expect("runs");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("prompt"));
}
