// Rotary position embeddings (RoPE) on the q and k parts of a fused qkv [n, T, 3·D], in place. Only the patch
// tokens turn (rows `start .. start + count` of each image): CLS, the registers and a method's prompts stay as they
// are. One invocation per rotated pair (a, b) of one head's q or k: the rotate-half layout pairs i with
// i + hd/2 (DINOv3), the interleaved one 2j with 2j + 1 (EVA-02's `cat`).
//   forward:  y_a = x_a·cos_a − x_b·sin_a,   y_b = x_b·cos_b + x_a·sin_b
//   backward (the transpose, for the gradients of q and k):
//             dx_a = dy_a·cos_a + dy_b·sin_b,   dx_b = dy_b·cos_b − dy_a·sin_a
// The tables [count, hd] (or [heads, count, hd] with `per_head`) are made on the CPU for the grid in use.

struct Params {
    images: u32, tokens: u32, start: u32, count: u32,
    heads: u32, head_dim: u32, dim: u32, interleaved: u32,
    backward: u32, per_head: u32, total: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> qkv: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    let half = p.head_dim / 2u;
    let j = i % half;
    let h = (i / half) % p.heads;
    let part = (i / (half * p.heads)) % 2u;
    let m = (i / (half * p.heads * 2u)) % p.count;
    let img = i / (half * p.heads * 2u * p.count);
    var a = j;
    var b = j + half;
    if (p.interleaved == 1u) {
        a = 2u * j;
        b = 2u * j + 1u;
    }
    let row = (img * p.tokens + p.start + m) * 3u * p.dim + part * p.dim + h * p.head_dim;
    var table = m * p.head_dim;
    if (p.per_head == 1u) {
        table = (h * p.count + m) * p.head_dim;
    }
    let xa = qkv[row + a];
    let xb = qkv[row + b];
    let ca = cos_t[table + a];
    let cb = cos_t[table + b];
    let sa = sin_t[table + a];
    let sb = sin_t[table + b];
    if (p.backward == 0u) {
        qkv[row + a] = xa * ca - xb * sa;
        qkv[row + b] = xb * cb + xa * sb;
    } else {
        qkv[row + a] = xa * ca + xb * sb;
        qkv[row + b] = xb * cb - xa * sa;
    }
}
