// What every matmul kernel shares (matmul.wgsl, matmul_subgroup.wgsl, matmul_tiled.wgsl,
// and conv.wgsl's implicit products; the host prepends this and elementwise.wgsl): the parameters, the bindings, and the epilogue each value of C
// passes through on its way out. The epilogue is what makes a dense layer one launch: the
// bias, the activation and dropout in the forward; in the backward, the derivative of the
// layer below applied to dX = dZ·W as it is stored, and the bias gradient summed beside
// dW = dZᵀ·X.
//
// For C's value v at (row, col) after the sum over k, in this order:
//   v += bias[col]                      p.has_bias
//   v += c[i]                           p.accumulate (a later segment of a long k)
//   forward, ACT = f:    extra[i] = v (p.keep = 1) or f(v) (p.keep = 2);  v = f(v)
//   forward, DROPOUT:    mask[i] = dropout_scale(seed, step, i, drop_p);  v *= mask[i]
//   backward, p.has_mask:  v *= mask[i]
//   backward, DERIVE = f:  v = f'(aux[i]) · v   (aux: f's saved input or output)
//   c[i] = v
// and, with p.row_sums, extra[row] = Σ_k A(row, k) (+ its old value with p.accumulate): the
// bias gradient Σ_r dZ[r, row] when A = dZᵀ. i = row · n + col; f is a code of
// elementwise.wgsl. The host sets the element-wise stages only on the last segment of a long
// k, and the bias only on the first.
//
// ACT, DROPOUT and DERIVE are override constants: each product's pipeline is specialized to
// its stages, so the compiler sees one activation (or none) in each of the 64 stores a kernel
// unrolls. With the stages chosen at run time instead, every store held all five activations,
// their derivatives and the dropout hash, and llvmpipe took 14 s to compile a training step's
// kernels; a run-time loop around one store compiled fast but ran a fifth slower.
//
// Bindings (group 0):
//   0 p:     Params, uniform
//   1 a:     A as vec4s, read-only (buffers are padded to 16 bytes)
//   2 b:     B as vec4s, read-only
//   3 bias:  (n), read-only
//   4 c:     (m, n) as vec4s (each row-major, flat), read-write
//   5 extra: read-write: (m, n) what a forward keeps for its activation's backward, or (m)
//            the row sums of A
//   6 mask:  (m, n), read-write: dropout's mask, written by a forward, read by a backward
//   7 aux:   read-only: (1) dropout's step counter (u32 bits) in a forward, or (m, n) what
//            the derivative of a backward reads

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
    // This launch sums k in [k_begin, k_end) and adds C's old value when accumulate != 0:
    // the host splits a long k into segments because llvmpipe stops an invocation after
    // 65535 loop iterations in all.
    k_begin: u32,
    k_end: u32,
    accumulate: u32,
    // The epilogue's run-time settings (see above); 0 turns a stage off.
    slope: f32,
    keep: u32,
    drop_p: f32,
    seed: u32,
    has_mask: u32,
    row_sums: u32,
    // Convolutions (conv.wgsl, implicit GEMM; 0 in plain products): the input images'
    // channels and size, the filters' count, kernel, stride and padding, the output size,
    // and with LAYOUT 1 the positions per sample of C's columns.
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
    plane: u32,
}

override ACT: u32 = 0u;
override DROPOUT: u32 = 0u;
override DERIVE: u32 = 0u;
// Where C's value at (row, col) lives: 0 row-major; 1 as NCHW images, when C's rows are
// channels and its columns (sample, position) pairs, p.plane positions per sample (a
// convolution's output or input gradient), with the bias per row.
override LAYOUT: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> extra: array<f32>;
@group(0) @binding(6) var<storage, read_write> mask: array<f32>;
@group(0) @binding(7) var<storage, read> aux: array<f32>;

const KEEP_INPUT: u32 = 1u;
const KEEP_OUTPUT: u32 = 2u;

// The index of C's value at (row, col) in c (see LAYOUT).
fn out_index(row: u32, col: u32) -> u32 {
    if LAYOUT == 0u {
        return row * p.n + col;
    }
    return ((col / p.plane) * p.m + row) * p.plane + col % p.plane;
}

// Stores C's value v at (row, col) through the epilogue; the caller checks row < m, col < n.
fn store(row: u32, col: u32, v: f32) {
    let i = out_index(row, col);
    var y = v;
    if p.has_bias != 0u {
        y += bias[select(col, row, LAYOUT != 0u)];
    }
    if p.accumulate != 0u {
        y += c[i / 4u][i % 4u];
    }
    if ACT != 0u {
        let z = y;
        y = activate(ACT, z, p.slope);
        if p.keep == KEEP_INPUT {
            extra[i] = z;
        } else if p.keep == KEEP_OUTPUT {
            extra[i] = y;
        }
    }
    if DROPOUT != 0u {
        let scale = dropout_scale(p.seed, bitcast<u32>(aux[0]), i, p.drop_p);
        mask[i] = scale;
        y *= scale;
    }
    if p.has_mask != 0u {
        y *= mask[i];
    }
    if DERIVE != 0u {
        y = derive(DERIVE, aux[i], y, p.slope);
    }
    // One component of a vec4: a store of that f32 alone in WGSL's memory model, so the
    // invocations that share a vec4 at the edge of their blocks (n not a multiple of 4) do not
    // race.
    c[i / 4u][i % 4u] = y;
}

