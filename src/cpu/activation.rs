use num_traits::Float;

use crate::Result;
use crate::activation::Activation;
use crate::shape::check_len;

// Element-wise activations. Shapes: every slice has the same length n.
// Each backward takes what its forward saved: sigmoid and tanh their output, the others
// their input.

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
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        *dx = if x > T::zero() { dy } else { T::zero() };
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
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = dy * y * (T::one() - y);
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
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = dy * (T::one() - y * y);
    }
    Ok(())
}

/// `out = x` for `x > 0`, `slope · x` otherwise
pub fn leaky_relu_forward<T: Float>(out: &mut [T], x: &[T], slope: T) -> Result<()> {
    check_len("leaky_relu_forward", "output", out.len(), x.len(), 1)?;
    check_slope("leaky_relu_forward", slope)?;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = if x > T::zero() { x } else { slope * x };
    }
    Ok(())
}

/// `dx = dy` for `x > 0`, `slope · dy` otherwise (at exactly 0, the slope)
pub fn leaky_relu_backward<T: Float>(dx: &mut [T], x: &[T], dy: &[T], slope: T) -> Result<()> {
    check_len("leaky_relu_backward", "input", x.len(), dx.len(), 1)?;
    check_len("leaky_relu_backward", "output gradient", dy.len(), dx.len(), 1)?;
    check_slope("leaky_relu_backward", slope)?;
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        *dx = if x > T::zero() { dy } else { slope * dy };
    }
    Ok(())
}

/// A NaN or infinite slope would fill the output with NaN (∞ · 0 for x = 0).
fn check_slope<T: Float>(op: &'static str, slope: T) -> Result<()> {
    if slope.is_finite() {
        return Ok(());
    }
    let slope = slope.to_f64().unwrap_or(f64::NAN);
    Err(crate::Error::shape(op, "a finite LeakyReLU slope", slope.to_string()))
}

/// √(2/π) and the cubic coefficient of GELU's tanh approximation.
fn gelu_constants<T: Float>() -> (T, T) {
    let c = |v: f64| T::from(v).unwrap_or_else(T::nan);
    (c((2.0 / std::f64::consts::PI).sqrt()), c(0.044715))
}

/// `out = x/2 · (1 + tanh(u))` with `u = √(2/π) · (x + 0.044715 x³)` (GELU, tanh approximation)
pub fn gelu_forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
    check_len("gelu_forward", "output", out.len(), x.len(), 1)?;
    let (k, a) = gelu_constants::<T>();
    let half = T::from(0.5).unwrap_or_else(T::nan);
    for (o, &x) in out.iter_mut().zip(x) {
        let u = k * (x + a * x * x * x);
        *o = half * x * (T::one() + u.tanh());
    }
    Ok(())
}

/// `dx = dy · (½(1 + t) + ½x(1 − t²) · √(2/π)(1 + 3·0.044715 x²))` with `t = tanh(u)`, from
/// the forward input x
pub fn gelu_backward<T: Float>(dx: &mut [T], x: &[T], dy: &[T]) -> Result<()> {
    check_len("gelu_backward", "input", x.len(), dx.len(), 1)?;
    check_len("gelu_backward", "output gradient", dy.len(), dx.len(), 1)?;
    let (k, a) = gelu_constants::<T>();
    let (half, three, ten) = (T::from(0.5), T::from(3.0), T::from(10.0));
    let (half, three, ten) =
        (half.unwrap_or_else(T::nan), three.unwrap_or_else(T::nan), ten.unwrap_or_else(T::nan));
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        let t = (k * (x + a * x * x * x)).tanh();
        // Past |x| = 10, 1 − t² is 0 in f32 (and below 1e-37 in f64); clamping x there keeps
        // 0 · x · du from becoming 0 · ∞ for huge inputs, as on the GPU.
        let xc = x.max(-ten).min(ten);
        let du = k * (T::one() + three * a * xc * xc);
        *dx = dy * (half * (T::one() + t) + half * xc * (T::one() - t * t) * du);
    }
    Ok(())
}

/// `out = x · σ(x) = x / (1 + e^-x)` (SiLU)
pub fn silu_forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
    check_len("silu_forward", "output", out.len(), x.len(), 1)?;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = x / (T::one() + (-x).exp());
    }
    Ok(())
}

/// `dx = dy · σ(x) (1 + x (1 − σ(x)))`, from the forward input x
pub fn silu_backward<T: Float>(dx: &mut [T], x: &[T], dy: &[T]) -> Result<()> {
    check_len("silu_backward", "input", x.len(), dx.len(), 1)?;
    check_len("silu_backward", "output gradient", dy.len(), dx.len(), 1)?;
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        let s = T::one() / (T::one() + (-x).exp());
        *dx = dy * (s * (T::one() + x * (T::one() - s)));
    }
    Ok(())
}

/// `out = f(x)` for any [`Activation`].
pub fn activation_forward<T: Float>(f: Activation, out: &mut [T], x: &[T]) -> Result<()> {
    match f {
        Activation::Relu => relu_forward(out, x),
        Activation::LeakyRelu(slope) => leaky_relu_forward(out, x, T::from(slope).unwrap_or_else(T::nan)),
        Activation::Sigmoid => sigmoid_forward(out, x),
        Activation::Tanh => tanh_forward(out, x),
        Activation::Gelu => gelu_forward(out, x),
        Activation::Silu => silu_forward(out, x),
    }
}

/// `dx = f'(x) · dy` for any [`Activation`]; `saved` is the forward's output when
/// [`Activation::backward_reads_output`], else its input.
pub fn activation_backward<T: Float>(f: Activation, dx: &mut [T], saved: &[T], dy: &[T]) -> Result<()> {
    match f {
        Activation::Relu => relu_backward(dx, saved, dy),
        Activation::LeakyRelu(slope) => {
            leaky_relu_backward(dx, saved, dy, T::from(slope).unwrap_or_else(T::nan))
        }
        Activation::Sigmoid => sigmoid_backward(dx, saved, dy),
        Activation::Tanh => tanh_backward(dx, saved, dy),
        Activation::Gelu => gelu_backward(dx, saved, dy),
        Activation::Silu => silu_backward(dx, saved, dy),
    }
}
