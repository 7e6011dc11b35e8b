// What every matmul kernel shares (matmul.wgsl and matmul_subgroup.wgsl; the host prepends
// this and elementwise.wgsl): the parameters, the bindings, and the epilogue each value of C
// passes through on its way out. The epilogue is what makes a dense layer one launch: the
// bias, the activation and dropout in the forward; in the backward, the derivative of the
// layer below applied to dX = dZ·W as it is stored, and the bias gradient summed beside
// dW = dZᵀ·X.
//
// For C's value v at (row, col) after the sum over k, in this order:
//   v += bias[col]                      p.has_bias
//   v += c[i]                           p.accumulate (a later segment of a long k)
//   forward, p.act = f:  extra[i] = v (p.keep = 1) or f(v) (p.keep = 2);  v = f(v)
//   forward, p.dropout:  mask[i] = dropout_scale(seed, step, i, drop_p);  v *= mask[i]
//   backward, p.has_mask:  v *= mask[i]
//   backward, p.derive = f:  v = f'(aux[i]) · v   (aux: f's saved input or output)
//   c[i] = v
// and, with p.row_sums, extra[row] = Σ_k A(row, k) (+ its old value with p.accumulate): the
// bias gradient Σ_r dZ[r, row] when A = dZᵀ. i = row · n + col; f is a code of
// elementwise.wgsl. The host sets the activation and dropout stages only on the last segment
// of a long k, and the bias only on the first.
//
// Bindings (group 0):
//   0 p:     Params, uniform
//   1 a:     A as vec4s, read-only (buffers are padded to 16 bytes)
//   2 b:     B as vec4s, read-only
//   3 bias:  (n), read-only
//   4 c:     (m, n), read-write
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
    // The epilogue (see above); 0 turns a stage off.
    act: u32,
    slope: f32,
    keep: u32,
    dropout: u32,
    drop_p: f32,
    seed: u32,
    has_mask: u32,
    derive: u32,
    row_sums: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> extra: array<f32>;
@group(0) @binding(6) var<storage, read_write> mask: array<f32>;
@group(0) @binding(7) var<storage, read> aux: array<f32>;

const TILE: u32 = 64u;
const KEEP_INPUT: u32 = 1u;
const KEEP_OUTPUT: u32 = 2u;

// Whether any element-wise stage runs: without one, the kernels store with `store_plain`,
// unrolled (an epilogue inlined at every store took llvmpipe seconds to compile, so stores
// that need it go through one call of `store` in a loop).
fn has_stages() -> bool {
    return (p.act | p.dropout | p.has_mask | p.derive) != 0u;
}

// C's value v at (row, col) plus the bias and the earlier segments' sum.
fn store_plain(row: u32, col: u32, v: f32) {
    let i = row * p.n + col;
    var y = v;
    if p.has_bias != 0u {
        y += bias[col];
    }
    if p.accumulate != 0u {
        y += c[i];
    }
    c[i] = y;
}

// Stores C's value v at (row, col) through the epilogue; the caller checks row < m, col < n.
fn store(row: u32, col: u32, v: f32) {
    let i = row * p.n + col;
    var y = v;
    if p.has_bias != 0u {
        y += bias[col];
    }
    if p.accumulate != 0u {
        y += c[i];
    }
    if p.act != 0u {
        let z = y;
        y = activate(p.act, z, p.slope);
        if p.keep == KEEP_INPUT {
            extra[i] = z;
        } else if p.keep == KEEP_OUTPUT {
            extra[i] = y;
        }
    }
    if p.dropout != 0u {
        let scale = dropout_scale(p.seed, bitcast<u32>(aux[0]), i, p.drop_p);
        mask[i] = scale;
        y *= scale;
    }
    if p.has_mask != 0u {
        y *= mask[i];
    }
    if p.derive != 0u {
        y = derive(p.derive, aux[i], y, p.slope);
    }
    c[i] = y;
}

// Stores the sum over k of A's row `row` (the caller's share of it: the one invocation that
// holds the row's first column of C calls this).
fn store_row_sum(row: u32, sum: f32) {
    if p.row_sums != 0u && row < p.m {
        extra[row] = sum + select(0.0, extra[row], p.accumulate != 0u);
    }
}
