// Fused multi-head self-attention, flash-style: scores, softmax and ·V in one kernel with an online softmax, so
// no [T, T] score matrix is ever stored; the backward recomputes probabilities from the saved log-sum-exp.
// One invocation owns one query row (forward, dQ) or one key row (dK, dV) of one (image, head); the ROWS (16) lanes
// of a workgroup share the (image, head), so they read the same key, value or query rows at the same time.
// HD (the head size) is a constant prepended per model, so the per-row arrays have a fixed size (registers on a
// GPU where they fit; at HD = 64 they spill on lavapipe).
//
// qkv [N, T, 3D]: q, k, v blocks of D columns; head h owns columns h·HD..(h+1)·HD of each block.
// ctx [N, T, D], lse and delta [N·H, T].

struct Params {
    t: u32, d: u32, heads: u32, bh: u32,
    scale: f32, _p0: u32, _p1: u32, _p2: u32,
}

// Keys per online-softmax block: one rescale of the accumulator per block.
const KB: u32 = 8u;
// Query (or key) rows per workgroup.
const ROWS: u32 = 16u;
const NEG: f32 = -3.4e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;

// What one invocation works on, on the [row blocks, bh folded over y and z] grid: its pair bh = image·heads + head
// (past the last pair, the invocation returns at once), its row, that row clamped to the last token (lanes past it
// compute a duplicate row and store nothing), and token 0's offsets: the pair's q columns in qkv, its columns in
// ctx. Every row of qkv is 3·D wide.
struct Lane {
    bh: u32,
    row: u32,
    clamped: u32,
    qkv: u32,
    ctx: u32,
}

fn lane_of(wid: vec3<u32>, nwg: vec3<u32>, lane: u32, q: Params) -> Lane {
    let bh = wid.y + wid.z * nwg.y;
    let row = wid.x * ROWS + lane;
    let img = bh / q.heads;
    let h = bh % q.heads;
    return Lane(
        bh,
        row,
        min(row, q.t - 1u),
        img * q.t * 3u * q.d + h * HD,
        img * q.t * q.d + h * HD,
    );
}

@compute @workgroup_size(ROWS, 1, 1)
fn flash_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let at = lane_of(wid, nwg, lane, p);
    if (at.bh >= p.bh) {
        return;
    }
    let bh = at.bh;
    let i = at.row;
    let iq = at.clamped;
    let stride = 3u * p.d;
    let base = at.qkv;
    var q: array<f32, HD>;
    var acc: array<f32, HD>;
    for (var c = 0u; c < HD; c++) {
        q[c] = qkv[base + iq * stride + c] * p.scale;
        acc[c] = 0.0;
    }
    var m = NEG;
    var l = 0.0;
    var s: array<f32, KB>;
    for (var j0 = 0u; j0 < p.t; j0 += KB) {
        var bm = NEG;
        for (var jj = 0u; jj < KB; jj++) {
            let kb = base + min(j0 + jj, p.t - 1u) * stride + p.d;
            var dot = 0.0;
            for (var c = 0u; c < HD; c++) {
                dot = fma(q[c], qkv[kb + c], dot);
            }
            s[jj] = select(NEG, dot, j0 + jj < p.t);
            bm = max(bm, s[jj]);
        }
        let mn = max(m, bm);
        let corr = exp(m - mn);
        l = l * corr;
        for (var c = 0u; c < HD; c++) {
            acc[c] = acc[c] * corr;
        }
        for (var jj = 0u; jj < KB; jj++) {
            // exp(NEG − mn) is 0 for the keys past the end.
            let pj = exp(s[jj] - mn);
            l += pj;
            let vb = base + min(j0 + jj, p.t - 1u) * stride + 2u * p.d;
            for (var c = 0u; c < HD; c++) {
                acc[c] = fma(pj, qkv[vb + c], acc[c]);
            }
        }
        m = mn;
    }
    if (i < p.t) {
        let inv = 1.0 / l;
        let cb = at.ctx + i * p.d;
        for (var c = 0u; c < HD; c++) {
            ctx[cb + c] = acc[c] * inv;
        }
        lse[bh * p.t + i] = m + log(l);
    }
}

