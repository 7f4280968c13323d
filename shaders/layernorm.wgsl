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

// The same, one row per invocation and no barriers: for CPU adapters (lavapipe), where a workgroup barrier costs
// more than the parallel reduction saves.
@compute @workgroup_size(256, 1, 1)
fn layernorm_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if (row >= p.rows) {
        return;
    }
    let xb = p.in_off + row * p.in_stride;
    var s = 0.0;
    for (var i = 0u; i < p.d; i++) {
        s += x[xb + i];
    }
    let mean = s / f32(p.d);
    var v = 0.0;
    for (var i = 0u; i < p.d; i++) {
        let t = x[xb + i] - mean;
        v += t * t;
    }
    let rstd = inverseSqrt(v / f32(p.d) + p.eps);
    let yb = p.out_off + row * p.out_stride;
    for (var i = 0u; i < p.d; i++) {
        y[yb + i] = (x[xb + i] - mean) * rstd * gamma[i] + beta[i];
    }
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
}

// Backward to the input: dx = res + rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ, one workgroup per row.
// dy is compact [rows, d]; x, res and dx use the forward's strided row addressing.
struct BackParams {
    rows: u32, d: u32, x_off: u32, x_stride: u32,
    flags: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> bp: BackParams;
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bstats: array<f32>;
@group(0) @binding(3) var<storage, read> bgamma: array<f32>;
@group(0) @binding(4) var<storage, read> bdy: array<f32>;
@group(0) @binding(5) var<storage, read> bres: array<f32>;
@group(0) @binding(6) var<storage, read_write> bdx: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn layernorm_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= bp.rows) {
        return;
    }
    let mean = bstats[2u * row];
    let rstd = bstats[2u * row + 1u];
    let xb = bp.x_off + row * bp.x_stride;
    let gb = row * bp.d;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var i = lane; i < bp.d; i += 64u) {
        let g = bdy[gb + i] * bgamma[i];
        let xh = (bx[xb + i] - mean) * rstd;
        s1 += g;
        s2 += g * xh;
    }
    let m1 = reduce_sum64(s1, lane) / f32(bp.d);
    let m2 = reduce_sum64(s2, lane) / f32(bp.d);
    for (var i = lane; i < bp.d; i += 64u) {
        let g = bdy[gb + i] * bgamma[i];
        let xh = (bx[xb + i] - mean) * rstd;
        var v = rstd * (g - m1 - xh * m2);
        if ((bp.flags & 1u) != 0u) {
            v += bres[xb + i];
        }
        bdx[xb + i] = v;
    }
}

// The backward to the input, one row per invocation (CPU adapters).
@compute @workgroup_size(256, 1, 1)
fn layernorm_backward_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if (row >= bp.rows) {
        return;
    }
    let mean = bstats[2u * row];
    let rstd = bstats[2u * row + 1u];
    let xb = bp.x_off + row * bp.x_stride;
    let gb = row * bp.d;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var i = 0u; i < bp.d; i++) {
        let g = bdy[gb + i] * bgamma[i];
        let xh = (bx[xb + i] - mean) * rstd;
        s1 += g;
        s2 += g * xh;
    }
    let m1 = s1 / f32(bp.d);
    let m2 = s2 / f32(bp.d);
    let with_res = (bp.flags & 1u) != 0u;
    for (var i = 0u; i < bp.d; i++) {
        let g = bdy[gb + i] * bgamma[i];
        let xh = (bx[xb + i] - mean) * rstd;
        var v = rstd * (g - m1 - xh * m2);
        if (with_res) {
            v += bres[xb + i];
        }
        bdx[xb + i] = v;
    }
}

// dγ += Σ_rows dy·x̂ and dβ += Σ_rows dy, one thread per channel.
struct ParamGradParams {
    rows: u32, d: u32, x_off: u32, x_stride: u32,
}

@group(0) @binding(0) var<uniform> pp: ParamGradParams;
@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read> pstats: array<f32>;
@group(0) @binding(3) var<storage, read> pdy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbeta: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn layernorm_param_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= pp.d) {
        return;
    }
    var sg = 0.0;
    var sb = 0.0;
    for (var r = 0u; r < pp.rows; r++) {
        let dy = pdy[r * pp.d + i];
        let xh = (px[pp.x_off + r * pp.x_stride + i] - pstats[2u * r]) * pstats[2u * r + 1u];
        sg += dy * xh;
        sb += dy;
    }
    dgamma[i] = dgamma[i] + sg;
    dbeta[i] = dbeta[i] + sb;
}
