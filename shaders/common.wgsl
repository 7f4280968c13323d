// Shared helpers, prepended to every shader that needs them.

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), enough for f32 GELU.
fn erf_approx(x: f32) -> f32 {
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    let y = 1.0 - poly * exp(-ax * ax);
    return select(-y, y, x >= 0.0);
}

// Exact (erf) GELU, as timm and Hugging Face ViTs use.
fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
}

// d gelu(x) / dx = Phi(x) + x * phi(x).
fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_approx(x * 0.70710678118654752));
    let pdf = 0.39894228040143268 * exp(-0.5 * x * x);
    return cdf + x * pdf;
}

// QuickGELU x·σ(1.702x) (Convpass) and its derivative.
fn quick_gelu(x: f32) -> f32 {
    return x / (1.0 + exp(-1.702 * x));
}

fn quick_gelu_grad(x: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-1.702 * x));
    return s + 1.702 * x * s * (1.0 - s);
}

// <reduce64> (replaced by REDUCE64_SUBGROUP in the subgroup variant of a shader, see ops::shaders)
// Workgroup-wide sum over 64 lanes; every lane gets the total.
var<workgroup> red: array<f32, 64>;
fn reduce_sum64(v: f32, lane: u32) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            red[lane] = red[lane] + red[lane + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn reduce_max64(v: f32, lane: u32) -> f32 {
    red[lane] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            red[lane] = max(red[lane], red[lane + s]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// </reduce64>

// A row's log-sum-exp, online: a running (max, Σ exp(x − max)) that takes one value at a time, so a row is read
// once to get both; softmax and the cross-entropy loss share it.
const LSE_EMPTY = vec2<f32>(-3.4e38, 0.0);

fn lse_push(acc: vec2<f32>, v: f32) -> vec2<f32> {
    if (v > acc.x) {
        return vec2<f32>(v, acc.y * exp(acc.x - v) + 1.0);
    }
    return vec2<f32>(acc.x, acc.y + exp(v - acc.x));
}

// The row's (max, Σ exp(x − max)) from each of 64 lanes' running pairs; every lane gets it.
fn reduce_lse64(acc: vec2<f32>, lane: u32) -> vec2<f32> {
    let mx = reduce_max64(acc.x, lane);
    return vec2<f32>(mx, reduce_sum64(acc.y * exp(acc.x - mx), lane));
}

// Flat index of an element-wise thread on a 2-D grid of 256-wide workgroups.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Row handled by a one-row-per-workgroup kernel on a 2-D grid.
fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
