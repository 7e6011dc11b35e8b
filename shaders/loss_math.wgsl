// The element-wise losses' arithmetic on one value, shared by loss.wgsl (the loss as its own
// launches) and mlp.wgsl (a fused step's loss), prepended by the host after the losses'
// constants (MSE, …, from src/loss.rs): one definition, so both paths agree to the bit. The
// formulas are at the top of loss.wgsl; the CPU reference is src/cpu/loss.rs.

// Keeps ln(y) and 1/(y (1 − y)) finite; the same constant as the CPU reference.
const EPS: f32 = 1e-7;
// A label past the classes gives a NaN loss, which the loss watch halts on. WGSL has no NaN
// constant: Tint (Chromium's compiler) refuses `bitcast<f32>(0x7fc00000u)` as a constant
// expression, so the bits are read from a variable, a run-time value.
var<private> nan_bits: u32 = 0x7fc00000u;

// The term of the element-wise loss `kind` for prediction y and target t, and its gradient
// (unscaled), as (term, grad). δ: Huber's.
fn value_term(kind: u32, y: f32, t: f32, delta: f32) -> vec2<f32> {
    let d = y - t;
    switch kind {
        case MSE: { return vec2(d * d, 2.0 * d); }
        case MAE: { return vec2(abs(d), sign(d)); }
        case BCE: {
            let q = clamp(y, EPS, 1.0 - EPS);
            return vec2(-(t * log(q) + (1.0 - t) * log(1.0 - q)), (q - t) / (q * (1.0 - q)));
        }
        case HUBER: {
            if abs(d) < delta {
                return vec2(0.5 * d * d, d);
            }
            return vec2(delta * (abs(d) - 0.5 * delta), delta * sign(d));
        }
        default: { return vec2(bitcast<f32>(nan_bits)); }
    }
}
