// Per-channel affine y = γ⊙z + β (SSF) and what its backward needs: the affine applied to rows, γ folded into a
// LayerNorm's parameters, and the column reductions that give dγ and dβ. Rows have width d = the channel count.

struct Params {
    rows: u32, d: u32, flags: u32, _p0: u32,
}

const FLAG_SHIFT: u32 = 1u;

// Each entry point binds 1..n in order (the launcher passes its buffers so): inputs first, then outputs.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read_write> out0: array<f32>;
@group(0) @binding(6) var<storage, read_write> out1: array<f32>;
// scale_rows: three inputs, one output.
@group(0) @binding(4) var<storage, read_write> rows_out: array<f32>;
// affine_grads: two inputs, two outputs.
@group(0) @binding(3) var<storage, read_write> grad_scale: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_shift: array<f32>;

// rows_out[r, j] = in0[r, j]·in1[j] (+ in2[j] with FLAG_SHIFT): the affine on z = in0 (or dz = γ⊙dy without shift).
@compute @workgroup_size(256, 1, 1)
fn scale_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.rows * p.d) {
        return;
    }
    let j = i % p.d;
    var v = in0[i] * in1[j];
    if ((p.flags & FLAG_SHIFT) != 0u) {
        v += in2[j];
    }
    rows_out[i] = v;
}

// A LayerNorm's weight w = in0 and bias b = in1 with the affine γ = in2, β = in3 folded in:
// out0 = γ⊙w, out1 = γ⊙b + β, so LN'(x) = γ⊙LN(x) + β.
@compute @workgroup_size(64, 1, 1)
fn fold_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.d) {
        return;
    }
    out0[j] = in2[j] * in0[j];
    out1[j] = in2[j] * in1[j] + in3[j];
}

// Back through `fold_norm`: from the folded parameters' gradients gw' = in2, gb' = in3 and the LayerNorm's own
// w = in0, b = in1: dγ (out0) += w⊙gw' + b⊙gb', dβ (out1) += gb'.
@compute @workgroup_size(64, 1, 1)
fn fold_norm_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.d) {
        return;
    }
    out0[j] += in0[j] * in2[j] + in1[j] * in3[j];
    out1[j] += in3[j];
}

// dγ += Σ_r dy[r, j]·z[r, j] and dβ += Σ_r dy[r, j], with dy = in0 and z = in1.
@compute @workgroup_size(64, 1, 1)
fn affine_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.d) {
        return;
    }
    var sg = 0.0;
    var sb = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let g = in0[r * p.d + j];
        sg += g * in1[r * p.d + j];
        sb += g;
    }
    grad_scale[j] += sg;
    grad_shift[j] += sb;
}
