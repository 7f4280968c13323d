// LayerNorm over the last dimension, one 64-lane workgroup per row; saves mean and 1/std for the backward.

struct Params {
    rows: u32, d: u32, in_off: u32, in_stride: u32,
    out_off: u32, out_stride: u32, eps: f32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn layernorm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= p.rows) {
        return;
    }
    let xb = p.in_off + row * p.in_stride;
    var s = 0.0;
    for (var i = lane; i < p.d; i += 64u) {
        s += x[xb + i];
    }
    let mean = reduce_sum64(s, lane) / f32(p.d);
    var v = 0.0;
    for (var i = lane; i < p.d; i += 64u) {
        let t = x[xb + i] - mean;
        v += t * t;
    }
    let var_ = reduce_sum64(v, lane) / f32(p.d);
    let rstd = inverseSqrt(var_ + p.eps);
    let yb = p.out_off + row * p.out_stride;
    for (var i = lane; i < p.d; i += 64u) {
        y[yb + i] = (x[xb + i] - mean) * rstd * gamma[i] + beta[i];
    }
    if (lane == 0u) {
        stats[2u * row] = mean;
        stats[2u * row + 1u] = rstd;
    }
}
