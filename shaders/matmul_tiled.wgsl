// The three matrix products of matmul.wgsl, tiled through workgroup memory: the classic GPU
// kernel (as in gpu.cpp and wgpu-mm), for discrete and integrated GPUs, where workgroup
// memory is an on-chip scratchpad and one load from it feeds the whole workgroup. (On
// llvmpipe it is the slowest layout there is: every workgroup-memory load is a scalar loop
// over the SIMD lanes, plus barriers; matmul.wgsl and matmul_subgroup.wgsl serve it.)
// Same bindings, Params and epilogue (matmul_common.wgsl); the vec4 alignment of matmul.wgsl.
//
// A workgroup of WG_X × WG_Y invocations computes a (8·WG_Y) × (8·WG_X) tile of C, each
// invocation an 8×8 block in registers. For each step of TILE_K along k, the workgroup
// copies the A and B pieces it needs into workgroup memory with vec4 loads, both laid out as
// (k, 4-wide quads), so the inner loop reads two vec4s of each side per k for 64
// multiply-adds. The tile sizes are override constants,
// set by the host per pipeline (MatmulKernel::Tiled). Tiles are numbered row-major and
// folded into (x, y) workgroups, as in matmul.wgsl.

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override TILE_K: u32 = 16u;

// Rows (and columns) of C per invocation.
const ROWS_PER: u32 = 8u;

// tile_a[kk · (2·WG_Y) + r]: rows 4r .. 4r + 3 of the tile at k0 + kk; tile_b likewise with
// columns.
var<workgroup> tile_a: array<vec4<f32>, TILE_K * 2u * WG_Y>;
var<workgroup> tile_b: array<vec4<f32>, TILE_K * 2u * WG_X>;

struct Tile {
    row0: u32,
    col0: u32,
    live: bool,
}

fn tile_at(wg: vec3<u32>, nwg: vec3<u32>) -> Tile {
    let tile = wg.x + wg.y * nwg.x;
    return Tile((tile / p.tiles_n) * ROWS_PER * WG_Y, (tile % p.tiles_n) * ROWS_PER * WG_X, tile < p.tiles);
}

// A's piece when A is (m, k), read along k: one vec4 is four k of one row, so an invocation
// loads four rows' vec4s and stores the transposed 4×4 as four whole vec4s of tile_a (every
// vec4 of workgroup memory is written by one invocation). Rows past m are clamped (their
// results are never stored), k past the segment's end is zero.
fn load_a_along_k(t: Tile, k0: u32, lid: u32) {
    let kq = p.k / 4u;
    let quads = TILE_K / 4u;
    let row_quads = 2u * WG_Y;
    for (var i = lid; i < row_quads * quads; i += WG_X * WG_Y) {
        let q = k0 / 4u + i % quads;
        let at = 4u * (i % quads) * row_quads + i / quads;
        let piece = transpose(gather_a(clamped4(t.row0 + 4u * (i / quads), p.m - 1u) * kq, min(q, kq - 1u)));
        let live = q < p.k_end / 4u;
        tile_a[at] = select(vec4<f32>(), piece[0], live);
        tile_a[at + row_quads] = select(vec4<f32>(), piece[1], live);
        tile_a[at + 2u * row_quads] = select(vec4<f32>(), piece[2], live);
        tile_a[at + 3u * row_quads] = select(vec4<f32>(), piece[3], live);
    }
}

// A's piece when A is (k, m) (the Aᵀ·B form), read along m: one vec4 is one quad of rows.
fn load_a_along_m(t: Tile, k0: u32, lid: u32) {
    let mq = p.m / 4u;
    let quads = 2u * WG_Y;
    for (var i = lid; i < TILE_K * quads; i += WG_X * WG_Y) {
        let kk = k0 + i / quads;
        let quad = min(t.row0 / 4u + i % quads, mq - 1u);
        tile_a[i] = select(vec4<f32>(), a[min(kk, p.k_end - 1u) * mq + quad], kk < p.k_end);
    }
}

