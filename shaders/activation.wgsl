// Element-wise activations and their derivatives, each as its own op (a dense layer's own
// activation is fused into its matrix product instead: see matmul_common.wgsl). The formulas
// live in elementwise.wgsl, which the host prepends. F, an override constant, picks the
// activation by its code (src/activation.rs): each pipeline is specialized to one, so the
// compiler sees only its code. Each backward takes what its forward saved: sigmoid and tanh
// their output y, the others their input x.
//   activation_forward:  out = f(x)                       a = x
//   activation_backward: out = dy · f'(·)                 a = x or y, b = dy
//
// Bindings (group 0):
//   0 p:   Params, uniform (slope: LeakyReLU's)
//   1 a:   (len), read-only
//   2 b:   (len), read-only; read by the backward only
//   3 out: (len), read-write
// Grid: one invocation per element, workgroups of 256 folded into (x, y) so no dimension
// exceeds 65535.

override F: u32 = 0u;

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
fn activation_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    forward(F, wg, nwg, lid);
}

@compute @workgroup_size(256)
fn activation_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    backward(F, wg, nwg, lid);
}
