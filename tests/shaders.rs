//! Every WGSL shader parses and validates with naga, so a shader error fails `cargo test` with its message.

#[test]
fn every_shader_parses_and_validates() {
    let mut failures = Vec::new();
    // Also the generated variants: f16-weight matmul, fused attention at a head size other than 64.
    let generated = [
        (
            "matmul.wgsl (f16 B)",
            vitune::ops::shaders::matmul_f16_source(),
        ),
        (
            "attention.wgsl (HD 5)",
            vitune::ops::shaders::attention_source(5),
        ),
    ];
    let all = vitune::ops::shaders::ALL
        .iter()
        .map(|&(n, s)| (n, s))
        .chain(generated.iter().map(|(n, s)| (*n, s.as_str())));
    for (name, source) in all {
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: {}", e.emit_to_string(source)));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{name}: {}", e.emit_to_string(source)));
        }
    }
    assert!(
        failures.is_empty(),
        "shader errors:\n{}",
        failures.join("\n")
    );
}
