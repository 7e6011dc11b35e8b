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
//                 out): [8] steps, [9] first bad step (0: none), [10] total, [11] its loss.
//                 While [9] is set the optimizer kernels skip their updates.
//
// Bindings (group 0):
//   0 p:      Params, uniform
//   1 y:      predictions, (len) or (rows, cols); read-only
//   2 t:      targets, (len); read-only; the element-wise losses only
//   3 labels: (rows) u32; read-only; NLL only
//   4 out:    (len), (rows) for nll_forward, (rows, cols) for nll_backward; read-write
// Grid: one invocation per output value, workgroups of 256 folded into (x, y); watch_loss: one.

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

// Keeps ln(y) and 1/(y (1 − y)) finite; the same constant as the CPU reference.
const EPS: f32 = 1e-7;
const NAN_BITS: u32 = 0x7fc00000u;

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
        out[r] = select(-y[r * p.cols + min(label, p.cols - 1u)], bitcast<f32>(NAN_BITS), label >= p.cols);
    }
}

@compute @workgroup_size(256)
fn nll_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let label = labels[i / p.cols];
        let g = select(0.0, -p.scale, i % p.cols == label);
        out[i] = select(g, bitcast<f32>(NAN_BITS), label >= p.cols);
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

@compute @workgroup_size(1)
fn watch_loss() {
    let step = out[STEPS] + 1.0;
    out[STEPS] = step;
    let loss = y[0];
    if out[FIRST_BAD] != 0.0 {
        return; // halted: later steps change nothing and are not counted in the total
    }
    if is_finite(loss) {
        out[TOTAL] += loss;
    } else {
        out[FIRST_BAD] = step;
        out[BAD_LOSS] = loss;
    }
}
