// Selecting rows by index: how a minibatch is cut from a data set that lives on the GPU, so
// a training step uploads nothing but (once per epoch) the shuffled order.
//   gather_rows: out[r, c] = source[indices[p.offset + r] − p.first, c]   for r < p.rows, c < p.cols
//                whose index lies in [p.first, p.first + p.source_rows); other rows are left
//                as they are. A data set bigger than one storage binding lives in several
//                buffers ("parts", rows first.. of the whole), and a minibatch is gathered
//                from each part in turn.
// Values are copied as 32-bit words, so one entry point serves f32 samples and u32 labels.
//
// Bindings (group 0):
//   0 p:       Params, uniform
//   1 source:  (n, cols) 32-bit words, read-only
//   2 indices: (len) u32 row numbers of the whole data set, read-only
//   3 out:     (rows, cols) 32-bit words, read-write
// Grid: one invocation per output value, workgroups of 256 folded into (x, y).

struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    first: u32,
    source_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
        let index = indices[p.offset + r];
        // One unsigned compare: an index below first wraps around to a huge number.
        if index - p.first < p.source_rows {
            out[i] = source[(index - p.first) * p.cols + c];
        }
    }
}
