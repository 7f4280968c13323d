// Batched, strided matmul C = act(γ[n]·(alpha * (A·B + bias[n])) + β[n]) (+ R) (+ C), 64x64 tiles, 4x4 per thread;
// act is GELU, ReLU or QuickGELU when asked for, the per-column affine (γ, β) only with FLAG_SCALE_SHIFT. With
// FLAG_PRE_ACT the value before the affine and act also goes to `pre` (laid out as C): a training forward keeps it
// for their backward without a separate pass.
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
const FLAG_PRE_ACT: u32 = 64u;
const FLAG_SCALE_SHIFT: u32 = 128u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(6) var<storage, read_write> pre: array<f32>;
@group(0) @binding(7) var<storage, read> col_scale: array<f32>;
@group(0) @binding(8) var<storage, read> col_shift: array<f32>;

// Every read of B goes through here: the f16-weights variant of this shader stores B as f16 (see ops::shaders).
fn load_b(i: u32) -> f32 {
    return b[i];
}

// Offsets of A, B and C for batch index z = b1·batch2 + b2.
fn batch_bases(z: u32) -> vec3<u32> {
    let b1 = z / p.batch2;
    let b2 = z % p.batch2;
    return vec3<u32>(
        p.a_off + b1 * p.a_b1 + b2 * p.a_b2,
        p.b_off + b1 * p.b_b1 + b2 * p.b_b2,
        p.c_off + b1 * p.c_b1 + b2 * p.c_b2,
    );
}

// base + min(first + i, last) * stride for i = 0..3: four clamped row (or column) starts, so every load of the
// direct kernels is in bounds; results of clamped rows and columns are never stored.
fn clamped4(base: u32, first: u32, last: u32, stride: u32) -> vec4<u32> {
    return base + min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * stride;
}

var<workgroup> a_tile: array<f32, 1024>; // [16 k][64 m]
var<workgroup> b_tile: array<f32, 1024>; // [16 k][64 n]

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let bases = batch_bases(wg.z);
    let a_base = bases.x;
    let b_base = bases.y;
    let c_base = bases.z;
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
                w = load_b(b_base + gkb * p.b_sk + gn * p.b_sn);
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

// Register-tiled: 128x128 per workgroup of 16x16 invocations, 8x8 outputs each (rows ty*4+i and 64+ty*4+i,
// columns likewise, so neighbouring lanes read neighbouring vec4s of workgroup memory), 8-deep k slices.
// 16 vec4 accumulators live in registers on GPUs; CPU adapters spill them (the autotuner finds out).
var<workgroup> ra_tile: array<f32, 1024>; // [8 k][128 m]
var<workgroup> rb_tile: array<f32, 1024>; // [8 k][128 n]

fn tile4(t: u32, i: u32) -> vec4<f32> {
    if (t == 0u) {
        return vec4<f32>(ra_tile[i], ra_tile[i + 1u], ra_tile[i + 2u], ra_tile[i + 3u]);
    }
    return vec4<f32>(rb_tile[i], rb_tile[i + 1u], rb_tile[i + 2u], rb_tile[i + 3u]);
}

@compute @workgroup_size(16, 16, 1)
fn matmul_register(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let bases = batch_bases(wg.z);
    let row0 = wg.y * 128u;
    let col0 = wg.x * 128u;
    let a_k_fast = p.a_sk == 1u;
    let b_k_fast = p.b_sk == 1u;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < p.k; k0 += 8u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * 256u;
            var mm = e % 128u;
            var kk = e / 128u;
            if (a_k_fast) {
                mm = e / 8u;
                kk = e % 8u;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) {
                v = a[bases.x + gm * p.a_sm + gk * p.a_sk];
            }
            ra_tile[kk * 128u + mm] = v;

            var nn = e % 128u;
            var kb = e / 128u;
            if (b_k_fast) {
                nn = e / 8u;
                kb = e % 8u;
            }
            let gn = col0 + nn;
            let gkb = k0 + kb;
            var w = 0.0;
            if (gn < p.n && gkb < p.k) {
                w = load_b(bases.y + gkb * p.b_sk + gn * p.b_sn);
            }
            rb_tile[kb * 128u + nn] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 8u; kk++) {
            let a_lo = tile4(0u, kk * 128u + lid.y * 4u);
            let a_hi = tile4(0u, kk * 128u + 64u + lid.y * 4u);
            let b_lo = tile4(1u, kk * 128u + lid.x * 4u);
            let b_hi = tile4(1u, kk * 128u + 64u + lid.x * 4u);
            for (var i = 0u; i < 4u; i++) {
                acc[2u * i] = fma(vec4<f32>(a_lo[i]), b_lo, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(a_lo[i]), b_hi, acc[2u * i + 1u]);
                acc[8u + 2u * i] = fma(vec4<f32>(a_hi[i]), b_lo, acc[8u + 2u * i]);
                acc[9u + 2u * i] = fma(vec4<f32>(a_hi[i]), b_hi, acc[9u + 2u * i]);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r_lo = row0 + lid.y * 4u + i;
        let r_hi = r_lo + 64u;
        let c_lo = col0 + lid.x * 4u;
        let c_hi = c_lo + 64u;
        store4(bases.z, r_lo, c_lo, acc[2u * i]);
        store4(bases.z, r_lo, c_hi, acc[2u * i + 1u]);
        store4(bases.z, r_hi, c_lo, acc[8u + 2u * i]);
        store4(bases.z, r_hi, c_hi, acc[9u + 2u * i]);
    }
}

