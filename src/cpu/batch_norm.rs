use num_traits::Float;

use crate::shape::{BatchNorm, check_len};
use crate::{Error, Result};

// Batch normalisation, PyTorch's BatchNorm2d, over a batch of NCHW images (see `BatchNorm`).
// Shapes, with n samples of c = g.channels channels of `plane` values each:
//   x, y, dx, dy:  (n, c · plane)   one image per row
//   stats:         (2, c)           each channel's mean, then its 1/√(var + ε)
//   gain, bias, dgain, dbias, running_mean, running_var: (c)
// A channel's statistics and sums run over its m = n · plane values: value i of channel ch
// is x[i / plane, ch, i % plane].

/// The index of value `i` of channel `ch` in the batch.
fn at(ch: usize, i: usize, channels: usize, plane: usize) -> usize {
    ((i / plane) * channels + ch) * plane + i % plane
}

/// Training: `stats` from the batch (its biased variance), and the running statistics moved
/// towards the batch's, `running = (1 − momentum) · running + momentum · batch`, with the
/// variance unbiased (`· m / (m − 1)`) as PyTorch's. A batch whose statistics are not finite
/// leaves the running ones as they were.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_stats<T: Float>(
    stats: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    x: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<()> {
    let m = check_stats(stats, running_mean, running_var, x, n, plane, g)?;
    let c = g.channels;
    for ch in 0..c {
        let value = |i: usize| x[at(ch, i, c, plane)];
        let mean = (0..m).fold(T::zero(), |acc, i| acc + value(i)) / cast(m);
        let squares = (0..m).fold(T::zero(), |acc, i| acc + (value(i) - mean) * (value(i) - mean));
        finish_stats(ch, mean, squares, m, stats, running_mean, running_var, g);
    }
    Ok(())
}

/// Checks `batch_norm_stats`'s arguments and gives m, the values per channel.
pub(crate) fn check_stats<T>(
    stats: &[T],
    running_mean: &[T],
    running_var: &[T],
    x: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<usize> {
    let (op, c) = ("batch_norm_stats", g.channels);
    check_len(op, "input", x.len(), n, c * plane)?;
    check_len(op, "stats", stats.len(), 2, c)?;
    check_len(op, "running mean", running_mean.len(), 1, c)?;
    check_len(op, "running variance", running_var.len(), 1, c)?;
    let m = n * plane;
    if m < 2 {
        return Err(Error::shape(op, "more than 1 value per channel in training", format!("{m}")));
    }
    Ok(m)
}

/// Channel `ch`'s stats from its mean and its sum of squared deviations over m values, and
/// its running statistics moved towards them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_stats<T: Float>(
    ch: usize,
    mean: T,
    squares: T,
    m: usize,
    stats: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    g: &BatchNorm,
) {
    let c = g.channels;
    let (eps, momentum) = (cast::<T>(g.eps), cast::<T>(g.momentum));
    stats[ch] = mean;
    stats[c + ch] = T::one() / (squares / cast(m) + eps).sqrt();
    let unbiased = squares / cast(m - 1);
    if mean.is_finite() && unbiased.is_finite() {
        running_mean[ch] = (T::one() - momentum) * running_mean[ch] + momentum * mean;
        running_var[ch] = (T::one() - momentum) * running_var[ch] + momentum * unbiased;
    }
}

/// Evaluation: `stats` from the running statistics.
pub fn batch_norm_eval_stats<T: Float>(
    stats: &mut [T],
    running_mean: &[T],
    running_var: &[T],
    g: &BatchNorm,
) -> Result<()> {
    let (op, c) = ("batch_norm_eval_stats", g.channels);
    check_len(op, "stats", stats.len(), 2, c)?;
    check_len(op, "running mean", running_mean.len(), 1, c)?;
    check_len(op, "running variance", running_var.len(), 1, c)?;
    for ch in 0..c {
        stats[ch] = running_mean[ch];
        stats[c + ch] = T::one() / (running_var[ch] + cast(g.eps)).sqrt();
    }
    Ok(())
}

