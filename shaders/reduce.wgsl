// Deterministic reductions: every sum runs in a fixed order (no float atomics), so the same
// input gives bit-identical output on the same device.
//   sum_columns: out[j] = p.scale · Σ_i x[i, j]     x (rows, cols), out (cols); the bias gradient
//   sum_all:     out[0] = p.scale · Σ x             x (rows · cols), out (1); a loss from its terms
// One launch sums rows (sum_columns) or elements (sum_all) in [p.begin, p.end) and adds the
// old output when p.accumulate != 0: the host splits long sums into segments because llvmpipe
// stops an invocation after 65535 loop iterations in all.
//
// Bindings (group 0):
//   0 p:   Params, uniform
//   1 x:   read-only
//   2 out: read-write
// Grids:
//   sum_columns: one invocation per column, workgroups of 64 folded into (x, y).
//   sum_all: exactly one workgroup of 256; each invocation sums a strided slice, then a
//            tree in workgroup memory combines the 256 partial sums.

struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    begin: u32,
    end: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn sum_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let j = (wg.x + wg.y * nwg.x) * 64u + lid;
    if j >= p.cols {
        return;
    }
    var acc = 0.0;
    for (var i = p.begin; i < p.end; i++) {
        acc += x[i * p.cols + j];
    }
    out[j] = p.scale * acc + select(0.0, out[j], p.accumulate != 0u);
}

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn sum_all(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = p.begin + lid; i < p.end; i += 256u) {
        acc += x[i];
    }
    partial[lid] = acc;
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
    }
    if lid == 0u {
        out[0] = p.scale * partial[0] + select(0.0, out[0], p.accumulate != 0u);
    }
}
