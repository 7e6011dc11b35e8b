use num_traits::Float;

use crate::Result;
use crate::shape::{check_labels, check_len};

// Row-wise softmax family. Shapes: x, y, dy, dx are (rows, cols); one softmax per row.

/// `y = e^(x − max x) / Σ e^(x − max x)` per row; subtracting the max keeps `e^x` finite.
pub fn softmax_forward<T: Float>(y: &mut [T], x: &[T], rows: usize, cols: usize) -> Result<()> {
    check_len("softmax_forward", "input", x.len(), rows, cols)?;
    check_len("softmax_forward", "output", y.len(), rows, cols)?;
    for r in 0..rows {
        let x = &x[r * cols..(r + 1) * cols];
        let y = &mut y[r * cols..(r + 1) * cols];
        let max = row_max(x);
        let mut total = T::zero();
        for j in 0..cols {
            y[j] = (x[j] - max).exp();
            total = total + y[j];
        }
        for v in y.iter_mut() {
            *v = *v / total;
        }
    }
    Ok(())
}

/// The vector-Jacobian product of softmax, from its output: `dx = y ⊙ (dy − Σ dy ⊙ y)` per row.
pub fn softmax_backward<T: Float>(dx: &mut [T], y: &[T], dy: &[T], rows: usize, cols: usize) -> Result<()> {
    check_len("softmax_backward", "output", y.len(), rows, cols)?;
    check_len("softmax_backward", "output gradient", dy.len(), rows, cols)?;
    check_len("softmax_backward", "input gradient", dx.len(), rows, cols)?;
    for r in 0..rows {
        let row = r * cols..(r + 1) * cols;
        let (y, dy) = (&y[row.clone()], &dy[row.clone()]);
        let dot = (0..cols).fold(T::zero(), |acc, j| acc + dy[j] * y[j]);
        for j in 0..cols {
            dx[row.start + j] = y[j] * (dy[j] - dot);
        }
    }
    Ok(())
}

/// `y = x − max x − ln Σ e^(x − max x)` per row: log-probabilities without overflow.
pub fn log_softmax_forward<T: Float>(y: &mut [T], x: &[T], rows: usize, cols: usize) -> Result<()> {
    check_len("log_softmax_forward", "input", x.len(), rows, cols)?;
    check_len("log_softmax_forward", "output", y.len(), rows, cols)?;
    for r in 0..rows {
        let x = &x[r * cols..(r + 1) * cols];
        let log_total = log_sum_exp(x);
        for j in 0..cols {
            y[r * cols + j] = x[j] - log_total;
        }
    }
    Ok(())
}

/// The vector-Jacobian product of log-softmax, from its output: `dx = dy − e^y · Σ dy` per row.
pub fn log_softmax_backward<T: Float>(
    dx: &mut [T],
    y: &[T],
    dy: &[T],
    rows: usize,
    cols: usize,
) -> Result<()> {
    check_len("log_softmax_backward", "output", y.len(), rows, cols)?;
    check_len("log_softmax_backward", "output gradient", dy.len(), rows, cols)?;
    check_len("log_softmax_backward", "input gradient", dx.len(), rows, cols)?;
    for r in 0..rows {
        let row = r * cols..(r + 1) * cols;
        let total = dy[row.clone()].iter().fold(T::zero(), |acc, &v| acc + v);
        for i in row {
            dx[i] = dy[i] - y[i].exp() * total;
        }
    }
    Ok(())
}

/// Per-row cross-entropy of softmax(logits) against class labels:
/// `loss[r] = ln Σ e^logits[r] − logits[r, label[r]]`, computed stably.
///
/// Shapes: `logits` is (rows, cols), `labels` and `losses` are (rows).
pub fn softmax_cross_entropy_forward<T: Float>(
    losses: &mut [T],
    logits: &[T],
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "softmax_cross_entropy_forward";
    check_len(op, "logits", logits.len(), rows, cols)?;
    check_len(op, "labels", labels.len(), rows, 1)?;
    check_len(op, "losses", losses.len(), rows, 1)?;
    check_labels(op, labels, cols)?;
    for r in 0..rows {
        let x = &logits[r * cols..(r + 1) * cols];
        losses[r] = log_sum_exp(x) - x[labels[r] as usize];
    }
    Ok(())
}

/// Gradient of the mean cross-entropy over the batch: `dlogits = (softmax(logits) − onehot) / rows`.
///
/// Shapes: `logits` and `d_logits` are (rows, cols), `labels` is (rows).
pub fn softmax_cross_entropy_backward<T: Float>(
    d_logits: &mut [T],
    logits: &[T],
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "softmax_cross_entropy_backward";
    check_len(op, "labels", labels.len(), rows, 1)?;
    check_labels(op, labels, cols)?;
    softmax_forward(d_logits, logits, rows, cols)?;
    let inv_rows = T::one() / T::from(rows).unwrap_or_else(T::one);
    for r in 0..rows {
        d_logits[r * cols + labels[r] as usize] = d_logits[r * cols + labels[r] as usize] - T::one();
        for j in 0..cols {
            d_logits[r * cols + j] = d_logits[r * cols + j] * inv_rows;
        }
    }
    Ok(())
}

fn row_max<T: Float>(x: &[T]) -> T {
    x.iter().fold(T::neg_infinity(), |m, &v| m.max(v))
}

/// `ln Σ e^x`, shifted by the max so no term overflows.
fn log_sum_exp<T: Float>(x: &[T]) -> T {
    let max = row_max(x);
    let total = x.iter().fold(T::zero(), |acc, &v| acc + (v - max).exp());
    max + total.ln()
}
