// Element-wise functions several kernels share, prepended by the host to the files that use
// them (WGSL has no includes): activation.wgsl computes each activation as its own op,
// matmul.wgsl and matmul_subgroup.wgsl in their epilogues, fused with the product; dropout.wgsl
// and the epilogues draw the same masks. One definition each, so the fused and the separate
// paths agree to the bit. The CPU reference is src/cpu/activation.rs and src/cpu/dropout.rs.
//
// Activations by their constants (RELU, …), which the host prepends from the one table of
// activations in src/activation.rs (the code an `Activation` has there):
//   ReLU:       max(x, 0)                            derivative from x: [x > 0]
//   LeakyReLU:  x > 0 ? x : s·x   (s: the slope)     from x: x > 0 ? 1 : s
//   sigmoid:    1 / (1 + e^-x)                       from y: y (1 − y)
//   tanh:       tanh(x)                              from y: 1 − y²
//   GELU:       x/2 · (1 + tanh(u)), u = √(2/π)(x + 0.044715x³)
//               from x: ½(1 + t) + ½x(1 − t²)√(2/π)(1 + 3·0.044715x²), t = tanh(u)
//   SiLU:       x · σ(x), σ(x) = 1 / (1 + e^-x)      from x: σ(x) (1 + x (1 − σ(x)))

const GELU_K: f32 = 0.7978845608028654; // √(2/π)
const GELU_A: f32 = 0.044715;

// tanh from e^(-2|u|), which never overflows; some drivers' tanh() returns NaN for large |x|
// because they compute (e^2x − 1) / (e^2x + 1).
fn stable_tanh(u: f32) -> f32 {
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

fn activate(f: u32, x: f32, slope: f32) -> f32 {
    switch f {
        case RELU: { return max(x, 0.0); }
        case LEAKY_RELU: { return select(slope * x, x, x > 0.0); }
        case SIGMOID: { return 1.0 / (1.0 + exp(-x)); }
        case TANH: { return stable_tanh(x); }
        case GELU: { return 0.5 * x * (1.0 + stable_tanh(GELU_K * (x + GELU_A * x * x * x))); }
        case SILU: { return x / (1.0 + exp(-x)); }
        default: { return x; }
    }
}

// dy · f'(·), from what the forward saved: y for sigmoid and tanh, x for the others.
fn derive(f: u32, saved: f32, dy: f32, slope: f32) -> f32 {
    switch f {
        case RELU: { return select(0.0, dy, saved > 0.0); }
        case LEAKY_RELU: { return select(slope * dy, dy, saved > 0.0); }
        case SIGMOID: { return dy * saved * (1.0 - saved); }
        case TANH: { return dy * (1.0 - saved * saved); }
        case GELU: {
            let x = saved;
            let t = stable_tanh(GELU_K * (x + GELU_A * x * x * x));
            // Past |x| = 10, 1 − t² is exactly 0 in f32; clamping x there keeps 0 · x · du
            // from becoming 0 · ∞ for huge inputs, and changes nothing else.
            let xc = clamp(x, -10.0, 10.0);
            let du = GELU_K * (1.0 + 3.0 * GELU_A * xc * xc);
            return dy * (0.5 * (1.0 + t) + 0.5 * xc * (1.0 - t * t) * du);
        }
        case SILU: {
            let s = 1.0 / (1.0 + exp(-saved));
            return dy * (s * (1.0 + saved * (1.0 - s)));
        }
        default: { return dy; }
    }
}

// PCG's output permutation as a hash (Jarzynski and Olano, "Hash Functions for GPU
// Rendering", 2020).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Dropout's mask value for element i of step `step`: 1 / (1 − p) when kept (with probability
// 1 − p), else 0. random(seed, t, i) = pcg(pcg(pcg(i) ^ t) ^ seed), u = (random >> 8) / 2^24,
// kept when u ≥ p.
fn dropout_scale(seed: u32, step: u32, i: u32, p: f32) -> f32 {
    let u = f32(pcg(pcg(pcg(i) ^ step) ^ seed) >> 8u) * (1.0 / 16777216.0);
    return select(0.0, 1.0 / (1.0 - p), u >= p);
}
