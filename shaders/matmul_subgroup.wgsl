// The three matrix products of matmul.wgsl with the rows of A shared across a subgroup, for
// adapters whose subgroups have one fixed width SG of 8, 16, 32 or 64 lanes (an override
// constant the host sets from the adapter; llvmpipe's, on 256-bit SIMD, is 8). Same bindings
// and Params as matmul.wgsl; compiled only where wgpu's SUBGROUP feature exists, and used only
// where the vec4 alignment of matmul.wgsl holds. `MatmulKernel::Auto` runs them on llvmpipe;
// on real GPUs they are a forced choice (the tiled kernels are the default there).
//
// Why: on llvmpipe a storage load from a per-lane address costs a scalar loop over the SIMD
// lanes, while a subgroup shuffle from a lane known when the pipeline is made is one register
// move. So each subgroup shares the rows of A it needs: lane g loads rows g, SG + g, … of the
// block's 32 (four loads on 8 lanes, one on 32 or 64), and every lane takes all 32 from the
// others with subgroupShuffle. Each invocation computes 32 rows × 4 columns of C: on 8 lanes,
// 8 vec4 loads per four k (for 512 multiply-adds) where matmul.wgsl's 8×8 blocks load 16 (for
// 256). On a 2-core AVX-512 Xeon this 32×4 block ran 1024³ at 33–44 GFLOP/s against 28–31 for
// the 16×4 block it replaced; workgroups of one subgroup or two, a 64×32 tile instead of 32×32,
// k unrolled twice and explicit fma() measured the same within that spread.
//
// Layout: a workgroup is one subgroup and covers a 32 × (4·SG) tile of C (tiles folded into
// (x, y)); lane g owns the four columns 4g .. 4g + 3 of it.

override SG: u32 = 8u;

const TILE_M: u32 = 32u;

// C's 32×4 block, transposed in eight 4×4 pieces: column i of rR is row 4R + i of the block.
// (Fields, not an array: a private array indexed in a loop runs far slower on llvmpipe.)
struct Acc32 {
    r0: mat4x4<f32>,
    r1: mat4x4<f32>,
    r2: mat4x4<f32>,
    r3: mat4x4<f32>,
    r4: mat4x4<f32>,
    r5: mat4x4<f32>,
    r6: mat4x4<f32>,
    r7: mat4x4<f32>,
}

// (first row, first column) of this invocation's block, and whether its workgroup has a
// tile: the same for all lanes, so a subgroup returns whole and its broadcasts stay uniform.
fn block_origin(wg: vec3<u32>, nwg: vec3<u32>, lane: u32) -> vec3<u32> {
    let tile = wg.x + wg.y * nwg.x;
    let row0 = (tile / p.tiles_n) * TILE_M;
    let col0 = (tile % p.tiles_n) * 4u * SG;
    return vec3<u32>(row0, col0 + 4u * lane, u32(tile < p.tiles));
}

// Row r (0..31) of the block's rows of A along a k-quad (A·B, A·Bᵀ), or column r % 4 of its
// chunk r / 4 (Aᵀ·B): lane r % SG holds it, in its load r / SG (column r / SG of v). r is a constant at
// every call and SG an override, so both fold away when the pipeline is made.
fn lane_row(v: mat4x4<f32>, r: u32) -> vec4<f32> {
    let j = r / SG;
    return subgroupShuffle(select(select(select(v[0], v[1], j == 1u), v[2], j == 2u), v[3], j == 3u), r % SG);
}

// Piece i (0..7): rows 4i .. 4i + 3 of the block (or chunk i), one per column, as (k, row).
fn piece(v: mat4x4<f32>, i: u32) -> mat4x4<f32> {
    return mat4x4<f32>(lane_row(v, 4u * i), lane_row(v, 4u * i + 1u), lane_row(v, 4u * i + 2u),
                       lane_row(v, 4u * i + 3u));
}

