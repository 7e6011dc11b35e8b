// A narrow MLP's whole training step in two launches (issue 26; tiny-cuda-nn's "fully fused
// MLP" for WGSL). The layer-by-layer path (matmul.wgsl and friends, 10+ launches a step) is
// the reference these kernels are tested against.
//
//   mlp_step:   each workgroup takes p.tile rows of the batch, one per invocation, through
//               every dense layer (with its activation and dropout), the loss, and back, and
//               writes the tile's share of every gradient (dW = dzᵀ·x and db = Σ dz summed
//               over its rows), laid out as the flat parameter buffer, into its own slice of
//               `partials`, and each loss term into the terms after the slices.
//   mlp_update: one workgroup: sums the slices in workgroup order into the gradients and the
//               terms into the mean loss, keeps the loss watch, checks the update and takes
//               it, as the separate launches do.
// No float atomics: every sum has one writer and a fixed order, so a step is deterministic.
//
// What makes it fast on llvmpipe, where a storage load is a loop over the SIMD lanes and a
// barrier a switch between the invocations' coroutines: an invocation keeps its row's
// activations and products in private arrays, indexed only by loop counters (plain vector
// loads there); every invocation reads the same weight at the same time, from a uniform
// binding (one load and a broadcast for all lanes); and the only barrier is the one before the
// tile's weight gradients are summed, from the rows' inputs and product gradients written to
// `scratch` on the way. The activation's output is recomputed from z where the backward
// needs it, and dropout's mask from its hash: the same functions on the same values, so the
// same bits as the masks and outputs the layer-by-layer path stores.
//
// Bindings (group 0):
//   mlp_step:   0 p: Params, uniform; 1 wu: the flat parameters, a uniform binding of
//               MAX_PARAMS values; 2 x: (rows, inputs); 3 targets: labels (u32) or target
//               values (f32 bits); 4 counter: dropout's step; 5 scratch: per workgroup, each
//               layer's inputs x and product gradients dz, (tile, inputs / 4) and (tile,
//               outputs / 4) vec4s; 6 partials: (workgroups · flat) + terms
//   mlp_update: 0 p; 1 settings: Row; 2 partials (read); 3 g, 4 w, 5 m, 6 v: the flat
//               gradients, values and optimizer state (m, v unused by SGD, v by momentum)
// Grid: mlp_step one workgroup of WG = p.tile invocations per p.tile rows; mlp_update one
// workgroup of 64.
//
// The products of forward and input_grad come in two variants, appended by the host:
// mlp_subgroup.wgsl (subgroups of 8 lanes share the weights they load) and mlp_lanes.wgsl
// (any adapter); each declares the entry point mlp_step.

// Invocations of mlp_step, one per row of its tile (the host sets it to the tile: 8 to 64).
override WG: u32 = 64u;
// vec4s of the widest activation (64 values).
const Q: u32 = 16u;
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
    // Offsets in a workgroup's scratch (in vec4s) of its inputs x and its product's gradients
    // dz, a row of the tile after another.
    x: u32,
    dz: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: vec4<u32>,
}

