// Matrix products for dense layers, optionally plus a bias added to every row:
//   matmul_ab:  C[m,n] = A[m,k] · B[k,n]      (forward)
//   matmul_abt: C[m,n] = A[m,k] · B[n,k]ᵀ     (input gradient: dX = dY · Wᵀ)
//   matmul_atb: C[m,n] = A[k,m]ᵀ · B[k,n]     (weight gradient: dW = Xᵀ · dY)
//   matmul_any: any of the three through element strides, for shapes the vec4 kernels can't take.
//
// Parameters, bindings and the epilogue every stored value passes through (bias, activation,
// dropout; a derivative; the bias gradient's row sums): matmul_common.wgsl.
// The vec4 kernels need the dimension each operand is read along to be a multiple of 4:
//   matmul_ab: k and n; matmul_abt: k; matmul_atb: m and n.
//
// Grid: one workgroup of 64 invocations per 64×64 tile of C; tiles are numbered row-major
// (p.tiles_n to a row of tiles, p.tiles in all) and the numbers folded into (x, y) workgroups
// so no dimension exceeds the 65535 limit.
//
// Each invocation keeps an 8×8 block of C in registers as four mat4x4 accumulators holding
// the block transposed (column i of a matrix is part of row i of C), so each step over four
// k is four mat4x4 products with constant indices; the same block in a local array indexed
// in loops ran 1.5x slower on llvmpipe. There is no workgroup memory: on llvmpipe (lavapipe,
// GL) a load from a per-lane address costs a scalar loop over the SIMD lanes whether it
// reads a storage buffer or workgroup memory, and barriers are expensive, so the cost follows
// the number of load instructions: vec4 loads and a large register block (64 multiply-adds
// per 16 vec4 loads) win. matmul_subgroup.wgsl goes further where subgroups exist;
// matmul_tiled.wgsl is the workgroup-memory kernel for real GPUs.

const TILE: u32 = 64u;

// acc += the product of one k-quad: cols0/cols1 are the B side (columns 0–3, 4–7 of the
// block) and rows0/rows1 the A side (rows 0–3, 4–7), both as (k, ·)ᵀ-shaped 4×4 pieces.
fn accumulate(acc: ptr<function, Acc>, cols0: mat4x4<f32>, cols1: mat4x4<f32>,
              rows0: mat4x4<f32>, rows1: mat4x4<f32>) {
    (*acc).c00 += cols0 * rows0;
    (*acc).c01 += cols1 * rows0;
    (*acc).c10 += cols0 * rows1;
    (*acc).c11 += cols1 * rows1;
}

// Top-left corner of this invocation's 8×8 block, and whether its workgroup holds a tile
// at all (the folded grid can overshoot).
fn block_origin(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec3<u32> {
    let tile = wg.x + wg.y * nwg.x;
    let row0 = (tile / p.tiles_n) * TILE + (lid / 8u) * 8u;
    let col0 = (tile % p.tiles_n) * TILE + (lid % 8u) * 8u;
    return vec3<u32>(row0, col0, u32(tile < p.tiles));
}

@compute @workgroup_size(64)
fn matmul_any(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let origin = block_origin(wg, nwg, lid);
    if origin.z == 0u {
        return;
    }
    let ra0 = clamped4(origin.x, p.m - 1u) * p.a_row;
    let ra1 = clamped4(origin.x + 4u, p.m - 1u) * p.a_row;
    let cb0 = clamped4(origin.y, p.n - 1u) * p.b_col;
    let cb1 = clamped4(origin.y + 4u, p.n - 1u) * p.b_col;
    var acc: Acc;
    var sum0 = vec4<f32>();
    var sum1 = vec4<f32>();
    for (var q = p.k_begin; q < p.k_end; q++) {
        let qa = q * p.a_col;
        let qb = q * p.b_row;
        let a0 = vec4<f32>(a_at(ra0.x + qa), a_at(ra0.y + qa), a_at(ra0.z + qa), a_at(ra0.w + qa));
        let a1 = vec4<f32>(a_at(ra1.x + qa), a_at(ra1.y + qa), a_at(ra1.z + qa), a_at(ra1.w + qa));
        let b0 = vec4<f32>(b_at(cb0.x + qb), b_at(cb0.y + qb), b_at(cb0.z + qb), b_at(cb0.w + qb));
        let b1 = vec4<f32>(b_at(cb1.x + qb), b_at(cb1.y + qb), b_at(cb1.z + qb), b_at(cb1.w + qb));
        acc.c00 += outer(b0, a0);
        acc.c01 += outer(b1, a0);
        acc.c10 += outer(b0, a1);
        acc.c11 += outer(b1, a1);
        sum0 += a0;
        sum1 += a1;
    }
    store_block(origin.x, origin.y, acc);
    store_row_sums(origin.x, origin.y, sum0, sum1);
}

@compute @workgroup_size(64)
fn matmul_ab(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let origin = block_origin(wg, nwg, lid);
    if origin.z == 0u {
        return;
    }
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    // vec4 index of each A row's start, and of each B row's k-quad.
    let ra0 = clamped4(origin.x, p.m - 1u) * kq;
    let ra1 = clamped4(origin.x + 4u, p.m - 1u) * kq;
    let b_quad = vec4<u32>(0u, 1u, 2u, 3u) * nq;
    let cb0 = b_quad + min(origin.y / 4u, nq - 1u);
    let cb1 = b_quad + min(origin.y / 4u + 1u, nq - 1u);
    var acc: Acc;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        // rowsR[i] = A[row i, k-quad]; colsC[j] = B[k + j, column quad C]
        let rows0 = gather_a(ra0, q);
        let rows1 = gather_a(ra1, q);
        let cols0 = gather_b(cb0, 4u * q * nq);
        let cols1 = gather_b(cb1, 4u * q * nq);
        accumulate(&acc, cols0, cols1, rows0, rows1);
    }
    store_block(origin.x, origin.y, acc);
}

