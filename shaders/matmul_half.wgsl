// f16 compute (appended to matmul.wgsl behind `enable f16;`, for adapters with SHADER_F16): the tiled kernel's
// 64x64 tiles held in workgroup memory as f16 (half the bytes of the f32 tiles), each product of f16 pairs taken
// four at a time (vec4<f16>) and accumulated in f32. A and B are rounded to f16 as they are loaded (relative error
// up to 2^-11 each, and the product's rounding), so the results differ from the f32 kernels' by ~1e-3 relative:
// the autotuner offers it only when f16 compute is allowed (`VITUNE_PRECISION=mixed`), with its own tolerance.
// Values beyond f16's range (±65504) become infinite and fail the check.

var<workgroup> ha_tile: array<f16, 1024>; // [16 k][64 m]
var<workgroup> hb_tile: array<f16, 1024>; // [16 k][64 n]

@compute @workgroup_size(16, 16, 1)
fn matmul_half(
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
    let a_k_fast = p.a_sk == 1u;
    let b_k_fast = p.b_sk == 1u;
    // acc[j]: column col0 + 4·lid.x + j of rows row0 + 4·lid.y .. + 3.
    var acc: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j++) {
        acc[j] = vec4<f32>(0.0);
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
            ha_tile[kk * 64u + mm] = f16(v);

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
            hb_tile[kb * 64u + nn] = f16(w);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let ab = kk * 64u + lid.y * 4u;
            let av = vec4<f16>(ha_tile[ab], ha_tile[ab + 1u], ha_tile[ab + 2u], ha_tile[ab + 3u]);
            let bb = kk * 64u + lid.x * 4u;
            for (var j = 0u; j < 4u; j++) {
                acc[j] += vec4<f32>(av * hb_tile[bb + j]);
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let gn = col0 + lid.x * 4u + j;
        for (var i = 0u; i < 4u; i++) {
            store(c_base, row0 + lid.y * 4u + i, gn, acc[j][i]);
        }
    }
}
