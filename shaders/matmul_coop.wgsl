// Cooperative matrices (appended to matmul.wgsl behind `enable f16; enable wgpu_cooperative_matrix;`, with SG, the
// adapter's one subgroup size, and CM, the matrix side (8 or 16), prepended; `coop_mat8x8` below is rewritten to
// the CM×CM type): for adapters that report a CM×CM×CM configuration with f16 A and B and an f32 accumulator
// (tensor cores: NVIDIA and AMD report 16×16×16; Apple's simdgroup matrices and Mesa's lavapipe from 25.x 8×8×8).
// A workgroup of four subgroups computes a TILE×TILE block of C (TILE = 4·CM): each subgroup a quarter as 2×2
// accumulators. Each 32-deep slice of A and B is rounded to f16 into workgroup memory (any layout, zero past the
// edges), then multiplied there; the accumulators go through workgroup memory to the shared epilogue. Workgroup
// memory: 8 KiB at CM = 8, 24 KiB at CM = 16. Precision as matmul_half's.

const CW: u32 = 4u * SG;
const TILE: u32 = 4u * CM;
const KS: u32 = 32u;
var<workgroup> ca_tile: array<f16, TILE * KS>; // [TILE m][KS k], row-major
var<workgroup> cb_tile: array<f16, KS * TILE>; // [KS k][TILE n], row-major
var<workgroup> cc_tile: array<f32, TILE * TILE>; // [TILE m][TILE n], row-major

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
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let a_k_fast = p.a_sk == 1u;
    let b_k_fast = p.b_sk == 1u;
    // This subgroup's quarter: the pointers below differ between subgroups, the control flow does not.
    let r0 = (sg / 2u) * 2u * CM;
    let c0 = (sg % 2u) * 2u * CM;
    var c00 = coop_mat8x8<f32, C>();
    var c01 = coop_mat8x8<f32, C>();
    var c10 = coop_mat8x8<f32, C>();
    var c11 = coop_mat8x8<f32, C>();
    for (var k0 = 0u; k0 < p.k; k0 += KS) {
        for (var e = li; e < TILE * KS; e += CW) {
            var mm = e % TILE;
            var kk = e / TILE;
            if (a_k_fast) {
                mm = e / KS;
                kk = e % KS;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) {
                v = a[a_base + gm * p.a_sm + gk * p.a_sk];
            }
            ca_tile[mm * KS + kk] = f16(v);

            var nn = e % TILE;
            var kb = e / TILE;
            if (b_k_fast) {
                nn = e / KS;
                kb = e % KS;
            }
            let gn = col0 + nn;
            let gkb = k0 + kb;
            var w = 0.0;
            if (gn < p.n && gkb < p.k) {
                w = load_b(b_base + gkb * p.b_sk + gn * p.b_sn);
            }
            cb_tile[kb * TILE + nn] = f16(w);
        }
        workgroupBarrier();
        for (var ks = 0u; ks < KS; ks += CM) {
            let a0 = coopLoadT<coop_mat8x8<f16, A>>(&ca_tile[r0 * KS + ks], KS);
            let a1 = coopLoadT<coop_mat8x8<f16, A>>(&ca_tile[(r0 + CM) * KS + ks], KS);
            let b0 = coopLoadT<coop_mat8x8<f16, B>>(&cb_tile[ks * TILE + c0], TILE);
            let b1 = coopLoadT<coop_mat8x8<f16, B>>(&cb_tile[ks * TILE + c0 + CM], TILE);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    coopStoreT(c00, &cc_tile[r0 * TILE + c0], TILE);
    coopStoreT(c01, &cc_tile[r0 * TILE + c0 + CM], TILE);
    coopStoreT(c10, &cc_tile[(r0 + CM) * TILE + c0], TILE);
    coopStoreT(c11, &cc_tile[(r0 + CM) * TILE + c0 + CM], TILE);
    workgroupBarrier();
    for (var e = li; e < TILE * TILE; e += CW) {
        store(c_base, row0 + e / TILE, col0 + e % TILE, cc_tile[e]);
    }
}
