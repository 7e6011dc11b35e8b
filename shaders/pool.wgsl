// 2-D pooling, PyTorch's MaxPool2d and AvgPool2d (no padding), over a batch of NCHW images,
// and their gradients. The CPU reference is src/cpu/pool.rs; shapes (n the batch):
//   x, dx: (n, c, h, w)    y, dy, argmax: (n, c, oh, ow)
// Window (oy, ox) covers rows oy·sh … oy·sh + kh − 1 and columns ox·sw … ox·sw + kw − 1.
//   maxpool2d_forward:  y = the window's largest value (the first in row-major order; a NaN
//                       wins, the last one if several, as in PyTorch), argmax its index in
//                       the sample, as f32 (exact: the host keeps samples below 2^24 values)
//   maxpool2d_backward: dx[s, p] = Σ dy over the windows whose argmax is p
//   avgpool2d_forward:  y = the window's mean
//   avgpool2d_backward: dx[s, p] = Σ dy / (kh · kw) over the windows that cover p
// The backward entry points gather per input value over the windows that cover it, so no two
// invocations write one value (WGSL has no float atomics), in a fixed order.
//
// Bindings (group 0):
//   0 p:      Params, uniform
//   1 a:      x (forward), dy (backward); read-only
//   2 argmax: read-only (maxpool2d_backward)
//   3 out:    y or dx; read-write
//   4 keep:   argmax, read-write (maxpool2d_forward)
// Grid: one invocation per output value, workgroups of 256 folded into (x, y).

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    oh: u32,
    ow: u32,
    // Output values.
    len: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> argmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> keep: array<f32>;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

// WGSL has no isnan (and fast-math compilers may fold x != x): test the bits.
fn is_nan(x: f32) -> bool {
    let bits = bitcast<u32>(x);
    return (bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0u;
}

// Output `index`'s window: (its sample's first value, the window's first value in the sample).
fn window_of(index: u32) -> vec2<u32> {
    let ox = index % p.ow;
    let oy = (index / p.ow) % p.oh;
    let c = (index / (p.ow * p.oh)) % p.c;
    let s = index / (p.ow * p.oh * p.c);
    return vec2(s * p.c * p.h * p.w, (c * p.h + oy * p.sh) * p.w + ox * p.sw);
}

@compute @workgroup_size(256)
fn maxpool2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let index = element(wg, nwg, lid);
    if index >= p.len {
        return;
    }
    let at = window_of(index);
    var best = a[at.x + at.y];
    var winner = at.y;
    for (var i = 0u; i < p.kh; i++) {
        for (var j = 0u; j < p.kw; j++) {
            let q = at.y + i * p.w + j;
            let v = a[at.x + q];
            if v > best || is_nan(v) {
                best = v;
                winner = q;
            }
        }
    }
    out[index] = best;
    keep[index] = f32(winner);
}

@compute @workgroup_size(256)
fn avgpool2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let index = element(wg, nwg, lid);
    if index >= p.len {
        return;
    }
    let at = window_of(index);
    var sum = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        for (var j = 0u; j < p.kw; j++) {
            sum += a[at.x + at.y + i * p.w + j];
        }
    }
    out[index] = sum / f32(p.kh * p.kw);
}

// The windows along one axis that cover input coordinate `at`: [first, last], empty when
// first > last.
fn covering(at: u32, kernel: u32, stride: u32, size: u32) -> vec2<u32> {
    let first = select(0u, (at - kernel + 1u + stride - 1u) / stride, at + 1u > kernel);
    let last = min(at / stride, size - 1u);
    return vec2(first, last);
}

fn backward(index: u32, is_max: bool) -> f32 {
    let ix = index % p.w;
    let iy = (index / p.w) % p.h;
    let c = (index / (p.w * p.h)) % p.c;
    let s = index / (p.w * p.h * p.c);
    let in_sample = index - s * p.c * p.h * p.w;
    let rows = covering(iy, p.kh, p.sh, p.oh);
    let cols = covering(ix, p.kw, p.sw, p.ow);
    var sum = 0.0;
    for (var oy = rows.x; oy <= rows.y; oy++) {
        for (var ox = cols.x; ox <= cols.y; ox++) {
            let o = ((s * p.c + c) * p.oh + oy) * p.ow + ox;
            if is_max {
                sum += select(0.0, a[o], u32(argmax[o]) == in_sample);
            } else {
                sum += a[o];
            }
        }
    }
    return sum;
}

@compute @workgroup_size(256)
fn maxpool2d_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let index = element(wg, nwg, lid);
    if index < p.len {
        out[index] = backward(index, true);
    }
}

@compute @workgroup_size(256)
fn avgpool2d_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let index = element(wg, nwg, lid);
    if index < p.len {
        out[index] = backward(index, false) / f32(p.kh * p.kw);
    }
}
