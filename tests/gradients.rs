//! Every method's loss and gradients against PyTorch autograd (fixtures by tools/make_grad_fixtures.py):
//! within 1e-4 relative (max abs error / max abs value) per tensor; micro-batching gives the same gradients.

mod common;

use std::collections::BTreeMap;

use vitune::gpu::AttentionKernel;
use vitune::model::{download_named, GpuViT, HostTensor};
use vitune::train::{compute_grads, StepOptions};
use vitune::tuning::GpuTuning;
use vitune::tuning::Tuning;

const TOL: f64 = 1e-4;

struct Case {
    backbone: vitune::model::Backbone,
    tuning: Tuning,
    pixels: HostTensor,
    labels: Vec<usize>,
    expected: BTreeMap<String, HostTensor>,
}

fn load_case(method: &str) -> Case {
    let f = common::grad_fixture(method);
    let mut input = f.input;
    let pixels = input.remove("pixels").expect("pixels");
    let labels = input["labels"].data.iter().map(|v| *v as usize).collect();
    Case {
        backbone: f.backbone,
        tuning: f.tuning,
        pixels,
        labels,
        expected: f.expected,
    }
}

fn run(case: &Case, micro: Option<usize>) -> (f64, BTreeMap<String, HostTensor>) {
    let options = StepOptions {
        micro_batch: micro,
        dropout_seed: None,
        timing: false,
    };
    run_with(&common::gpu(), case, &case.tuning, options)
}

fn run_with(
    gpu: &vitune::gpu::Gpu,
    case: &Case,
    tuning: &Tuning,
    options: StepOptions,
) -> (f64, BTreeMap<String, HostTensor>) {
    let vit = GpuViT::new(gpu, &case.backbone, None).expect("upload");
    let gt = GpuTuning::upload(gpu, tuning).expect("tuning upload");
    let grads = gt.zeros_like(gpu).expect("grads");
    let out = step(gpu, (&vit, &gt, &grads), case, options, None);
    let g = download_named(gpu, &grads, &gt.shapes).expect("download");
    (out.loss, g)
}

/// One training step of `case`'s batch, accumulating into `grads`; `after` records into the last submit.
fn step(
    gpu: &vitune::gpu::Gpu,
    (vit, gt, grads): (
        &GpuViT,
        &GpuTuning,
        &BTreeMap<String, vitune::gpu::GpuTensor>,
    ),
    case: &Case,
    options: StepOptions,
    after: Option<&mut dyn FnMut(&mut vitune::gpu::Recorder)>,
) -> vitune::train::StepOutput {
    compute_grads(
        gpu,
        vit,
        gt,
        grads,
        &case.pixels,
        &case.labels,
        options,
        after,
    )
    .expect("step")
}

/// Checks the loss and every gradient against autograd, with every attention kernel (fused per row, matmul, tiled).
fn check(method: &str) {
    let case = load_case(method);
    let gpu = common::gpu();
    for &kernel in AttentionKernel::ALL {
        gpu.set_attention_kernel(kernel);
        check_with(&gpu, &case, &format!("{method} ({kernel:?} attention)"));
    }
}

fn check_with(gpu: &vitune::gpu::Gpu, case: &Case, method: &str) {
    let (loss, grads) = run_with(gpu, case, &case.tuning, StepOptions::default());
    let want_loss = case.expected["loss"].data[0] as f64;
    assert!(
        (loss - want_loss).abs() / want_loss.abs() < TOL,
        "{method}: loss {loss} vs {want_loss}"
    );
    let mut checked = 0;
    for (name, want) in &case.expected {
        if name == "loss" {
            continue;
        }
        let got = grads
            .get(name)
            .unwrap_or_else(|| panic!("{method}: no gradient for `{name}`"));
        assert_eq!(got.shape, want.shape, "{method}: `{name}` shape");
        let e = common::rel_err(&got.data, &want.data);
        assert!(e < TOL, "{method}: gradient of `{name}` rel err {e:e}");
        checked += 1;
    }
    assert_eq!(
        checked,
        grads.len(),
        "{method}: every trainable tensor has an expected gradient"
    );
}

#[test]
fn linear_probe_gradients_match_autograd() {
    check("linear");
}

#[test]
fn bitfit_gradients_match_autograd() {
    check("bitfit");
}

