// Inverted dropout over a band of token rows, in place: x *= keep ? 1/(1-rate) : 0.
// The mask is a counter-based hash of (seed, tag, global image, row in band, column), so the backward
// replays it from the same key, and micro-batches of a batch draw exactly the masks of the whole batch.

struct Params {
    images: u32,       // images in this micro-batch
    tokens: u32,       // rows per image in x
    start: u32,        // first row of the band
    count: u32,        // rows in the band
    dim: u32,          // columns per row
    first_image: u32,  // global index of this micro-batch's first image
    key: u32,          // hash of (seed, tag)
    threshold: u32,    // drop when hash < threshold (rate · 2³²)
    scale: f32,        // 1 / (1 - rate)
    _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn dropout_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let band = p.count * p.dim;
    if (i >= p.images * band) {
        return;
    }
    let img = i / band;
    let within = i % band;
    let row = within / p.dim;
    let col = within % p.dim;
    let element = ((p.first_image + img) * p.count + row) * p.dim + col;
    let h = pcg_hash(pcg_hash(element) ^ p.key);
    let at = (img * p.tokens + p.start + row) * p.dim + col;
    x[at] = select(x[at] * p.scale, 0.0, h < p.threshold);
}

// PCG-RXS-M-XS 32-bit output of one LCG step (Jarzynski & Olano 2020, "Hash Functions for GPU Rendering").
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}