// This lane's loads of A at vec4 q past each of `starts` (its rows, or in Aᵀ·B its chunks at
// its k), as columns 0..3: only those the width needs, the rest a copy of the first.
fn load_rows(starts: vec4<u32>, q: u32) -> mat4x4<f32> {
    let v0 = a[starts.x + q];
    var v = mat4x4<f32>(v0, v0, v0, v0);
    if needs_load(1u) {
        v[1] = a[starts.y + q];
    }
    if needs_load(2u) {
        v[2] = a[starts.z + q];
        v[3] = a[starts.w + q];
    }
    return v;
}

// acc += cols · (the 32 rows the lanes loaded, as the columns of v), for A·B and A·Bᵀ.
fn add_rows(acc: ptr<function, Acc32>, cols: mat4x4<f32>, v: mat4x4<f32>) {
    (*acc).r0 += cols * piece(v, 0u);
    (*acc).r1 += cols * piece(v, 1u);
    (*acc).r2 += cols * piece(v, 2u);
    (*acc).r3 += cols * piece(v, 3u);
    (*acc).r4 += cols * piece(v, 4u);
    (*acc).r5 += cols * piece(v, 5u);
    (*acc).r6 += cols * piece(v, 6u);
    (*acc).r7 += cols * piece(v, 7u);
}

// Lane `lane`'s loads j = 1..3 (row or chunk j·SG + lane, modulo the block): only those the
// width needs (three more on 8 lanes, one on 16, none on 32 or 64).
fn needs_load(j: u32) -> bool {
    return j * SG < 32u;
}

// The block's eight pieces, stored through one call site (see store_pieces in
// matmul_common.wgsl): each call of store_piece is a copy of the epilogue to compile.
fn store_block32(origin: vec3<u32>, acc: Acc32) {
    for (var r = 0u; r < pieces(8u); r++) {
        var piece: mat4x4<f32>;
        switch r {
            case 0u: { piece = acc.r0; }
            case 1u: { piece = acc.r1; }
            case 2u: { piece = acc.r2; }
            case 3u: { piece = acc.r3; }
            case 4u: { piece = acc.r4; }
            case 5u: { piece = acc.r5; }
            case 6u: { piece = acc.r6; }
            default: { piece = acc.r7; }
        }
        store_piece(origin.x + 4u * r, origin.y, piece);
    }
}

// This lane's rows of A in the block (its loads 0..3: rows lane, SG + lane, … modulo 32),
// each clamped to the last row of A.
fn lane_rows(origin: vec3<u32>, lane: u32) -> vec4<u32> {
    let rows = origin.x + (vec4<u32>(0u, SG, 2u * SG, 3u * SG) + lane) % 32u;
    return min(rows, vec4<u32>(p.m - 1u));
}

// The vec4 index of row `row` (clamped to the last) of a matrix `quads` vec4s wide.
fn row_start(row: u32, last: u32, quads: u32) -> u32 {
    return min(row, last) * quads;
}

@compute @workgroup_size(SG)
fn matmul_ab_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, lane);
    if origin.z == 0u {
        return;
    }
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let a_rows = lane_rows(origin, lane) * kq;
    let b_col = min(origin.y / 4u, nq - 1u);
    var acc: Acc32;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        let k_row = 4u * q * nq + b_col;
        // cols[j] = B[k + j, my four columns]
        let cols = mat4x4<f32>(b[k_row], b[k_row + nq], b[k_row + 2u * nq], b[k_row + 3u * nq]);
        add_rows(&acc, cols, load_rows(a_rows, q));
    }
    store_block32(origin, acc);
}

@compute @workgroup_size(SG)
fn matmul_abt_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, lane);
    if origin.z == 0u {
        return;
    }
    let kq = p.k / 4u;
    let a_rows = lane_rows(origin, lane) * kq;
    let b0 = row_start(origin.y, p.n - 1u, kq);
    let b1 = row_start(origin.y + 1u, p.n - 1u, kq);
    let b2 = row_start(origin.y + 2u, p.n - 1u, kq);
    let b3 = row_start(origin.y + 3u, p.n - 1u, kq);
    var acc: Acc32;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        // B is read along k too, so its piece comes transposed.
        let cols = transpose(mat4x4<f32>(b[b0 + q], b[b1 + q], b[b2 + q], b[b3 + q]));
        add_rows(&acc, cols, load_rows(a_rows, q));
    }
    store_block32(origin, acc);
}

