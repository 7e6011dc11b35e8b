use num_traits::Float;

use crate::Result;
use crate::loss::Loss;
use crate::shape::{check_labels, check_len};

// Losses as per-element (per-row for NLL) terms; the loss is their mean, `sum_all(terms,
// 1/len)`, and each backward is the gradient of that mean. Shapes: y, t, terms and dy all
// have the same length n, unless a function says otherwise.

/// Keeps `ln y` and `1 / (y (1 − y))` finite in binary cross-entropy (same as the shader).
pub const BCE_EPS: f64 = 1e-7;

/// `terms[i] = (y − t)²`
pub fn mse_forward<T: Float>(terms: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    check_pair("mse_forward", terms.len(), y, t)?;
    for i in 0..y.len() {
        terms[i] = (y[i] - t[i]) * (y[i] - t[i]);
    }
    Ok(())
}

/// `dy[i] = 2 (y − t) / n`
pub fn mse_backward<T: Float>(dy: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    check_pair("mse_backward", dy.len(), y, t)?;
    let scale = inverse_len(y.len());
    for i in 0..y.len() {
        dy[i] = (T::one() + T::one()) * (y[i] - t[i]) * scale;
    }
    Ok(())
}

/// `terms[i] = |y − t|`
pub fn mae_forward<T: Float>(terms: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    check_pair("mae_forward", terms.len(), y, t)?;
    for i in 0..y.len() {
        terms[i] = (y[i] - t[i]).abs();
    }
    Ok(())
}

/// `dy[i] = sign(y − t) / n`, with sign(0) = 0
pub fn mae_backward<T: Float>(dy: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    check_pair("mae_backward", dy.len(), y, t)?;
    let scale = inverse_len(y.len());
    for i in 0..y.len() {
        let d = y[i] - t[i];
        let sign = if d > T::zero() {
            T::one()
        } else if d < T::zero() {
            -T::one()
        } else {
            T::zero()
        };
        dy[i] = sign * scale;
    }
    Ok(())
}

/// `terms[i] = −(t ln y + (1 − t) ln(1 − y))`, y clamped to `[ε, 1 − ε]`; y are probabilities.
pub fn bce_forward<T: Float>(terms: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    check_pair("bce_forward", terms.len(), y, t)?;
    for i in 0..y.len() {
        let q = clamp_probability(y[i]);
        terms[i] = -(t[i] * q.ln() + (T::one() - t[i]) * (T::one() - q).ln());
    }
    Ok(())
}

/// `dy[i] = (y − t) / (y (1 − y)) / n`, y clamped likewise
pub fn bce_backward<T: Float>(dy: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    check_pair("bce_backward", dy.len(), y, t)?;
    let scale = inverse_len(y.len());
    for i in 0..y.len() {
        let q = clamp_probability(y[i]);
        dy[i] = (q - t[i]) / (q * (T::one() - q)) * scale;
    }
    Ok(())
}

