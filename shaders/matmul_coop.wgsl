// Cooperative matrices (appended to matmul.wgsl behind `enable f16; enable wgpu_cooperative_matrix;`, with SG, the
// adapter's one subgroup size, prepended): for adapters that report an 8x8x8 configuration with f16 A and B and an
// f32 accumulator (tensor cores, Apple's simdgroup matrices; Mesa's lavapipe from 25.x). A workgroup of four
// subgroups computes a 32x32 tile of C: each subgroup a 16x16 quarter as 2x2 accumulators. Each 32-deep slice of
// A and B is rounded to f16 into workgroup memory (any layout, zero past the edges), then multiplied there; the
// accumulators go through workgroup memory to the shared epilogue. Precision as matmul_half's.

const CW: u32 = 4u * SG;
var<workgroup> ca_tile: array<f16, 1024>; // [32 m][32 k], row-major
var<workgroup> cb_tile: array<f16, 1024>; // [32 k][32 n], row-major
var<workgroup> cc_tile: array<f32, 1024>; // [32 m][32 n], row-major

@compute @workgroup_size(CW, 1, 1)
fn matmul_coop(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let bases = batch_bases(wg.z);
    let a_base = bases.x;
    let b_base = bases.y;
    let c_base = bases.z;
    let row0 = wg.y * 32u;
    let col0 = wg.x * 32u;
    let a_k_fast = p.a_sk == 1u;
    let b_k_fast = p.b_sk == 1u;
    // This subgroup's quarter: the pointers below differ between subgroups, the control flow does not.
    let r0 = (sg / 2u) * 16u;
    let c0 = (sg % 2u) * 16u;
    var c00 = coop_mat8x8<f32, C>();
    var c01 = coop_mat8x8<f32, C>();
    var c10 = coop_mat8x8<f32, C>();
    var c11 = coop_mat8x8<f32, C>();
    for (var k0 = 0u; k0 < p.k; k0 += 32u) {
        for (var e = li; e < 1024u; e += CW) {
            var mm = e % 32u;
            var kk = e / 32u;
            if (a_k_fast) {
                mm = e / 32u;
                kk = e % 32u;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) {
                v = a[a_base + gm * p.a_sm + gk * p.a_sk];
            }
            ca_tile[mm * 32u + kk] = f16(v);

            var nn = e % 32u;
            var kb = e / 32u;
            if (b_k_fast) {
                nn = e / 32u;
                kb = e % 32u;
            }
            let gn = col0 + nn;
            let gkb = k0 + kb;
            var w = 0.0;
            if (gn < p.n && gkb < p.k) {
                w = load_b(b_base + gkb * p.b_sk + gn * p.b_sn);
            }
            cb_tile[kb * 32u + nn] = f16(w);
        }
        workgroupBarrier();
        for (var ks = 0u; ks < 32u; ks += 8u) {
            let a0 = coopLoadT<coop_mat8x8<f16, A>>(&ca_tile[r0 * 32u + ks], 32u);
            let a1 = coopLoadT<coop_mat8x8<f16, A>>(&ca_tile[(r0 + 8u) * 32u + ks], 32u);
            let b0 = coopLoadT<coop_mat8x8<f16, B>>(&cb_tile[ks * 32u + c0], 32u);
            let b1 = coopLoadT<coop_mat8x8<f16, B>>(&cb_tile[ks * 32u + c0 + 8u], 32u);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    coopStoreT(c00, &cc_tile[r0 * 32u + c0], 32u);
    coopStoreT(c01, &cc_tile[r0 * 32u + c0 + 8u], 32u);
    coopStoreT(c10, &cc_tile[(r0 + 8u) * 32u + c0], 32u);
    coopStoreT(c11, &cc_tile[(r0 + 8u) * 32u + c0 + 8u], 32u);
    workgroupBarrier();
    for (var e = li; e < 1024u; e += CW) {
        store(c_base, row0 + e / 32u, col0 + e % 32u, cc_tile[e]);
    }
}
