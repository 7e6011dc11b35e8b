// Matrix products for dense layers, optionally plus a bias added to every row:
//   matmul_ab:  C[m,n] = A[m,k] · B[k,n]      (forward)
//   matmul_abt: C[m,n] = A[m,k] · B[n,k]ᵀ     (input gradient: dX = dY · W)
//   matmul_atb: C[m,n] = A[k,m]ᵀ · B[k,n]     (weight gradient: dW = Xᵀ · dY)
//   matmul_any: any of the three through element strides, for shapes the vec4 kernels can't take.
//
// Bindings (group 0):
//   0 p:    Params, uniform
//   1 a:    A as vec4s, read-only (buffers are padded to 16 bytes)
//   2 b:    B as vec4s, read-only
//   3 bias: (n), read-only; read only when p.has_bias != 0
//   4 c:    (m, n), read-write
// The vec4 kernels need the dimension each operand is read along to be a multiple of 4:
//   matmul_ab: k and n; matmul_abt: k; matmul_atb: m and n.
//
// Grid: one workgroup of 64 invocations per 64×64 tile of C; tiles are numbered row-major
// (p.tiles_n to a row of tiles, p.tiles in all) and the numbers folded into (x, y) workgroups
// so no dimension exceeds the 65535 limit. Each invocation keeps an 8×8 block of C in
// registers. There is deliberately no workgroup memory: on llvmpipe (lavapipe, GL) every load
// costs a scalar loop over the SIMD lanes and barriers are expensive, so the cost follows the
// number of load instructions; vec4 loads and a large register block (64 FMAs per 16 loads)
// win. See ../shared/notes/lavapipe-matmul.md and BENCHMARKS.md.

