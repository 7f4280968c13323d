// Convpass's 3×3 convolution (padding 1) over the patch grid of a token sequence [n, t, c]: the first `prefix`
// tokens (CLS, and prompts if any) are each convolved alone as a 1×1 image, so only the kernel centre touches
// them. Weight [c_out, c_in, 3, 3] as in PyTorch.

struct Params {
    n: u32, t: u32, c: u32, prefix: u32,
    gh: u32, gw: u32, total: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn w_at(o: u32, i: u32, ky: u32, kx: u32) -> f32 {
    return wt[((o * p.c + i) * 3u + ky) * 3u + kx];
}

// dst[n, t, o] = bias[o] + Σ_{i,ky,kx} W[o,i,ky,kx] · src[n, (y+ky−1, x+kx−1), i]
@compute @workgroup_size(256, 1, 1)
fn conv_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.total) {
        return;
    }
    let o = idx % p.c;
    let t = (idx / p.c) % p.t;
    let n = idx / (p.c * p.t);
    var s = bias[o];
    let row0 = n * p.t;
    if (t < p.prefix) {
        for (var i = 0u; i < p.c; i++) {
            s += w_at(o, i, 1u, 1u) * src[(row0 + t) * p.c + i];
        }
    } else {
        let g = t - p.prefix;
        let y = i32(g / p.gw);
        let x = i32(g % p.gw);
        for (var ky = 0u; ky < 3u; ky++) {
            let yy = y + i32(ky) - 1;
            if (yy < 0 || yy >= i32(p.gh)) {
                continue;
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let xx = x + i32(kx) - 1;
                if (xx < 0 || xx >= i32(p.gw)) {
                    continue;
                }
                let tt = p.prefix + u32(yy) * p.gw + u32(xx);
                for (var i = 0u; i < p.c; i++) {
                    s += w_at(o, i, ky, kx) * src[(row0 + tt) * p.c + i];
                }
            }
        }
    }
    dst[idx] = s;
}

// Input gradient (the transposed convolution). Bindings: 1 = d out, 2 = W, 3 = d in.
@group(0) @binding(1) var<storage, read> bsrc: array<f32>;
@group(0) @binding(2) var<storage, read> bwt: array<f32>;
@group(0) @binding(3) var<storage, read_write> bdst: array<f32>;

fn bw_at(o: u32, i: u32, ky: u32, kx: u32) -> f32 {
    return bwt[((o * p.c + i) * 3u + ky) * 3u + kx];
}

@compute @workgroup_size(256, 1, 1)
fn conv_tokens_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.total) {
        return;
    }
    let i = idx % p.c;
    let t = (idx / p.c) % p.t;
    let n = idx / (p.c * p.t);
    let row0 = n * p.t;
    var s = 0.0;
    if (t < p.prefix) {
        for (var o = 0u; o < p.c; o++) {
            s += bw_at(o, i, 1u, 1u) * bsrc[(row0 + t) * p.c + o];
        }
    } else {
        let g = t - p.prefix;
        let y = i32(g / p.gw);
        let x = i32(g % p.gw);
        for (var ky = 0u; ky < 3u; ky++) {
            let yy = y - i32(ky) + 1;
            if (yy < 0 || yy >= i32(p.gh)) {
                continue;
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let xx = x - i32(kx) + 1;
                if (xx < 0 || xx >= i32(p.gw)) {
                    continue;
                }
                let tt = p.prefix + u32(yy) * p.gw + u32(xx);
                for (var o = 0u; o < p.c; o++) {
                    s += bw_at(o, i, ky, kx) * bsrc[(row0 + tt) * p.c + o];
                }
            }
        }
    }
    bdst[idx] = s;
}

// Weight gradient, one thread per weight: dst[o,i,ky,kx] += Σ_n Σ_out d out[n,pos,o] · in[n, shifted pos, i].
// Bindings: 1 = d out, 2 = the layer input, 3 = d W; total = c·c·9.
@group(0) @binding(1) var<storage, read> gout: array<f32>;
@group(0) @binding(2) var<storage, read> ginp: array<f32>;
@group(0) @binding(3) var<storage, read_write> gdw: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn conv_tokens_weight_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x;
    if (idx >= p.total) {
        return;
    }
    let kx = idx % 3u;
    let ky = (idx / 3u) % 3u;
    let i = (idx / 9u) % p.c;
    let o = idx / (9u * p.c);
    var s = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let row0 = n * p.t;
        if (ky == 1u && kx == 1u) {
            for (var t = 0u; t < p.prefix; t++) {
                s += gout[(row0 + t) * p.c + o] * ginp[(row0 + t) * p.c + i];
            }
        }
        for (var y = 0u; y < p.gh; y++) {
            let yy = i32(y) + i32(ky) - 1;
            if (yy < 0 || yy >= i32(p.gh)) {
                continue;
            }
            for (var x = 0u; x < p.gw; x++) {
                let xx = i32(x) + i32(kx) - 1;
                if (xx < 0 || xx >= i32(p.gw)) {
                    continue;
                }
                let to = p.prefix + y * p.gw + x;
                let ti = p.prefix + u32(yy) * p.gw + u32(xx);
                s += gout[(row0 + to) * p.c + o] * ginp[(row0 + ti) * p.c + i];
            }
        }
    }
    gdw[idx] = gdw[idx] + s;
}