#[test]
fn vpt_shallow_gradients_match_autograd() {
    check("vpt-shallow");
}

#[test]
fn vpt_deep_gradients_match_autograd() {
    check("vpt-deep");
}

#[test]
fn vpt_deep_on_average_pooled_layerscale_backbone_matches_autograd() {
    check("vpt-deep-avg");
}

#[test]
fn lora_gradients_match_autograd() {
    check("lora");
}

#[test]
fn adaptformer_gradients_match_autograd() {
    check("adaptformer");
}

#[test]
fn convpass_gradients_match_autograd() {
    check("convpass");
}

#[test]
fn ssf_gradients_match_autograd() {
    check("ssf");
}

#[test]
fn ssf_on_average_pooled_layerscale_backbone_matches_autograd() {
    check("ssf-avg");
}

/// The CLIP layout (pre-norm, QuickGELU, no patch-embedding bias), gradients by autograd through timm's modules.
#[test]
fn vpt_deep_on_the_clip_layout_matches_autograd() {
    check("clip-vpt-deep");
}

#[test]
fn lora_on_the_clip_layout_matches_autograd() {
    check("clip-lora");
}

/// DINOv2 with registers: prompts go after CLS and the register tokens.
#[test]
fn vpt_deep_with_register_tokens_matches_autograd() {
    check("reg-vpt-deep");
}

#[test]
fn lora_with_register_tokens_matches_autograd() {
    check("reg-lora");
}

/// No class token (SigLIP-gap layout): prompts come first, and the average pools them with the patches.
#[test]
fn vpt_deep_without_a_class_token_matches_autograd() {
    check("nocls-vpt-deep");
}

#[test]
fn lora_without_a_class_token_matches_autograd() {
    check("nocls-lora");
}

/// DeiT distilled: prompts after CLS and the distillation token; the head reads both tokens.
#[test]
fn vpt_deep_on_distilled_deit_matches_autograd() {
    check("distilled-vpt-deep");
}

#[test]
fn lora_on_distilled_deit_matches_autograd() {
    check("distilled-lora");
}

/// SigLIP's attention pooling: the backward runs through the latent query's attention, proj and the MLP.
#[test]
fn vpt_deep_through_siglip_attention_pooling_matches_autograd() {
    check("siglip-vpt-deep");
}

#[test]
fn lora_through_siglip_attention_pooling_matches_autograd() {
    check("siglip-lora");
}

/// BitFit trains the pooling's biases too; full fine-tuning every tensor of it, the latent query included.
#[test]
fn bitfit_and_full_fine_tuning_of_siglip_attention_pooling_match_autograd() {
    check("siglip-bitfit");
    check("siglip-full");
}

/// No qkv bias (so BitFit has none to train there) and the final norm before average pooling.
#[test]
fn bitfit_on_a_norm_then_average_pooled_backbone_without_qkv_bias_matches_autograd() {
    check("gap-bitfit");
}

#[test]
fn full_fine_tuning_gradients_match_autograd() {
    check("full");
}

#[test]
fn micro_batches_accumulate_to_the_full_batch_gradient() {
    micro_batches_match_the_full_batch("vpt-deep", 1, None);
}

#[test]
fn uneven_micro_batches_accumulate_to_the_full_batch_gradient() {
    for method in ["vpt-deep", "lora", "convpass", "full", "adaptformer", "ssf"] {
        micro_batches_match_the_full_batch(method, 2, None);
    }
}

/// Micro-batches of `micro` images (3 = 1+1+1, 2 = 2+1) give the full batch's loss and gradients, with dropout
/// off or on (`(rate, seed)`).
fn micro_batches_match_the_full_batch(method: &str, micro: usize, dropout: Option<(f32, u32)>) {
    let case = load_case(method);
    let mut tuning = case.tuning.clone();
    tuning.options.dropout = dropout.map_or(0.0, |d| d.0);
    let gpu = common::gpu();
    let with = |micro| {
        let options = StepOptions {
            micro_batch: Some(micro),
            dropout_seed: dropout.map(|d| d.1),
            timing: false,
        };
        run_with(&gpu, &case, &tuning, options)
    };
    let (loss_full, full) = with(3);
    let (loss_micro, split) = with(micro);
    assert!(
        (loss_full - loss_micro).abs() < 1e-5 * loss_full.abs(),
        "{method}: loss {loss_micro} in micro-batches of {micro}, {loss_full} whole"
    );
    for (name, g) in &full {
        let e = common::rel_err(&split[name].data, &g.data);
        assert!(e < 1e-5, "{method} `{name}`: micro-batched rel err {e:e}");
    }
}

