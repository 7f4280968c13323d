// Element-wise activations (forward and backward), residual add, fill, and scaled copy.

struct Params {
    total: u32, kind: u32, scale: f32, _p2: u32,
}

const ACT_GELU: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_QUICK_GELU: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn act(v: f32) -> f32 {
    switch p.kind {
        case ACT_RELU: { return max(v, 0.0); }
        case ACT_QUICK_GELU: { return quick_gelu(v); }
        default: { return gelu(v); }
    }
}

fn act_grad(v: f32) -> f32 {
    switch p.kind {
        case ACT_RELU: { return select(0.0, 1.0, v > 0.0); }
        case ACT_QUICK_GELU: { return quick_gelu_grad(v); }
        default: { return gelu_grad(v); }
    }
}

// y = act(x)
@compute @workgroup_size(256, 1, 1)
fn activation_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.total) {
        y[i] = act(x[i]);
    }
}

// y (the incoming gradient, in place) *= act'(x), x being the pre-activation.
@compute @workgroup_size(256, 1, 1)
fn activation_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.total) {
        y[i] = y[i] * act_grad(x[i]);
    }
}

// y += scale * x
@compute @workgroup_size(256, 1, 1)
fn add_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.total) {
        y[i] = y[i] + p.scale * x[i];
    }
}

// filled = scale (its only buffer is binding 1)
@group(0) @binding(1) var<storage, read_write> filled: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.total) {
        filled[i] = p.scale;
    }
}

// SwiGLU: the first half of each row of u [rows, 2H] through SiLU gates the second half.
//   h = silu(g) · x,   u = [g | x],   silu(g) = g·σ(g)
// `total` counts h's elements; `kind` is H.
@group(0) @binding(1) var<storage, read> glu_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> glu_out: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256, 1, 1)
fn swiglu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.total) {
        let hid = p.kind;
        let r = i / hid;
        let c = i % hid;
        let g = glu_in[r * 2u * hid + c];
        let x = glu_in[r * 2u * hid + hid + c];
        glu_out[i] = g * sigmoid(g) * x;
    }
}

// du [rows, 2H] from u (binding 1) and dh [rows, H] (binding 3):
//   dg = dh · x · σ(g)(1 + g(1 − σ(g))),   dx = dh · silu(g).
// `total` counts u's elements.
@group(0) @binding(3) var<storage, read> glu_dh: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn swiglu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.total) {
        let hid = p.kind;
        let r = i / (2u * hid);
        let c = i % (2u * hid);
        let k = c % hid;
        let g = glu_in[r * 2u * hid + k];
        let s = sigmoid(g);
        let dh = glu_dh[r * hid + k];
        if (c < hid) {
            let x = glu_in[r * 2u * hid + hid + k];
            glu_out[i] = dh * x * s * (1.0 + g * (1.0 - s));
        } else {
            glu_out[i] = dh * g * s;
        }
    }
}