struct Params {
    m: u32,
    k: u32,
    n: u32,
    has_bias: u32,
    tiles_n: u32,
    tiles: u32,
    // Element strides for matmul_any: A(i, p) = a[i * a_row + p * a_col], B(p, j) likewise.
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const BLOCK: u32 = 8u;
const TILE: u32 = 64u;

// Top-left corner of this invocation's 8×8 block, or none when its workgroup is past the
// last tile (the folded grid can overshoot).
fn block_origin(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec3<u32> {
    let tile = wg.x + wg.y * nwg.x;
    let row0 = (tile / p.tiles_n) * TILE + (lid / BLOCK) * BLOCK;
    let col0 = (tile % p.tiles_n) * TILE + (lid % BLOCK) * BLOCK;
    return vec3<u32>(row0, col0, u32(tile < p.tiles));
}

// acc[2i + j/4][j%4] holds C(row0 + i, col0 + j).
fn store_block(row0: u32, col0: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var i = 0u; i < BLOCK; i++) {
        let row = row0 + i;
        if row >= p.m {
            return;
        }
        for (var j = 0u; j < BLOCK; j++) {
            let col = col0 + j;
            if col < p.n {
                var v = (*acc)[2u * i + j / 4u][j % 4u];
                if p.has_bias != 0u {
                    v += bias[col];
                }
                c[row * p.n + col] = v;
            }
        }
    }
}

fn scalar_a(i: u32) -> f32 {
    return a[i / 4u][i % 4u];
}

fn scalar_b(i: u32) -> f32 {
    return b[i / 4u][i % 4u];
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
    // Out-of-range rows and columns read clamped (valid) addresses; store_block drops them.
    var a_off: array<u32, 8>;
    var b_off: array<u32, 8>;
    for (var i = 0u; i < BLOCK; i++) {
        a_off[i] = min(origin.x + i, p.m - 1u) * p.a_row;
        b_off[i] = min(origin.y + i, p.n - 1u) * p.b_col;
    }
    var acc: array<vec4<f32>, 16>;
    for (var q = 0u; q < p.k; q++) {
        let bq0 = vec4<f32>(
            scalar_b(q * p.b_row + b_off[0]), scalar_b(q * p.b_row + b_off[1]),
            scalar_b(q * p.b_row + b_off[2]), scalar_b(q * p.b_row + b_off[3]));
        let bq1 = vec4<f32>(
            scalar_b(q * p.b_row + b_off[4]), scalar_b(q * p.b_row + b_off[5]),
            scalar_b(q * p.b_row + b_off[6]), scalar_b(q * p.b_row + b_off[7]));
        for (var i = 0u; i < BLOCK; i++) {
            let av = scalar_a(a_off[i] + q * p.a_col);
            acc[2u * i] = fma(vec4<f32>(av), bq0, acc[2u * i]);
            acc[2u * i + 1u] = fma(vec4<f32>(av), bq1, acc[2u * i + 1u]);
        }
    }
    store_block(origin.x, origin.y, &acc);
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
    var a_row: array<u32, 8>;
    for (var i = 0u; i < BLOCK; i++) {
        a_row[i] = min(origin.x + i, p.m - 1u) * kq;
    }
    let b_col0 = min(origin.y / 4u, nq - 1u);
    let b_col1 = min(origin.y / 4u + 1u, nq - 1u);
    var acc: array<vec4<f32>, 16>;
    for (var q = 0u; q < kq; q++) {
        var av: array<vec4<f32>, 8>;
        for (var i = 0u; i < BLOCK; i++) {
            av[i] = a[a_row[i] + q];
        }
        for (var kk = 0u; kk < 4u; kk++) {
            let b_row = (4u * q + kk) * nq;
            let b0 = b[b_row + b_col0];
            let b1 = b[b_row + b_col1];
            for (var i = 0u; i < BLOCK; i++) {
                let s = vec4<f32>(av[i][kk]);
                acc[2u * i] = fma(s, b0, acc[2u * i]);
                acc[2u * i + 1u] = fma(s, b1, acc[2u * i + 1u]);
            }
        }
    }
    store_block(origin.x, origin.y, &acc);
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
    var a_row: array<u32, 8>;
    var b_row: array<u32, 8>;
    for (var i = 0u; i < BLOCK; i++) {
        a_row[i] = min(origin.x + i, p.m - 1u) * kq;
        b_row[i] = min(origin.y + i, p.n - 1u) * kq;
    }
    var acc: array<vec4<f32>, 16>;
    for (var q = 0u; q < kq; q++) {
        var bv: array<vec4<f32>, 8>;
        for (var j = 0u; j < BLOCK; j++) {
            bv[j] = b[b_row[j] + q];
        }
        for (var i = 0u; i < BLOCK; i++) {
            let av = a[a_row[i] + q];
            acc[2u * i] += vec4<f32>(dot(av, bv[0]), dot(av, bv[1]), dot(av, bv[2]), dot(av, bv[3]));
            acc[2u * i + 1u] += vec4<f32>(dot(av, bv[4]), dot(av, bv[5]), dot(av, bv[6]), dot(av, bv[7]));
        }
    }
    store_block(origin.x, origin.y, &acc);
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
    let a_col0 = min(origin.x / 4u, mq - 1u);
    let a_col1 = min(origin.x / 4u + 1u, mq - 1u);
    let b_col0 = min(origin.y / 4u, nq - 1u);
    let b_col1 = min(origin.y / 4u + 1u, nq - 1u);
    var acc: array<vec4<f32>, 16>;
    for (var q = 0u; q < p.k; q++) {
        let a0 = a[q * mq + a_col0];
        let a1 = a[q * mq + a_col1];
        let b0 = b[q * nq + b_col0];
        let b1 = b[q * nq + b_col1];
        for (var i = 0u; i < 4u; i++) {
            acc[2u * i] = fma(vec4<f32>(a0[i]), b0, acc[2u * i]);
            acc[2u * i + 1u] = fma(vec4<f32>(a0[i]), b1, acc[2u * i + 1u]);
            acc[2u * i + 8u] = fma(vec4<f32>(a1[i]), b0, acc[2u * i + 8u]);
            acc[2u * i + 9u] = fma(vec4<f32>(a1[i]), b1, acc[2u * i + 9u]);
        }
    }
    store_block(origin.x, origin.y, &acc);
}
