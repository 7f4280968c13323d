//! Every WGSL shader parses and validates with naga, so a shader error fails `cargo test` with its message.

#[test]
fn every_shader_parses_and_validates() {
    let mut failures = Vec::new();
    for (name, source) in vitune::ops::shaders::ALL {
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
