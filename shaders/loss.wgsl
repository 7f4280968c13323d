// Mean cross-entropy over a batch: per-row loss, and d loss / d logits = (softmax − onehot) · inv_n.

struct Params {
    rows: u32, classes: u32, inv_n: f32, _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn cross_entropy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = row_index(wid, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.classes;
    var acc = LSE_EMPTY;
    for (var i = lane; i < p.classes; i += 64u) {
        acc = lse_push(acc, logits[base + i]);
    }
    let lse = reduce_lse64(acc, lane);
    let mx = lse.x;
    let z = lse.y;
    let label = u32(labels[row]);
    for (var i = lane; i < p.classes; i += 64u) {
        let prob = exp(logits[base + i] - mx) / z;
        dlogits[base + i] = (prob - select(0.0, 1.0, i == label)) * p.inv_n;
    }
    if (lane == 0u) {
        row_loss[row] = log(z) + mx - logits[base + label];
    }
}
