use num_traits::Float;

use crate::Result;
use crate::settings::OptimizerSettings;
use crate::shape::check_len;

// Optimizer updates, in place on the parameters w. Shapes: w, g and the state (velocity, or
// Adam's m and v) all have the same length n. `s.step` is the step being taken: advance it
// (`s.step += 1`) before the updates of each step, as the GPU's `optimizer_advance` does.

/// `w −= lr · g`
pub fn sgd_update<T: Float>(w: &mut [T], g: &[T], s: &OptimizerSettings) -> Result<()> {
    check_len("sgd_update", "gradient", g.len(), w.len(), 1)?;
    let lr = cast::<T>(s.lr);
    for (w, &g) in w.iter_mut().zip(g) {
        *w = *w - lr * g;
    }
    Ok(())
}

/// `velocity = μ · velocity + g;  w −= lr · velocity`
pub fn momentum_update<T: Float>(
    w: &mut [T],
    velocity: &mut [T],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<()> {
    check_len("momentum_update", "gradient", g.len(), w.len(), 1)?;
    check_len("momentum_update", "velocity", velocity.len(), w.len(), 1)?;
    let (lr, mu) = (cast::<T>(s.lr), cast::<T>(s.momentum));
    for ((w, velocity), &g) in w.iter_mut().zip(velocity.iter_mut()).zip(g) {
        *velocity = flush(mu * *velocity + g);
        *w = *w - lr * *velocity;
    }
    Ok(())
}

/// Adam: `m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²;  w −= lr · m̂ / (√v̂ + ε)`,
/// with the bias corrections `m̂ = m / (1 − β1^t)`, `v̂ = v / (1 − β2^t)`.
pub fn adam_update<T: Float>(
    w: &mut [T],
    m: &mut [T],
    v: &mut [T],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<()> {
    check_adam("adam_update", w, m, v, g)?;
    adam(w, m, v, g, s);
    Ok(())
}

/// AdamW: `w −= lr · λ · w` (decoupled weight decay), then Adam's update.
pub fn adamw_update<T: Float>(
    w: &mut [T],
    m: &mut [T],
    v: &mut [T],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<()> {
    check_adam("adamw_update", w, m, v, g)?;
    let decay = cast::<T>(s.lr) * cast::<T>(s.weight_decay);
    for w in w.iter_mut() {
        *w = *w - decay * *w;
    }
    adam(w, m, v, g, s);
    Ok(())
}

fn adam<T: Float>(w: &mut [T], m: &mut [T], v: &mut [T], g: &[T], s: &OptimizerSettings) {
    let (b1, b2) = (cast::<T>(s.beta1), cast::<T>(s.beta2));
    let (lr, eps) = (cast::<T>(s.lr), cast::<T>(s.eps));
    let (p1, p2) = s.beta_powers();
    let (m_correction, v_correction) = (T::one() - cast::<T>(p1), T::one() - cast::<T>(p2));
    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        *m = flush(b1 * *m + (T::one() - b1) * g);
        *v = flush(b2 * *v + (T::one() - b2) * g * g);
        *w = *w - lr * (*m / m_correction) / ((*v / v_correction).sqrt() + eps);
    }
}

/// Zero for subnormal values. A parameter whose gradient stays 0 (a weight on an input pixel
/// that is always blank, say) has moments that decay by β each step into subnormal floats,
/// and x86 CPUs compute with those 50–100 times slower: an MNIST MLP's Adam step took 84% of a
/// CPU training step after a few thousand steps. `shaders/optimizer.wgsl` flushes them alike
/// (llvmpipe keeps subnormals and pays the same price), so both backends still agree.
fn flush<T: Float>(x: T) -> T {
    if x.abs() < T::min_positive_value() { T::zero() } else { x }
}

fn check_adam<T>(op: &'static str, w: &[T], m: &[T], v: &[T], g: &[T]) -> Result<()> {
    check_len(op, "gradient", g.len(), w.len(), 1)?;
    check_len(op, "first moment", m.len(), w.len(), 1)?;
    check_len(op, "second moment", v.len(), w.len(), 1)
}

fn cast<T: Float>(x: f32) -> T {
    T::from(x).unwrap_or_else(T::nan)
}
