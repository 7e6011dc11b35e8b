// A narrow MLP's whole training step in two launches (issue 26; tiny-cuda-nn's "fully fused
// MLP" for WGSL). The layer-by-layer path (matmul.wgsl and friends, 10+ launches a step) is
// the reference these kernels are tested against.
//
//   mlp_step:   each workgroup takes p.tile rows of the batch through every dense layer (with
//               its activation and dropout), the loss, and back, and writes its rows' share of
//               every gradient: the sum over its rows of dW = dzᵀ·x and db = Σ dz, laid out as
//               the flat parameter buffer, into its own slice of `partials`, and each loss term
//               into the terms after the slices.
//   mlp_update: one workgroup: sums the slices in workgroup order into the gradients, the
//               terms into the mean loss (as loss.wgsl's steps: strided, then a tree), keeps
//               the loss watch, checks the update and takes it, as the separate launches do.
// No float atomics: every sum has one writer and a fixed order, so a step is deterministic.
//
// Values live in `scratch` (a storage buffer, not workgroup memory: 16 KiB of it would not hold
// the activations of a 64-wide net): per workgroup, per layer, its input x and its product z,
// as rows of vec4 (widths padded to 4 with zeros), and two gradient buffers. The activation's
// output is recomputed from z where the backward needs it, and dropout's mask from its hash:
// the same functions on the same values, so the same bits as the masks and outputs the
// layer-by-layer path stores. Products are register-blocked 4×4 over vec4 loads: on llvmpipe a
// load costs a loop over the SIMD lanes, and this makes 8 loads do 64 multiply-adds.
//
// Bindings (group 0):
//   mlp_step:   0 p: Params, uniform; 1 w1: the flat parameters as f32; 2 w4: the same buffer
//               as vec4 (rows whose width is a multiple of 4); 3 x: (rows, inputs);
//               4 targets: labels (u32) or target values (f32 bits); 5 counter: dropout's step;
//               6 scratch; 7 partials: (workgroups · flat) + terms
//   mlp_update: 0 p; 1 settings: Row; 2 partials (read); 3 g, 4 w, 5 m, 6 v: the flat
//               gradients, values and optimizer state (m, v unused by SGD, v by momentum)
// Grid: mlp_step one workgroup of 64 per p.tile rows; mlp_update one workgroup of 256.

// Invocations of mlp_step: four rows each, so a tile holds up to 64 rows.
const WG: u32 = 16u;
const NONE: u32 = 0xffffffffu;
// Loss codes besides the element-wise ones (MSE… are 1–4, loss_math.wgsl).
const CROSS_ENTROPY: u32 = 0u;

struct Layer {
    inputs: u32,
    outputs: u32,
    // Flat offsets of the weight (outputs, inputs) and the bias (NONE: none).
    w: u32,
    b: u32,
    // The activation's code (elementwise.wgsl; 0: none) and its parameter.
    act: u32,
    slope: f32,
    // Dropout after it: p (0: none) and the layer's seed.
    drop_p: f32,
    drop_seed: u32,
    // Offsets in a workgroup's scratch (in vec4s) of its input x, its product z and the
    // gradient dz of that.
    x: u32,
    z: u32,
    // 1 when every weight row starts on a vec4 (w and inputs multiples of 4).
    aligned: u32,
    dz: u32,
    _pad1: vec4<u32>,
}

struct Params {
    rows: u32,
    layers: u32,
    // CROSS_ENTROPY or an element-wise loss's code; its scale (1/rows or 1/values) and δ.
    loss: u32,
    classes: u32,
    scale: f32,
    delta: f32,
    // vec4s of scratch per workgroup, and where in it the network's output is.
    tile_len: u32,
    out: u32,
    _pad0: u32,
    // The flat parameters' length; where the terms start in partials; how many there are.
    flat: u32,
    terms: u32,
    terms_len: u32,
    workgroups: u32,
    // Rows per workgroup (a multiple of 4).
    tile: u32,
    _pad1: u32,
    _pad2: u32,
    layer: array<Layer, 8>,
}

@group(0) @binding(0) var<uniform> p: Params;

fn q(n: u32) -> u32 {
    return (n + 3u) / 4u;
}

// ---------------------------------------------------------------- mlp_step

@group(0) @binding(1) var<storage, read> w1: array<f32>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;
@group(0) @binding(5) var<storage, read> counter: array<u32>;
@group(0) @binding(6) var<storage, read_write> scratch: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;