/// DINOv3 (timm): RoPE on the patch tokens' q and k (prompts stay unrotated), 4 registers, LayerScale; the
/// backward turns the gradients of q and k back.
#[test]
fn vpt_deep_and_lora_under_dinov3_rotary_positions_match_autograd() {
    check("dinov3-vpt-deep");
    check("dinov3-lora");
}

/// SSF's scale and shift after qkv sit before RoPE; AdaptFormer's branch beside the MLP under LayerScale.
#[test]
fn ssf_and_adaptformer_under_dinov3_rotary_positions_match_autograd() {
    check("dinov3-ssf");
    check("dinov3-adaptformer");
}

/// DINOv2-giant's packed SwiGLU (fc1 of 2H rows, the first half gating the second).
#[test]
fn vpt_deep_lora_and_bitfit_through_swiglu_match_autograd() {
    check("dinov2g-vpt-deep");
    check("dinov2g-lora");
    check("dinov2g-bitfit");
}

/// EVA-02: absolute positions and `cat` RoPE, q/k/v joined at load, SwiGLU with its sub-LayerNorm, fc_norm.
#[test]
fn every_kind_of_method_on_eva02_matches_autograd() {
    check("eva02-vpt-deep");
    check("eva02-lora");
    check("eva02-ssf");
    check("eva02-convpass");
}

/// The linear probe and VPT-shallow on DINOv3 (the prompts after CLS and the registers, unrotated).
#[test]
fn linear_probe_and_vpt_shallow_on_dinov3_match_autograd() {
    check("dinov3-linear");
    check("dinov3-vpt-shallow");
}

/// timm's RoPE ViT without a class token: prompts after its one register, unrotated, inside the average.
#[test]
fn vpt_deep_on_a_rope_vit_without_a_class_token_matches_autograd() {
    check("rope-vpt-deep");
}

/// BitFit and full fine-tuning on EVA-02's joined layout: the joined qkv bias (its k third, zero in the checkpoint,
/// is trained too), fc1 = [fc1_g | fc1_x], the sub-LayerNorm, the absolute positions.
#[test]
fn bitfit_and_full_fine_tuning_on_eva02_match_autograd() {
    check("eva02-bitfit");
    check("eva02-full");
}

/// Full fine-tuning on LayerScale backbones: timm's own proj and fc2 weights tuned, γ applied (and trained) on
/// their outputs; the absent qkv biases trained from zero; DINOv2-giant's CLS position row.
#[test]
fn full_fine_tuning_on_layerscale_backbones_matches_autograd() {
    check("dinov3-full");
    check("dinov2g-full");
}

use common::GRAD_CASES as CASES;

/// A method added without a fixture (and so without its gradients checked) fails here.
#[test]
fn every_method_has_a_gradient_fixture() {
    for m in vitune::tuning::Method::ALL {
        let covered = CASES.iter().any(|case| {
            let meta = common::fixture(&format!("grad_{case}")).join("meta.json");
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(meta).expect("meta")).expect("json");
            meta["method"].as_str() == Some(m.name())
        });
        assert!(covered, "method {m} has no grad_* fixture in CASES");
    }
}

/// A trained tensor the backward never reaches is an error, not a silent zero gradient: a tuning that carries a
/// tensor its method's hooks do not use (here LoRA's A of a slot it does not adapt) fails the step.
#[test]
fn a_trained_tensor_without_a_gradient_is_an_error() {
    let case = load_case("lora");
    let gpu = common::gpu();
    let vit = GpuViT::new(&gpu, &case.backbone, None).expect("upload");
    let mut gt = GpuTuning::upload(&gpu, &case.tuning).expect("tuning upload");
    let stray = gpu.zeros(&[4, 48]).expect("zeros");
    gt.params.insert("blocks.0.attn.k_lora_A".into(), stray);
    let grads = gt.zeros_like(&gpu).expect("grads");
    let err = compute_grads(
        &gpu,
        &vit,
        &gt,
        &grads,
        &case.pixels,
        &case.labels,
        StepOptions::default(),
        None,
    )
    .expect_err("a dead tensor must fail the step");
    let msg = err.to_string();
    assert!(msg.contains("blocks.0.attn.k_lora_A"), "{msg}");
}

