// Row-wise softmax and the losses built on it. x, y, dy, dx are (rows, cols); labels (rows).
//   softmax_forward:       out = e^(x − max) / Σ e^(x − max)           a = x
//   softmax_backward:      out = y ⊙ (dy − Σ dy ⊙ y)                   a = y, b = dy
//   log_softmax_forward:   out = x − max − ln Σ e^(x − max)            a = x
//   log_softmax_backward:  out = dy − e^y · Σ dy                       a = y (log-probs), b = dy
//   softmax_cross_entropy_forward:  out[r] = ln Σ e^x − x[label]      a = logits, labels
//   softmax_cross_entropy_backward: out = (softmax(x) − onehot) · p.scale   a = logits, labels
// p.scale is 1/rows for the mean loss over a batch. A label ≥ cols gives NaN (never an
// out-of-bounds read); the host rejects such labels before they reach the GPU.
//
// Bindings (group 0):
//   0 p:      Params, uniform
//   1 a:      (rows, cols), read-only
//   2 b:      (rows, cols), read-only; the backward entry points' dy
//   3 labels: (rows) u32, read-only; the cross-entropy entry points only
//   4 out:    (rows, cols), or (rows) for softmax_cross_entropy_forward; read-write
// Grid: one invocation per row, workgroups of 64 folded into (x, y) so no dimension exceeds 65535.

struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// A label past the classes gives a NaN loss (see loss.wgsl): read from a variable, since
// Tint refuses a NaN constant.
var<private> nan_bits: u32 = 0x7fc00000u;

fn row_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 64u + lid;
}

fn row_max(start: u32) -> f32 {
    var m = a[start];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, a[start + j]);
    }
    return m;
}

// ln Σ e^a over one row, shifted by its max so no term overflows.
fn log_sum_exp(start: u32) -> f32 {
    let m = row_max(start);
    var total = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        total += exp(a[start + j] - m);
    }
    return m + log(total);
}

@compute @workgroup_size(64)
fn softmax_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    if r >= p.rows {
        return;
    }
    let start = r * p.cols;
    let m = row_max(start);
    var total = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let e = exp(a[start + j] - m);
        out[start + j] = e;
        total += e;
    }
    let inv = 1.0 / total;
    for (var j = 0u; j < p.cols; j++) {
        out[start + j] *= inv;
    }
}

@compute @workgroup_size(64)
fn softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    if r >= p.rows {
        return;
    }
    let start = r * p.cols;
    var dot = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        dot += b[start + j] * a[start + j];
    }
    for (var j = 0u; j < p.cols; j++) {
        out[start + j] = a[start + j] * (b[start + j] - dot);
    }
}

@compute @workgroup_size(64)
fn log_softmax_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    if r >= p.rows {
        return;
    }
    let start = r * p.cols;
    let lse = log_sum_exp(start);
    for (var j = 0u; j < p.cols; j++) {
        out[start + j] = a[start + j] - lse;
    }
}

@compute @workgroup_size(64)
fn log_softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    if r >= p.rows {
        return;
    }
    let start = r * p.cols;
    var total = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        total += b[start + j];
    }
    for (var j = 0u; j < p.cols; j++) {
        out[start + j] = b[start + j] - exp(a[start + j]) * total;
    }
}

@compute @workgroup_size(64)
fn softmax_cross_entropy_forward(@builtin(workgroup_id) wg: vec3<u32>,
                                 @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    if r >= p.rows {
        return;
    }
    let label = labels[r];
    if label >= p.cols {
        out[r] = bitcast<f32>(nan_bits);
        return;
    }
    let start = r * p.cols;
    out[r] = log_sum_exp(start) - a[start + label];
}

@compute @workgroup_size(64)
fn softmax_cross_entropy_backward(@builtin(workgroup_id) wg: vec3<u32>,
                                  @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    if r >= p.rows {
        return;
    }
    let start = r * p.cols;
    let label = labels[r];
    let lse = log_sum_exp(start);
    for (var j = 0u; j < p.cols; j++) {
        var g = exp(a[start + j] - lse);
        if j == label {
            g -= 1.0;
        }
        out[start + j] = g * p.scale;
    }
    if label >= p.cols {
        out[start] = bitcast<f32>(nan_bits);
    }
}