/// `y = (x − mean) · rstd · gain + bias`, each value with its channel's.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<T: Float>(
    y: &mut [T],
    x: &[T],
    stats: &[T],
    gain: &[T],
    bias: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<()> {
    check_forward(y, x, stats, gain, bias, n, plane, g)?;
    let c = g.channels;
    for (k, (y, &x)) in y.iter_mut().zip(x).enumerate() {
        let ch = k / plane % c;
        *y = (x - stats[ch]) * stats[c + ch] * gain[ch] + bias[ch];
    }
    Ok(())
}

/// Checks `batch_norm_forward`'s arguments.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_forward<T>(
    y: &[T],
    x: &[T],
    stats: &[T],
    gain: &[T],
    bias: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<()> {
    let (op, c) = ("batch_norm_forward", g.channels);
    check_len(op, "input", x.len(), n, c * plane)?;
    check_len(op, "output", y.len(), n, c * plane)?;
    check_len(op, "stats", stats.len(), 2, c)?;
    check_len(op, "gain", gain.len(), 1, c)?;
    check_len(op, "bias", bias.len(), 1, c)
}

/// The gradients of the gain, `dgain = Σ dy · x̂`, and of the bias, `dbias = Σ dy`, per
/// channel, and (given `dx`) the input's,
/// `dx = gain · rstd · (dy − mean(dy) − x̂ · mean(dy · x̂))`: in training every value of a
/// channel moves its mean and variance, so each value's gradient reads the channel's sums.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<T: Float>(
    dx: Option<&mut [T]>,
    dgain: &mut [T],
    dbias: &mut [T],
    x: &[T],
    stats: &[T],
    gain: &[T],
    dy: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<()> {
    let mut dx = dx;
    check_backward(dx.as_deref(), dgain, dbias, x, stats, gain, dy, n, plane, g)?;
    let (c, m) = (g.channels, n * plane);
    for ch in 0..c {
        let (mean, rstd) = (stats[ch], stats[c + ch]);
        let k = |i: usize| at(ch, i, c, plane);
        let x_hat = |i: usize| (x[k(i)] - mean) * rstd;
        let dy_sum = (0..m).fold(T::zero(), |acc, i| acc + dy[k(i)]);
        let dyx_sum = (0..m).fold(T::zero(), |acc, i| acc + dy[k(i)] * x_hat(i));
        dgain[ch] = dyx_sum;
        dbias[ch] = dy_sum;
        if let Some(dx) = dx.as_deref_mut() {
            let (dy_mean, dyx_mean) = (dy_sum / cast(m), dyx_sum / cast(m));
            for i in 0..m {
                dx[k(i)] = gain[ch] * rstd * (dy[k(i)] - dy_mean - x_hat(i) * dyx_mean);
            }
        }
    }
    Ok(())
}

/// Checks `batch_norm_backward`'s arguments.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_backward<T>(
    dx: Option<&[T]>,
    dgain: &[T],
    dbias: &[T],
    x: &[T],
    stats: &[T],
    gain: &[T],
    dy: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<()> {
    let (op, c) = ("batch_norm_backward", g.channels);
    check_len(op, "input", x.len(), n, c * plane)?;
    check_len(op, "output gradient", dy.len(), n, c * plane)?;
    check_len(op, "stats", stats.len(), 2, c)?;
    check_len(op, "gain", gain.len(), 1, c)?;
    check_len(op, "gain gradient", dgain.len(), 1, c)?;
    check_len(op, "bias gradient", dbias.len(), 1, c)?;
    match dx {
        Some(dx) => check_len(op, "input gradient", dx.len(), n, c * plane),
        None => Ok(()),
    }
}

fn cast<T: Float>(v: impl num_traits::ToPrimitive) -> T {
    T::from(v).unwrap_or_else(T::nan)
}
