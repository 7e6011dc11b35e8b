use num_traits::Float;

use crate::Result;
use crate::settings::OptimizerSettings;
use crate::shape::check_len;

// Optimizer updates, in place on the parameters w. Shapes: w, g and the state (velocity, or
// Adam's m and v) all have the same length n. `s.step` is the step being taken: advance it
// (`s.step += 1`) before the updates of each step, as the GPU's checks (or its
// `optimizer_advance`) do. Each update has a check, which computes it without writing: a
// step whose check is false would leave a weight or state NaN or infinite, and is not taken.
// The checks fold with `&` rather than stop at the first bad value: without the branch the
// loop vectorises, and a step's check costs what its update does.

/// `w −= lr · g`
pub fn sgd_update<T: Float>(w: &mut [T], g: &[T], s: &OptimizerSettings) -> Result<()> {
    check_len("sgd_update", "gradient", g.len(), w.len(), 1)?;
    let lr = cast::<T>(s.lr);
    for (w, &g) in w.iter_mut().zip(g) {
        *w = sgd_step(*w, g, lr);
    }
    Ok(())
}

/// Whether [`sgd_update`] would leave every weight finite.
pub fn sgd_check<T: Float>(w: &[T], g: &[T], s: &OptimizerSettings) -> Result<bool> {
    check_len("sgd_check", "gradient", g.len(), w.len(), 1)?;
    let lr = cast::<T>(s.lr);
    Ok(w.iter().zip(g).fold(true, |all, (&w, &g)| all & sgd_step(w, g, lr).is_finite()))
}

fn sgd_step<T: Float>(w: T, g: T, lr: T) -> T {
    w - lr * g
}

/// `velocity = μ · velocity + g;  w −= lr · velocity`
pub fn momentum_update<T: Float>(
    w: &mut [T],
    velocity: &mut [T],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<()> {
    check_momentum("momentum_update", w, velocity, g)?;
    let (lr, mu) = (cast::<T>(s.lr), cast::<T>(s.momentum));
    for ((w, velocity), &g) in w.iter_mut().zip(velocity.iter_mut()).zip(g) {
        (*w, *velocity) = momentum_step(*w, *velocity, g, lr, mu);
    }
    Ok(())
}

/// Whether [`momentum_update`] would leave every weight and velocity finite.
pub fn momentum_check<T: Float>(w: &[T], velocity: &[T], g: &[T], s: &OptimizerSettings) -> Result<bool> {
    check_momentum("momentum_check", w, velocity, g)?;
    let (lr, mu) = (cast::<T>(s.lr), cast::<T>(s.momentum));
    Ok(w.iter().zip(velocity).zip(g).fold(true, |all, ((&w, &velocity), &g)| {
        let (w, velocity) = momentum_step(w, velocity, g, lr, mu);
        all & w.is_finite() & velocity.is_finite()
    }))
}

fn momentum_step<T: Float>(w: T, velocity: T, g: T, lr: T, mu: T) -> (T, T) {
    let velocity = flush(mu * velocity + g);
    (w - lr * velocity, velocity)
}

pub(crate) fn check_momentum<T>(op: &'static str, w: &[T], velocity: &[T], g: &[T]) -> Result<()> {
    check_len(op, "gradient", g.len(), w.len(), 1)?;
    check_len(op, "velocity", velocity.len(), w.len(), 1)
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
    let adam = Adam::new(s);
    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        (*w, *m, *v) = adam.step(*w, *m, *v, g);
    }
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
    let adam = Adam::new(s);
    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        (*w, *m, *v) = adam.step(adam.decay(*w), *m, *v, g);
    }
    Ok(())
}

/// Whether [`adam_update`] would leave every weight and moment finite.
pub fn adam_check<T: Float>(w: &[T], m: &[T], v: &[T], g: &[T], s: &OptimizerSettings) -> Result<bool> {
    check_adam("adam_check", w, m, v, g)?;
    let adam = Adam::new(s);
    Ok(adam_all_finite(w, m, v, g, |w, m, v, g| adam.step(w, m, v, g)))
}

/// Whether [`adamw_update`] would leave every weight and moment finite.
pub fn adamw_check<T: Float>(w: &[T], m: &[T], v: &[T], g: &[T], s: &OptimizerSettings) -> Result<bool> {
    check_adam("adamw_check", w, m, v, g)?;
    let adam = Adam::new(s);
    Ok(adam_all_finite(w, m, v, g, |w, m, v, g| adam.step(adam.decay(w), m, v, g)))
}

fn adam_all_finite<T: Float>(
    w: &[T],
    m: &[T],
    v: &[T],
    g: &[T],
    step: impl Fn(T, T, T, T) -> (T, T, T),
) -> bool {
    w.iter().zip(m).zip(v).zip(g).fold(true, |all, (((&w, &m), &v), &g)| {
        let (w, m, v) = step(w, m, v, g);
        all & w.is_finite() & m.is_finite() & v.is_finite()
    })
}

/// Adam's settings for one step, with its bias corrections.
struct Adam<T> {
    b1: T,
    b2: T,
    lr: T,
    eps: T,
    weight_decay: T,
    m_correction: T,
    v_correction: T,
}

impl<T: Float> Adam<T> {
    fn new(s: &OptimizerSettings) -> Self {
        let (p1, p2) = s.beta_powers();
        Adam {
            b1: cast(s.beta1),
            b2: cast(s.beta2),
            lr: cast(s.lr),
            eps: cast(s.eps),
            weight_decay: cast(s.weight_decay),
            m_correction: T::one() - cast::<T>(p1),
            v_correction: T::one() - cast::<T>(p2),
        }
    }

    /// AdamW's decoupled weight decay, before its Adam step.
    fn decay(&self, w: T) -> T {
        w - self.lr * self.weight_decay * w
    }

    /// One parameter's new value and moments.
    fn step(&self, w: T, m: T, v: T, g: T) -> (T, T, T) {
        let m = flush(self.b1 * m + (T::one() - self.b1) * g);
        let v = flush(self.b2 * v + (T::one() - self.b2) * g * g);
        (w - self.lr * (m / self.m_correction) / ((v / self.v_correction).sqrt() + self.eps), m, v)
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

pub(crate) fn check_adam<T>(op: &'static str, w: &[T], m: &[T], v: &[T], g: &[T]) -> Result<()> {
    check_len(op, "gradient", g.len(), w.len(), 1)?;
    check_len(op, "first moment", m.len(), w.len(), 1)?;
    check_len(op, "second moment", v.len(), w.len(), 1)
}

fn cast<T: Float>(x: f32) -> T {
    T::from(x).unwrap_or_else(T::nan)
}
