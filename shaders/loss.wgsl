// Losses: per-element (or per-row) terms, and the gradient of their mean.
// The loss itself is the mean of the terms: reduce.wgsl's sum_all with scale 1/len (1/rows
// for NLL). p.scale below is that same 1/len (1/rows), so the backward entry points give the
// gradient of the mean.
//   mse_forward:  out[i] = (y − t)²                 mse_backward: out[i] = 2 (y − t) · scale
//   mae_forward:  out[i] = |y − t|                  mae_backward: out[i] = sign(y − t) · scale
//   bce_forward:  out[i] = −(t ln y + (1 − t) ln(1 − y)), y clamped to [ε, 1 − ε]
//   bce_backward: out[i] = (y − t) / (y (1 − y)) · scale, y clamped likewise
//   nll_forward:  out[r] = −y[r, label[r]]          (y: log-probabilities, (rows, cols))
//   nll_backward: out[r, j] = −scale if j = label[r], else 0
// A label ≥ cols gives NaN, never an out-of-bounds read; the host rejects such labels first.
//   watch_loss:   once per training step, after the batch's mean loss y[0] is summed: counts
//                 the step, adds the loss to the total, and marks the first step whose loss is
//                 not finite, in the watch slots of the optimizer's settings row (bound as
//                 watch): [8] steps, [9] first bad step (0: none), [10] total, [11] the last
//                 counted step's loss. While [9] is set the optimizer kernels skip their
//                 updates (optimizer.wgsl's checks set it too, for an update not finite).
//   cross_entropy_step, mse_step, mae_step, bce_step: a training step's whole loss in one
//                 launch: every term (a row's cross-entropy from its logits, or a value's loss)
//                 and the gradient of their mean into out, the mean into mean[0], and the
//                 watch as watch_loss. The terms are summed in a fixed order (each invocation
//                 a strided slice, then a tree), so the step is as deterministic as sum_all.
//
// Bindings (group 0):
//   0 p:      Params, uniform
//   1 y:      predictions (logits for cross_entropy_step), (len) or (rows, cols); read-only
//   2 t:      targets, (len); read-only; the element-wise losses only
//   3 labels: (rows) u32; read-only; NLL and cross-entropy only
//   4 out:    (len), (rows) for nll_forward, (rows, cols) for nll_backward and the steps'
//             gradients; read-write
//   5 mean:   (1), read-write: the steps' mean loss
//   6 watch:  (14), read-write: the optimizer's settings row (watch_loss and the steps)
// Grid: one invocation per output value, workgroups of 256 folded into (x, y); watch_loss:
// one invocation; the steps: exactly one workgroup of 256.

struct Params {
    // Output values: len, or rows for nll_forward, or rows · cols for nll_backward.
    len: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> watch: array<f32>;

// Keeps ln(y) and 1/(y (1 − y)) finite; the same constant as the CPU reference.
const EPS: f32 = 1e-7;
// A label past the classes gives a NaN loss, which the loss watch halts on. WGSL has no NaN
// constant: Tint (Chromium's compiler) refuses `bitcast<f32>(0x7fc00000u)` as a constant
// expression, so the bits are read from a variable, a run-time value.
var<private> nan_bits: u32 = 0x7fc00000u;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn mse_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let d = y[i] - t[i];
        out[i] = d * d;
    }
}

@compute @workgroup_size(256)
fn mse_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = 2.0 * (y[i] - t[i]) * p.scale;
    }
}

@compute @workgroup_size(256)
fn mae_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = abs(y[i] - t[i]);
    }
}

@compute @workgroup_size(256)
fn mae_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = sign(y[i] - t[i]) * p.scale;
    }
}

@compute @workgroup_size(256)
fn bce_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let q = clamp(y[i], EPS, 1.0 - EPS);
        out[i] = -(t[i] * log(q) + (1.0 - t[i]) * log(1.0 - q));
    }
}

@compute @workgroup_size(256)
fn bce_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let q = clamp(y[i], EPS, 1.0 - EPS);
        out[i] = (q - t[i]) / (q * (1.0 - q)) * p.scale;
    }
}

