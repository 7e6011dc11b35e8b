use num_traits::Float;

use crate::Result;
use crate::shape::check_len;

// Layer normalisation over each row, as PyTorch's LayerNorm over the last dimension.
// Shapes: x, y, dy, dx, terms are (rows, cols); stats (rows, 2) holds each row's mean and
// 1/σ; gain and bias (cols). The backward is split as on the GPU: dx from one function, the
// gain's gradient as the column sums of `layer_norm_gain_terms`, the bias's as dy's.

/// The ε PyTorch's LayerNorm adds to the variance.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `stats[r] = (mean, 1 / √(var + ε))` of row r (the biased variance, as PyTorch).
pub fn layer_norm_stats<T: Float>(stats: &mut [T], x: &[T], rows: usize, cols: usize) -> Result<()> {
    check_len("layer_norm_stats", "input", x.len(), rows, cols)?;
    check_len("layer_norm_stats", "output", stats.len(), rows, 2)?;
    let n = T::from(cols).unwrap_or_else(T::nan);
    let eps = T::from(LAYER_NORM_EPS).unwrap_or_else(T::nan);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = row.iter().fold(T::zero(), |acc, &v| acc + v) / n;
        let var = row.iter().fold(T::zero(), |acc, &v| acc + (v - mean) * (v - mean)) / n;
        stats[2 * r] = mean;
        stats[2 * r + 1] = T::one() / (var + eps).sqrt();
    }
    Ok(())
}

/// `y = x̂ · gain + bias`, with `x̂ = (x − mean) · rstd` from `stats`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward<T: Float>(
    y: &mut [T],
    x: &[T],
    stats: &[T],
    gain: &[T],
    bias: &[T],
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "layer_norm_forward";
    check_rows(op, y, x, stats, rows, cols)?;
    check_len(op, "gain", gain.len(), 1, cols)?;
    check_len(op, "bias", bias.len(), 1, cols)?;
    for r in 0..rows {
        let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
        for j in 0..cols {
            y[r * cols + j] = (x[r * cols + j] - mean) * rstd * gain[j] + bias[j];
        }
    }
    Ok(())
}

/// `dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂))` per row, with `g = dy ⊙ gain`: the
/// gradient through the normalisation, whose mean and variance depend on every x of the row.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward<T: Float>(
    dx: &mut [T],
    x: &[T],
    stats: &[T],
    gain: &[T],
    dy: &[T],
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "layer_norm_backward";
    check_rows(op, dx, x, stats, rows, cols)?;
    check_len(op, "gain", gain.len(), 1, cols)?;
    check_len(op, "output gradient", dy.len(), rows, cols)?;
    let n = T::from(cols).unwrap_or_else(T::nan);
    for r in 0..rows {
        let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
        let row = r * cols..(r + 1) * cols;
        let x_hat = |j: usize| (x[row.start + j] - mean) * rstd;
        let g = |j: usize| dy[row.start + j] * gain[j];
        let g_mean = (0..cols).fold(T::zero(), |acc, j| acc + g(j)) / n;
        let gx_mean = (0..cols).fold(T::zero(), |acc, j| acc + g(j) * x_hat(j)) / n;
        for j in 0..cols {
            dx[row.start + j] = rstd * (g(j) - g_mean - x_hat(j) * gx_mean);
        }
    }
    Ok(())
}

/// `terms = x̂ ⊙ dy`: summed over the rows, the gradient of the gain.
pub fn layer_norm_gain_terms<T: Float>(
    terms: &mut [T],
    x: &[T],
    stats: &[T],
    dy: &[T],
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "layer_norm_gain_terms";
    check_rows(op, terms, x, stats, rows, cols)?;
    check_len(op, "output gradient", dy.len(), rows, cols)?;
    for r in 0..rows {
        for j in 0..cols {
            let i = r * cols + j;
            terms[i] = (x[i] - stats[2 * r]) * stats[2 * r + 1] * dy[i];
        }
    }
    Ok(())
}

/// The operands every layer-norm function has: an output and an input of (rows, cols), and
/// the rows' statistics.
fn check_rows<T>(op: &'static str, out: &[T], x: &[T], stats: &[T], rows: usize, cols: usize) -> Result<()> {
    check_len(op, "input", x.len(), rows, cols)?;
    check_len(op, "stats", stats.len(), rows, 2)?;
    check_len(op, "output", out.len(), rows, cols)
}
