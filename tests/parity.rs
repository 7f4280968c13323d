//! Golden parity with timm / Hugging Face: fixtures made by tools/make_fixtures.py on random-weight ViTs.
//! `pooled`, `logits` and every `attn.{l}` must lie within 1e-4 relative (max abs error / max abs value).

mod common;

use vitune::gpu::AttentionKernel;
use vitune::model::{
    load_backbone, ForwardOptions, GpuViT, LoadOptions, MlpAct, Pooling, WeightFormat,
};

const TOL: f64 = 1e-4;

fn meta(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(common::fixture(case).join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json parses")
}

fn check_case(case: &str, opts: LoadOptions) -> vitune::model::Backbone {
    let dir = common::fixture(case);
    let backbone = load_backbone(&dir.join("model.safetensors"), &opts).expect("checkpoint loads");
    let mut input = vitune::io::read_tensors(&dir.join("input.safetensors")).expect("input");
    let expected = vitune::io::read_tensors(&dir.join("expected.safetensors")).expect("expected");
    let pixels = input.remove("pixels").expect("pixels");
    // The RoPE tables vitune makes for the grid are the ones timm / transformers applied.
    if let Ok(tables) = vitune::io::read_tensors(&dir.join("rope.safetensors")) {
        let c = &backbone.config;
        let rope = c.rope.as_ref().expect("a RoPE fixture loads with RoPE");
        let grid = (pixels.shape[2] / c.patch, pixels.shape[3] / c.patch);
        let (cos, sin) = rope.tables(grid, c.dim / c.heads);
        for (name, got) in [("cos", cos), ("sin", sin)] {
            let e = rel_err_named(&got, &tables[name].data);
            assert!(e < 1e-5, "{case}: rope {name} table rel err {e:e}");
        }
    }
    let gpu = common::gpu();
    let vit =
        GpuViT::new(&gpu, &backbone, Some((pixels.shape[2], pixels.shape[3]))).expect("upload");
    let out = vit
        .forward(
            &gpu,
            &pixels,
            &ForwardOptions {
                attn: true,
                ..Default::default()
            },
        )
        .expect("forward");
    let e = rel_err_named(&out.pooled.data, &expected["pooled"].data);
    assert!(e < TOL, "{case}: pooled rel err {e:e}");
    check_logits(case, out.logits.as_ref(), &expected, "");
    let layers = backbone.config.depth;
    assert_eq!(out.attn.len(), layers);
    for (l, a) in out.attn.iter().enumerate() {
        let want = &expected[&format!("attn.{l}")];
        assert_eq!(a.shape, want.shape, "{case}: attn.{l} shape");
        let e = rel_err_named(&a.data, &want.data);
        assert!(e < TOL, "{case}: attn.{l} rel err {e:e}");
    }
    // Without maps the fused attention kernels can run (`VITUNE_ATTENTION=fused` or `tiled`); check them on every
    // layout.
    for kernel in [AttentionKernel::Fused, AttentionKernel::Tiled] {
        gpu.set_attention_kernel(kernel);
        let fused = vit
            .forward(&gpu, &pixels, &ForwardOptions::default())
            .expect("forward without maps");
        let e = rel_err_named(&fused.pooled.data, &expected["pooled"].data);
        assert!(
            e < TOL,
            "{case}: pooled ({kernel:?} attention) rel err {e:e}"
        );
        check_logits(
            case,
            fused.logits.as_ref(),
            &expected,
            &format!(" ({kernel:?} attention)"),
        );
    }
    backbone
}

/// The logits against the fixture's; a fixture without `logits` (a vision tower without a head) expects none.
fn check_logits(
    case: &str,
    got: Option<&vitune::model::HostTensor>,
    expected: &std::collections::BTreeMap<String, vitune::model::HostTensor>,
    how: &str,
) {
    match (got, expected.get("logits")) {
        (Some(l), Some(want)) => {
            assert_eq!(l.shape, want.shape, "{case}: logits shape");
            let e = rel_err_named(&l.data, &want.data);
            assert!(e < TOL, "{case}: logits{how} rel err {e:e}");
        }
        (None, None) => {}
        (got, want) => panic!(
            "{case}: logits {} but the fixture has {}",
            if got.is_some() { "given" } else { "missing" },
            if want.is_some() { "some" } else { "none" }
        ),
    }
}

/// Within this of timm's logits with the frozen matmul weights stored as f16 (f32 compute).
const F16_TOL: f64 = 5e-3;

#[test]
fn f16_weights_stay_close_to_timm() {
    let dir = common::fixture("timm_cls");
    let backbone =
        load_backbone(&dir.join("model.safetensors"), &LoadOptions::default()).expect("loads");
    let pixels = vitune::io::read_tensors(&dir.join("input.safetensors"))
        .expect("input")
        .remove("pixels")
        .expect("pixels");
    let expected = vitune::io::read_tensors(&dir.join("expected.safetensors")).expect("expected");
    let gpu = common::gpu();
    if common::f16_declared_absent(&gpu) {
        eprintln!("not run: VITUNE_TEST_WITHOUT_F16 says this adapter has no SHADER_F16");
        return;
    }
    gpu.set_f16_weights(true)
        .expect("f16 weights (the adapter needs SHADER_F16; lavapipe has it)");
    let vit = GpuViT::new(&gpu, &backbone, Some((pixels.shape[2], pixels.shape[3]))).expect("up");
    gpu.set_f16_weights(false).expect("off");
    let f32_vit =
        GpuViT::new(&gpu, &backbone, Some((pixels.shape[2], pixels.shape[3]))).expect("up");
    assert!(
        vit.weight_bytes() < f32_vit.weight_bytes() * 3 / 4,
        "f16 weights take {} bytes against {} in f32",
        vit.weight_bytes(),
        f32_vit.weight_bytes()
    );
    let out = vit
        .forward(&gpu, &pixels, &ForwardOptions::default())
        .expect("forward");
    let logits = out.logits.expect("logits");
    let e = rel_err_named(&logits.data, &expected["logits"].data);
    eprintln!("f16 weights: logits rel err {e:e} (f32: below 1e-4)");
    assert!(e < F16_TOL, "f16 weights: logits rel err {e:e}");
    // Not the same as f32: the weights really are rounded.
    assert!(
        e > 1e-6,
        "f16 weights: logits equal f32 to {e:e}; were they rounded?"
    );
}

fn rel_err_named(a: &[f32], b: &[f32]) -> f64 {
    common::rel_err(a, b)
}

#[test]
fn timm_cls_pooling_matches_timm() {
    let b = check_case("timm_cls", LoadOptions::default());
    assert_eq!(b.config.format, WeightFormat::Timm);
    assert_eq!(b.config.pooling, Pooling::Token);
    assert_eq!(b.config.heads, 3);
    assert_eq!(b.config.heads_source, "config.json");
}

/// timm's CLIP layout: `norm_pre`, QuickGELU, a patch embedding without bias.
#[test]
fn clip_layout_matches_timm() {
    let b = check_case("timm_clip", LoadOptions::default());
    assert!(b.config.pre_norm);
    assert_eq!(b.config.mlp_act, MlpAct::QuickGelu);
    assert_eq!(b.config.absent_biases, ["patch_embed.proj.bias"]);
    assert!(b.config.family().starts_with("CLIP-style"));
    // timm builds CLIP towers with LayerNorm(eps=1e-5); config.json does not say so.
    assert_eq!(b.config.eps, 1e-5);
}

/// A Hugging Face vision tower without a head: `pooled` (its pooler_output), every `attn.{l}`, and no logits.
fn check_headless(case: &str) -> vitune::model::Backbone {
    let b = check_case(case, LoadOptions::default());
    assert_eq!(b.config.format, WeightFormat::HuggingFace);
    b
}

/// Hugging Face's CLIPVisionModel: `pooled` is its pooler_output (post_layernorm of CLS); it has no head.
#[test]
fn hugging_face_clip_vision_tower_matches_transformers() {
    let b = check_headless("hf_clip");
    let c = &b.config;
    assert!(c.pre_norm && c.mlp_act == MlpAct::QuickGelu);
    assert_eq!((c.eps, c.heads, c.num_classes), (1e-5, 3, 0));
}

/// Hugging Face's Dinov2Model and Dinov2WithRegistersModel (LayerScale; registers after CLS).
#[test]
fn hugging_face_dinov2_with_and_without_registers_matches_transformers() {
    let plain = check_headless("hf_dinov2");
    assert!(plain.config.layer_scale);
    assert_eq!(plain.config.registers, 0);
    let reg = check_headless("hf_dinov2_reg");
    assert_eq!(
        (reg.config.registers, reg.config.no_embed_class),
        (4, false)
    );
}

/// DINOv2 with registers as timm builds it: register tokens after CLS, a pos_embed without a CLS row, LayerScale.
#[test]
fn register_tokens_and_no_embed_class_match_timm() {
    let b = check_case("timm_reg", LoadOptions::default());
    let c = &b.config;
    assert_eq!(
        (c.registers, c.no_embed_class, c.layer_scale),
        (4, true, true)
    );
    assert!(c.family().contains("4 register tokens"), "{}", c.family());
}

/// `qkv_bias=False`, and `global_pool='avg'` without `fc_norm` (the final norm, then the mean).
#[test]
fn no_qkv_bias_and_norm_then_average_pooling_match_timm() {
    let b = check_case("timm_gap", LoadOptions::default());
    assert_eq!(b.config.pooling, Pooling::NormAvg);
    assert_eq!(
        b.config.absent_biases,
        ["blocks.0.attn.qkv.bias", "blocks.1.attn.qkv.bias"]
    );
}

/// No class token (`class_token=False`, SigLIP-gap and `*_gap_*` models): the norm, then the mean of every token.
#[test]
fn no_class_token_with_average_pooling_matches_timm() {
    let b = check_case("timm_nocls", LoadOptions::default());
    let c = &b.config;
    assert!(!c.class_token && !c.no_embed_class);
    assert_eq!((c.pooling, c.prefix_tokens()), (Pooling::NormAvg, 0));
    assert!(c.family().contains("no class token"), "{}", c.family());
}

/// SigLIP (`global_pool='map'`, no class token): the final norm, then attention pooling by a latent query.
#[test]
fn siglip_attention_pooling_matches_timm() {
    let b = check_case("timm_siglip", LoadOptions::default());
    let c = &b.config;
    assert_eq!((c.pooling, c.class_token), (Pooling::Map, false));
    assert!(c.family().contains("attention pooling"), "{}", c.family());
}

/// Registers with average pooling and fc_norm: the mean skips CLS and the registers, as timm's does.
#[test]
fn registers_with_average_pooling_match_timm() {
    let b = check_case("timm_reg_avg", LoadOptions::default());
    assert_eq!((b.config.registers, b.config.pooling), (4, Pooling::Avg));
}

/// DeiT distilled: the distillation token after CLS with its own position row; the logits are timm's average of
/// the two heads, `pooled` CLS and the distillation token side by side.
#[test]
fn distilled_deit_matches_timm() {
    let b = check_case("timm_distilled", LoadOptions::default());
    let c = &b.config;
    assert!(c.distilled && c.class_token);
    assert_eq!((c.prefix_tokens(), c.pooled_dim()), (2, 2 * c.dim));
    assert_eq!(b.get("head.weight").expect("head").shape, [5, 2 * c.dim]);
    assert!(!b.tensors.contains_key("head_dist.weight"));
}

/// Variants vitune cannot run are refused with one sentence naming what they need.
#[test]
fn unsupported_families_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = vitune::io::read_tensors(&common::fixture("timm_cls").join("model.safetensors"))
        .expect("read");
    for (extra, says) in [
        ("rope.freqs", "learned per-head rotary frequencies"),
        (
            "blocks.0.attn.norm.weight",
            "a LayerNorm inside its attention",
        ),
        ("blocks.0.attn.q_norm.weight", "query-key normalisation"),
        ("attn_pool.q_norm.weight", "query-key normalisation"),
        (
            "vision_model.head.attention.in_proj_weight",
            "Hugging Face SigLIP",
        ),
    ] {
        let mut t = base.clone();
        t.insert(extra.into(), vitune::model::HostTensor::zeros(&[1, 1, 48]));
        let path = dir.path().join("model.safetensors");
        vitune::io::write_tensors(&path, &t, None).expect("write");
        let e = load_backbone(&path, &LoadOptions::default())
            .expect_err("refused")
            .to_string();
        assert!(e.contains(says) && e.contains("does not support"), "{e}");
    }
}

