// Losses: per-element (or per-row) terms, and the gradient of their mean.
// The loss itself is the mean of the terms: reduce.wgsl's sum_all with scale 1/len (1/rows
// for NLL). p.scale below is that same 1/len (1/rows), so the backward entry points give the
// gradient of the mean.
//
// The element-wise losses, by their constants (MSE, …), which the host prepends from the one
// table of losses in src/loss.rs; L, an override constant, picks one per pipeline. With
// d = y − t and δ = p.param:
//   MSE:    (y − t)²                                      gradient 2d
//   MAE:    |y − t|                                       gradient sign(d)
//   BCE:    −(t ln y + (1 − t) ln(1 − y)), y clamped to [ε, 1 − ε]
//                                                         gradient (y − t) / (y (1 − y))
//   HUBER:  ½d² if |d| < δ, else δ(|d| − ½δ)              gradient d, else δ sign(d)
//   value_forward:  out[i] = term                         value_backward: out[i] = gradient · scale
//   nll_forward:  out[r] = −y[r, label[r]]          (y: log-probabilities, (rows, cols))
//   nll_backward: out[r, j] = −scale if j = label[r], else 0
// A label ≥ cols gives NaN, never an out-of-bounds read; the host rejects such labels first.
//   watch_loss:   once per training step, after the batch's mean loss y[0] is summed: counts
//                 the step, adds the loss to the total, and marks the first step whose loss is
//                 not finite, in the watch's fields of the optimizer's settings row (bound as
//                 watch; `Row`, prepended from src/settings.rs): steps, first_bad (0: none),
//                 total, and bad_loss, the last counted step's loss. While first_bad is set the
//                 optimizer kernels skip their updates (optimizer.wgsl's checks set it too, for
//                 an update not finite).
//   cross_entropy_step, value_step: a training step's whole loss in one launch: every term (a
//                 row's cross-entropy from its logits, or a value's loss) and the gradient of
//                 their mean into out, the mean into mean[0], and the watch as watch_loss. The
//                 terms are summed in a fixed order (each invocation a strided slice, then a
//                 tree), so the step is as deterministic as sum_all.
//
// Bindings (group 0):
//   0 p:      Params, uniform
//   1 y:      predictions (logits for cross_entropy_step), (len) or (rows, cols); read-only
//   2 t:      targets, (len); read-only; the element-wise losses only
//   3 labels: (rows) u32; read-only; NLL and cross-entropy only
//   4 out:    (len), (rows) for nll_forward, (rows, cols) for nll_backward and the steps'
//             gradients; read-write
//   5 mean:   (1), read-write: the steps' mean loss
//   6 watch:  Row, read-write: the optimizer's settings row (watch_loss and the steps)
// Grid: one invocation per output value, workgroups of 256 folded into (x, y); watch_loss:
// one invocation; the steps: exactly one workgroup of 256.

// No default loss: a value_step pipeline made without L gives NaN (value_loss's default case),
// never another loss (0 would be cross-entropy in loss_step).
override L: u32 = 4294967295u;

struct Params {
    // Output values: len, or rows for nll_forward, or rows · cols for nll_backward.
    len: u32,
    cols: u32,
    scale: f32,
    // The loss's parameter (Huber's δ).
    param: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> watch: Row;

// EPS, nan_bits and each value loss's arithmetic (value_term): loss_math.wgsl.

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

// Value i's term of the element-wise loss `kind` and its gradient (unscaled), as (term, grad).
fn value_loss(kind: u32, i: u32) -> vec2<f32> {
    return value_term(kind, y[i], t[i], p.param);
}

@compute @workgroup_size(256)
fn value_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = value_loss(L, i).x;
    }
}

@compute @workgroup_size(256)
fn value_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = value_loss(L, i).y * p.scale;
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

// WGSL has no isinf/isnan (and fast-math compilers may fold x != x): test the exponent bits.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Counts a step and adds its loss to the watch, or marks it as the first non-finite one.
fn watch_step(loss: f32) {
    let step = watch.steps + 1.0;
    watch.steps = step;
    if watch.first_bad != 0.0 {
        return; // halted: later steps change nothing and are not counted in the total
    }
    // The step's loss is kept either way: the optimizer's check may still mark the step (its
    // update not finite), and the report then gives this loss.
    watch.bad_loss = loss;
    if is_finite(loss) {
        watch.total += loss;
    } else {
        watch.first_bad = step;
    }
}

@compute @workgroup_size(1)
fn watch_loss() {
    watch_step(y[0]);
}

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

var<workgroup> partial: array<f32, 256>;

// The step of the element-wise loss `kind`, or of cross-entropy for kind 0.
fn loss_step(kind: u32, lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += 256u) {
        if kind == 0u {
            acc += cross_entropy_row(i);
        } else {
            let loss = value_loss(kind, i);
            out[i] = loss.y * p.scale;
            acc += loss.x;
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
    loss_step(0u, lid);
}

@compute @workgroup_size(256)
fn value_step(@builtin(local_invocation_index) lid: u32) {
    loss_step(L, lid);
}