/// The inference forward (what eval, predict and the app run: no saved activations, plain kernels where the
/// training forward keeps pre-activations) gives each fixture's autograd loss.
#[test]
fn the_inference_forward_gives_every_fixture_loss() {
    use vitune::model::ForwardOptions;
    let gpu = common::gpu();
    for method in CASES {
        let case = load_case(method);
        let vit = GpuViT::new(&gpu, &case.backbone, None).expect("upload");
        let gt = GpuTuning::upload(&gpu, &case.tuning).expect("tuning upload");
        let out = vit
            .forward(
                &gpu,
                &case.pixels,
                &ForwardOptions {
                    tuning: Some(&gt),
                    ..Default::default()
                },
            )
            .expect("forward");
        let loss = common::cross_entropy(&out.logits.expect("logits"), &case.labels);
        let want = case.expected["loss"].data[0] as f64;
        assert!(
            (loss - want).abs() / want.abs() < TOL,
            "{method}: inference loss {loss} vs autograd {want}"
        );
    }
}

/// Every method's tuning survives a tuned file (with vitune's metadata, and as plain tensors whose method is
/// read from their names) bit for bit, options included.
#[test]
fn every_method_round_trips_through_a_tuned_file() {
    use vitune::tuned::{read, write, TunedMeta};
    let dir = tempfile::tempdir().expect("tempdir");
    for method in CASES {
        let case = load_case(method);
        let t = &case.tuning;
        let classes: Vec<String> = (0..t.num_classes).map(|i| format!("c{i}")).collect();
        let path = dir.path().join(format!("{method}.safetensors"));
        write(
            &path,
            t,
            &TunedMeta::new(t, &case.backbone, classes.clone(), "fixture"),
        )
        .expect("write");
        let back = read(&path, &case.backbone, false).expect("read");
        assert_eq!(back.tuning.method, t.method, "{method}");
        assert_eq!(back.tuning.options, t.options, "{method}: options");
        assert_eq!(back.classes, classes);
        let plain = dir.path().join(format!("{method}-plain.safetensors"));
        vitune::io::write_tensors(&plain, &t.tensors, None).expect("write plain");
        let guessed = read(&plain, &case.backbone, false).expect("read plain");
        assert_eq!(
            guessed.tuning.method, t.method,
            "{method}: method from names"
        );
        for (name, want) in &t.tensors {
            for (how, got) in [("tuned", &back.tuning), ("plain", &guessed.tuning)] {
                let got = &got.tensors[name];
                assert_eq!(got.shape, want.shape, "{method} ({how}) `{name}`");
                assert_eq!(got.data, want.data, "{method} ({how}) `{name}`");
            }
        }
        assert_eq!(back.tuning.tensors.len(), t.tensors.len());
    }
}

#[test]
fn linear_probe_on_cached_features_gives_the_same_gradients() {
    use vitune::model::ForwardOptions;
    use vitune::train::compute_head_grads;
    let case = load_case("linear");
    let (_, full) = run(&case, None);
    let gpu = common::gpu();
    let vit = GpuViT::new(&gpu, &case.backbone, None).expect("upload");
    let gt = GpuTuning::upload(&gpu, &case.tuning).expect("tuning upload");
    let grads = gt.zeros_like(&gpu).expect("grads");
    let features = vit
        .forward(&gpu, &case.pixels, &ForwardOptions::default())
        .expect("forward")
        .pooled;
    let out = compute_head_grads(&gpu, &gt, &grads, &features, &case.labels, None).expect("step");
    let want_loss = case.expected["loss"].data[0] as f64;
    assert!((out.loss - want_loss).abs() < 1e-4 * want_loss);
    let cached = download_named(&gpu, &grads, &gt.shapes).expect("download");
    for (k, g) in &full {
        let e = common::rel_err(&cached[k].data, &g.data);
        assert!(e < 1e-5, "`{k}`: {e:e}");
    }
}

