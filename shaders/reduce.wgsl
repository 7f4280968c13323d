// Reductions and token-row moves: mean pooling and its backward, column sums (bias gradients), batch sums of
// token rows (CLS, position and prompt gradients), and copying rows into the token sequence (deep prompts).

struct Params {
    n: u32, t: u32, d: u32, start: u32,
    count: u32, src_off: u32, flags: u32, rows: u32,
    scale: f32, _p0: u32, _p1: u32, _p2: u32,
}

const FLAG_ACCUMULATE: u32 = 1u;
const FLAG_ZERO: u32 = 2u;
const FLAG_PER_IMAGE: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// x [n, t, d] → out [n, d]: mean over tokens start..t (everything after the prefix tokens).
@compute @workgroup_size(256, 1, 1)
fn mean_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.d) {
        return;
    }
    let n = idx / p.d;
    let d = idx % p.d;
    var s = 0.0;
    for (var t = p.start; t < p.t; t++) {
        s += x[(n * p.t + t) * p.d + d];
    }
    out[idx] = s / f32(p.t - p.start);
}

// x = d pooled [n, d] → out [n, t, d]: 0 before `start`, d pooled / (t − start) from there.
@compute @workgroup_size(256, 1, 1)
fn mean_tokens_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.t * p.d) {
        return;
    }
    let d = idx % p.d;
    let t = (idx / p.d) % p.t;
    let n = idx / (p.d * p.t);
    var v = 0.0;
    if (t >= p.start) {
        v = x[n * p.d + d] / f32(p.t - p.start);
    }
    out[idx] = v;
}

// out[j] (+)= scale · Σ_r x[r·d + j] over `rows` rows of width d.
@compute @workgroup_size(64, 1, 1)
fn column_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.d) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        s += x[r * p.d + j];
    }
    s *= p.scale;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        s += out[j];
    }
    out[j] = s;
}

// out[src_off + j·d + c] (+)= Σ_n x[n, start + j, c] for j < count (src_off: where in `out` the rows go).
@compute @workgroup_size(256, 1, 1)
fn batch_sum_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.count * p.d) {
        return;
    }
    let j = idx / p.d;
    let d = idx % p.d;
    var s = 0.0;
    for (var n = 0u; n < p.n; n++) {
        s += x[(n * p.t + p.start + j) * p.d + d];
    }
    let o = p.src_off + idx;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        s += out[o];
    }
    out[o] = s;
}

// out[n, start + j, c] = x[src_off + j·d + c] (or 0 with FLAG_ZERO) for j < count: writes one set of prompt rows
// into every image's token sequence, or clears gradient rows; with FLAG_PER_IMAGE each image reads its own rows
// x[src_off + (n·count + j)·d + c] (the inverse of gather_tokens).
@compute @workgroup_size(256, 1, 1)
fn write_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.count * p.d) {
        return;
    }
    let d = idx % p.d;
    let j = (idx / p.d) % p.count;
    let n = idx / (p.d * p.count);
    var v = 0.0;
    if ((p.flags & FLAG_PER_IMAGE) != 0u) {
        v = x[p.src_off + (n * p.count + j) * p.d + d];
    } else if ((p.flags & FLAG_ZERO) == 0u) {
        v = x[p.src_off + j * p.d + d];
    }
    out[(n * p.t + p.start + j) * p.d + d] = v;
}

// out[n·count + j, c] = x[n, start + j, c] for j < count: the patch rows of a token gradient, compacted.
@compute @workgroup_size(256, 1, 1)
fn gather_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.count * p.d) {
        return;
    }
    let d = idx % p.d;
    let j = (idx / p.d) % p.count;
    let n = idx / (p.d * p.count);
    out[idx] = x[(n * p.t + p.start + j) * p.d + d];
}