// Σ over the columns of a piece: its rows' sums over a k-quad.
fn piece_sum(piece: mat4x4<f32>) -> vec4<f32> {
    return piece[0] + piece[1] + piece[2] + piece[3];
}

@compute @workgroup_size(SG)
fn matmul_atb_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(wg, nwg, lane);
    if origin.z == 0u {
        return;
    }
    let mq = p.m / 4u;
    let nq = p.n / 4u;
    // A is (k, m): the block's 32 rows of C are 8 chunks of 4 columns of A. Lane g's load j
    // is, at k + g % 4, chunk (j·SG + g) / 4 (modulo 8).
    let my_k = lane % 4u;
    let chunk = origin.x / 4u;
    let c0 = min(chunk + (lane / 4u) % 8u, mq - 1u);
    let c1 = min(chunk + ((SG + lane) / 4u) % 8u, mq - 1u);
    let c2 = min(chunk + ((2u * SG + lane) / 4u) % 8u, mq - 1u);
    let c3 = min(chunk + ((3u * SG + lane) / 4u) % 8u, mq - 1u);
    let b_col = min(origin.y / 4u, nq - 1u);
    var acc: Acc32;
    // The rows' sums of A over k (the bias gradient), four rows to a vec4.
    var s0: vec4<f32>;
    var s1: vec4<f32>;
    var s2: vec4<f32>;
    var s3: vec4<f32>;
    var s4: vec4<f32>;
    var s5: vec4<f32>;
    var s6: vec4<f32>;
    var s7: vec4<f32>;
    // k here is the batch, often not a multiple of 4: the last quad reads clamped rows and
    // zeroes them.
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += 4u) {
        let k_mine = k0 + my_k;
        let live_mine = f32(k_mine < p.k_end);
        let k_row = min(k_mine, p.k_end - 1u) * mq;
        let v = load_rows(k_row + vec4<u32>(c0, c1, c2, c3), 0u) * live_mine;
        let ks = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k_end - 1u)) * nq + b_col;
        let live = vec4<f32>(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k_end));
        let cols = mat4x4<f32>(b[ks.x] * live.x, b[ks.y] * live.y, b[ks.z] * live.z, b[ks.w] * live.w);
        // piece(…, i) has, in column t, the rows of chunk i at k + t: the transpose of what
        // accumulating Cᵀ = cols · rowsᵀ needs.
        let p0 = piece(v, 0u);
        let p1 = piece(v, 1u);
        let p2 = piece(v, 2u);
        let p3 = piece(v, 3u);
        let p4 = piece(v, 4u);
        let p5 = piece(v, 5u);
        let p6 = piece(v, 6u);
        let p7 = piece(v, 7u);
        acc.r0 += cols * transpose(p0);
        acc.r1 += cols * transpose(p1);
        acc.r2 += cols * transpose(p2);
        acc.r3 += cols * transpose(p3);
        acc.r4 += cols * transpose(p4);
        acc.r5 += cols * transpose(p5);
        acc.r6 += cols * transpose(p6);
        acc.r7 += cols * transpose(p7);
        if p.row_sums != 0u {
            s0 += piece_sum(p0);
            s1 += piece_sum(p1);
            s2 += piece_sum(p2);
            s3 += piece_sum(p3);
            s4 += piece_sum(p4);
            s5 += piece_sum(p5);
            s6 += piece_sum(p6);
            s7 += piece_sum(p7);
        }
    }
    store_block32(origin, acc);
    // The invocation at the left edge of C stores them.
    if origin.y == 0u {
        for (var i = 0u; i < 4u; i++) {
            store_row_sum(origin.x + i, s0[i]);
            store_row_sum(origin.x + 4u + i, s1[i]);
            store_row_sum(origin.x + 8u + i, s2[i]);
            store_row_sum(origin.x + 12u + i, s3[i]);
            store_row_sum(origin.x + 16u + i, s4[i]);
            store_row_sum(origin.x + 20u + i, s5[i]);
            store_row_sum(origin.x + 24u + i, s6[i]);
            store_row_sum(origin.x + 28u + i, s7[i]);
        }
    }
}