/// With dropout on (rate 0.5, a fixed seed) the masks are a pure function of the seed, so the loss is a
/// deterministic function of the trained tensors: central differences check the backward replays the masks.
fn check_dropout_by_finite_differences(method: &str, names: &[&str]) {
    let case = load_case(method);
    let mut tuning = case.tuning.clone();
    tuning.options.dropout = 0.5;
    let options = StepOptions {
        micro_batch: None,
        dropout_seed: Some(11),
        timing: false,
    };
    let gpu = common::gpu();
    let (loss, grads) = run_with(&gpu, &case, &tuning, options);
    let (plain, _) = run(&case, None);
    assert!(
        (loss - plain).abs() > 1e-3 * plain.abs(),
        "{method}: dropout did not change the loss ({loss} vs {plain})"
    );
    for name in names {
        let g = &grads[*name].data;
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        assert!(gmax > 0.0, "{method}: `{name}` has no gradient");
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        let mut picks: Vec<usize> = order[..3].to_vec();
        picks.extend([0, g.len() / 3, g.len() / 2, g.len() - 1]);
        let zeros = g.iter().filter(|v| **v == 0.0).count();
        if let Some(z) = g.iter().position(|v| *v == 0.0) {
            picks.push(z);
        }
        for &i in &picks {
            let h = 1e-2f32;
            let at = |delta: f32| {
                let mut t = tuning.clone();
                t.tensors.get_mut(*name).expect("tensor").data[i] += delta;
                run_with(&gpu, &case, &t, options).0
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            let err = (fd - g[i] as f64).abs();
            assert!(
                err < 2e-2 * gmax + 1e-4,
                "{method}: d loss / d {name}[{i}] = {} by the backward, {fd} by differences ({zeros} zeros)",
                g[i]
            );
        }
    }
}

#[test]
fn prompt_dropout_gradients_match_finite_differences() {
    check_dropout_by_finite_differences(
        "vpt-deep",
        &["prompt_embeddings", "deep_prompt_embeddings"],
    );
}

#[test]
fn convpass_dropout_gradients_match_finite_differences() {
    check_dropout_by_finite_differences(
        "convpass",
        &[
            "blocks.0.adapter_attn.adapter_down.weight",
            "blocks.1.adapter_mlp.adapter_up.weight",
        ],
    );
}

#[test]
fn dropout_masks_do_not_depend_on_the_micro_batch() {
    micro_batches_match_the_full_batch("vpt-deep", 1, Some((0.3, 5)));
}

#[test]
fn a_training_step_allocates_no_buffers_after_the_first() {
    use vitune::train::{OptimConfig, Optimizer, OptimizerKind};
    let case = load_case("vpt-deep");
    let gpu = common::gpu();
    let vit = GpuViT::new(&gpu, &case.backbone, None).expect("upload");
    let gt = GpuTuning::upload(&gpu, &case.tuning).expect("tuning upload");
    let grads = gt.zeros_like(&gpu).expect("grads");
    let mut opt = Optimizer::new(
        &gpu,
        &gt.params,
        OptimConfig::new(OptimizerKind::Adamw, 1e-3, 1e-4),
    )
    .expect("optimizer");
    let mut seeded_step = |seed: u32| {
        let mut after =
            |rec: &mut vitune::gpu::Recorder| opt.record_step(rec, &gt.params, &grads, &gt.shapes);
        let options = StepOptions {
            micro_batch: None,
            dropout_seed: Some(seed),
            timing: false,
        };
        step(&gpu, (&vit, &gt, &grads), &case, options, Some(&mut after)).loss
    };
    seeded_step(1);
    let before = gpu.buffers_created();
    let loss = seeded_step(2);
    assert!(loss.is_finite());
    assert_eq!(
        gpu.buffers_created(),
        before,
        "the second step created device buffers (tensors, uniforms or read-back staging)"
    );
}

/// The activation budget the micro-batch is sized against covers what a step really holds, for methods that keep
/// none of the frozen layers' inputs (vpt-deep, bitfit, AdaptFormer; the fused attention keeps the context) and
/// for those that keep some or all (LoRA, Convpass, full), on token- and average-pooled backbones, with both
/// attention kernels.
#[test]
fn a_step_holds_no_more_than_its_activation_budget() {
    use vitune::train::train_activation_bytes;
    for method in [
        "vpt-deep",
        "vpt-deep-avg",
        "bitfit",
        "adaptformer",
        "lora",
        "convpass",
        "ssf",
        "ssf-avg",
        "full",
    ] {
        let case = load_case(method);
        for kernel in [AttentionKernel::Matmul, AttentionKernel::Fused] {
            let gpu = common::gpu();
            gpu.set_attention_kernel(kernel);
            let vit = GpuViT::new(&gpu, &case.backbone, None).expect("upload");
            let gt = GpuTuning::upload(&gpu, &case.tuning).expect("tuning upload");
            let grads = gt.zeros_like(&gpu).expect("grads");
            let plain_step = || {
                step(
                    &gpu,
                    (&vit, &gt, &grads),
                    &case,
                    StepOptions::default(),
                    None,
                )
            };
            plain_step();
            let (before, _) = gpu.pool_bytes();
            gpu.reset_peak_memory();
            plain_step();
            let (_, peak) = gpu.pool_bytes();
            let images = case.pixels.shape[0];
            let held = (peak - before) as usize / images;
            let budget = train_activation_bytes(&gpu, &vit, &gt);
            println!("{method} {kernel:?}: {held} bytes per image held, budget {budget}");
            assert!(
                held <= budget,
                "{method} ({kernel:?}): a step held {held} bytes per image, over its budget of {budget}"
            );
        }
    }
}

/// Grad-rollout runs a training forward that keeps only what input gradients need: it works on every method's
/// tuning (the Convpass bypasses' inputs are not kept there) and gives finite, non-zero attention gradients.
#[test]
fn grad_rollout_works_with_every_methods_tuning() {
    let gpu = common::gpu();
    for method in vitune::tuning::Method::ALL.map(|m| m.name()) {
        let case = load_case(method);
        let vit = GpuViT::new(&gpu, &case.backbone, None).expect("upload");
        let gt = GpuTuning::upload(&gpu, &case.tuning).expect("tuning upload");
        let (h, w) = (case.pixels.shape[2], case.pixels.shape[3]);
        let one = HostTensor::new(vec![1, 3, h, w], case.pixels.data[..3 * h * w].to_vec());
        let att = vitune::viz::image_attention(&gpu, &vit, Some(&gt), &one, true, Some(1))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let grads = att.grads.expect("attention gradients");
        assert_eq!(grads.len(), case.backbone.config.depth, "{method}");
        assert!(
            grads
                .iter()
                .all(|g| g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0)),
            "{method}: attention gradients should be finite and not all zero"
        );
    }
}

