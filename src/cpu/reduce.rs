use num_traits::Float;

use crate::Result;
use crate::shape::check_len;

/// `out[j] = scale · Σ_i x[i, j]`: the bias gradient of a dense layer.
///
/// Shapes: `x` is (rows, cols), `out` is (cols).
pub fn sum_columns<T: Float>(out: &mut [T], x: &[T], rows: usize, cols: usize, scale: T) -> Result<()> {
    check_len("sum_columns", "input", x.len(), rows, cols)?;
    check_len("sum_columns", "output", out.len(), 1, cols)?;
    for j in 0..cols {
        let mut acc = T::zero();
        for i in 0..rows {
            acc = acc + x[i * cols + j];
        }
        out[j] = scale * acc;
    }
    Ok(())
}

/// `scale · Σ x`: a loss from its per-sample terms (scale = 1/batch gives the mean).
///
/// Shapes: `x` is any length n; the result is a scalar.
pub fn sum_all<T: Float>(x: &[T], scale: T) -> T {
    scale * x.iter().fold(T::zero(), |acc, &v| acc + v)
}