// Backward. With P = softmax(S), S = scale·QKᵀ, O = P·V and dO given:
//   delta_i = dO_i·O_i,  dS = P ⊙ (dO·Vᵀ − delta),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q,  dV = Pᵀ·dO.
@group(0) @binding(0) var<uniform> bp: Params;
// The context is bound last: only the dQ kernel reads it, and the dK/dV kernel binds the first five.
@group(0) @binding(1) var<storage, read> bqkv: array<f32>;
@group(0) @binding(2) var<storage, read> bdctx: array<f32>;
@group(0) @binding(3) var<storage, read> blse: array<f32>;
@group(0) @binding(4) var<storage, read_write> bdelta: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(6) var<storage, read> bctx: array<f32>;

// dQ of one query row per invocation; also writes delta for the dK/dV kernel.
@compute @workgroup_size(ROWS, 1, 1)
fn flash_backward_dq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let at = lane_of(wid, nwg, lane, bp);
    if (at.bh >= bp.bh) {
        return;
    }
    let bh = at.bh;
    let i = at.row;
    let iq = at.clamped;
    let stride = 3u * bp.d;
    let base = at.qkv;
    let cb = at.ctx + iq * bp.d;
    var q: array<f32, HD>;
    var dout: array<f32, HD>;
    var dq: array<f32, HD>;
    var delta = 0.0;
    for (var c = 0u; c < HD; c++) {
        q[c] = bqkv[base + iq * stride + c] * bp.scale;
        dout[c] = bdctx[cb + c];
        delta = fma(dout[c], bctx[cb + c], delta);
        dq[c] = 0.0;
    }
    let li = blse[bh * bp.t + iq];
    for (var j = 0u; j < bp.t; j++) {
        let kb = base + j * stride + bp.d;
        let vb = kb + bp.d;
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < HD; c++) {
            s = fma(q[c], bqkv[kb + c], s);
            dp = fma(dout[c], bqkv[vb + c], dp);
        }
        let ds = exp(s - li) * (dp - delta);
        for (var c = 0u; c < HD; c++) {
            dq[c] = fma(ds, bqkv[kb + c], dq[c]);
        }
    }
    if (i < bp.t) {
        let qb = base + i * stride;
        for (var c = 0u; c < HD; c++) {
            dqkv[qb + c] = dq[c] * bp.scale;
        }
        bdelta[bh * bp.t + i] = delta;
    }
}

// dK and dV of one key row per invocation, from the delta the dQ kernel wrote.
@compute @workgroup_size(ROWS, 1, 1)
fn flash_backward_dkv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let at = lane_of(wid, nwg, lane, bp);
    if (at.bh >= bp.bh) {
        return;
    }
    let bh = at.bh;
    let j = at.row;
    let jk = at.clamped;
    let stride = 3u * bp.d;
    let base = at.qkv;
    let c0 = at.ctx;
    var k: array<f32, HD>;
    var v: array<f32, HD>;
    var dk: array<f32, HD>;
    var dv: array<f32, HD>;
    for (var c = 0u; c < HD; c++) {
        k[c] = bqkv[base + jk * stride + bp.d + c] * bp.scale;
        v[c] = bqkv[base + jk * stride + 2u * bp.d + c];
        dk[c] = 0.0;
        dv[c] = 0.0;
    }
    for (var i = 0u; i < bp.t; i++) {
        let qb = base + i * stride;
        let ob = c0 + i * bp.d;
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < HD; c++) {
            s = fma(bqkv[qb + c], k[c], s);
            dp = fma(bdctx[ob + c], v[c], dp);
        }
        let pij = exp(s - blse[bh * bp.t + i]);
        let ds = pij * (dp - bdelta[bh * bp.t + i]);
        for (var c = 0u; c < HD; c++) {
            dv[c] = fma(pij, bdctx[ob + c], dv[c]);
            dk[c] = fma(ds, bqkv[qb + c], dk[c]);
        }
    }
    if (j < bp.t) {
        let kb = base + j * stride + bp.d;
        for (var c = 0u; c < HD; c++) {
            dqkv[kb + c] = dk[c] * bp.scale;
            dqkv[kb + bp.d + c] = dv[c];
        }
    }
}

