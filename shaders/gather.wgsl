// Selecting rows by index: how a minibatch is cut from a data set that lives on the GPU, so
// a training step uploads nothing but (once per epoch) the shuffled order.
//   gather_rows: out[r, c] = source[indices[p.offset + r], c]   for r < p.rows, c < p.cols
// Values are copied as 32-bit words, so one entry point serves f32 samples and u32 labels.
//
// Bindings (group 0):
//   0 p:       Params, uniform
//   1 source:  (n, cols) 32-bit words, read-only
//   2 indices: (len) u32 row numbers, each below n (checked by the host), read-only
//   3 out:     (rows, cols) 32-bit words, read-write
// Grid: one invocation per output value, workgroups of 256 folded into (x, y).

struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> source: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * 256u + lid;
    if i < p.rows * p.cols {
        let r = i / p.cols;
        let c = i % p.cols;
        out[i] = source[indices[p.offset + r] * p.cols + c];
    }
}
