use num_traits::Float;

use crate::Result;
use crate::shape::check_len;

// Element-wise activations. Shapes: every slice has the same length n.
// Each backward takes what its forward saved: ReLU its input, sigmoid and tanh their output.

/// `out = max(x, 0)`
pub fn relu_forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
    check_len("relu_forward", "output", out.len(), x.len(), 1)?;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = if x > T::zero() { x } else { T::zero() };
    }
    Ok(())
}

/// `dx = dy · [x > 0]` (the gradient at exactly 0 is taken as 0)
pub fn relu_backward<T: Float>(dx: &mut [T], x: &[T], dy: &[T]) -> Result<()> {
    check_len("relu_backward", "input", x.len(), dx.len(), 1)?;
    check_len("relu_backward", "output gradient", dy.len(), dx.len(), 1)?;
    for i in 0..dx.len() {
        dx[i] = if x[i] > T::zero() { dy[i] } else { T::zero() };
    }
    Ok(())
}

/// `out = 1 / (1 + e^-x)`
pub fn sigmoid_forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
    check_len("sigmoid_forward", "output", out.len(), x.len(), 1)?;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = T::one() / (T::one() + (-x).exp());
    }
    Ok(())
}

/// `dx = dy · y · (1 − y)`, from the forward output y
pub fn sigmoid_backward<T: Float>(dx: &mut [T], y: &[T], dy: &[T]) -> Result<()> {
    check_len("sigmoid_backward", "output", y.len(), dx.len(), 1)?;
    check_len("sigmoid_backward", "output gradient", dy.len(), dx.len(), 1)?;
    for i in 0..dx.len() {
        dx[i] = dy[i] * y[i] * (T::one() - y[i]);
    }
    Ok(())
}

/// `out = tanh(x)`
pub fn tanh_forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
    check_len("tanh_forward", "output", out.len(), x.len(), 1)?;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = x.tanh();
    }
    Ok(())
}

/// `dx = dy · (1 − y²)`, from the forward output y
pub fn tanh_backward<T: Float>(dx: &mut [T], y: &[T], dy: &[T]) -> Result<()> {
    check_len("tanh_backward", "output", y.len(), dx.len(), 1)?;
    check_len("tanh_backward", "output gradient", dy.len(), dx.len(), 1)?;
    for i in 0..dx.len() {
        dx[i] = dy[i] * (T::one() - y[i] * y[i]);
    }
    Ok(())
}
