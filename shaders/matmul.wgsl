// Batched, strided matmul C = act(alpha * (A·B + bias[n])) (+ R) (+ C), 64x64 tiles, 4x4 per thread;
// act is GELU, ReLU or QuickGELU when asked for.
// A(m,k) = a[a_off + b1*a_b1 + b2*a_b2 + m*a_sm + k*a_sk], B(k,n) likewise, C(m,n) with c_* strides;
// the batch index z splits as z = b1*batch2 + b2 so attention can read heads straight out of qkv.

struct Params {
    m: u32, n: u32, k: u32, batch2: u32,
    a_off: u32, a_sm: u32, a_sk: u32, a_b1: u32,
    a_b2: u32, b_off: u32, b_sk: u32, b_sn: u32,
    b_b1: u32, b_b2: u32, c_off: u32, c_sm: u32,
    c_sn: u32, c_b1: u32, c_b2: u32, flags: u32,
    alpha: f32, bias_off: u32, _p0: u32, _p1: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_GELU: u32 = 2u;
const FLAG_RESIDUAL: u32 = 4u;
const FLAG_ACCUMULATE: u32 = 8u;
const FLAG_RELU: u32 = 16u;
const FLAG_QUICK_GELU: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<f32, 1024>; // [16 k][64 m]
var<workgroup> b_tile: array<f32, 1024>; // [16 k][64 n]

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let b1 = wg.z / p.batch2;
    let b2 = wg.z % p.batch2;
    let a_base = p.a_off + b1 * p.a_b1 + b2 * p.a_b2;
    let b_base = p.b_off + b1 * p.b_b1 + b2 * p.b_b2;
    let c_base = p.c_off + b1 * p.c_b1 + b2 * p.c_b2;
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    // Pick the load order so that neighbouring lanes read neighbouring addresses.
    let a_k_fast = p.a_sk == 1u;
    let b_k_fast = p.b_sk == 1u;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * 256u;
            var mm = e % 64u;
            var kk = e / 64u;
            if (a_k_fast) {
                mm = e / 16u;
                kk = e % 16u;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) {
                v = a[a_base + gm * p.a_sm + gk * p.a_sk];
            }
            a_tile[kk * 64u + mm] = v;

            var nn = e % 64u;
            var kb = e / 64u;
            if (b_k_fast) {
                nn = e / 16u;
                kb = e % 16u;
            }
            let gn = col0 + nn;
            let gkb = k0 + kb;
            var w = 0.0;
            if (gn < p.n && gkb < p.k) {
                w = b[b_base + gkb * p.b_sk + gn * p.b_sn];
            }
            b_tile[kb * 64u + nn] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * 64u + lid.y + 16u * i];
                bv[i] = b_tile[kk * 64u + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let gm = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let gn = col0 + lid.x + 16u * j;
            store(c_base, gm, gn, acc[i * 4u + j]);
        }
    }
}

// The epilogue: bias, alpha, activation, residual, accumulation, for one output element.
fn store(c_base: u32, gm: u32, gn: u32, acc_v: f32) {
    if (gm >= p.m || gn >= p.n) {
        return;
    }
    var v = acc_v;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += bias[p.bias_off + gn];
    }
    v *= p.alpha;
    if ((p.flags & FLAG_GELU) != 0u) {
        v = gelu(v);
    }
    if ((p.flags & FLAG_RELU) != 0u) {
        v = max(v, 0.0);
    }
    if ((p.flags & FLAG_QUICK_GELU) != 0u) {
        v = quick_gelu(v);
    }
    let ci = c_base + gm * p.c_sm + gn * p.c_sn;
    if ((p.flags & FLAG_RESIDUAL) != 0u) {
        v += res[ci];
    }
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        v += c[ci];
    }
    c[ci] = v;
}

// Rows and columns per workgroup of the direct kernel (8x8 invocations, 4x4 each).
const DIRECT_TILE: u32 = 32u;

// Without workgroup memory or barriers, for CPU adapters (lavapipe), where both cost more than they save:
// each invocation computes a 4x4 block straight from the source buffers; 8x8 invocations cover 32x32.
@compute @workgroup_size(8, 8, 1)
fn matmul_direct(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let b1 = wg.z / p.batch2;
    let b2 = wg.z % p.batch2;
    let a_base = p.a_off + b1 * p.a_b1 + b2 * p.a_b2;
    let b_base = p.b_off + b1 * p.b_b1 + b2 * p.b_b2;
    let c_base = p.c_off + b1 * p.c_b1 + b2 * p.c_b2;
    let row0 = wg.y * DIRECT_TILE + lid.y * 4u;
    let col0 = wg.x * DIRECT_TILE + lid.x * 4u;
    // Clamp indices so every load is in bounds; out-of-range results are never stored.
    var ra: array<u32, 4>;
    var cb: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        ra[i] = a_base + min(row0 + i, p.m - 1u) * p.a_sm;
        cb[i] = b_base + min(col0 + i, p.n - 1u) * p.b_sn;
    }
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k = 0u; k < p.k; k++) {
        let ka = k * p.a_sk;
        let kb = k * p.b_sk;
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            av[i] = a[ra[i] + ka];
            bv[i] = b[cb[i] + kb];
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store(c_base, row0 + i, col0 + j, acc[i * 4u + j]);
        }
    }
}
