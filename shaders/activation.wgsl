// Element-wise activations and their derivatives. Each backward takes what its forward saved:
// ReLU its input x, sigmoid and tanh their output y.
//   relu_forward:     out = max(x, 0)                    a = x
//   relu_backward:    out = dy · [x > 0]                 a = x, b = dy
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
    _pad0: u32,
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
