//! Every WGSL shader, and every variant the launchers generate, parses and validates with naga and translates to
//! each backend wgpu uses — SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12) — validated with that backend's
//! capabilities, so a kernel that would not compile on a Mac or on Windows fails `cargo test` here with its message.

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// (name, source) of every shader and generated variant: the f16-weight matmul, the row kernels with subgroup
/// reductions, and the fused attention at the
/// head sizes of the demo (32), ViT-Ti/S/B/L (64), and two others (an odd one and 80).
fn sources() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vitune::ops::shaders::ALL
        .iter()
        .map(|&(n, s)| (n.to_string(), s.to_string()))
        .collect();
    all.push((
        "matmul.wgsl (f16 B)".into(),
        vitune::ops::shaders::matmul_f16_source(),
    ));
    for (name, source) in [
        ("layernorm.wgsl", vitune::ops::shaders::LAYERNORM),
        ("softmax.wgsl", vitune::ops::shaders::SOFTMAX),
        ("loss.wgsl", vitune::ops::shaders::LOSS),
    ] {
        all.push((
            format!("{name} (subgroup reductions)"),
            vitune::ops::shaders::subgroup_source(source),
        ));
    }
    for b_f16 in [false, true] {
        all.push((
            format!("matmul.wgsl + matmul_half.wgsl (f16 B {b_f16})"),
            vitune::ops::shaders::matmul_half_source(b_f16),
        ));
    }
    for hd in [5, 32, 64, 80] {
        all.push((
            format!("attention.wgsl (HD {hd})"),
            vitune::ops::shaders::attention_source(hd),
        ));
    }
    all
}

fn parse(name: &str, source: &str) -> Result<naga::Module, String> {
    naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(source)))
}

fn validate(
    name: &str,
    source: &str,
    module: &naga::Module,
    caps: Capabilities,
) -> Result<naga::valid::ModuleInfo, String> {
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(source)))
}

#[test]
fn every_shader_parses_and_validates() {
    let mut failures = Vec::new();
    for (name, source) in sources() {
        match parse(&name, &source) {
            Ok(m) => {
                if let Err(e) = validate(&name, &source, &m, Capabilities::all()) {
                    failures.push(e);
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "shader errors:\n{}",
        failures.join("\n")
    );
}

/// Translates every shader with one backend (validated with the capabilities that backend supports) and collects
/// the failures.
fn translate_all(
    backend: &str,
    caps: Capabilities,
    write: impl Fn(&naga::Module, &naga::valid::ModuleInfo) -> Result<usize, String>,
) -> Vec<String> {
    translate(sources(), backend, caps, write)
}

fn translate(
    sources: Vec<(String, String)>,
    backend: &str,
    caps: Capabilities,
    write: impl Fn(&naga::Module, &naga::valid::ModuleInfo) -> Result<usize, String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, source) in sources {
        let module = match parse(&name, &source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let info = match validate(&name, &source, &module, caps) {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{backend}: {e}"));
                continue;
            }
        };
        match write(&module, &info) {
            Ok(0) => failures.push(format!("{backend}: {name}: empty output")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{backend}: {name}: {e}")),
        }
    }
    failures
}

/// SPIR-V of SPIR-V `version` (Vulkan's target), as a translation step: the output's length in words.
fn spirv(
    version: (u8, u8),
) -> impl Fn(&naga::Module, &naga::valid::ModuleInfo) -> Result<usize, String> {
    move |m, info| {
        let opts = spv::Options {
            lang_version: version,
            ..Default::default()
        };
        spv::write_vec(m, info, &opts, None)
            .map(|words| words.len())
            .map_err(|e| e.to_string())
    }
}

/// MSL for Metal 2.4 (macOS 12 / iOS 15: what wgpu asks of devices that run compute with f16), as a translation
/// step: the output's length.
fn msl_2_4(m: &naga::Module, info: &naga::valid::ModuleInfo) -> Result<usize, String> {
    let opts = msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    msl::write_string(m, info, &opts, &msl::PipelineOptions::default())
        .map(|(text, _)| text.len())
        .map_err(|e| e.to_string())
}

#[test]
fn every_shader_translates_to_spirv_for_vulkan() {
    let failures = translate_all("SPIR-V", spv::supported_capabilities(), spirv((1, 3)));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_shader_translates_to_msl_for_metal() {
    let failures = translate_all("MSL", msl::supported_capabilities(), msl_2_4);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_shader_translates_to_hlsl_for_dx12() {
    let failures = translate_all("HLSL", hlsl::supported_capabilities(), |m, info| {
        // Shader model 6.2: the lowest with native 16-bit types (the f16 variant); DXC compiles it.
        let opts = hlsl::Options {
            shader_model: hlsl::ShaderModel::V6_2,
            ..Default::default()
        };
        let mut text = String::new();
        hlsl::Writer::new(&mut text, &opts, &hlsl::PipelineOptions::default())
            .write(m, info, None)
            .map_err(|e| e.to_string())?;
        Ok(text.len())
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_kernel_metal_cannot_run_fails_the_msl_check() {
    // f64 arithmetic validates with every capability but Metal has no 64-bit floats: the check must say so.
    let src = "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n\
               @compute @workgroup_size(1) fn main() { let d: f64 = f64(x[0]); x[0] = f32(d * 2.0lf); }";
    let all = vec![("f64.wgsl".to_string(), src.to_string())];
    let ok = translate(all.clone(), "any", Capabilities::all(), |_, _| Ok(1));
    assert!(ok.is_empty(), "{ok:?}");
    let failures = translate(all, "MSL", msl::supported_capabilities(), |_, _| Ok(1));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("f64.wgsl"), "{failures:?}");
}

/// The cooperative-matrix matmul at the shapes adapters report — subgroups of 8 with 8×8 matrices (lavapipe), of 32
/// with 8×8 (Apple) or 16×16 (NVIDIA), of 64 with 16×16 (AMD) — B f32 and f16: it validates and translates for Vulkan
/// and Metal, where wgpu offers cooperative matrices (not DX12).
#[test]
fn the_cooperative_matrix_matmul_translates_for_vulkan_and_metal() {
    let sources: Vec<(String, String)> = [(8, 8), (32, 8), (32, 16), (64, 16)]
        .into_iter()
        .flat_map(|(sg, side)| {
            [false, true].map(|b_f16| {
                (
                    format!("matmul_coop.wgsl (SG {sg}, {side}x{side}, f16 B {b_f16})"),
                    vitune::ops::shaders::matmul_coop_source(b_f16, sg, side),
                )
            })
        })
        .collect();
    let mut failures = translate(
        sources.clone(),
        "SPIR-V",
        spv::supported_capabilities(),
        spirv((1, 4)),
    );
    failures.extend(translate(
        sources,
        "MSL",
        msl::supported_capabilities(),
        msl_2_4,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
