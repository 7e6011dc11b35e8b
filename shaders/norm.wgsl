// Layer normalisation over each row (PyTorch's LayerNorm over the last dimension, ε = 1e-5).
// x, y, dy, dx, terms are (rows, cols); stats (rows, 2) holds each row's mean and 1/σ;
// gain and bias are (cols).
//   layer_norm_stats:      out[r] = (mean, 1/√(var + ε)) of x's row r (biased variance)
//                                                          a = x
//   layer_norm_forward:    out = (x − mean) · rstd · gain + bias
//                                                          a = x, b = stats, c = gain, d = bias
//   layer_norm_backward:   out = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)), g = dy ⊙ gain,
//                          x̂ = (x − mean) · rstd           a = x, b = stats, c = gain, d = dy
//   layer_norm_gain_terms: out = x̂ ⊙ dy (its column sums are the gain's gradient)
//                                                          a = x, b = stats, d = dy
// The two row kernels walk a row at most twice: llvmpipe stops an invocation after 65535
// loop iterations, so the host allows at most 16383 columns (as for softmax).
//
// Bindings (group 0):
//   0 p:   Params, uniform
//   1 a, 2 b, 3 c, 4 d: read-only, as above (unused ones get a placeholder)
//   5 out: read-write
// Grid: the row kernels one invocation per row, workgroups of 64; the element kernels one
// invocation per element, workgroups of 256; both folded into (x, y).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * size + lid;
}

@compute @workgroup_size(64)
fn layer_norm_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let cols = p.cols;
    let eps = p.eps;
    let r = index(wg, nwg, lid, 64u);
    if r >= p.rows {
        return;
    }
    let start = r * cols;
    var total = 0.0;
    for (var j = 0u; j < cols; j++) {
        total += a[start + j];
    }
    let mean = total / f32(cols);
    // Two passes: Σ(x − mean)² does not cancel the way Σx² − n·mean² does.
    var squares = 0.0;
    for (var j = 0u; j < cols; j++) {
        let centred = a[start + j] - mean;
        squares += centred * centred;
    }
    out[2u * r] = mean;
    out[2u * r + 1u] = 1.0 / sqrt(squares / f32(cols) + eps);
}

@compute @workgroup_size(256)
fn layer_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let cols = p.cols;
    let i = index(wg, nwg, lid, 256u);
    if i < p.rows * cols {
        let r = i / cols;
        let j = i % cols;
        out[i] = (a[i] - b[2u * r]) * b[2u * r + 1u] * c[j] + d[j];
    }
}

@compute @workgroup_size(64)
fn layer_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let cols = p.cols;
    let r = index(wg, nwg, lid, 64u);
    if r >= p.rows {
        return;
    }
    let start = r * cols;
    let mean = b[2u * r];
    let rstd = b[2u * r + 1u];
    var g_total = 0.0;
    var gx_total = 0.0;
    for (var j = 0u; j < cols; j++) {
        let g = d[start + j] * c[j];
        g_total += g;
        gx_total += g * (a[start + j] - mean) * rstd;
    }
    let g_mean = g_total / f32(cols);
    let gx_mean = gx_total / f32(cols);
    for (var j = 0u; j < cols; j++) {
        let x_hat = (a[start + j] - mean) * rstd;
        out[start + j] = rstd * (d[start + j] * c[j] - g_mean - x_hat * gx_mean);
    }
}

@compute @workgroup_size(256)
fn layer_norm_gain_terms(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let cols = p.cols;
    let i = index(wg, nwg, lid, 256u);
    if i < p.rows * cols {
        let r = i / cols;
        out[i] = (a[i] - b[2u * r]) * b[2u * r + 1u] * d[i];
    }
}
