// Numerically stable softmax over rows of length `cols`, in place, one 64-lane workgroup per row.

struct Params {
    rows: u32, cols: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var acc = LSE_EMPTY;
    for (var i = lane; i < p.cols; i += 64u) {
        acc = lse_push(acc, x[base + i]);
    }
    let lse = reduce_lse64(acc, lane);
    let inv = 1.0 / lse.y;
    for (var i = lane; i < p.cols; i += 64u) {
        x[base + i] = exp(x[base + i] - lse.x) * inv;
    }
}

// The same, one row per invocation and no barriers (CPU adapters).
@compute @workgroup_size(256, 1, 1)
fn softmax_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var acc = LSE_EMPTY;
    for (var i = 0u; i < p.cols; i++) {
        acc = lse_push(acc, x[base + i]);
    }
    let inv = 1.0 / acc.y;
    for (var i = 0u; i < p.cols; i++) {
        x[base + i] = exp(x[base + i] - acc.x) * inv;
    }
}

// Backward of y = softmax(s), in place on the incoming gradient: ds = y ⊙ (dy − Σ dy·y).
@group(0) @binding(0) var<uniform> bp: Params;
@group(0) @binding(1) var<storage, read> by: array<f32>;
@group(0) @binding(2) var<storage, read_write> bg: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= bp.rows) {
        return;
    }
    let base = row * bp.cols;
    var s = 0.0;
    for (var i = lane; i < bp.cols; i += 64u) {
        s += bg[base + i] * by[base + i];
    }
    let dot = reduce_sum64(s, lane);
    for (var i = lane; i < bp.cols; i += 64u) {
        bg[base + i] = by[base + i] * (bg[base + i] - dot);
    }
}

// The backward, one row per invocation (CPU adapters).
@compute @workgroup_size(256, 1, 1)
fn softmax_backward_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if (row >= bp.rows) {
        return;
    }
    let base = row * bp.cols;
    var s = 0.0;
    for (var i = 0u; i < bp.cols; i++) {
        s += bg[base + i] * by[base + i];
    }
    for (var i = 0u; i < bp.cols; i++) {
        bg[base + i] = by[base + i] * (bg[base + i] - s);
    }
}