/// Negative log-likelihood of log-probabilities: `losses[r] = −log_p[r, label[r]]`.
///
/// Shapes: `log_p` is (rows, cols), `labels` and `losses` are (rows).
pub fn nll_forward<T: Float>(
    losses: &mut [T],
    log_p: &[T],
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<()> {
    check_len("nll_forward", "log-probabilities", log_p.len(), rows, cols)?;
    check_len("nll_forward", "labels", labels.len(), rows, 1)?;
    check_len("nll_forward", "losses", losses.len(), rows, 1)?;
    check_labels("nll_forward", labels, cols)?;
    for r in 0..rows {
        losses[r] = -log_p[r * cols + labels[r] as usize];
    }
    Ok(())
}

/// Gradient of the mean NLL: `d_log_p[r, j] = −1/rows` where `j = label[r]`, else 0.
///
/// Shapes: `d_log_p` is (rows, cols), `labels` is (rows).
pub fn nll_backward<T: Float>(d_log_p: &mut [T], labels: &[u32], rows: usize, cols: usize) -> Result<()> {
    check_len("nll_backward", "gradient", d_log_p.len(), rows, cols)?;
    check_len("nll_backward", "labels", labels.len(), rows, 1)?;
    check_labels("nll_backward", labels, cols)?;
    let scale: T = inverse_len(rows);
    for r in 0..rows {
        for j in 0..cols {
            d_log_p[r * cols + j] = if j == labels[r] as usize { -scale } else { T::zero() };
        }
    }
    Ok(())
}

/// `terms[i] = ½(y − t)²` where `|y − t| < δ`, else `δ(|y − t| − ½δ)` (Huber)
pub fn huber_forward<T: Float>(terms: &mut [T], y: &[T], t: &[T], delta: T) -> Result<()> {
    check_pair("huber_forward", terms.len(), y, t)?;
    check_delta("huber_forward", delta)?;
    let half = T::from(0.5).unwrap_or_else(T::nan);
    for i in 0..y.len() {
        let d = y[i] - t[i];
        terms[i] = if d.abs() < delta { half * d * d } else { delta * (d.abs() - half * delta) };
    }
    Ok(())
}

/// `dy[i] = (y − t) / n` where `|y − t| < δ`, else `δ · sign(y − t) / n`
pub fn huber_backward<T: Float>(dy: &mut [T], y: &[T], t: &[T], delta: T) -> Result<()> {
    check_pair("huber_backward", dy.len(), y, t)?;
    check_delta("huber_backward", delta)?;
    let scale = inverse_len(y.len());
    for i in 0..y.len() {
        let d = y[i] - t[i];
        dy[i] = if d.abs() < delta { d * scale } else { delta * d.signum() * scale };
    }
    Ok(())
}

/// A δ that is not finite and positive makes no Huber loss (δ = 0 would be MAE scaled to 0).
fn check_delta<T: Float>(op: &'static str, delta: T) -> Result<()> {
    if delta.is_finite() && delta > T::zero() {
        return Ok(());
    }
    let delta = delta.to_f64().unwrap_or(f64::NAN);
    let problem = format!("a Huber loss's δ must be finite and positive, not {delta}");
    Err(crate::Error::InvalidLoss { op, problem })
}

/// The terms of any element-wise [`Loss`] (one that does not take labels).
pub fn value_loss_forward<T: Float>(loss: Loss, terms: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    match loss {
        Loss::Mse => mse_forward(terms, y, t),
        Loss::Mae => mae_forward(terms, y, t),
        Loss::BinaryCrossEntropy => bce_forward(terms, y, t),
        Loss::Huber { delta } => huber_forward(terms, y, t, T::from(delta).unwrap_or_else(T::nan)),
        Loss::SoftmaxCrossEntropy | Loss::Nll => Err(takes_labels("value_loss_forward", loss)),
    }
}

/// The gradient of any element-wise [`Loss`]'s mean with respect to `y`.
pub fn value_loss_backward<T: Float>(loss: Loss, dy: &mut [T], y: &[T], t: &[T]) -> Result<()> {
    match loss {
        Loss::Mse => mse_backward(dy, y, t),
        Loss::Mae => mae_backward(dy, y, t),
        Loss::BinaryCrossEntropy => bce_backward(dy, y, t),
        Loss::Huber { delta } => huber_backward(dy, y, t, T::from(delta).unwrap_or_else(T::nan)),
        Loss::SoftmaxCrossEntropy | Loss::Nll => Err(takes_labels("value_loss_backward", loss)),
    }
}

fn takes_labels(op: &'static str, loss: Loss) -> crate::Error {
    crate::Error::shape(op, "an element-wise loss", format!("{loss:?}, which takes labels"))
}

fn check_pair(op: &'static str, out: usize, y: &[impl Copy], t: &[impl Copy]) -> Result<()> {
    check_len(op, "targets", t.len(), y.len(), 1)?;
    check_len(op, "output", out, y.len(), 1)
}

fn inverse_len<T: Float>(n: usize) -> T {
    T::one() / T::from(n).unwrap_or_else(T::one)
}

fn clamp_probability<T: Float>(y: T) -> T {
    let eps = T::from(BCE_EPS).unwrap_or_else(T::epsilon);
    y.max(eps).min(T::one() - eps)
}