#[test]
fn timm_avg_pooling_bf16_layerscale_matches_timm() {
    let heads = meta("timm_avg_bf16")["heads"].as_u64().expect("heads") as usize;
    let b = check_case(
        "timm_avg_bf16",
        LoadOptions {
            heads: Some(heads),
            ..Default::default()
        },
    );
    assert_eq!(b.config.pooling, Pooling::Avg);
    assert!(b.config.layer_scale);
}

#[test]
fn hugging_face_layout_matches_transformers() {
    let b = check_case("hf_vit", LoadOptions::default());
    assert_eq!(b.config.format, WeightFormat::HuggingFace);
    assert_eq!(b.config.heads, 4);
    assert!((b.config.eps - 1e-12).abs() < 1e-15);
}

#[test]
fn resized_input_resamples_pos_embed_like_timm() {
    let b = check_case("timm_resized", LoadOptions::default());
    assert_eq!(b.config.image_size, (32, 32));
    // The resampled position embedding itself, against timm's resample_abs_pos_embed.
    let dir = common::fixture("timm_resized");
    let expected = vitune::io::read_tensors(&dir.join("expected.safetensors")).expect("expected");
    let pos = b.get("pos_embed").expect("pos_embed");
    let got = vitune::model::resample::resample_pos_embed(
        &pos.data,
        b.config.dim,
        1,
        (4, 4),
        (6, 6),
        true,
    );
    let e = common::rel_err(&got, &expected["pos_embed_resampled"].data);
    assert!(e < 1e-6, "resampled pos_embed rel err {e:e}");
}

