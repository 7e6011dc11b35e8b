use num_traits::Float;

use crate::Result;
use crate::shape::check_len;

/// `out[j] = scale · Σ_i x[i, j]`: the bias gradient of a dense layer.
///
/// Shapes: `x` is (rows, cols), `out` is (cols).
pub fn sum_columns<T: Float>(out: &mut [T], x: &[T], rows: usize, cols: usize, scale: T) -> Result<()> {
    check_len("sum_columns", "input", x.len(), rows, cols)?;
    check_len("sum_columns", "output", out.len(), 1, cols)?;
    // Row by row, so the inner loop runs along memory; each column still sums its rows in order.
    out.fill(T::zero());
    if cols == 0 {
        return Ok(());
    }
    for row in x.chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = *o + v;
        }
    }
    for o in out.iter_mut() {
        *o = scale * *o;
    }
    Ok(())
}

/// `scale · Σ x`: a loss from its per-sample terms (scale = 1/batch gives the mean).
///
/// Shapes: `x` is any length n; the result is a scalar.
pub fn sum_all<T: Float>(x: &[T], scale: T) -> T {
    scale * x.iter().fold(T::zero(), |acc, &v| acc + v)
}
