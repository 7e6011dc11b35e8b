// 2-D convolution, PyTorch's Conv2d, over a batch of NCHW images, and its three gradients.
// The CPU reference is src/cpu/conv.rs; shapes (n the batch, (oh, ow) the output size):
//   x, dx: (n, ci, h, w)    w, dw: (co, ci, kh, kw)    y, dy: (n, co, oh, ow)    b, db: (co)
// An output (oy, ox) sees the input at (oy·sh + i − ph, ox·sw + j − pw) for each kernel offset
// (i, j); positions outside the image are the zero padding.
//   conv2d_forward:     y[s, o, oy, ox] = b[o] + Σ_{c,i,j} w[o, c, i, j] · x[s, c, ·, ·]
//   conv2d_input_grad:  dx[s, c, iy, ix] = Σ dy[s, o, oy, ox] · w[o, c, i, j] over the outputs
//                       whose window covers (iy, ix): gathered per pixel, so no two
//                       invocations write one value (WGSL has no float atomics)
//   conv2d_weight_grad: dw[o, c, i, j] = Σ_{s,oy,ox} dy[s, o, oy, ox] · x[s, c, ·, ·]
//   conv2d_bias_grad:   db[o] = Σ_{s,oy,ox} dy[s, o, oy, ox]
// Every sum runs in a fixed order, so the same input gives the same bits.
//
// Bindings (group 0):
//   0 p:    Params, uniform
//   1 a:    x (forward), dy (the gradients); read-only
//   2 b:    w (forward, input_grad), x (weight_grad); read-only
//   3 bias: (co), read-only; the forward's, when p.has_bias
//   4 out:  y, dx, dw or db; read-write
// Grids: forward and input_grad one invocation per output value, workgroups of 256 folded into
// (x, y); weight_grad and bias_grad one workgroup of 64 per output value, each invocation
// summing a strided slice of the output positions over every sample before a tree combines
// the 64. The host keeps each invocation's loops within llvmpipe's 65535 iterations.

struct Params {
    n: u32,
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
    has_bias: u32,
    // Output values.
    len: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

// The input coordinate output position `o` reads through kernel offset `k`, or -1 outside.
fn input_at(o: u32, k: u32, stride: u32, pad: u32, size: u32) -> i32 {
    let at = i32(o * stride + k) - i32(pad);
    return select(-1, at, at >= 0 && at < i32(size));
}

@compute @workgroup_size(256)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let index = element(wg, nwg, lid);
    if index >= p.len {
        return;
    }
    let ox = index % p.ow;
    let oy = (index / p.ow) % p.oh;
    let o = (index / (p.ow * p.oh)) % p.co;
    let s = index / (p.ow * p.oh * p.co);
    var sum = select(0.0, bias[o], p.has_bias != 0u);
    for (var c = 0u; c < p.ci; c++) {
        for (var i = 0u; i < p.kh; i++) {
            let iy = input_at(oy, i, p.sh, p.ph, p.h);
            if iy < 0 {
                continue;
            }
            for (var j = 0u; j < p.kw; j++) {
                let ix = input_at(ox, j, p.sw, p.pw, p.w);
                if ix < 0 {
                    continue;
                }
                let pixel = ((s * p.ci + c) * p.h + u32(iy)) * p.w + u32(ix);
                sum += b[((o * p.ci + c) * p.kh + i) * p.kw + j] * a[pixel];
            }
        }
    }
    out[index] = sum;
}

// The output coordinate whose window reaches input coordinate `at` through kernel offset `k`,
// or -1 when none does (off the stride's grid, or past the output).
fn output_at(at: u32, k: u32, stride: u32, pad: u32, size: u32) -> i32 {
    let shifted = i32(at + pad) - i32(k);
    let o = shifted / i32(stride);
    return select(-1, o, shifted >= 0 && shifted % i32(stride) == 0 && o < i32(size));
}

@compute @workgroup_size(256)
fn conv2d_input_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let index = element(wg, nwg, lid);
    if index >= p.len {
        return;
    }
    let ix = index % p.w;
    let iy = (index / p.w) % p.h;
    let c = (index / (p.w * p.h)) % p.ci;
    let s = index / (p.w * p.h * p.ci);
    // The window offsets outside, the channels inside: each offset's output position (two
    // integer divisions, slow on a CPU's SIMD lanes) is found once, not once per channel.
    var sum = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let oy = output_at(iy, i, p.sh, p.ph, p.oh);
        if oy < 0 {
            continue;
        }
        for (var j = 0u; j < p.kw; j++) {
            let ox = output_at(ix, j, p.sw, p.pw, p.ow);
            if ox < 0 {
                continue;
            }
            let plane = p.oh * p.ow;
            let first_dy = s * p.co * plane + u32(oy) * p.ow + u32(ox);
            let first_w = (c * p.kh + i) * p.kw + j;
            for (var o = 0u; o < p.co; o++) {
                sum += a[first_dy + o * plane] * b[first_w + o * p.ci * p.kh * p.kw];
            }
        }
    }
    out[index] = sum;
}

var<workgroup> partial: array<f32, 64>;

// Adds the 64 invocations' partial sums in a fixed tree; invocation 0 stores the total.
fn store_total(index: u32, lid: u32, acc: f32) {
    partial[lid] = acc;
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
    }
    if lid == 0u {
        out[index] = partial[0];
    }
}

// One workgroup per weight: index comes from the workgroup id alone, so the early return is
// taken by the whole workgroup or none of it, and every invocation left reaches the barriers.
@compute @workgroup_size(64)
fn conv2d_weight_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let index = wg.x + wg.y * nwg.x;
    if index >= p.len {
        return;
    }
    let j = index % p.kw;
    let i = (index / p.kw) % p.kh;
    let c = (index / (p.kw * p.kh)) % p.ci;
    let o = index / (p.kw * p.kh * p.ci);
    // The 64 invocations stride over the output plane's positions, the samples outside.
    var acc = 0.0;
    let plane = p.oh * p.ow;
    for (var q = lid; q < plane; q += 64u) {
        let ox = q % p.ow;
        let oy = q / p.ow;
        let iy = input_at(oy, i, p.sh, p.ph, p.h);
        let ix = input_at(ox, j, p.sw, p.pw, p.w);
        if iy >= 0 && ix >= 0 {
            let pixel = (c * p.h + u32(iy)) * p.w + u32(ix);
            for (var s = 0u; s < p.n; s++) {
                acc += a[(s * p.co + o) * plane + q] * b[s * p.ci * p.h * p.w + pixel];
            }
        }
    }
    store_total(index, lid, acc);
}

@compute @workgroup_size(64)
fn conv2d_bias_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let o = wg.x + wg.y * nwg.x;
    if o >= p.len {
        return;
    }
    let plane = p.oh * p.ow;
    var acc = 0.0;
    for (var q = lid; q < p.n * plane; q += 64u) {
        acc += a[((q / plane) * p.co + o) * plane + q % plane];
    }
    store_total(o, lid, acc);
}