// B's piece when B is (k, n), read along n: one vec4 is one quad of columns.
fn load_b_along_n(t: Tile, k0: u32, lid: u32) {
    let nq = p.n / 4u;
    let quads = 2u * WG_X;
    for (var i = lid; i < TILE_K * quads; i += WG_X * WG_Y) {
        let kk = k0 + i / quads;
        let quad = min(t.col0 / 4u + i % quads, nq - 1u);
        tile_b[i] = select(vec4<f32>(), b[min(kk, p.k_end - 1u) * nq + quad], kk < p.k_end);
    }
}

// B's piece when B is (n, k) (the A·Bᵀ form), read along k, transposed as in load_a_along_k.
fn load_b_along_k(t: Tile, k0: u32, lid: u32) {
    let kq = p.k / 4u;
    let quads = TILE_K / 4u;
    let col_quads = 2u * WG_X;
    for (var i = lid; i < col_quads * quads; i += WG_X * WG_Y) {
        let q = k0 / 4u + i % quads;
        let at = 4u * (i % quads) * col_quads + i / quads;
        let piece = transpose(gather_b(clamped4(t.col0 + 4u * (i / quads), p.n - 1u) * kq, min(q, kq - 1u)));
        let live = q < p.k_end / 4u;
        tile_b[at] = select(vec4<f32>(), piece[0], live);
        tile_b[at + col_quads] = select(vec4<f32>(), piece[1], live);
        tile_b[at + 2u * col_quads] = select(vec4<f32>(), piece[2], live);
        tile_b[at + 3u * col_quads] = select(vec4<f32>(), piece[3], live);
    }
}

// acc += this invocation's share of the pieces in workgroup memory; sums += its rows of A.
fn multiply_tile(acc: ptr<function, Acc>, sums: ptr<function, array<vec4<f32>, 2>>, local: vec3<u32>) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let a_at = kk * 2u * WG_Y + 2u * local.y;
        let b_at = kk * 2u * WG_X + 2u * local.x;
        let a0 = tile_a[a_at];
        let a1 = tile_a[a_at + 1u];
        let b0 = tile_b[b_at];
        let b1 = tile_b[b_at + 1u];
        (*acc).c00 += outer(b0, a0);
        (*acc).c01 += outer(b1, a0);
        (*acc).c10 += outer(b0, a1);
        (*acc).c11 += outer(b1, a1);
        if p.row_sums != 0u {
            (*sums)[0] += a0;
            (*sums)[1] += a1;
        }
    }
}

// The products differ only in how the pieces are loaded (FORM: 0 A·B, 1 A·Bᵀ, 2 Aᵀ·B).
fn tiled(form: u32, wg: vec3<u32>, nwg: vec3<u32>, local: vec3<u32>, lid: u32) {
    let t = tile_at(wg, nwg);
    // The whole workgroup returns or none of it: the barriers below need all of it.
    if !t.live {
        return;
    }
    var acc: Acc;
    var sums: array<vec4<f32>, 2>;
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += TILE_K) {
        if form == 2u {
            load_a_along_m(t, k0, lid);
        } else {
            load_a_along_k(t, k0, lid);
        }
        if form == 1u {
            load_b_along_k(t, k0, lid);
        } else {
            load_b_along_n(t, k0, lid);
        }
        workgroupBarrier();
        multiply_tile(&acc, &sums, local);
        workgroupBarrier();
    }
    let row0 = t.row0 + ROWS_PER * local.y;
    let col0 = t.col0 + ROWS_PER * local.x;
    store_block(row0, col0, acc);
    if form == 2u {
        store_row_sums(row0, col0, sums[0], sums[1]);
    }
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_ab_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    tiled(0u, wg, nwg, local, lid);
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_abt_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    tiled(1u, wg, nwg, local, lid);
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_atb_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    tiled(2u, wg, nwg, local, lid);
}