/// The linear probe's cached features have the head's input width on every layout (2D for DeiT distilled: CLS
/// and the distillation token side by side), each row the forward's pooled feature of its image.
#[test]
fn cached_features_have_the_pooled_width_of_every_layout() {
    use vitune::model::ForwardOptions;
    let gpu = common::gpu();
    for case in ["lora", "distilled-lora"] {
        let f = common::grad_fixture(case);
        let b = &f.backbone;
        let transform = vitune::job::eval_transform(b, None);
        let vit = GpuViT::new(&gpu, b, Some(transform.size)).expect("upload");
        let session = vitune::train::Session::new(&gpu, b, &vit, &transform);
        let images: Vec<image::RgbImage> = (0..3u8)
            .map(|i| {
                image::RgbImage::from_fn(40, 36, move |x, y| {
                    image::Rgb([(x * 6) as u8 ^ (i * 70), (y * 7) as u8, i * 80])
                })
            })
            .collect();
        let samples = vitune::train::Samples::from_images(images.clone(), vec![0, 1, 2]);
        let feats = session.pooled_features(&samples).expect("features");
        let width = b.config.pooled_dim();
        assert_eq!(feats.shape, [3, width], "{case}");
        for (i, img) in images.iter().enumerate() {
            let (h, w) = transform.size;
            let px = HostTensor::new(vec![1, 3, h, w], transform.apply(img));
            let want = vit
                .forward(&gpu, &px, &ForwardOptions::default())
                .expect("forward")
                .pooled;
            let e = common::rel_err(&feats.data[i * width..(i + 1) * width], &want.data);
            assert!(e < 1e-5, "{case}: image {i}: {e:e}");
        }
    }
}
