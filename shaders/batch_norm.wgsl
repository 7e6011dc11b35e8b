// Batch normalisation over the channels of NCHW images, PyTorch's BatchNorm2d.
// x, y, dx, dy are (n, c · plane), one image per row; stats is (2, c): each channel's mean,
// then its 1/√(var + ε); gain, bias, dgain, dbias, running_mean and running_var are (c).
// A channel's statistics and sums run over its m = n · plane values.
//   batch_norm_stats:      out = the batch's stats (biased variance); out2, out3 = the
//                          running mean and variance, moved towards the batch's by momentum
//                          (the variance unbiased, · m / (m − 1)), unless a step already
//                          diverged or the batch's are not finite       a = x, d = settings row
//   batch_norm_eval_stats: out = stats from the running statistics      out2, out3 = running
//   batch_norm_forward:    out = (x − mean) · rstd · gain + bias        a = x, b = stats,
//                                                                       c = gain, d = bias
//   batch_norm_backward:   out2 = dgain = Σ dy · x̂, out3 = dbias = Σ dy, and when
//                          p.input_grad, out = dx = gain · rstd · (dy − mean(dy) − x̂ · mean(dy · x̂))
//                                                                       a = x, b = stats,
//                                                                       c = gain, d = dy
// The sums are one workgroup's per channel (a tree in workgroup memory), so no float
// atomics are needed. Each invocation walks its m / 256 values twice: llvmpipe stops an
// invocation after 65535 loop turns in all, so the host allows m of at most 32000 · 256.
//
// Bindings (group 0):
//   0 p:   Params, uniform
//   1 a, 2 b, 3 c, 4 d: read-only, as above (unused ones get a placeholder)
//   5 out, 6 out2, 7 out3: read-write, as above
// Grid: the channel kernels one workgroup per channel, folded into (x, y); the forward one
// invocation per value, x along a plane (256 per workgroup), y and z over the batch's planes
// (sample, channel), so its channel is the workgroup's and no value pays a division.

struct Params {
    n: u32,
    channels: u32,
    plane: u32,
    eps: f32,
    momentum: f32,
    // Where the settings row keeps `first_bad` (non-zero once a step has diverged).
    first_bad: u32,
    input_grad: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;
@group(0) @binding(7) var<storage, read_write> out3: array<f32>;

const SIZE: u32 = 256u;
var<workgroup> sums: array<f32, SIZE>;
var<workgroup> sums2: array<f32, SIZE>;

fn workgroup_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

// Walks channel ch's m values, every SIZE-th from the invocation's first: value i is at
// ((s · channels + ch) · plane + q) for i = s · plane + q, kept as (s, q) and stepped by
// (SIZE / plane, SIZE % plane) with a carry, so no step divides.
struct Walk {
    s: u32,
    q: u32,
}

fn walk_start(lid: u32) -> Walk {
    return Walk(lid / p.plane, lid % p.plane);
}

fn walk_next(w: Walk) -> Walk {
    var q = w.q + SIZE % p.plane;
    var s = w.s + SIZE / p.plane;
    let carry = q >= p.plane;
    return Walk(s + select(0u, 1u, carry), q - select(0u, p.plane, carry));
}

fn walk_at(ch: u32, w: Walk) -> u32 {
    return (w.s * p.channels + ch) * p.plane + w.q;
}

// Sums each invocation's `mine` (and `mine2`) over the workgroup; every invocation gets the
// totals in sums[0] and sums2[0].
fn reduce(lid: u32, mine: f32, mine2: f32) {
    sums[lid] = mine;
    sums2[lid] = mine2;
    workgroupBarrier();
    for (var half = SIZE / 2u; half > 0u; half /= 2u) {
        if lid < half {
            sums[lid] += sums[lid + half];
            sums2[lid] += sums2[lid + half];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn batch_norm_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let ch = workgroup_index(wg, nwg);
    if ch >= p.channels {
        return; // the whole workgroup: no barrier is left waiting
    }
    let m = p.n * p.plane;
    var total = 0.0;
    var w = walk_start(lid);
    for (var i = lid; i < m; i += SIZE) {
        total += a[walk_at(ch, w)];
        w = walk_next(w);
    }
    reduce(lid, total, 0.0);
    let mean = sums[0] / f32(m);
    workgroupBarrier();
    // Two passes: Σ(x − mean)² does not cancel the way Σx² − m·mean² does.
    var squares = 0.0;
    w = walk_start(lid);
    for (var i = lid; i < m; i += SIZE) {
        let centred = a[walk_at(ch, w)] - mean;
        squares += centred * centred;
        w = walk_next(w);
    }
    reduce(lid, squares, 0.0);
    if lid == 0u {
        let variance = sums[0] / f32(m);
        out[ch] = mean;
        out[p.channels + ch] = 1.0 / sqrt(variance + p.eps);
        let unbiased = sums[0] / f32(m - 1u);
        // The exponent's bits all set: infinity or NaN (a comparison with f32's largest value
        // would not be exact in WGSL's decimal literal).
        let finite = (bitcast<u32>(mean) & 0x7f800000u) != 0x7f800000u
            && (bitcast<u32>(unbiased) & 0x7f800000u) != 0x7f800000u;
        if d[p.first_bad] == 0.0 && finite {
            out2[ch] = (1.0 - p.momentum) * out2[ch] + p.momentum * mean;
            out3[ch] = (1.0 - p.momentum) * out3[ch] + p.momentum * unbiased;
        }
    }
}

@compute @workgroup_size(256)
fn batch_norm_eval_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let ch = workgroup_index(wg, nwg) * SIZE + lid;
    if ch < p.channels {
        out[ch] = out2[ch];
        out[p.channels + ch] = 1.0 / sqrt(out3[ch] + p.eps);
    }
}

@compute @workgroup_size(256)
fn batch_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = wg.y + wg.z * nwg.y; // (sample, channel)
    let q = wg.x * SIZE + lid;
    if row < p.n * p.channels && q < p.plane {
        let ch = row % p.channels; // the workgroup's: one division for all its values
        let i = row * p.plane + q;
        out[i] = (a[i] - b[ch]) * b[p.channels + ch] * c[ch] + d[ch];
    }
}

@compute @workgroup_size(256)
fn batch_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let ch = workgroup_index(wg, nwg);
    if ch >= p.channels {
        return;
    }
    let m = p.n * p.plane;
    let mean = b[ch];
    let rstd = b[p.channels + ch];
    var dy_total = 0.0;
    var dyx_total = 0.0;
    var w = walk_start(lid);
    for (var i = lid; i < m; i += SIZE) {
        let k = walk_at(ch, w);
        dy_total += d[k];
        dyx_total += d[k] * (a[k] - mean) * rstd;
        w = walk_next(w);
    }
    reduce(lid, dy_total, dyx_total);
    let dy_mean = sums[0] / f32(m);
    let dyx_mean = sums2[0] / f32(m);
    if lid == 0u {
        out2[ch] = sums2[0];
        out3[ch] = sums[0];
    }
    if p.input_grad != 0u {
        let scale = c[ch] * rstd;
        w = walk_start(lid);
        for (var i = lid; i < m; i += SIZE) {
            let k = walk_at(ch, w);
            out[k] = scale * (d[k] - dy_mean - (a[k] - mean) * rstd * dyx_mean);
            w = walk_next(w);
        }
    }
}