// The epilogue: bias, alpha, (the pre-activation copy,) per-column affine, activation, residual, accumulation, for
// one element.
fn store(c_base: u32, gm: u32, gn: u32, acc_v: f32) {
    if (gm >= p.m || gn >= p.n) {
        return;
    }
    var v = acc_v;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += bias[p.bias_off + gn];
    }
    v *= p.alpha;
    let ci = c_base + gm * p.c_sm + gn * p.c_sn;
    if ((p.flags & FLAG_PRE_ACT) != 0u) {
        pre[ci] = v;
    }
    if ((p.flags & FLAG_SCALE_SHIFT) != 0u) {
        v = v * col_scale[gn] + col_shift[gn];
    }
    if ((p.flags & FLAG_GELU) != 0u) {
        v = gelu(v);
    }
    if ((p.flags & FLAG_RELU) != 0u) {
        v = max(v, 0.0);
    }
    if ((p.flags & FLAG_QUICK_GELU) != 0u) {
        v = quick_gelu(v);
    }
    if ((p.flags & FLAG_RESIDUAL) != 0u) {
        v += res[ci];
    }
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        v += c[ci];
    }
    c[ci] = v;
}

// Rows and columns per workgroup of the direct kernel (8x8 invocations, 8x8 each).
const DIRECT_ROWS: u32 = 64u;
const DIRECT_COLS: u32 = 64u;

// Without workgroup memory or barriers, for CPU adapters (lavapipe), where both cost more than they save:
// each invocation computes an 8x8 block straight from the source buffers; 8x8 invocations cover 64x64.
// No local arrays: vector accumulators and operands (llvmpipe puts dynamically indexed arrays in memory).
// Measured on lavapipe (M=197, K=768): 4x4 with arrays 0.7 GFLOP/s, 4x4 vec4 0.9, 2x4 0.6, 4x8 1.2, 8x8 1.5.
@compute @workgroup_size(8, 8, 1)
fn matmul_direct(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let bases = batch_bases(wg.z);
    let a_base = bases.x;
    let b_base = bases.y;
    let c_base = bases.z;
    let row0 = wg.y * DIRECT_ROWS + lid.y * 8u;
    let col0 = wg.x * DIRECT_COLS + lid.x * 8u;
    let ra0 = clamped4(a_base, row0, p.m - 1u, p.a_sm);
    let ra1 = clamped4(a_base, row0 + 4u, p.m - 1u, p.a_sm);
    let cb0 = clamped4(b_base, col0, p.n - 1u, p.b_sn);
    let cb1 = clamped4(b_base, col0 + 4u, p.n - 1u, p.b_sn);
    var c00 = vec4<f32>(0.0);
    var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0);
    var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0);
    var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0);
    var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0);
    var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0);
    var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0);
    var c71 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let ka = k * p.a_sk;
        let ia0 = ra0 + ka;
        let ia1 = ra1 + ka;
        let kb = k * p.b_sk;
        let i0 = cb0 + kb;
        let i1 = cb1 + kb;
        let b0 = vec4<f32>(load_b(i0.x), load_b(i0.y), load_b(i0.z), load_b(i0.w));
        let b1v = vec4<f32>(load_b(i1.x), load_b(i1.y), load_b(i1.z), load_b(i1.w));
        let a0 = vec4<f32>(a[ia0.x]);
        c00 = fma(a0, b0, c00);
        c01 = fma(a0, b1v, c01);
        let a1 = vec4<f32>(a[ia0.y]);
        c10 = fma(a1, b0, c10);
        c11 = fma(a1, b1v, c11);
        let a2 = vec4<f32>(a[ia0.z]);
        c20 = fma(a2, b0, c20);
        c21 = fma(a2, b1v, c21);
        let a3 = vec4<f32>(a[ia0.w]);
        c30 = fma(a3, b0, c30);
        c31 = fma(a3, b1v, c31);
        let a4 = vec4<f32>(a[ia1.x]);
        c40 = fma(a4, b0, c40);
        c41 = fma(a4, b1v, c41);
        let a5 = vec4<f32>(a[ia1.y]);
        c50 = fma(a5, b0, c50);
        c51 = fma(a5, b1v, c51);
        let a6 = vec4<f32>(a[ia1.z]);
        c60 = fma(a6, b0, c60);
        c61 = fma(a6, b1v, c61);
        let a7 = vec4<f32>(a[ia1.w]);
        c70 = fma(a7, b0, c70);
        c71 = fma(a7, b1v, c71);
    }
    store8(c_base, row0 + 0u, col0, c00, c01);
    store8(c_base, row0 + 1u, col0, c10, c11);
    store8(c_base, row0 + 2u, col0, c20, c21);
    store8(c_base, row0 + 3u, col0, c30, c31);
    store8(c_base, row0 + 4u, col0, c40, c41);
    store8(c_base, row0 + 5u, col0, c50, c51);
    store8(c_base, row0 + 6u, col0, c60, c61);
    store8(c_base, row0 + 7u, col0, c70, c71);
}

