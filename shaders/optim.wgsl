// Optimizer steps on the GPU, one thread per parameter element.
// SGD (PyTorch): d = g + wd·w; m = μ·m + d; w −= lr·m.
// AdamW (decoupled decay): w ·= 1 − lr·wd; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²;
//   w −= (lr / bc1) · m / (sqrt(v / bc2) + eps), with bc = 1 − β^t.

struct Params {
    total: u32, _p0: u32, _p1: u32, _p2: u32,
    lr: f32, wd: f32, momentum: f32, beta1: f32,
    beta2: f32, eps: f32, bc1: f32, bc2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    let d = g[i] + p.wd * w[i];
    let buf = p.momentum * m[i] + d;
    m[i] = buf;
    w[i] = w[i] - p.lr * buf;
}

@compute @workgroup_size(256, 1, 1)
fn adamw_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    let gi = g[i];
    let wi = w[i] * (1.0 - p.lr * p.wd);
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - (p.lr / p.bc1) * mi / (sqrt(vi / p.bc2) + p.eps);
}
