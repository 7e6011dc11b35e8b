// The three matrix products of matmul.wgsl, for adapters whose subgroups are exactly 8 lanes
// wide (llvmpipe: lavapipe and GL on 256-bit SIMD). Same bindings, Params and grid as
// matmul.wgsl (one workgroup of 64 per 64×64 tile of C, tiles folded into (x, y)); compiled
// only where wgpu's SUBGROUP feature exists, and chosen by the host only when the adapter
// reports a subgroup size of exactly 8 and the vec4 alignment of matmul.wgsl holds.
//
// Why: on llvmpipe a storage load from a per-lane address costs a scalar loop over the SIMD
// lanes, while a subgroup broadcast is one register shuffle. So each subgroup shares the
// rows of A it needs: lane g loads rows g and 8 + g, and every lane takes all 16 from the
// others with subgroupBroadcast. Each invocation computes 16 rows × 4 columns of C, loading
// 6 vec4s per four k where matmul.wgsl's 8×8 blocks load 16.
//
// Layout in a workgroup: subgroup s (0..7) covers rows 16·(s / 2) .. +16 and columns
// 32·(s % 2) .. +32 of the tile; lane g of it owns columns 4g .. 4g + 3 of those.

// C's 16×4 block, transposed in four 4×4 pieces: column i of rR is row 4R + i of the block.
struct Acc {
    r0: mat4x4<f32>,
    r1: mat4x4<f32>,
    r2: mat4x4<f32>,
    r3: mat4x4<f32>,
}

// (first row, first column) of this invocation's block, and whether the tile exists.
fn block_origin(wg: vec3<u32>, nwg: vec3<u32>, sg: u32, lane: u32) -> vec3<u32> {
    let tile = wg.x + wg.y * nwg.x;
    let row0 = (tile / p.tiles_n) * TILE + (sg / 2u) * 16u;
    let col0 = (tile % p.tiles_n) * TILE + (sg % 2u) * 32u + 4u * lane;
    return vec3<u32>(row0, col0, u32(tile < p.tiles));
}

// Lanes 0..3 (or 4..7) of v, one per column: four rows of A along a k-quad, as (k, row).
fn rows_lo(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u),
                       subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
}

fn rows_hi(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u),
                       subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}

fn store_block(origin: vec3<u32>, acc: Acc) {
    store_piece(origin.x, origin.y, acc.r0);
    store_piece(origin.x + 4u, origin.y, acc.r1);
    store_piece(origin.x + 8u, origin.y, acc.r2);
    store_piece(origin.x + 12u, origin.y, acc.r3);
}

// The vec4 index of row `row` (clamped to the last) of a matrix `quads` vec4s wide.
fn row_start(row: u32, last: u32, quads: u32) -> u32 {
    return min(row, last) * quads;
}

@compute @workgroup_size(64)
fn matmul_ab_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, sg, lane);
    if origin.z == 0u {
        return;
    }
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let a_lo = row_start(origin.x + lane, p.m - 1u, kq);
    let a_hi = row_start(origin.x + 8u + lane, p.m - 1u, kq);
    let b_col = min(origin.y / 4u, nq - 1u);
    var acc: Acc;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        let lo = a[a_lo + q];
        let hi = a[a_hi + q];
        let k_row = 4u * q * nq + b_col;
        // cols[j] = B[k + j, my four columns]
        let cols = mat4x4<f32>(b[k_row], b[k_row + nq], b[k_row + 2u * nq], b[k_row + 3u * nq]);
        acc.r0 += cols * rows_lo(lo);
        acc.r1 += cols * rows_hi(lo);
        acc.r2 += cols * rows_lo(hi);
        acc.r3 += cols * rows_hi(hi);
    }
    store_block(origin, acc);
}

@compute @workgroup_size(64)
fn matmul_abt_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, sg, lane);
    if origin.z == 0u {
        return;
    }
    let kq = p.k / 4u;
    let a_lo = row_start(origin.x + lane, p.m - 1u, kq);
    let a_hi = row_start(origin.x + 8u + lane, p.m - 1u, kq);
    let b0 = row_start(origin.y, p.n - 1u, kq);
    let b1 = row_start(origin.y + 1u, p.n - 1u, kq);
    let b2 = row_start(origin.y + 2u, p.n - 1u, kq);
    let b3 = row_start(origin.y + 3u, p.n - 1u, kq);
    var acc: Acc;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        let lo = a[a_lo + q];
        let hi = a[a_hi + q];
        // B is read along k too, so its piece comes transposed.
        let cols = transpose(mat4x4<f32>(b[b0 + q], b[b1 + q], b[b2 + q], b[b3 + q]));
        acc.r0 += cols * rows_lo(lo);
        acc.r1 += cols * rows_hi(lo);
        acc.r2 += cols * rows_lo(hi);
        acc.r3 += cols * rows_hi(hi);
    }
    store_block(origin, acc);
}

@compute @workgroup_size(64)
fn matmul_atb_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, sg, lane);
    if origin.z == 0u {
        return;
    }
    let mq = p.m / 4u;
    let nq = p.n / 4u;
    // A is (k, m): lane g loads the four rows of chunk g / 4 (and 2 + g / 4) at k + g % 4.
    let my_k = lane % 4u;
    let chunk_lo = min(origin.x / 4u + lane / 4u, mq - 1u);
    let chunk_hi = min(origin.x / 4u + 2u + lane / 4u, mq - 1u);
    let b_col = min(origin.y / 4u, nq - 1u);
    var acc: Acc;
    // The rows' sums of A over k (the bias gradient), in the same four pieces.
    var sums: mat4x4<f32>;
    // k here is the batch, often not a multiple of 4: the last quad reads clamped rows and
    // zeroes them.
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += 4u) {
        let k_mine = k0 + my_k;
        let live_mine = f32(k_mine < p.k_end);
        let k_row = min(k_mine, p.k_end - 1u) * mq;
        let lo = a[k_row + chunk_lo] * live_mine;
        let hi = a[k_row + chunk_hi] * live_mine;
        let ks = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k_end - 1u)) * nq + b_col;
        let live = vec4<f32>(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k_end));
        let cols = mat4x4<f32>(b[ks.x] * live.x, b[ks.y] * live.y, b[ks.z] * live.z, b[ks.w] * live.w);
        // rows_lo(lo) has, in column j, rows chunk 0 at k + j: the transpose of what
        // accumulating Cᵀ = cols · rowsᵀ needs.
        let piece0 = rows_lo(lo);
        let piece1 = rows_hi(lo);
        let piece2 = rows_lo(hi);
        let piece3 = rows_hi(hi);
        acc.r0 += cols * transpose(piece0);
        acc.r1 += cols * transpose(piece1);
        acc.r2 += cols * transpose(piece2);
        acc.r3 += cols * transpose(piece3);
        sums[0] += piece0[0] + piece0[1] + piece0[2] + piece0[3];
        sums[1] += piece1[0] + piece1[1] + piece1[2] + piece1[3];
        sums[2] += piece2[0] + piece2[1] + piece2[2] + piece2[3];
        sums[3] += piece3[0] + piece3[1] + piece3[2] + piece3[3];
    }
    store_block(origin, acc);
    // The invocation at the left edge of C stores them.
    if origin.y == 0u {
        for (var r = 0u; r < 16u; r++) {
            store_row_sum(origin.x + r, sums[r / 4u][r % 4u]);
        }
    }
}
