// 2-D convolution, PyTorch's Conv2d, over a batch of NCHW images, and its gradients, each as a
// matrix product whose operands are gathered from the images inside the product (implicit
// GEMM, as TF.js's WebGPU backend runs convolutions): no patch matrix is ever written. The
// host prepends matmul_common.wgsl, so C's values pass through the same epilogue as a dense
// layer's (bias, activation, dropout; the bias gradient as row sums), and elementwise.wgsl.
// The CPU reference is src/cpu/conv.rs; shapes (n the batch, (oh, ow) the output size):
//   x, dx: (n, ci, h, w)    w, dw: (co, ci, kh, kw)    y, dy: (n, co, oh, ow)    b, db: (co)
// An output (oy, ox) sees the input at (oy·sh + i − ph, ox·sw + j − pw) for each kernel offset
// (i, j); positions outside the image are the zero padding.
//   conv2d_forward:     C = y (LAYOUT 1): m = co, n = batch · oh · ow, k = ci · kh · kw;
//                       A = w, B[(c, i, j), (s, oy, ox)] = the pixel that offset reads
//   conv2d_input_grad:  C = dx (LAYOUT 1): m = ci, n = batch · h · w, k = co · kh · kw;
//                       A[c, (o, i, j)] = w[o, c, i, j], B[(o, i, j), (s, iy, ix)] = dy at the
//                       output whose window reaches (iy, ix) through (i, j), or 0 (each value
//                       gathered by one invocation: WGSL has no float atomics)
//   conv2d_weight_grad: C = dw: m = co, n = ci · kh · kw, the sum over the samples
//                       [k_begin, k_end) and their output positions; A[o, (s, oy, ox)] = dy,
//                       B[(s, oy, ox), (c, i, j)] = the pixel; row sums of A: the bias
//                       gradient (one workgroup per 8×8 block of C: see the kernel)
// Every sum runs in a fixed order, so the same input gives the same bits. The loops walk
// (c, i, j) or (s, oy, ox) as nested counters rather than dividing a flat k. (A comparison
// beside `&` is parenthesized: WGSL takes only unary operands there, as Tint enforces.)
//
// Bindings: matmul_common.wgsl's (a, b, bias, c, extra, mask, aux).
// Grid: one workgroup of 64 invocations per tile of C, each invocation an 8×8 block, the
// tile ROWS blocks high and 64 / ROWS wide: C has as few rows as a layer has channels, so
// the host picks the lowest tile that covers them rather than leave most of a 64×64 tile
// idle. The host keeps every turn of an invocation's loops, outer ones included, within
// llvmpipe's 65535 (`loop_turns` in conv.rs).

override ROWS: u32 = 8u;
// Stride 1 along both axes: every pixel's outputs lie on the grid (no division needed).
override UNIT_STRIDE: bool = false;

// Top-left corner of this invocation's 8×8 block, and whether its workgroup holds a tile.
fn block_origin(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec3<u32> {
    let across = 64u / ROWS;
    let tile = wg.x + wg.y * nwg.x;
    let row0 = (tile / p.tiles_n) * (8u * ROWS) + (lid / across) * 8u;
    let col0 = (tile % p.tiles_n) * (8u * across) + (lid % across) * 8u;
    return vec3<u32>(row0, col0, u32(tile < p.tiles));
}

fn accumulate(acc: ptr<function, Acc>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc).c00 += outer(b0, a0);
    (*acc).c01 += outer(b1, a0);
    (*acc).c10 += outer(b0, a1);
    (*acc).c11 += outer(b1, a1);
}

// Four values of A at these indices.
fn a4(i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(a_at(i.x), a_at(i.y), a_at(i.z), a_at(i.w));
}

// Four pixels of an image (bound as B): each where `inside`, else 0 (the padding).
fn b4(i: vec4<u32>, inside: vec4<bool>) -> vec4<f32> {
    let at = select(vec4<u32>(0u), i, inside);
    return select(vec4<f32>(0.0), vec4<f32>(b_at(at.x), b_at(at.y), b_at(at.z), b_at(at.w)), inside);
}