// Stores a 4×4 piece of C, piece[r][j] = C[row0 + r, col0 + j], through the epilogue. Its
// loops run to bounds known only at run time, so the compiler keeps them loops and inlines the
// epilogue once per piece rather than once per value: 64 copies of a dropout forward's epilogue
// in each kernel took llvmpipe 8 s to compile a training step's kernels (2 s this way), and
// unrolling only the plain products' stores compiled slower (4.7 s) for no speed measurable
// here.
//
// A plain product's whole piece (no epilogue at all: a weight gradient, say) is four vec4
// stores instead: a 128×784 weight gradient at batch 64 took 0.87 ms on lavapipe through the
// loops, 0.57 ms this way (the same loops with vec4 stores, or these stores one f32 at a time,
// were no faster than the loops).
fn store_piece(row0: u32, col0: u32, piece: mat4x4<f32>) {
    let rows = min(4u, p.m - min(row0, p.m));
    let cols = min(4u, p.n - min(col0, p.n));
    let plain = p.has_bias == 0u && p.accumulate == 0u && p.has_mask == 0u && ACT == 0u && DROPOUT == 0u
        && DERIVE == 0u;
    if plain && LAYOUT == 0u && rows == 4u && cols == 4u && p.n % 4u == 0u {
        let q = (row0 * p.n + col0) / 4u;
        let nq = p.n / 4u;
        c[q] = piece[0];
        c[q + nq] = piece[1];
        c[q + 2u * nq] = piece[2];
        c[q + 3u * nq] = piece[3];
        return;
    }
    for (var r = 0u; r < rows; r++) {
        let v = piece[r];
        for (var j = 0u; j < cols; j++) {
            store(row0 + r, col0 + j, v[j]);
        }
    }
}

// Stores the sum over k of A's row `row` (the caller's share of it: the one invocation that
// holds the row's first column of C calls this).
fn store_row_sum(row: u32, sum: f32) {
    if p.row_sums != 0u && row < p.m {
        extra[row] = sum + select(0.0, extra[row], p.accumulate != 0u);
    }
}

// The 8×8 block of C, transposed in four 4×4 pieces: cRC holds rows 4R.., columns 4C...
struct Acc {
    c00: mat4x4<f32>,
    c01: mat4x4<f32>,
    c10: mat4x4<f32>,
    c11: mat4x4<f32>,
}

// The eight rows' sums of A (Σ over k), stored by the invocations at the left edge of C.
fn store_row_sums(row0: u32, col0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if col0 == 0u {
        for (var r = 0u; r < 4u; r++) {
            store_row_sum(row0 + r, lo[r]);
            store_row_sum(row0 + 4u + r, hi[r]);
        }
    }
}

// `count`, in a form the compiler cannot fold: a loop over a block's pieces to this bound stays
// a loop with one call of store_piece in it, where a constant bound would be unrolled into a
// copy of the epilogue per piece. With eight copies in each 32×4 subgroup kernel, llvmpipe took
// 4.3 s to compile a training step's kernels with no shader cache (2.1 s with four).
fn pieces(count: u32) -> u32 {
    return min(count, max(p.m, count));
}

fn store_block(row0: u32, col0: u32, acc: Acc) {
    for (var r = 0u; r < pieces(4u); r++) {
        var piece: mat4x4<f32>;
        switch r {
            case 0u: { piece = acc.c00; }
            case 1u: { piece = acc.c01; }
            case 2u: { piece = acc.c10; }
            default: { piece = acc.c11; }
        }
        store_piece(row0 + 4u * (r / 2u), col0 + 4u * (r % 2u), piece);
    }
}

fn outer(b: vec4<f32>, a: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(b * a.x, b * a.y, b * a.z, b * a.w);
}

// Row indices row0 + 0..3 (or col indices), clamped so loads stay in bounds; what comes of
// clamped rows and columns is never stored.
fn clamped4(start: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(start) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

// Four vec4s at index + offsets, as the columns of a matrix.
fn gather_a(index: vec4<u32>, offset: u32) -> mat4x4<f32> {
    return mat4x4<f32>(a[index.x + offset], a[index.y + offset], a[index.z + offset], a[index.w + offset]);
}

fn gather_b(index: vec4<u32>, offset: u32) -> mat4x4<f32> {
    return mat4x4<f32>(b[index.x + offset], b[index.y + offset], b[index.z + offset], b[index.w + offset]);
}

// One f32 of A or B (each bound as vec4s).
fn a_at(i: u32) -> f32 {
    return a[i / 4u][i % 4u];
}

fn b_at(i: u32) -> f32 {
    return b[i / 4u][i % 4u];
}