#[test]
fn head_count_comes_from_config_json() {
    let b = check_case("timm_heads4", LoadOptions::default());
    assert_eq!(b.config.heads, 4);
}

#[test]
fn missing_head_count_is_a_clear_error() {
    let dir = common::fixture("timm_avg_bf16");
    let err = load_backbone(&dir.join("model.safetensors"), &LoadOptions::default())
        .expect_err("width 48 without config.json has no known head count");
    let msg = err.to_string();
    assert!(
        msg.contains("--heads"),
        "message should say how to fix it: {msg}"
    );
}

/// DINOv3 as timm builds it (`vit_*_patch16_dinov3`): no absolute position embedding, RoPE of the `dinov3` kind
/// (temperature 100, rotate-half) on the patch tokens only, 4 registers, LayerScale, LayerNorm eps 1e-5, and
/// the upstream CLS pooling.
#[test]
fn dinov3_rotary_positions_match_timm() {
    let b = check_case("timm_dinov3", LoadOptions::default());
    let c = &b.config;
    let rope = c.rope.as_ref().expect("rope");
    assert_eq!(
        (rope.kind, rope.temperature, rope.rotate_half),
        (vitune::model::RopeKind::DinoV3, 100.0, true)
    );
    assert!(!c.abs_pos && c.layer_scale && !c.swiglu);
    assert_eq!((c.registers, c.pooling, c.eps), (4, Pooling::Token, 1e-5));
    assert!(c.family().contains("DINOv3"), "{}", c.family());
}