fn within(v: vec4<i32>, size: u32) -> vec4<bool> {
    return (v >= vec4<i32>(0)) & (v < vec4<i32>(i32(size)));
}

// Four of C's columns as windows of the input: the sample's first pixel, and the window's
// top-left corner (which may lie in the padding).
struct Windows {
    base: vec4<u32>,
    y: vec4<i32>,
    x: vec4<i32>,
}

fn windows(col0: u32) -> Windows {
    let col = clamped4(col0, p.n - 1u);
    let positions = p.oh * p.ow;
    let q = col % positions;
    let oy = vec4<i32>(q / p.ow);
    let ox = vec4<i32>(q % p.ow);
    return Windows(
        (col / positions) * (p.ci * p.h * p.w),
        oy * i32(p.sh) - i32(p.ph),
        ox * i32(p.sw) - i32(p.pw),
    );
}

// The pixels kernel offset (c, i, j) reads in four windows.
fn window_pixels(win: Windows, c: u32, i: u32, j: u32) -> vec4<f32> {
    let iy = win.y + i32(i);
    let ix = win.x + i32(j);
    let inside = within(iy, p.h) & within(ix, p.w);
    let pixel = win.base + c * p.h * p.w + vec4<u32>(max(iy, vec4<i32>(0))) * p.w + vec4<u32>(max(ix, vec4<i32>(0)));
    return b4(pixel, inside);
}

@compute @workgroup_size(64)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let origin = block_origin(wg, nwg, lid);
    if origin.z == 0u {
        return;
    }
    // A's rows are the filters, k = (c, i, j) along each.
    let ra0 = clamped4(origin.x, p.m - 1u) * p.k;
    let ra1 = clamped4(origin.x + 4u, p.m - 1u) * p.k;
    let win0 = windows(origin.y);
    let win1 = windows(origin.y + 4u);
    var acc: Acc;
    var k = 0u;
    for (var c = 0u; c < p.ci; c++) {
        for (var i = 0u; i < p.kh; i++) {
            for (var j = 0u; j < p.kw; j++) {
                accumulate(&acc, a4(ra0 + k), a4(ra1 + k), window_pixels(win0, c, i, j),
                           window_pixels(win1, c, i, j));
                k++;
            }
        }
    }
    store_block(origin.x, origin.y, acc);
}

// Four of C's columns as input pixels (s, iy, ix): the sample's first output gradient, and the
// pixel shifted by the padding (an output (oy, ox) reaches it through (i, j) when
// oy·sh = iy + ph − i).
fn pixels(col0: u32) -> Windows {
    let col = clamped4(col0, p.n - 1u);
    let plane = p.h * p.w;
    let q = col % plane;
    return Windows(
        (col / plane) * (p.co * p.oh * p.ow),
        vec4<i32>(q / p.w) + i32(p.ph),
        vec4<i32>(q % p.w) + i32(p.pw),
    );
}

// The output gradients that reach four pixels through offset (i, j) of filter o, or 0.
fn reaching(px: Windows, o: u32, i: u32, j: u32) -> vec4<f32> {
    let ty = px.y - i32(i);
    let tx = px.x - i32(j);
    var oy = ty;
    var ox = tx;
    var on_grid = (ty >= vec4<i32>(0)) & (tx >= vec4<i32>(0));
    if !UNIT_STRIDE {
        let sh = vec4<i32>(i32(p.sh));
        let sw = vec4<i32>(i32(p.sw));
        oy = ty / sh;
        ox = tx / sw;
        on_grid = on_grid & (ty % sh == vec4<i32>(0)) & (tx % sw == vec4<i32>(0));
    }
    let inside = on_grid & (oy < vec4<i32>(i32(p.oh))) & (ox < vec4<i32>(i32(p.ow)));
    let at = px.base + (o * p.oh + vec4<u32>(max(oy, vec4<i32>(0)))) * p.ow + vec4<u32>(max(ox, vec4<i32>(0)));
    return b4(at, inside);
}