@compute @workgroup_size(256)
fn nll_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let r = element(wg, nwg, lid);
    if r < p.len {
        let label = labels[r];
        out[r] = select(-y[r * p.cols + min(label, p.cols - 1u)], bitcast<f32>(nan_bits), label >= p.cols);
    }
}

@compute @workgroup_size(256)
fn nll_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let label = labels[i / p.cols];
        let g = select(0.0, -p.scale, i % p.cols == label);
        out[i] = select(g, bitcast<f32>(nan_bits), label >= p.cols);
    }
}

const STEPS: u32 = 8u;
const FIRST_BAD: u32 = 9u;
const TOTAL: u32 = 10u;
const BAD_LOSS: u32 = 11u;

// WGSL has no isinf/isnan (and fast-math compilers may fold x != x): test the exponent bits.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Counts a step and adds its loss to the watch, or marks it as the first non-finite one.
fn watch_step(loss: f32) {
    let step = watch[STEPS] + 1.0;
    watch[STEPS] = step;
    if watch[FIRST_BAD] != 0.0 {
        return; // halted: later steps change nothing and are not counted in the total
    }
    // The step's loss is kept either way: the optimizer's check may still mark the step (its
    // update not finite), and the report then gives this loss.
    watch[BAD_LOSS] = loss;
    if is_finite(loss) {
        watch[TOTAL] += loss;
    } else {
        watch[FIRST_BAD] = step;
    }
}

@compute @workgroup_size(1)
fn watch_loss() {
    watch_step(y[0]);
}

const CROSS_ENTROPY: u32 = 0u;
const MSE: u32 = 1u;
const MAE: u32 = 2u;
const BCE: u32 = 3u;

// Row r's cross-entropy from its logits, ln Σ e^y − y[label] (shifted by the row's max so no
// term overflows); writes the row's gradient (softmax − onehot) · scale on the way.
fn cross_entropy_row(r: u32) -> f32 {
    let start = r * p.cols;
    let label = labels[r];
    var m = y[start];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, y[start + j]);
    }
    var total = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        total += exp(y[start + j] - m);
    }
    let lse = m + log(total);
    for (var j = 0u; j < p.cols; j++) {
        out[start + j] = (exp(y[start + j] - lse) - select(0.0, 1.0, j == label)) * p.scale;
    }
    if label >= p.cols {
        out[start] = bitcast<f32>(nan_bits);
        return bitcast<f32>(nan_bits);
    }
    return lse - y[start + label];
}

// Value i's term of an element-wise loss; writes its gradient on the way.
fn value_term(kind: u32, i: u32) -> f32 {
    let d = y[i] - t[i];
    switch kind {
        case MSE: {
            out[i] = 2.0 * d * p.scale;
            return d * d;
        }
        case MAE: {
            out[i] = sign(d) * p.scale;
            return abs(d);
        }
        default: {
            let q = clamp(y[i], EPS, 1.0 - EPS);
            out[i] = (q - t[i]) / (q * (1.0 - q)) * p.scale;
            return -(t[i] * log(q) + (1.0 - t[i]) * log(1.0 - q));
        }
    }
}

var<workgroup> partial: array<f32, 256>;

fn loss_step(kind: u32, lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += 256u) {
        if kind == CROSS_ENTROPY {
            acc += cross_entropy_row(i);
        } else {
            acc += value_term(kind, i);
        }
    }
    partial[lid] = acc;
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
    }
    if lid == 0u {
        let loss = p.scale * partial[0];
        mean[0] = loss;
        watch_step(loss);
    }
}

@compute @workgroup_size(256)
fn cross_entropy_step(@builtin(local_invocation_index) lid: u32) {
    loss_step(CROSS_ENTROPY, lid);
}

@compute @workgroup_size(256)
fn mse_step(@builtin(local_invocation_index) lid: u32) {
    loss_step(MSE, lid);
}

@compute @workgroup_size(256)
fn mae_step(@builtin(local_invocation_index) lid: u32) {
    loss_step(MAE, lid);
}

@compute @workgroup_size(256)
fn bce_step(@builtin(local_invocation_index) lid: u32) {
    loss_step(BCE, lid);
}
