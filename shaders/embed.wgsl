// Patch embedding as im2col (the P×P stride-P convolution becomes a matmul), and token assembly:
// [prefix_j + pos_j (CLS, distillation token; none without a class token), inserted tokens (registers, prompts: no
// position embedding), patch_i + pos_{k+i}].

struct Im2colParams {
    n: u32, h: u32, w: u32, psize: u32,
    gh: u32, gw: u32, total: u32, _p0: u32,
}

@group(0) @binding(0) var<uniform> ip: Im2colParams;
@group(0) @binding(1) var<storage, read> pixels: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

// cols[(n*gh*gw + gy*gw + gx), (ch*P + ky)*P + kx] = pixels[n, ch, gy*P + ky, gx*P + kx]
@compute @workgroup_size(256, 1, 1)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= ip.total) {
        return;
    }
    let pp = ip.psize * ip.psize;
    let kdim = 3u * pp;
    let col = idx % kdim;
    let row = idx / kdim;
    let ch = col / pp;
    let ky = (col % pp) / ip.psize;
    let kx = col % ip.psize;
    let per_img = ip.gh * ip.gw;
    let n = row / per_img;
    let g = row % per_img;
    let gy = g / ip.gw;
    let gx = g % ip.gw;
    let py = gy * ip.psize + ky;
    let px = gx * ip.psize + kx;
    cols[idx] = pixels[((n * 3u + ch) * ip.h + py) * ip.w + px];
}

struct TokenParams {
    n: u32, t: u32, d: u32, prompts: u32,
    total: u32, prompt_batch_stride: u32, prefix: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> tp: TokenParams;
@group(0) @binding(1) var<storage, read> cls: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<f32>;
@group(0) @binding(3) var<storage, read> prompt: array<f32>;
@group(0) @binding(4) var<storage, read> patches: array<f32>;
@group(0) @binding(5) var<storage, read_write> tokens: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn assemble_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= tp.total) {
        return;
    }
    let d = idx % tp.d;
    let t = (idx / tp.d) % tp.t;
    let n = idx / (tp.d * tp.t);
    let k = tp.prefix;
    var v = 0.0;
    if (t < k) {
        v = cls[t * tp.d + d] + pos[t * tp.d + d];
    } else if (t < k + tp.prompts) {
        v = prompt[n * tp.prompt_batch_stride + (t - k) * tp.d + d];
    } else {
        let m = tp.t - k - tp.prompts;
        let i = t - k - tp.prompts;
        v = patches[(n * m + i) * tp.d + d] + pos[(k + i) * tp.d + d];
    }
    tokens[idx] = v;
}