// Workgroup-tiled variants of the three kernels above, for GPUs: TROWS rows per workgroup, and the KT keys
// (forward, dQ) or queries (dK/dV) of each step loaded once into workgroup memory by all lanes, then read from
// there by every lane (the same address at once: a broadcast) instead of from the buffer by each lane. KT is a
// constant prepended per model beside HD, sized so the four tiles fit in 16 KiB (WebGPU's guaranteed workgroup
// memory). The arithmetic is the per-row kernels', so the two agree to rounding.
const TROWS: u32 = 32u;
var<workgroup> tile_a: array<f32, KT * HD>;
var<workgroup> tile_b: array<f32, KT * HD>;
var<workgroup> tile_l: array<f32, KT>;
var<workgroup> tile_d: array<f32, KT>;

// The (image, head) pair of a workgroup: uniform, so returning on it leaves the barriers in uniform control flow.
fn pair_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y + wid.z * nwg.y;
}

@compute @workgroup_size(TROWS, 1, 1)
fn flash_tiled_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let bh = pair_of(wid, nwg);
    if (bh >= p.bh) {
        return;
    }
    let stride = 3u * p.d;
    let base = (bh / p.heads) * p.t * stride + (bh % p.heads) * HD;
    let i = wid.x * TROWS + lane;
    let iq = min(i, p.t - 1u);
    var q: array<f32, HD>;
    var acc: array<f32, HD>;
    for (var c = 0u; c < HD; c++) {
        q[c] = qkv[base + iq * stride + c] * p.scale;
        acc[c] = 0.0;
    }
    var m = NEG;
    var l = 0.0;
    var s: array<f32, KT>;
    for (var j0 = 0u; j0 < p.t; j0 += KT) {
        // Keys past the end are loaded as the last key (their scores are masked below).
        for (var e = lane; e < KT * HD; e += TROWS) {
            let r = base + min(j0 + e / HD, p.t - 1u) * stride + e % HD;
            tile_a[e] = qkv[r + p.d];
            tile_b[e] = qkv[r + 2u * p.d];
        }
        workgroupBarrier();
        var bm = NEG;
        for (var jj = 0u; jj < KT; jj++) {
            var dot = 0.0;
            for (var c = 0u; c < HD; c++) {
                dot = fma(q[c], tile_a[jj * HD + c], dot);
            }
            s[jj] = select(NEG, dot, j0 + jj < p.t);
            bm = max(bm, s[jj]);
        }
        let mn = max(m, bm);
        let corr = exp(m - mn);
        l = l * corr;
        for (var c = 0u; c < HD; c++) {
            acc[c] = acc[c] * corr;
        }
        for (var jj = 0u; jj < KT; jj++) {
            let pj = exp(s[jj] - mn);
            l += pj;
            for (var c = 0u; c < HD; c++) {
                acc[c] = fma(pj, tile_b[jj * HD + c], acc[c]);
            }
        }
        m = mn;
        workgroupBarrier();
    }
    if (i < p.t) {
        let inv = 1.0 / l;
        let cb = (bh / p.heads) * p.t * p.d + (bh % p.heads) * HD + i * p.d;
        for (var c = 0u; c < HD; c++) {
            ctx[cb + c] = acc[c] * inv;
        }
        lse[bh * p.t + i] = m + log(l);
    }
}