@compute @workgroup_size(64)
fn matmul_abt(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let origin = block_origin(wg, nwg, lid);
    if origin.z == 0u {
        return;
    }
    let kq = p.k / 4u;
    let ra0 = clamped4(origin.x, p.m - 1u) * kq;
    let ra1 = clamped4(origin.x + 4u, p.m - 1u) * kq;
    let rb0 = clamped4(origin.y, p.n - 1u) * kq;
    let rb1 = clamped4(origin.y + 4u, p.n - 1u) * kq;
    var acc: Acc;
    for (var q = p.k_begin / 4u; q < p.k_end / 4u; q++) {
        // Both operands are read along k, so B's pieces come transposed.
        let rows0 = gather_a(ra0, q);
        let rows1 = gather_a(ra1, q);
        let cols0 = transpose(gather_b(rb0, q));
        let cols1 = transpose(gather_b(rb1, q));
        accumulate(&acc, cols0, cols1, rows0, rows1);
    }
    store_block(origin.x, origin.y, acc);
}

@compute @workgroup_size(64)
fn matmul_atb(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let origin = block_origin(wg, nwg, lid);
    if origin.z == 0u {
        return;
    }
    let mq = p.m / 4u;
    let nq = p.n / 4u;
    let ca0 = min(origin.x / 4u, mq - 1u);
    let ca1 = min(origin.x / 4u + 1u, mq - 1u);
    let cb0 = min(origin.y / 4u, nq - 1u);
    let cb1 = min(origin.y / 4u + 1u, nq - 1u);
    var acc: Acc;
    var sum0 = vec4<f32>();
    var sum1 = vec4<f32>();
    // k here is the batch, often not a multiple of 4: the last quad reads clamped rows and
    // zeroes them.
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += 4u) {
        let ks = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k_end - 1u));
        let live = vec4<f32>(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k_end));
        let a_rows = ks * mq;
        let b_rows = ks * nq;
        // Column j of pieceR: rows 4R.. of the block at k0 + j (zero past the end).
        let piece0 = mat4x4<f32>(a[a_rows.x + ca0] * live.x, a[a_rows.y + ca0] * live.y,
                                 a[a_rows.z + ca0] * live.z, a[a_rows.w + ca0] * live.w);
        let piece1 = mat4x4<f32>(a[a_rows.x + ca1] * live.x, a[a_rows.y + ca1] * live.y,
                                 a[a_rows.z + ca1] * live.z, a[a_rows.w + ca1] * live.w);
        sum0 += piece0[0] + piece0[1] + piece0[2] + piece0[3];
        sum1 += piece1[0] + piece1[1] + piece1[2] + piece1[3];
        let rows0 = transpose(piece0);
        let rows1 = transpose(piece1);
        let cols0 = gather_b(b_rows, cb0);
        let cols1 = gather_b(b_rows, cb1);
        accumulate(&acc, cols0, cols1, rows0, rows1);
    }
    store_block(origin.x, origin.y, acc);
    store_row_sums(origin.x, origin.y, sum0, sum1);
}
