// The optimizers' arithmetic on one parameter, shared by optimizer.wgsl (one launch per check
// or update) and mlp.wgsl (a fused step's update), prepended by the host: one definition, so
// both paths take the same step to the bit. The formulas are at the top of optimizer.wgsl;
// the CPU reference is src/cpu/optimizer.rs.

// The settings as one update reads them (from the settings row, `Row`).
struct Settings {
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    // This step's powers.
    beta1_power: f32,
    beta2_power: f32,
    halted: bool,
}

// WGSL has no isinf/isnan (and fast-math compilers may fold x != x): test the exponent bits.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// One parameter's new value and optimizer state (unused state is 0).
struct Step {
    w: f32,
    m: f32,
    v: f32,
}

fn step_is_finite(step: Step) -> bool {
    return is_finite(step.w) && is_finite(step.m) && is_finite(step.v);
}

fn sgd_step(s: Settings, w: f32, g: f32) -> Step {
    return Step(w - s.lr * g, 0.0, 0.0);
}

fn momentum_step(s: Settings, w: f32, g: f32, m: f32) -> Step {
    let velocity = flush(s.momentum * m + g);
    return Step(w - s.lr * velocity, velocity, 0.0);
}

// Zero for subnormal values, as src/cpu/optimizer.rs: a moment whose gradient stays 0 decays
// by β each step into subnormal floats, which llvmpipe (like the x86 CPU it runs on) computes
// with 50–100 times slower; flushed, it stays an exact 0.
fn flush(x: f32) -> f32 {
    return select(x, 0.0, abs(x) < 1.17549435e-38);
}

// Adam's step from the weight w (after any weight decay).
fn adam_step(s: Settings, w: f32, g: f32, m: f32, v: f32) -> Step {
    let m_new = flush(s.beta1 * m + (1.0 - s.beta1) * g);
    let v_new = flush(s.beta2 * v + (1.0 - s.beta2) * g * g);
    let m_hat = m_new / (1.0 - s.beta1_power);
    let v_hat = v_new / (1.0 - s.beta2_power);
    return Step(w - s.lr * m_hat / (sqrt(v_hat) + s.epsilon), m_new, v_new);
}

fn adamw_step(s: Settings, w: f32, g: f32, m: f32, v: f32) -> Step {
    return adam_step(s, w - s.lr * s.weight_decay * w, g, m, v);
}