/// DINOv3 `_qkvb` (q and v biases beside a bias-free fused qkv, no k bias) with timm's default pooling for its
/// Eva class: the average of the tokens after CLS and the registers.
#[test]
fn dinov3_qkv_biases_with_average_pooling_match_timm() {
    let b = check_case("timm_dinov3_qkvb_avg", LoadOptions::default());
    assert!(matches!(b.config.pooling, Pooling::NormAvg | Pooling::Avg));
    assert!(b.config.absent_biases.iter().all(|n| !n.contains("qkv")));
}

/// EVA-02: an absolute position embedding and RoPE of the `cat` kind (interleaved), separate q/k/v projections
/// (q and v biases), SwiGLU with a sub-LayerNorm.
#[test]
fn eva02_matches_timm() {
    let b = check_case("timm_eva02", LoadOptions::default());
    let c = &b.config;
    let rope = c.rope.as_ref().expect("rope");
    assert_eq!(
        (rope.kind, rope.rotate_half),
        (vitune::model::RopeKind::Cat, false)
    );
    assert!(c.abs_pos && c.swiglu && c.mlp_norm);
}

/// timm's RoPE ViT (`vit_*_patch16_rope_reg1_gap_*`): RoPE without an absolute embedding, one register, no class
/// token, average pooling.
#[test]
fn timm_rope_vit_with_a_register_matches_timm() {
    let b = check_case("timm_rope_reg_avg", LoadOptions::default());
    let c = &b.config;
    assert!(c.rope.is_some() && !c.abs_pos);
    assert_eq!(c.registers, 1);
}