struct Params {
    rows: u32,
    layers: u32,
    // CROSS_ENTROPY or an element-wise loss's code; its scale (1/rows or 1/values) and δ.
    loss: u32,
    classes: u32,
    scale: f32,
    delta: f32,
    // vec4s of scratch per workgroup.
    tile_len: u32,
    _pad0: u32,
    _pad3: u32,
    // The flat parameters' length; where the terms start in partials; how many there are.
    flat: u32,
    terms: u32,
    terms_len: u32,
    workgroups: u32,
    // Rows per workgroup: WG, 8 to 64.
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

@group(0) @binding(1) var<uniform> wu: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@group(0) @binding(4) var<storage, read> counter: array<u32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// The invocation's row: two activations (a layer's input in one half, its output in the
// other, turn about), every layer's product z (layer l at Q·l), and in the backward the
// gradient of the product and of the input below.
var<private> act: array<vec4<f32>, 32>;
var<private> zs: array<vec4<f32>, 128>;
var<private> dz: array<vec4<f32>, 16>;
var<private> dx: array<vec4<f32>, 16>;

fn w_at(i: u32) -> f32 {
    return wu[i >> 2u][i & 3u];
}

// Weights j, 4kq … 4kq + 3 of layer l, zero past its inputs (j past its outputs reads its
// last row; what lies past a row is the next row, or at most 3 values past the parameters:
// always inside the binding).
fn weights(l: Layer, j: u32, kq: u32) -> vec4<f32> {
    let i = l.w + min(j, l.outputs - 1u) * l.inputs + 4u * kq;
    let v = vec4(w_at(i), w_at(i + 1u), w_at(i + 2u), w_at(i + 3u));
    return select(vec4(0.0), v, vec4(4u * kq) + vec4(0u, 1u, 2u, 3u) < vec4(l.inputs));
}

// What layer l's tail keeps for its backward: the value its activation's derivative reads
// (z, or f(z) for sigmoid and tanh), recomputed from z.
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

// The gradient of layer l's product at (row, j) from that of its output: dropout's mask,
// then the activation's derivative.
fn tail(l: Layer, step: u32, row: u32, j: u32, z: f32, dy: f32) -> f32 {
    return select(0.0, derive(l.act, saved(l, z), dy * mask(l, step, row, j), l.slope), j < l.outputs);
}

fn tail4(l: Layer, step: u32, row: u32, jq: u32, z: vec4<f32>, dy: vec4<f32>) -> vec4<f32> {
    let j = 4u * jq;
    return vec4(tail(l, step, row, j, z.x, dy.x), tail(l, step, row, j + 1u, z.y, dy.y),
                tail(l, step, row, j + 2u, z.z, dy.z), tail(l, step, row, j + 3u, z.w, dy.w));
}

fn activated(l: Layer, step: u32, row: u32, j: u32, z: f32) -> f32 {
    return select(0.0, activate(l.act, z, l.slope) * mask(l, step, row, j), j < l.outputs);
}

// Products 4jq … 4jq + 3 of layer li (acc, before the bias): z kept, the activation and dropout
// into act[to + jq].
fn finish(l: Layer, li: u32, to: u32, jq: u32, acc: vec4<f32>, row: u32, step: u32) {
    let j = 4u * jq;
    var z = acc;
    if l.b != NONE {
        z += vec4(w_at(l.b + j), w_at(l.b + j + 1u), w_at(l.b + j + 2u), w_at(l.b + j + 3u));
    }
    z = select(vec4(0.0), z, vec4(j) + vec4(0u, 1u, 2u, 3u) < vec4(l.outputs));
    zs[Q * li + jq] = z;
    act[to + jq] = vec4(activated(l, step, row, j, z.x), activated(l, step, row, j + 1u, z.y),
                        activated(l, step, row, j + 2u, z.z), activated(l, step, row, j + 3u, z.w));
}

// The row's loss from the output at act[src …]: its terms into partials, the gradient of the
// mean loss into dz. A row past the batch has none.
fn loss(src: u32, row: u32, live: bool) {
    let cq = (p.classes + 3u) / 4u;
    if p.loss == CROSS_ENTROPY {
        var m = act[src].x;
        for (var c = 0u; c < cq; c++) {
            let y = act[src + c];
            for (var e = 0u; e < 4u; e++) {
                m = select(m, max(m, y[e]), 4u * c + e < p.classes);
            }
        }
        var total = 0.0;
        for (var c = 0u; c < cq; c++) {
            let y = act[src + c];
            for (var e = 0u; e < 4u; e++) {
                total += select(0.0, exp(y[e] - m), 4u * c + e < p.classes);
            }
        }
        let lse = m + log(total);
        let label = targets[min(row, p.rows - 1u)];
        var picked = 0.0;
        for (var c = 0u; c < cq; c++) {
            let y = act[src + c];
            var g = vec4(0.0);
            for (var e = 0u; e < 4u; e++) {
                let j = 4u * c + e;
                picked += select(0.0, y[e], j == label);
                g[e] = select(0.0, (exp(y[e] - lse) - select(0.0, 1.0, j == label)) * p.scale,
                              j < p.classes && live);
            }
            dz[c] = g;
        }
        if live {
            partials[p.terms + row] = select(lse - picked, bitcast<f32>(nan_bits), label >= p.classes);
        }
        return;
    }
    for (var c = 0u; c < cq; c++) {
        let y = act[src + c];
        var g = vec4(0.0);
        for (var e = 0u; e < 4u; e++) {
            let j = 4u * c + e;
            if j < p.classes && live {
                let at = row * p.classes + j;
                let term = value_term(p.loss, y[e], bitcast<f32>(targets[at]), p.delta);
                partials[p.terms + at] = term.x;
                g[e] = term.y * p.scale;
            }
        }
        dz[c] = g;
    }
}

// The end of input_grad: dx = dz·W for the input k-quad `k` of layer li, carried through the
// tail of the layer below into dx; `use_input_grad` then makes dx the next dz.
fn store_input_grad(li: u32, k: u32, row: u32, step: u32, acc: vec4<f32>) {
    dx[k] = tail4(p.layer[li - 1u], step, row, k, zs[Q * (li - 1u) + k], acc);
}

fn use_input_grad(kq: u32) {
    for (var k = 0u; k < kq; k++) {
        dz[k] = dx[k];
    }
}

// The tile's share of layer l's dW = dzᵀ·x and db = Σ dz, in 4×4 blocks spread over the
// workgroup, into its slice of partials.
fn weight_grad(l: Layer, base: u32, slice: u32, tid: u32) {
    let kq = (l.inputs + 3u) / 4u;
    let nq = (l.outputs + 3u) / 4u;
    for (var b = tid; b < nq * kq; b += WG) {
        let jq = b / kq;
        let k = b % kq;
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

// The row's forward, loss and backward, leaving its inputs and product gradients in the
// workgroup's scratch, and its loss when it is the batch's (`live`; the rest of a last tile
// runs on zeros, with no loss and no gradient).
fn run_row(tid: u32, lane: u32, base: u32, row: u32, live: bool, step: u32) {
    let layers = p.layers;
    let first = p.layer[0];
    let at = min(row, p.rows - 1u) * first.inputs;
    for (var k = 0u; k < (first.inputs + 3u) / 4u; k++) {
        var v = vec4(0.0);
        for (var c = 0u; c < 4u; c++) {
            let i = 4u * k + c;
            v[c] = select(0.0, x[at + min(i, first.inputs - 1u)], i < first.inputs && live);
        }
        act[k] = v;
    }
    // Forward, keeping each layer's input for the weight gradients.
    for (var l = 0u; l < layers; l++) {
        let layer = p.layer[l];
        let src = Q * (l % 2u);
        let kq = (layer.inputs + 3u) / 4u;
        for (var k = 0u; k < kq; k++) {
            scratch[base + layer.x + tid * kq + k] = act[src + k];
        }
        forward(l, src, Q - src, row, step, lane);
    }
    // The loss, then backward, keeping each layer's product gradient.
    let last = p.layer[layers - 1u];
    loss(Q * (layers % 2u), row, live);
    for (var k = 0u; k < (last.outputs + 3u) / 4u; k++) {
        dz[k] = tail4(last, step, row, k, zs[Q * (layers - 1u) + k], dz[k]);
    }
    for (var l = layers - 1u; ; l--) {
        let layer = p.layer[l];
        let nq = (layer.outputs + 3u) / 4u;
        for (var k = 0u; k < nq; k++) {
            scratch[base + layer.dz + tid * nq + k] = dz[k];
        }
        if l == 0u {
            break;
        }
        input_grad(l, row, step, lane);
    }
}

// The body of mlp_step, whose entry point each variant of the products declares (with
// `lane`, the invocation's lane in its subgroup, 0 without subgroups): the rows, then after
// the one barrier the tile's weight gradients.
fn step_rows(wg: u32, tid: u32, lane: u32) {
    let base = wg * p.tile_len;
    let row = wg * p.tile + tid;
    // Every invocation runs its row (its subgroup shares the weights, so none may sit out),
    // but only rows of the batch count.
    run_row(tid, lane, base, row, row < p.rows, counter[0]);
    storageBarrier();
    for (var l = 0u; l < p.layers; l++) {
        weight_grad(p.layer[l], base, wg * p.flat, tid);
    }
}

// ---------------------------------------------------------------- mlp_update
// Four parameters at a time: on llvmpipe a storage access costs a loop over the SIMD lanes,
// and a vec4 access takes one turn of it for four values. (The flat buffers' length is a
// multiple of 4.)

@group(0) @binding(1) var<storage, read_write> settings: Row;
@group(0) @binding(2) var<storage, read> sums: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> g: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> v: array<vec4<f32>>;

// The optimizer: 0 SGD, 1 momentum, 2 Adam, 3 AdamW.
override OPTIMIZER: u32 = 0u;

var<workgroup> mean_loss: f32;
var<workgroup> bad_update: atomic<u32>;

fn take1(s: Settings, w: f32, g: f32, m: f32, v: f32) -> Step {
    switch OPTIMIZER {
        case 1u: { return momentum_step(s, w, g, m); }
        case 2u: { return adam_step(s, w, g, m, v); }
        case 3u: { return adamw_step(s, w, g, m, v); }
        default: { return sgd_step(s, w, g); }
    }
}

// Four parameters' steps, as (w, m, v), and whether all are finite.
struct Step4 {
    w: vec4<f32>,
    m: vec4<f32>,
    v: vec4<f32>,
    finite: bool,
}

fn take(s: Settings, i: u32, g4: vec4<f32>) -> Step4 {
    let w4 = w[i];
    // (Branches on an override constant: the pipeline keeps only the loads its optimizer makes.)
    var m4 = vec4(0.0);
    var v4 = vec4(0.0);
    if OPTIMIZER != 0u {
        m4 = m[i];
    }
    if OPTIMIZER >= 2u {
        v4 = v[i];
    }
    let a = take1(s, w4.x, g4.x, m4.x, v4.x);
    let b = take1(s, w4.y, g4.y, m4.y, v4.y);
    let c = take1(s, w4.z, g4.z, m4.z, v4.z);
    let d = take1(s, w4.w, g4.w, m4.w, v4.w);
    let finite = step_is_finite(a) && step_is_finite(b) && step_is_finite(c) && step_is_finite(d);
    return Step4(vec4(a.w, b.w, c.w, d.w), vec4(a.m, b.m, c.m, d.m), vec4(a.v, b.v, c.v, d.v), finite);
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
            let at = p.terms + i;
            total += sums[at / 4u][at % 4u];
        }
        mean_loss = p.scale * total;
    }
    // The settings a check reads (optimizer.wgsl's advanced_settings).
    let s = Settings(row.lr, row.momentum, row.beta1, row.beta2, row.eps, row.weight_decay,
                     row.beta1_power * row.beta1, row.beta2_power * row.beta2, row.first_bad != 0.0);
    let quads = p.flat / 4u;
    var finite = true;
    for (var i = lid; i < quads; i += 64u) {
        var g_i = vec4(0.0);
        for (var k = 0u; k < p.workgroups; k++) {
            g_i += sums[k * quads + i];
        }
        g[i] = g_i;
        finite = finite && take(s, i, g_i).finite;
    }
    if !finite {
        atomicOr(&bad_update, 1u);
    }
    let loss = workgroupUniformLoad(&mean_loss);
    let halted = row.first_bad != 0.0 || !is_finite(loss);
    let apply = !halted && atomicLoad(&bad_update) == 0u;
    if apply {
        for (var i = lid; i < quads; i += 64u) {
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
