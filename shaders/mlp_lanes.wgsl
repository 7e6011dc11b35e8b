// mlp.wgsl's products for adapters without subgroups of 8 lanes (appended to it by the
// host; see gpu/mlp.rs): each invocation reads every weight itself.

// Product j of layer l over the input at act[src …], before the bias (zero past its outputs).
fn product(l: Layer, src: u32, j: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < (l.inputs + 3u) / 4u; k++) {
        s += dot(act[src + k], weights(l, j, k));
    }
    return select(0.0, s, j < l.outputs);
}

// Layer li of the row: z = W·x (+ b) from act[src …], its activation and dropout into
// act[to …].
fn forward(li: u32, src: u32, to: u32, row: u32, step: u32, lane: u32) {
    let l = p.layer[li];
    for (var jq = 0u; jq < (l.outputs + 3u) / 4u; jq++) {
        let j = 4u * jq;
        let z = vec4(product(l, src, j), product(l, src, j + 1u), product(l, src, j + 2u),
                     product(l, src, j + 3u));
        finish(l, li, to, jq, z, row, step);
    }
}

// The row's dx = dz·W through layer l (dz: the gradient of its product), then the tail of
// layer li − 1 below it, into dz.
fn input_grad(li: u32, row: u32, step: u32, lane: u32) {
    let l = p.layer[li];
    let kq = (l.inputs + 3u) / 4u;
    for (var k = 0u; k < kq; k++) {
        var acc = vec4(0.0);
        for (var jq = 0u; jq < (l.outputs + 3u) / 4u; jq++) {
            let d = dz[jq];
            let j = 4u * jq;
            acc += d.x * weights(l, j, k) + d.y * weights(l, j + 1u, k) + d.z * weights(l, j + 2u, k)
                + d.w * weights(l, j + 3u, k);
        }
        store_input_grad(li, k, row, step, acc);
    }
    use_input_grad(kq);
}

@compute @workgroup_size(WG)
fn mlp_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    step_rows(wg.x, tid, 0u);
}