/// DINOv2-giant with registers: timm's `SwiGLUPacked` (fc1 of 2H rows, the first half through SiLU gating the
/// second), LayerScale, no CLS position row.
#[test]
fn dinov2_giant_swiglu_matches_timm() {
    let b = check_case("timm_dinov2g_reg", LoadOptions::default());
    let c = &b.config;
    assert!(c.swiglu && !c.mlp_norm && c.rope.is_none());
    assert_eq!(c.mlp_inner() * 2, c.mlp_hidden);
    assert!(c.family().contains("SwiGLU"), "{}", c.family());
}

/// transformers' DINOv3ViTModel: its names, its RoPE, `pooled` = the pooler output (the normed CLS).
#[test]
fn hugging_face_dinov3_matches_transformers() {
    let b = check_headless("hf_dinov3");
    assert!(b.config.rope.is_some() && !b.config.abs_pos);
}

/// Any input size: at 40×24 (a 5×3 grid, not the checkpoint's) the RoPE angles follow the grid in use, as timm's
/// dynamic size and transformers compute them; no resampling.
#[test]
fn dinov3_at_a_non_square_input_matches_timm_and_transformers() {
    for case in ["timm_dinov3", "hf_dinov3"] {
        let dir = common::fixture(case);
        let backbone =
            load_backbone(&dir.join("model.safetensors"), &LoadOptions::default()).expect("loads");
        let pixels = vitune::io::read_tensors(&dir.join("input_40x24.safetensors"))
            .expect("input")
            .remove("pixels")
            .expect("pixels");
        let want = vitune::io::read_tensors(&dir.join("expected_40x24.safetensors")).expect("want");
        let tables = vitune::io::read_tensors(&dir.join("rope_40x24.safetensors")).expect("rope");
        let c = &backbone.config;
        let (cos, sin) = c
            .rope
            .as_ref()
            .expect("rope")
            .tables((5, 3), c.dim / c.heads);
        assert!(
            rel_err_named(&cos, &tables["cos"].data) < 1e-5,
            "{case}: cos"
        );
        assert!(
            rel_err_named(&sin, &tables["sin"].data) < 1e-5,
            "{case}: sin"
        );
        let gpu = common::gpu();
        let vit = GpuViT::new(&gpu, &backbone, Some((40, 24))).expect("upload");
        let opts = ForwardOptions {
            attn: true,
            ..Default::default()
        };
        let out = vit.forward(&gpu, &pixels, &opts).expect("forward");
        let e = rel_err_named(&out.pooled.data, &want["pooled"].data);
        assert!(e < TOL, "{case}: pooled rel err {e:e}");
        check_logits(case, out.logits.as_ref(), &want, " at 40x24");
        for (l, a) in out.attn.iter().enumerate() {
            let w = &want[&format!("attn.{l}")];
            assert_eq!(a.shape, w.shape, "{case}: attn.{l} shape");
            let e = rel_err_named(&a.data, &w.data);
            assert!(e < TOL, "{case}: attn.{l} rel err {e:e}");
        }
    }
}

/// transformers' DINOv3 with the gated MLP of its H+ and 7B releases (`use_gated_mlp`, SiLU): gate_proj and
/// up_proj join as fc1 = [gate | up], the SwiGLU vitune runs.
#[test]
fn hugging_face_dinov3_with_the_gated_mlp_matches_transformers() {
    let b = check_headless("hf_dinov3_gated");
    assert!(b.config.swiglu && b.config.rope.is_some());
}