// Weights j, 4kq … 4kq + 3 of layer l (zero past its outputs or inputs).
fn weights(l: Layer, j: u32, kq: u32) -> vec4<f32> {
    let jc = min(j, l.outputs - 1u);
    var v: vec4<f32>;
    if l.aligned == 1u {
        v = w4[(l.w + jc * l.inputs) / 4u + kq];
    } else {
        let row = l.w + jc * l.inputs;
        let k = 4u * kq;
        let last = l.inputs - 1u;
        v = vec4(w1[row + min(k, last)], w1[row + min(k + 1u, last)], w1[row + min(k + 2u, last)],
                 w1[row + min(k + 3u, last)]);
        v = select(vec4(0.0), v, vec4(k, k + 1u, k + 2u, k + 3u) < vec4(l.inputs));
    }
    return select(vec4(0.0), v, j < l.outputs);
}

// What the forward keeps for the backward of layer l's tail: the value its activation's
// derivative reads (z, or f(z) for sigmoid and tanh), recomputed from z.
fn saved(l: Layer, z: f32) -> f32 {
    if l.act == SIGMOID || l.act == TANH {
        return activate(l.act, z, l.slope);
    }
    return z;
}

// dropout's mask value of layer l's output (row, j), as dropout.wgsl draws it.
fn mask(l: Layer, step: u32, row: u32, j: u32) -> f32 {
    if l.drop_p == 0.0 {
        return 1.0;
    }
    return dropout_scale(l.drop_seed, step, row * l.outputs + j, l.drop_p);
}

// The gradient of layer l's product from that of its output: dropout's mask, then the
// activation's derivative.
fn tail(l: Layer, step: u32, row: u32, j: u32, z: f32, dy: f32) -> f32 {
    return derive(l.act, saved(l, z), dy * mask(l, step, row, j), l.slope);
}

// Scalar access to a scratch row of vec4s.
fn value_at(start: u32, j: u32) -> f32 {
    return scratch[start + j / 4u][j % 4u];
}

