// Element-wise activations and their derivatives, each as its own op (a dense layer's own
// activation is fused into its matrix product instead: see matmul_common.wgsl). The formulas
// live in elementwise.wgsl, which the host prepends. Each backward takes what its forward
// saved: sigmoid and tanh their output y, the others their input x.
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

// The slope is loaded before the branch: on llvmpipe a load under a branch is a masked loop
// over the lanes (see optimizer.wgsl).
fn forward(f: u32, wg: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let slope = p.slope;
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = activate(f, a[i], slope);
    }
}

fn backward(f: u32, wg: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let slope = p.slope;
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = derive(f, a[i], b[i], slope);
    }
}

@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    forward(RELU, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    backward(RELU, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn leaky_relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    forward(LEAKY_RELU, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn leaky_relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    backward(LEAKY_RELU, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn sigmoid_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    forward(SIGMOID, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    backward(SIGMOID, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn tanh_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    forward(TANH, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn tanh_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    backward(TANH, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn gelu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    forward(GELU, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn gelu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    backward(GELU, wg, nwg, lid);
}