@compute @workgroup_size(TROWS, 1, 1)
fn flash_tiled_backward_dq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let bh = pair_of(wid, nwg);
    if (bh >= bp.bh) {
        return;
    }
    let stride = 3u * bp.d;
    let base = (bh / bp.heads) * bp.t * stride + (bh % bp.heads) * HD;
    let c0 = (bh / bp.heads) * bp.t * bp.d + (bh % bp.heads) * HD;
    let i = wid.x * TROWS + lane;
    let iq = min(i, bp.t - 1u);
    let cb = c0 + iq * bp.d;
    var q: array<f32, HD>;
    var dout: array<f32, HD>;
    var dq: array<f32, HD>;
    var delta = 0.0;
    for (var c = 0u; c < HD; c++) {
        q[c] = bqkv[base + iq * stride + c] * bp.scale;
        dout[c] = bdctx[cb + c];
        delta = fma(dout[c], bctx[cb + c], delta);
        dq[c] = 0.0;
    }
    let li = blse[bh * bp.t + iq];
    for (var j0 = 0u; j0 < bp.t; j0 += KT) {
        for (var e = lane; e < KT * HD; e += TROWS) {
            let r = base + min(j0 + e / HD, bp.t - 1u) * stride + e % HD;
            tile_a[e] = bqkv[r + bp.d];
            tile_b[e] = bqkv[r + 2u * bp.d];
        }
        workgroupBarrier();
        for (var jj = 0u; jj < KT; jj++) {
            var s = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < HD; c++) {
                s = fma(q[c], tile_a[jj * HD + c], s);
                dp = fma(dout[c], tile_b[jj * HD + c], dp);
            }
            // Keys past the end (duplicates of the last) contribute nothing.
            let ds = select(0.0, exp(s - li) * (dp - delta), j0 + jj < bp.t);
            for (var c = 0u; c < HD; c++) {
                dq[c] = fma(ds, tile_a[jj * HD + c], dq[c]);
            }
        }
        workgroupBarrier();
    }
    if (i < bp.t) {
        let qb = base + i * stride;
        for (var c = 0u; c < HD; c++) {
            dqkv[qb + c] = dq[c] * bp.scale;
        }
        bdelta[bh * bp.t + i] = delta;
    }
}

@compute @workgroup_size(TROWS, 1, 1)
fn flash_tiled_backward_dkv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let bh = pair_of(wid, nwg);
    if (bh >= bp.bh) {
        return;
    }
    let stride = 3u * bp.d;
    let base = (bh / bp.heads) * bp.t * stride + (bh % bp.heads) * HD;
    let c0 = (bh / bp.heads) * bp.t * bp.d + (bh % bp.heads) * HD;
    let j = wid.x * TROWS + lane;
    let jk = min(j, bp.t - 1u);
    var k: array<f32, HD>;
    var v: array<f32, HD>;
    var dk: array<f32, HD>;
    var dv: array<f32, HD>;
    for (var c = 0u; c < HD; c++) {
        k[c] = bqkv[base + jk * stride + bp.d + c] * bp.scale;
        v[c] = bqkv[base + jk * stride + 2u * bp.d + c];
        dk[c] = 0.0;
        dv[c] = 0.0;
    }
    for (var i0 = 0u; i0 < bp.t; i0 += KT) {
        // Queries past the end are loaded as the last query and masked below.
        for (var e = lane; e < KT * HD; e += TROWS) {
            let row = min(i0 + e / HD, bp.t - 1u);
            tile_a[e] = bqkv[base + row * stride + e % HD];
            tile_b[e] = bdctx[c0 + row * bp.d + e % HD];
        }
        for (var e = lane; e < KT; e += TROWS) {
            let row = min(i0 + e, bp.t - 1u);
            tile_l[e] = blse[bh * bp.t + row];
            tile_d[e] = bdelta[bh * bp.t + row];
        }
        workgroupBarrier();
        for (var ii = 0u; ii < KT; ii++) {
            var s = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < HD; c++) {
                s = fma(tile_a[ii * HD + c], k[c], s);
                dp = fma(tile_b[ii * HD + c], v[c], dp);
            }
            let pij = select(0.0, exp(s - tile_l[ii]), i0 + ii < bp.t);
            let ds = pij * (dp - tile_d[ii]);
            for (var c = 0u; c < HD; c++) {
                dv[c] = fma(pij, tile_b[ii * HD + c], dv[c]);
                dk[c] = fma(ds, tile_a[ii * HD + c], dk[c]);
            }
        }
        workgroupBarrier();
    }
    if (j < bp.t) {
        let kb = base + j * stride + bp.d;
        for (var c = 0u; c < HD; c++) {
            dqkv[kb + c] = dk[c] * bp.scale;
            dqkv[kb + bp.d + c] = dv[c];
        }
    }
}