// Rows r0 … r0 + 3 of layer l: z = x·Wᵀ (+ b) in 4×4 blocks, then the activation and
// dropout; z and the output y stored.
fn forward(l: Layer, base: u32, y: u32, r0: u32, row0: u32, step: u32) {
    let kq = q(l.inputs);
    let nq = q(l.outputs);
    for (var jq = 0u; jq < nq; jq++) {
        // Zeroed here, not by the declaration alone: Tint (Chromium) kept the last turn's sums.
        var acc = array(vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
        for (var k = 0u; k < kq; k++) {
            let wr = array(weights(l, 4u * jq, k), weights(l, 4u * jq + 1u, k), weights(l, 4u * jq + 2u, k),
                           weights(l, 4u * jq + 3u, k));
            for (var i = 0u; i < 4u; i++) {
                let xr = scratch[base + l.x + (r0 + i) * kq + k];
                acc[i] += vec4(dot(xr, wr[0]), dot(xr, wr[1]), dot(xr, wr[2]), dot(xr, wr[3]));
            }
        }
        for (var i = 0u; i < 4u; i++) {
            let row = row0 + r0 + i;
            var z = acc[i];
            var out: vec4<f32>;
            for (var c = 0u; c < 4u; c++) {
                let j = 4u * jq + c;
                if l.b != NONE {
                    z[c] += w1[l.b + min(j, l.outputs - 1u)];
                }
                z[c] = select(0.0, z[c], j < l.outputs);
                out[c] = activate(l.act, z[c], l.slope) * mask(l, step, row, j);
                out[c] = select(0.0, out[c], j < l.outputs);
            }
            scratch[base + l.z + (r0 + i) * nq + jq] = z;
            scratch[base + y + (r0 + i) * nq + jq] = out;
        }
    }
}

// The loss of rows r0 … r0 + 3 of the output (at `y`, `classes` wide): their terms into
// partials, the gradient of the mean loss into `dy`. Rows past the batch get none.
fn loss(base: u32, y: u32, dy: u32, r0: u32, row0: u32) {
    let cq = q(p.classes);
    for (var r = r0; r < r0 + 4u; r++) {
        let row = row0 + r;
        let out = base + y + r * cq;
        let grad = base + dy + r * cq;
        if p.loss == CROSS_ENTROPY {
            var m = value_at(out, 0u);
            for (var j = 1u; j < p.classes; j++) {
                m = max(m, value_at(out, j));
            }
            var total = 0.0;
            for (var j = 0u; j < p.classes; j++) {
                total += exp(value_at(out, j) - m);
            }
            let lse = m + log(total);
            let label = targets[min(row, p.rows - 1u)];
            for (var c = 0u; c < cq; c++) {
                var g = vec4(0.0);
                for (var e = 0u; e < 4u; e++) {
                    let j = 4u * c + e;
                    let onehot = select(0.0, 1.0, j == label);
                    g[e] = select(0.0, (exp(value_at(out, j) - lse) - onehot) * p.scale,
                                  j < p.classes && row < p.rows);
                }
                scratch[grad + c] = g;
            }
            if row < p.rows {
                let term = lse - value_at(out, min(label, p.classes - 1u));
                partials[p.terms + row] = select(term, bitcast<f32>(nan_bits), label >= p.classes);
            }
        } else {
            for (var c = 0u; c < cq; c++) {
                let o = scratch[out + c];
                var g = vec4(0.0);
                for (var e = 0u; e < 4u; e++) {
                    let j = 4u * c + e;
                    if j < p.classes && row < p.rows {
                        let at = row * p.classes + j;
                        let term = value_term(p.loss, o[e], bitcast<f32>(targets[at]), p.delta);
                        partials[p.terms + at] = term.x;
                        g[e] = term.y * p.scale;
                    }
                }
                scratch[grad + c] = g;
            }
        }
    }
}

// Rows r0 … r0 + 3 of the gradient of layer l's product, from that of its output (both at
// its dz, in place).
fn tail_rows(l: Layer, base: u32, r0: u32, row0: u32, step: u32) {
    let nq = q(l.outputs);
    for (var i = r0 * nq; i < (r0 + 4u) * nq; i++) {
        let jq = i % nq;
        let z = scratch[base + l.z + i];
        let dy = scratch[base + l.dz + i];
        var g: vec4<f32>;
        for (var c = 0u; c < 4u; c++) {
            let j = 4u * jq + c;
            g[c] = select(0.0, tail(l, step, row0 + i / nq, j, z[c], dy[c]), j < l.outputs);
        }
        scratch[base + l.dz + i] = g;
    }
}

// Rows r0 … r0 + 3 of dx = dz·W for layer l, carried through the tail of the layer below
// into that layer's dz.
fn input_grad(l: Layer, below: Layer, base: u32, r0: u32, row0: u32, step: u32) {
    let kq = q(l.inputs);
    let nq = q(l.outputs);
    for (var k = 0u; k < kq; k++) {
        // Zeroed here, not by the declaration alone: Tint (Chromium) kept the last turn's sums.
        var acc = array(vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
        for (var jq = 0u; jq < nq; jq++) {
            let wr = array(weights(l, 4u * jq, k), weights(l, 4u * jq + 1u, k), weights(l, 4u * jq + 2u, k),
                           weights(l, 4u * jq + 3u, k));
            for (var i = 0u; i < 4u; i++) {
                let d = scratch[base + l.dz + (r0 + i) * nq + jq];
                acc[i] += d.x * wr[0] + d.y * wr[1] + d.z * wr[2] + d.w * wr[3];
            }
        }
        for (var i = 0u; i < 4u; i++) {
            let row = row0 + r0 + i;
            let z = scratch[base + below.z + (r0 + i) * kq + k];
            var g: vec4<f32>;
            for (var c = 0u; c < 4u; c++) {
                let j = 4u * k + c;
                g[c] = select(0.0, tail(below, step, row, j, z[c], acc[i][c]), j < l.inputs);
            }
            scratch[base + below.dz + (r0 + i) * kq + k] = g;
        }
    }
}

// The tile's share of layer l's dW = dzᵀ·x and db = Σ dz, in 4×4 blocks spread over the
// workgroup, into its slice of partials.
fn weight_grad(l: Layer, base: u32, slice: u32, tid: u32) {
    let kq = q(l.inputs);
    let nq = q(l.outputs);
    for (var b = tid; b < nq * kq; b += WG) {
        let jq = b / kq;
        let k = b % kq;
        // Zeroed here, not by the declaration alone: Tint (Chromium) kept the last turn's sums.
        var acc = array(vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
        var bias = vec4(0.0);
        for (var r = 0u; r < p.tile; r++) {
            let d = scratch[base + l.dz + r * nq + jq];
            let xr = scratch[base + l.x + r * kq + k];
            acc[0] += d.x * xr;
            acc[1] += d.y * xr;
            acc[2] += d.z * xr;
            acc[3] += d.w * xr;
            bias += d;
        }
        for (var e = 0u; e < 4u; e++) {
            let j = 4u * jq + e;
            for (var c = 0u; c < 4u; c++) {
                let i = 4u * k + c;
                if j < l.outputs && i < l.inputs {
                    partials[slice + l.w + j * l.inputs + i] = acc[e][c];
                }
            }
            if k == 0u && j < l.outputs && l.b != NONE {
                partials[slice + l.b + j] = bias[e];
            }
        }
    }
}

// Each invocation takes four rows of the tile through the whole network and back on its own
// (no barrier: on llvmpipe each one is a switch between the invocations' coroutines, and a
// barrier per layer cost more than the arithmetic); then, after the one barrier, the
// workgroup sums the weight gradients over the tile.
@compute @workgroup_size(16)
fn mlp_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let step = counter[0];
    let row0 = wg.x * p.tile;
    let base = wg.x * p.tile_len;
    let layers = p.layers;
    let r0 = 4u * tid;
    if r0 < p.tile {
        // The rows of x, padded to vec4s (rows past the batch are zeros).
        let first = p.layer[0];
        let kq = q(first.inputs);
        for (var i = r0 * kq; i < (r0 + 4u) * kq; i++) {
            let r = i / kq;
            let k = 4u * (i % kq);
            let row = min(row0 + r, p.rows - 1u);
            var v: vec4<f32>;
            for (var c = 0u; c < 4u; c++) {
                let col = min(k + c, first.inputs - 1u);
                v[c] = select(0.0, x[row * first.inputs + col], k + c < first.inputs && row0 + r < p.rows);
            }
            scratch[base + first.x + i] = v;
        }
        // Forward: layer l's output is layer l + 1's input, the last one's the loss's.
        for (var l = 0u; l < layers; l++) {
            let next = select(p.out, p.layer[min(l + 1u, 7u)].x, l + 1u < layers);
            forward(p.layer[l], base, next, r0, row0, step);
        }
        let last = p.layer[layers - 1u];
        loss(base, p.out, last.dz, r0, row0);
        tail_rows(last, base, r0, row0, step);
        for (var l = layers - 1u; l > 0u; l--) {
            input_grad(p.layer[l], p.layer[l - 1u], base, r0, row0, step);
        }
    }
    storageBarrier();
    for (var l = 0u; l < layers; l++) {
        weight_grad(p.layer[l], base, wg.x * p.flat, tid);
    }
}

// ---------------------------------------------------------------- mlp_update

@group(0) @binding(1) var<storage, read_write> settings: Row;
@group(0) @binding(2) var<storage, read> sums: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

// The optimizer: 0 SGD, 1 momentum, 2 Adam, 3 AdamW.
override OPTIMIZER: u32 = 0u;

var<workgroup> mean_loss: f32;
var<workgroup> bad_update: atomic<u32>;

fn take(s: Settings, i: u32, g_i: f32) -> Step {
    switch OPTIMIZER {
        case 1u: { return momentum_step(s, w[i], g_i, m[i]); }
        case 2u: { return adam_step(s, w[i], g_i, m[i], v[i]); }
        case 3u: { return adamw_step(s, w[i], g_i, m[i], v[i]); }
        default: { return sgd_step(s, w[i], g_i); }
    }
}

// One barrier (see mlp_step): before it, the mean loss (invocation 0, in row order), the
// gradients and the check of their update; after it, the update if the loss and the check
// allow it, and the loss watch.
@compute @workgroup_size(64)
fn mlp_update(@builtin(local_invocation_index) lid: u32) {
    // Everyone reads the row before invocation 0 writes it (after the barrier).
    let row = settings;
    if lid == 0u {
        var total = 0.0;
        for (var i = 0u; i < p.terms_len; i++) {
            total += sums[p.terms + i];
        }
        mean_loss = p.scale * total;
    }
    // The settings a check reads (optimizer.wgsl's advanced_settings).
    let s = Settings(row.lr, row.momentum, row.beta1, row.beta2, row.eps, row.weight_decay,
                     row.beta1_power * row.beta1, row.beta2_power * row.beta2, row.first_bad != 0.0);
    var finite = true;
    for (var i = lid; i < p.flat; i += 64u) {
        var g_i = 0.0;
        for (var k = 0u; k < p.workgroups; k++) {
            g_i += sums[k * p.flat + i];
        }
        g[i] = g_i;
        finite = finite && step_is_finite(take(s, i, g_i));
    }
    if !finite {
        atomicOr(&bad_update, 1u);
    }
    let loss = workgroupUniformLoad(&mean_loss);
    let halted = row.first_bad != 0.0 || !is_finite(loss);
    let apply = !halted && atomicLoad(&bad_update) == 0u;
    if apply {
        for (var i = lid; i < p.flat; i += 64u) {
            let step = take(s, i, g[i]);
            w[i] = step.w;
            if OPTIMIZER != 0u {
                m[i] = step.m;
            }
            if OPTIMIZER >= 2u {
                v[i] = step.v;
            }
        }
    }
    // The loss watch (loss.wgsl's watch_step) and the check's marks (optimizer.wgsl's).
    if lid == 0u {
        let watched = row.steps + 1.0;
        settings.steps = watched;
        if row.first_bad == 0.0 {
            settings.bad_loss = loss;
            if !is_finite(loss) {
                settings.first_bad = watched;
            } else {
                settings.total = row.total + loss;
                settings.step_beta1_power = s.beta1_power;
                settings.step_beta2_power = s.beta2_power;
                if apply {
                    settings.beta1_power = s.beta1_power;
                    settings.beta2_power = s.beta2_power;
                } else {
                    settings.first_bad = watched;
                }
            }
        }
    }
}
