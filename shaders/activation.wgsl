// Element-wise activations and their derivatives. Each backward takes what its forward saved:
// sigmoid and tanh their output y, the others their input x.
//   relu_forward:        out = max(x, 0)                 a = x
//   relu_backward:       out = dy · [x > 0]              a = x, b = dy
//   leaky_relu_forward:  out = x > 0 ? x : s·x           a = x      (s = p.slope)
//   leaky_relu_backward: out = x > 0 ? dy : s·dy         a = x, b = dy
//   gelu_forward:        out = x/2 · (1 + tanh(u)),  u = √(2/π)(x + 0.044715x³)     a = x
//   gelu_backward:       out = dy · (½(1 + t) + ½x(1 − t²)√(2/π)(1 + 3·0.044715x²)), t = tanh(u)
//                                                    a = x, b = dy
//   sigmoid_forward:  out = 1 / (1 + e^-x)               a = x
//   sigmoid_backward: out = dy · y · (1 − y)             a = y, b = dy
//   tanh_forward:     out = tanh(x)                      a = x
//   tanh_backward:    out = dy · (1 − y²)                a = y, b = dy
//
// Bindings (group 0):
//   0 p:   Params, uniform
//   1 a:   (len), read-only
//   2 b:   (len), read-only; read by the backward entry points only
//   3 out: (len), read-write
// Grid: one invocation per element, workgroups of 256 folded into (x, y) so no dimension
// exceeds 65535.

struct Params {
    len: u32,
    slope: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = max(a[i], 0.0);
    }
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = select(0.0, b[i], a[i] > 0.0);
    }
}

@compute @workgroup_size(256)
fn sigmoid_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = 1.0 / (1.0 + exp(-a[i]));
    }
}

@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let y = a[i];
        out[i] = b[i] * y * (1.0 - y);
    }
}

@compute @workgroup_size(256)
fn tanh_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        // Built from e^(-2|x|), which never overflows; some drivers' tanh() returns NaN for
        // large |x| because they compute (e^2x − 1) / (e^2x + 1).
        let x = a[i];
        let e = exp(-2.0 * abs(x));
        out[i] = sign(x) * (1.0 - e) / (1.0 + e);
    }
}

@compute @workgroup_size(256)
fn tanh_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let y = a[i];
        out[i] = b[i] * (1.0 - y * y);
    }
}

@compute @workgroup_size(256)
fn leaky_relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let slope = p.slope; // loaded before the branch: see optimizer.wgsl on llvmpipe
    let i = element(wg, nwg, lid);
    if i < p.len {
        let x = a[i];
        out[i] = select(slope * x, x, x > 0.0);
    }
}

@compute @workgroup_size(256)
fn leaky_relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let slope = p.slope;
    let i = element(wg, nwg, lid);
    if i < p.len {
        let dy = b[i];
        out[i] = select(slope * dy, dy, a[i] > 0.0);
    }
}

const GELU_K: f32 = 0.7978845608028654; // √(2/π)
const GELU_A: f32 = 0.044715;

// tanh from e^(-2|u|), which never overflows (see tanh_forward).
fn stable_tanh(u: f32) -> f32 {
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

@compute @workgroup_size(256)
fn gelu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let x = a[i];
        out[i] = 0.5 * x * (1.0 + stable_tanh(GELU_K * (x + GELU_A * x * x * x)));
    }
}

@compute @workgroup_size(256)
fn gelu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        let x = a[i];
        let t = stable_tanh(GELU_K * (x + GELU_A * x * x * x));
        // Past |x| = 10, 1 − t² is exactly 0 in f32; clamping x there keeps 0 · x · du from
        // becoming 0 · ∞ for huge inputs, and changes nothing else.
        let xc = clamp(x, -10.0, 10.0);
        let du = GELU_K * (1.0 + 3.0 * GELU_A * xc * xc);
        out[i] = b[i] * (0.5 * (1.0 + t) + 0.5 * xc * (1.0 - t * t) * du);
    }
}
