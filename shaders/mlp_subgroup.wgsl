// mlp.wgsl's products for adapters whose subgroups have 8 lanes (llvmpipe's, on 256-bit
// SIMD), appended to it by the host (see gpu/mlp.rs): a subgroup's lanes load 8 weight rows
// at once, one each, and share them with subgroupShuffle from lanes known when the pipeline
// is made. On llvmpipe a load from a per-lane address is a scalar loop over the lanes and a
// shuffle one register move, so this takes 8 loads where each lane would make 8.

// Weights j, 4kq … 4kq + 3 of layer l, zero past its outputs too.
fn lane_weights(l: Layer, j: u32, kq: u32) -> vec4<f32> {
    return select(vec4(0.0), weights(l, min(j, l.outputs - 1u), kq), j < l.outputs);
}

// Layer li of the row: z = W·x (+ b) from act[src …], its activation and dropout into
// act[to …]. The subgroup's 8 lanes load 8 weight rows at once and share them.
fn forward(li: u32, src: u32, to: u32, row: u32, step: u32, lane: u32) {
    let l = p.layer[li];
    let kq = (l.inputs + 3u) / 4u;
    for (var j0 = 0u; j0 < l.outputs; j0 += 8u) {
        var lo = vec4(0.0);
        var hi = vec4(0.0);
        for (var k = 0u; k < kq; k++) {
            let v = lane_weights(l, j0 + lane, k);
            let x = act[src + k];
            lo += vec4(dot(x, subgroupShuffle(v, 0u)), dot(x, subgroupShuffle(v, 1u)),
                       dot(x, subgroupShuffle(v, 2u)), dot(x, subgroupShuffle(v, 3u)));
            hi += vec4(dot(x, subgroupShuffle(v, 4u)), dot(x, subgroupShuffle(v, 5u)),
                       dot(x, subgroupShuffle(v, 6u)), dot(x, subgroupShuffle(v, 7u)));
        }
        finish(l, li, to, j0 / 4u, lo, row, step);
        if j0 + 4u < l.outputs {
            finish(l, li, to, j0 / 4u + 1u, hi, row, step);
        }
    }
}

// The row's dx = dz·W through layer l (dz: the gradient of its product), then the tail of
// layer li − 1 below it, into dz.
fn input_grad(li: u32, row: u32, step: u32, lane: u32) {
    let l = p.layer[li];
    let kq = (l.inputs + 3u) / 4u;
    for (var k = 0u; k < kq; k++) {
        var acc = vec4(0.0);
        for (var j0 = 0u; j0 < l.outputs; j0 += 8u) {
            let v = lane_weights(l, j0 + lane, k);
            let d0 = dz[j0 / 4u];
            let d1 = select(vec4(0.0), dz[min(j0 / 4u + 1u, Q - 1u)], j0 + 4u < l.outputs);
            acc += d0.x * subgroupShuffle(v, 0u) + d0.y * subgroupShuffle(v, 1u)
                + d0.z * subgroupShuffle(v, 2u) + d0.w * subgroupShuffle(v, 3u)
                + d1.x * subgroupShuffle(v, 4u) + d1.y * subgroupShuffle(v, 5u)
                + d1.z * subgroupShuffle(v, 6u) + d1.w * subgroupShuffle(v, 7u);
        }
        store_input_grad(li, k, row, step, acc);
    }
    use_input_grad(kq);
}

@compute @workgroup_size(WG)
fn mlp_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32,
            @builtin(subgroup_invocation_id) lane: u32) {
    step_rows(wg.x, tid, lane);
}
