// matmul_ab_subgroup (matmul_subgroup.wgsl, which this file follows) with A and B read through
// textures, for large products on llvmpipe. There a storage load from a per-lane address is a
// scalar loop over the SIMD lanes, and a textureLoad one gather. Before the pass the host
// copies A (m × k) and B (k × n) into rgba32float textures, one texel per four values along a
// row (see `texture_reads` in gpu/matmul.rs for when); the Params, the block, the epilogue and
// the store are matmul_ab_subgroup's, only the loads differ. At 1024³ on a 2-core AMD EPYC
// (Zen 4) it ran 1.1–1.2× matmul_ab_subgroup, the copies included (BENCHMARKS.md); packing
// the textures with a kernel inside the pass instead (no copies) gained only 2–6%.

@group(0) @binding(8) var a_tex: texture_2d<f32>;
@group(0) @binding(9) var b_tex: texture_2d<f32>;

// load_rows from a_tex: this lane's rows of A (rows, clamped to the last) at texel column q.
fn load_rows_tex(rows: vec4<i32>, q: i32) -> mat4x4<f32> {
    let v0 = textureLoad(a_tex, vec2<i32>(q, rows.x), 0);
    var v = mat4x4<f32>(v0, v0, v0, v0);
    if needs_load(1u) {
        v[1] = textureLoad(a_tex, vec2<i32>(q, rows.y), 0);
    }
    if needs_load(2u) {
        v[2] = textureLoad(a_tex, vec2<i32>(q, rows.z), 0);
        v[3] = textureLoad(a_tex, vec2<i32>(q, rows.w), 0);
    }
    return v;
}

@compute @workgroup_size(SG)
fn matmul_ab_texture(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, lane);
    if origin.z == 0u {
        return;
    }
    let rows = vec4<i32>(lane_rows(origin, lane));
    let b_col = i32(min(origin.y / 4u, p.n / 4u - 1u));
    var acc: Acc32;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        let k = i32(4u * q);
        // cols[j] = B[k + j, my four columns]
        let cols = mat4x4<f32>(textureLoad(b_tex, vec2<i32>(b_col, k), 0),
                               textureLoad(b_tex, vec2<i32>(b_col, k + 1), 0),
                               textureLoad(b_tex, vec2<i32>(b_col, k + 2), 0),
                               textureLoad(b_tex, vec2<i32>(b_col, k + 3), 0));
        add_rows(&acc, cols, load_rows_tex(rows, i32(q)));
    }
    store_block32(origin, acc);
}