// The same with 4x8 per invocation (32x64 per workgroup), for matrices of fewer than 96 rows (attention per
// head), where 64-row tiles would mostly compute clamped rows.
const SMALL_ROWS: u32 = 32u;

@compute @workgroup_size(8, 8, 1)
fn matmul_direct_small(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let bases = batch_bases(wg.z);
    let a_base = bases.x;
    let b_base = bases.y;
    let c_base = bases.z;
    let row0 = wg.y * SMALL_ROWS + lid.y * 4u;
    let col0 = wg.x * DIRECT_COLS + lid.x * 8u;
    let ra = clamped4(a_base, row0, p.m - 1u, p.a_sm);
    let cb0 = clamped4(b_base, col0, p.n - 1u, p.b_sn);
    let cb1 = clamped4(b_base, col0 + 4u, p.n - 1u, p.b_sn);
    var c00 = vec4<f32>(0.0);
    var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0);
    var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0);
    var c31 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let ia = ra + k * p.a_sk;
        let kb = k * p.b_sk;
        let i0 = cb0 + kb;
        let i1 = cb1 + kb;
        let b0 = vec4<f32>(load_b(i0.x), load_b(i0.y), load_b(i0.z), load_b(i0.w));
        let b1v = vec4<f32>(load_b(i1.x), load_b(i1.y), load_b(i1.z), load_b(i1.w));
        let a0 = vec4<f32>(a[ia.x]);
        c00 = fma(a0, b0, c00);
        c01 = fma(a0, b1v, c01);
        let a1 = vec4<f32>(a[ia.y]);
        c10 = fma(a1, b0, c10);
        c11 = fma(a1, b1v, c11);
        let a2 = vec4<f32>(a[ia.z]);
        c20 = fma(a2, b0, c20);
        c21 = fma(a2, b1v, c21);
        let a3 = vec4<f32>(a[ia.w]);
        c30 = fma(a3, b0, c30);
        c31 = fma(a3, b1v, c31);
    }
    store8(c_base, row0, col0, c00, c01);
    store8(c_base, row0 + 1u, col0, c10, c11);
    store8(c_base, row0 + 2u, col0, c20, c21);
    store8(c_base, row0 + 3u, col0, c30, c31);
}

// 4x4 per invocation (32x32 per workgroup), for products at most 32 columns wide: attention per head at small
// head sizes, the adapters' narrow projections, the head, where 64-column tiles would mostly compute clamped
// columns.
const NARROW: u32 = 32u;

@compute @workgroup_size(8, 8, 1)
fn matmul_direct_narrow(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let bases = batch_bases(wg.z);
    let row0 = wg.y * NARROW + lid.y * 4u;
    let col0 = wg.x * NARROW + lid.x * 4u;
    let ra = clamped4(bases.x, row0, p.m - 1u, p.a_sm);
    let cb = clamped4(bases.y, col0, p.n - 1u, p.b_sn);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let ia = ra + k * p.a_sk;
        let ib = cb + k * p.b_sk;
        let bv = vec4<f32>(load_b(ib.x), load_b(ib.y), load_b(ib.z), load_b(ib.w));
        c0 = fma(vec4<f32>(a[ia.x]), bv, c0);
        c1 = fma(vec4<f32>(a[ia.y]), bv, c1);
        c2 = fma(vec4<f32>(a[ia.z]), bv, c2);
        c3 = fma(vec4<f32>(a[ia.w]), bv, c3);
    }
    store4(bases.z, row0, col0, c0);
    store4(bases.z, row0 + 1u, col0, c1);
    store4(bases.z, row0 + 2u, col0, c2);
    store4(bases.z, row0 + 3u, col0, c3);
}

fn store8(c_base: u32, row: u32, col0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    store4(c_base, row, col0, lo);
    store4(c_base, row, col0 + 4u, hi);
}

fn store4(c_base: u32, row: u32, col0: u32, v: vec4<f32>) {
    store(c_base, row, col0, v.x);
    store(c_base, row, col0 + 1u, v.y);
    store(c_base, row, col0 + 2u, v.z);
    store(c_base, row, col0 + 3u, v.w);
}
