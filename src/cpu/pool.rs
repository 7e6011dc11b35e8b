use num_traits::Float;

use crate::Result;
use crate::shape::{Pool2dShape, check_len};

// 2-D pooling, PyTorch's MaxPool2d and AvgPool2d (no padding), over a batch of NCHW images
// (see `Pool2dShape`). Shapes, with g the geometry, (oh, ow) = g.out_size() and n the batch:
//   x, dx:   (n, channels · height · width)   one image per row
//   y, dy:   (n, channels · oh · ow)
//   argmax:  (n, channels · oh · ow)          each window's winner: its index in the sample
// Window (oy, ox) covers the rows oy·sh … oy·sh + kh − 1 and columns ox·sw … ox·sw + kw − 1.

/// `y[n, c, oy, ox] = max` over the window, and `argmax` the first of its largest values in
/// row-major order (PyTorch's choice; a NaN wins, the last one if several, as there).
pub fn maxpool2d_forward<T: Float>(
    y: &mut [T],
    argmax: &mut [T],
    x: &[T],
    n: usize,
    g: &Pool2dShape,
) -> Result<()> {
    check(g, "maxpool2d_forward", n, x, y)?;
    check_len("maxpool2d_forward", "argmax", argmax.len(), n, g.output_len())?;
    for (s, c, oy, ox, out) in outputs(g, n) {
        let mut best = None::<(usize, T)>;
        for p in window(g, c, oy, ox) {
            let v = x[s * g.input_len() + p];
            if best.is_none_or(|(_, b)| v > b || v.is_nan()) {
                best = Some((p, v));
            }
        }
        let (p, v) = best.expect("a window holds at least one value");
        y[out] = v;
        argmax[out] = T::from(p).unwrap_or_else(T::nan);
    }
    Ok(())
}

/// `dx[n, p] = Σ dy` over the windows whose winner was p (overlapping windows may share one).
pub fn maxpool2d_backward<T: Float>(
    dx: &mut [T],
    dy: &[T],
    argmax: &[T],
    n: usize,
    g: &Pool2dShape,
) -> Result<()> {
    check(g, "maxpool2d_backward", n, dx, dy)?;
    check_len("maxpool2d_backward", "argmax", argmax.len(), n, g.output_len())?;
    dx.fill(T::zero());
    for (s, _, _, _, out) in outputs(g, n) {
        let p = argmax[out].to_usize().filter(|&p| p < g.input_len());
        let p = p.ok_or_else(|| bad_winner(argmax[out], out, g.input_len()))?;
        let i = s * g.input_len() + p;
        dx[i] = dx[i] + dy[out];
    }
    Ok(())
}

/// The error for a winner that is no index into a sample of `len` values.
pub(crate) fn bad_winner<T: Float>(winner: T, out: usize, len: usize) -> crate::Error {
    let got = format!("{} at output {out}", winner.to_f64().unwrap_or(f64::NAN));
    crate::Error::shape("maxpool2d_backward", format!("indices within the image (0..{len})"), got)
}

/// `y[n, c, oy, ox]` = the mean of the window.
pub fn avgpool2d_forward<T: Float>(y: &mut [T], x: &[T], n: usize, g: &Pool2dShape) -> Result<()> {
    check(g, "avgpool2d_forward", n, x, y)?;
    let area = T::from(g.kernel.0 * g.kernel.1).unwrap_or_else(T::nan);
    for (s, c, oy, ox, out) in outputs(g, n) {
        let sum = window(g, c, oy, ox).fold(T::zero(), |sum, p| sum + x[s * g.input_len() + p]);
        y[out] = sum / area;
    }
    Ok(())
}

/// `dx[n, p] = Σ dy / (kh · kw)` over the windows that cover p.
pub fn avgpool2d_backward<T: Float>(dx: &mut [T], dy: &[T], n: usize, g: &Pool2dShape) -> Result<()> {
    check(g, "avgpool2d_backward", n, dx, dy)?;
    let area = T::from(g.kernel.0 * g.kernel.1).unwrap_or_else(T::nan);
    dx.fill(T::zero());
    for (s, c, oy, ox, out) in outputs(g, n) {
        for p in window(g, c, oy, ox) {
            let i = s * g.input_len() + p;
            dx[i] = dx[i] + dy[out] / area;
        }
    }
    Ok(())
}

/// Every output `(sample, channel, oy, ox)` with its index in y.
fn outputs(g: &Pool2dShape, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
    let (oh, ow) = g.out_size();
    let channels = g.channels;
    (0..n * channels * oh * ow).map(move |out| {
        (out / (channels * oh * ow), out / (oh * ow) % channels, out / ow % oh, out % ow, out)
    })
}

/// The indices, within a sample, of window (oy, ox) of channel c, in row-major order.
fn window(g: &Pool2dShape, c: usize, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
    let (kh, kw) = g.kernel;
    (0..kh * kw).map(move |k| {
        let (iy, ix) = (oy * g.stride.0 + k / kw, ox * g.stride.1 + k % kw);
        (c * g.image.0 + iy) * g.image.1 + ix
    })
}

pub(crate) fn check<T>(g: &Pool2dShape, op: &'static str, n: usize, x: &[T], y: &[T]) -> Result<()> {
    g.check(op)?;
    check_len(op, "images", x.len(), n, g.input_len())?;
    check_len(op, "outputs", y.len(), n, g.output_len())
}
