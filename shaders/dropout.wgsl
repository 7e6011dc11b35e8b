// Dropout with a counter-based random mask: element i of step t keeps its value with
// probability 1 − p, scaled by 1 / (1 − p), decided by hashing (seed, t, i). No random state
// is stored, so the mask is the same on every device and in the CPU reference, and many
// steps can share one submit: dropout_advance bumps t on the GPU.
//   dropout_forward:  mask[i] = keep(seed, t, i) ? 1 / (1 − p) : 0;  out[i] = x[i] · mask[i]
//   dropout_backward: out[i] = dy[i] · mask[i]
//   dropout_advance:  t += 1 (counter[0]); once per training step, before the forward pass
// random(seed, t, i) = pcg(pcg(pcg(i) ^ t) ^ seed), u = (random >> 8) / 2^24, keep when u ≥ p
// (dropout_scale in elementwise.wgsl, prepended by the host; the matmul epilogues draw the
// same masks).
//
// Bindings (group 0); dropout_backward's layout has only the first four:
//   0 p:       Params, uniform
//   1 a:       x (forward) or mask (backward), (len), read-only
//   2 b:       dy (backward), (len), read-only
//   3 out:     (len), read-write
//   4 mask:    (len), read-write; written by dropout_forward
//   5 counter: (1) u32 step; dropout_advance writes it, dropout_forward reads it
// Grid: one invocation per element, workgroups of 256 folded into (x, y);
// dropout_advance: one workgroup.

struct Params {
    len: u32,
    p: f32,
    seed: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> counter: array<u32>;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(1)
fn dropout_advance() {
    counter[0] += 1u;
}

@compute @workgroup_size(256)
fn dropout_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    // The step is read before the branch: on llvmpipe a storage load under a branch is a
    // masked loop over the lanes (see optimizer.wgsl).
    let step = counter[0];
    let i = element(wg, nwg, lid);
    if i < p.len {
        let scale = dropout_scale(p.seed, step, i, p.p);
        mask[i] = scale;
        out[i] = a[i] * scale;
    }
}

@compute @workgroup_size(256)
fn dropout_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = element(wg, nwg, lid);
    if i < p.len {
        out[i] = b[i] * a[i];
    }
}
