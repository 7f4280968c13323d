// Token pooling: mean over every token after CLS (prompts included), per image and channel.

struct Params {
    n: u32, t: u32, d: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn mean_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.d) {
        return;
    }
    let n = idx / p.d;
    let d = idx % p.d;
    var s = 0.0;
    for (var t = 1u; t < p.t; t++) {
        s += x[(n * p.t + t) * p.d + d];
    }
    out[idx] = s / f32(p.t - 1u);
}