@compute @workgroup_size(64)
fn conv2d_input_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let origin = block_origin(wg, nwg, lid);
    if origin.z == 0u {
        return;
    }
    let taps = p.kh * p.kw;
    // A[c, (o, i, j)] = w[o, c, i, j]: row c starts at c · kh · kw within each filter.
    let ra0 = clamped4(origin.x, p.m - 1u) * taps;
    let ra1 = clamped4(origin.x + 4u, p.m - 1u) * taps;
    let px0 = pixels(origin.y);
    let px1 = pixels(origin.y + 4u);
    var acc: Acc;
    for (var o = 0u; o < p.co; o++) {
        var tap = o * p.ci * taps;
        for (var i = 0u; i < p.kh; i++) {
            for (var j = 0u; j < p.kw; j++) {
                accumulate(&acc, a4(ra0 + tap), a4(ra1 + tap), reaching(px0, o, i, j), reaching(px1, o, i, j));
                tap++;
            }
        }
    }
    store_block(origin.x, origin.y, acc);
}

// Four of C's columns as kernel offsets (c, i, j): the channel's first pixel, and the offset
// less the padding.
fn offsets(col0: u32) -> Windows {
    let col = clamped4(col0, p.n - 1u);
    let taps = p.kh * p.kw;
    let t = col % taps;
    return Windows(
        (col / taps) * (p.h * p.w),
        vec4<i32>(t / p.kw) - i32(p.ph),
        vec4<i32>(t % p.kw) - i32(p.pw),
    );
}

var<workgroup> partial: array<mat4x4<f32>, 64>;

// The sum of every invocation's `m` in the workgroup, in a fixed order; invocation 0 gets it.
fn workgroup_sum(lid: u32, m: mat4x4<f32>) -> mat4x4<f32> {
    partial[lid] = m;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half /= 2u) {
        if lid < half {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// C is small here (filters × taps) and its sum long (every output position of the batch):
// one workgroup per 8×8 block of C, its 64 invocations each summing every 64th output row
// (s, oy) of the launch's samples, then a tree in workgroup memory adding their blocks.
@compute @workgroup_size(64)
fn conv2d_weight_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let tile = wg.x + wg.y * nwg.x;
    if tile >= p.tiles {
        return; // the whole workgroup: no barrier is left waiting
    }
    let row0 = (tile / p.tiles_n) * 8u;
    let col0 = (tile % p.tiles_n) * 8u;
    let positions = p.oh * p.ow;
    // A[o, (s, oy, ox)] = dy[s, o, oy, ox]: row o starts at o · positions within each sample.
    let ra0 = clamped4(row0, p.m - 1u) * positions;
    let ra1 = clamped4(row0 + 4u, p.m - 1u) * positions;
    let off0 = offsets(col0);
    let off1 = offsets(col0 + 4u);
    var acc: Acc;
    var sum0 = vec4<f32>();
    var sum1 = vec4<f32>();
    for (var r = p.k_begin * p.oh + lid; r < p.k_end * p.oh; r += 64u) {
        let s = r / p.oh;
        let oy = r % p.oh;
        let dy_row = s * p.co * positions + oy * p.ow;
        let x_base = s * p.ci * p.h * p.w;
        let y = vec4<i32>(i32(oy * p.sh));
        for (var ox = 0u; ox < p.ow; ox++) {
            let a0 = a4(ra0 + dy_row + ox);
            let a1 = a4(ra1 + dy_row + ox);
            let x = vec4<i32>(i32(ox * p.sw));
            let win0 = Windows(off0.base + x_base, off0.y + y, off0.x + x);
            let win1 = Windows(off1.base + x_base, off1.y + y, off1.x + x);
            accumulate(&acc, a0, a1, window_pixels(win0, 0u, 0u, 0u), window_pixels(win1, 0u, 0u, 0u));
            sum0 += a0;
            sum1 += a1;
        }
    }
    let total = Acc(workgroup_sum(lid, acc.c00), workgroup_sum(lid, acc.c01), workgroup_sum(lid, acc.c10),
                    workgroup_sum(lid, acc.c11));
    let sums = workgroup_sum(lid, mat4x4<f32>(sum0, sum1, vec4<f32>(), vec4<f32>()));
    if lid == 0u {
        store_block(row0, col0, total);
        store_row_sums(row0, col0, sums[0], sums[1]);
    }
}
