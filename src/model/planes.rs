//! The CPU backend's batch norm and pooling: the reference's math (`cpu/batch_norm.rs`,
//! `cpu/pool.rs`) walked plane by plane instead of value by value, and spread over rayon's
//! pool. The reference finds each value's channel with a division and a remainder and sums
//! one value at a time; in the CNN that made these layers half of a CPU training step.
//!
//! Batch norm sums each channel's planes with eight partial sums (so the compiler can use
//! vector adds): its statistics and gain/bias gradients differ from the reference's in the
//! last bits, which the tests bound. Every element-wise formula, and all of pooling, is the
//! reference's, value for value.

use std::ops::Range;

use rayon::prelude::*;

use super::gemm::Scalar;
use crate::Result;
use crate::cpu::batch_norm::{check_backward, check_forward, check_stats, finish_stats};
use crate::shape::{BatchNorm, Pool2dShape, check_len};

/// `Σ f(a[i], b[i])` in eight interleaved partial sums, added together at the end.
fn sum_pairs<T: Scalar>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut lanes = [T::zero(); 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a8.remainder(), b8.remainder());
    for (a, b) in a8.zip(b8) {
        for lane in 0..8 {
            lanes[lane] = lanes[lane] + f(a[lane], b[lane]);
        }
    }
    let rest = a_rest.iter().zip(b_rest).fold(T::zero(), |acc, (&a, &b)| acc + f(a, b));
    lanes.iter().fold(rest, |acc, &lane| acc + lane)
}

/// For each channel, `Σ f(x, y)` over its values in every sample: x and y are (n, c · plane).
fn channel_sums<T: Scalar>(
    x: &[T],
    y: &[T],
    c: usize,
    plane: usize,
    f: impl Fn(usize, T, T) -> T + Sync,
) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            // (Planes of no values give no chunks: `max(1)` only spares chunks_exact a 0.)
            let (x, y) = (x.chunks_exact(plane.max(1)), y.chunks_exact(plane.max(1)));
            let planes = x.zip(y).skip(ch).step_by(c);
            planes.fold(T::zero(), |acc, (x, y)| acc + sum_pairs(x, y, |x, y| f(ch, x, y)))
        })
        .collect()
}

/// As `cpu::batch_norm_stats` (training).
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_stats<T: Scalar>(
    stats: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    x: &[T],
    n: usize,
    plane: usize,
    g: &BatchNorm,
) -> Result<()> {
    let m = check_stats(stats, running_mean, running_var, x, n, plane, g)?;
    let count = T::from(m).unwrap_or_else(T::nan);
    let means: Vec<T> =
        channel_sums(x, x, g.channels, plane, |_, x, _| x).into_iter().map(|sum| sum / count).collect();
    let squares = channel_sums(x, x, g.channels, plane, |ch, x, _| (x - means[ch]) * (x - means[ch]));
    for (ch, (&mean, &squares)) in means.iter().zip(&squares).enumerate() {
        finish_stats(ch, mean, squares, m, stats, running_mean, running_var, g);
    }
    Ok(())
}

/// As `cpu::batch_norm_forward`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_forward<T: Scalar>(
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
    let plane = plane.max(1); // (no values, no chunks)
    let planes = y.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate();
    planes.for_each(|(k, (y, x))| {
        let ch = k % c;
        let (mean, rstd, gain, bias) = (stats[ch], stats[c + ch], gain[ch], bias[ch]);
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x - mean) * rstd * gain + bias;
        }
    });
    Ok(())
}

/// As `cpu::batch_norm_backward`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_backward<T: Scalar>(
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
    check_backward(dx.as_deref(), dgain, dbias, x, stats, gain, dy, n, plane, g)?;
    let c = g.channels;
    let x_hat = |ch: usize, x: T| (x - stats[ch]) * stats[c + ch];
    dbias.copy_from_slice(&channel_sums(dy, dy, c, plane, |_, dy, _| dy));
    dgain.copy_from_slice(&channel_sums(dy, x, c, plane, |ch, dy, x| dy * x_hat(ch, x)));
    if let Some(dx) = dx {
        let m = T::from(n * plane).unwrap_or_else(T::nan);
        let plane = plane.max(1); // (no values, no chunks)
        let planes = dx.par_chunks_mut(plane).zip(x.par_chunks(plane).zip(dy.par_chunks(plane)));
        planes.enumerate().for_each(|(k, (dx, (x, dy)))| {
            let ch = k % c;
            let (mean, rstd, gain) = (stats[ch], stats[c + ch], gain[ch]);
            let (dy_mean, dyx_mean) = (dbias[ch] / m, dgain[ch] / m);
            for (dx, (&x, &dy)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                *dx = gain * rstd * (dy - dy_mean - (x - mean) * rstd * dyx_mean);
            }
        });
    }
    Ok(())
}

/// Calls `visit(c, out, corner)` for every output of one sample in the order of y: its
/// channel, its index in y, and the index in channel c's plane of its window's first value.
fn windows(g: &Pool2dShape, mut visit: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = g.out_size();
    let mut out = 0;
    for c in 0..g.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                visit(c, out, oy * g.stride.0 * g.image.1 + ox * g.stride.1);
                out += 1;
            }
        }
    }
}

/// The ranges of a plane that the kh rows of the window at `corner` cover, top to bottom.
fn window_rows(g: &Pool2dShape, corner: usize) -> impl Iterator<Item = Range<usize>> {
    let (kw, width) = (g.kernel.1, g.image.1);
    (0..g.kernel.0).map(move |i| corner + i * width..corner + i * width + kw)
}

/// Each sample's images and outputs, on rayon's pool.
fn per_sample<'a, T: Scalar>(
    x: &'a [T],
    y: &'a mut [T],
    g: &Pool2dShape,
) -> impl IndexedParallelIterator<Item = (&'a [T], &'a mut [T])> {
    x.par_chunks(g.input_len()).zip(y.par_chunks_mut(g.output_len()))
}

/// As `cpu::maxpool2d_forward` (the same winner in ties and with NaNs).
pub(crate) fn maxpool2d_forward<T: Scalar>(
    y: &mut [T],
    argmax: &mut [T],
    x: &[T],
    n: usize,
    g: &Pool2dShape,
) -> Result<()> {
    crate::cpu::pool::check(g, "maxpool2d_forward", n, x, y)?;
    check_len("maxpool2d_forward", "argmax", argmax.len(), n, g.output_len())?;
    let plane = g.image.0 * g.image.1;
    let samples = per_sample(x, y, g).zip(argmax.par_chunks_mut(g.output_len()));
    samples.for_each(|((x, y), argmax)| {
        windows(g, |c, out, corner| {
            let image = &x[c * plane..(c + 1) * plane];
            let mut best = None::<(usize, T)>;
            for row in window_rows(g, corner) {
                for (p, &v) in row.clone().zip(&image[row]) {
                    if best.is_none_or(|(_, b)| v > b || v.is_nan()) {
                        best = Some((p, v));
                    }
                }
            }
            let (p, v) = best.expect("a window holds at least one value");
            y[out] = v;
            argmax[out] = T::from(c * plane + p).unwrap_or_else(T::nan);
        });
    });
    Ok(())
}

/// As `cpu::maxpool2d_backward`.
pub(crate) fn maxpool2d_backward<T: Scalar>(
    dx: &mut [T],
    dy: &[T],
    argmax: &[T],
    n: usize,
    g: &Pool2dShape,
) -> Result<()> {
    crate::cpu::pool::check(g, "maxpool2d_backward", n, dx, dy)?;
    check_len("maxpool2d_backward", "argmax", argmax.len(), n, g.output_len())?;
    let samples = dx.par_chunks_mut(g.input_len()).zip(dy.par_chunks(g.output_len()));
    samples.zip(argmax.par_chunks(g.output_len())).try_for_each(|((dx, dy), argmax)| {
        dx.fill(T::zero());
        for (out, (&dy, &winner)) in dy.iter().zip(argmax).enumerate() {
            let p = winner.to_usize().filter(|&p| p < dx.len());
            let p = p.ok_or_else(|| crate::cpu::pool::bad_winner(winner, out, dx.len()))?;
            dx[p] = dx[p] + dy;
        }
        Ok(())
    })
}

/// As `cpu::avgpool2d_forward`.
pub(crate) fn avgpool2d_forward<T: Scalar>(y: &mut [T], x: &[T], n: usize, g: &Pool2dShape) -> Result<()> {
    crate::cpu::pool::check(g, "avgpool2d_forward", n, x, y)?;
    let area = T::from(g.kernel.0 * g.kernel.1).unwrap_or_else(T::nan);
    let plane = g.image.0 * g.image.1;
    per_sample(x, y, g).for_each(|(x, y)| {
        windows(g, |c, out, corner| {
            let image = &x[c * plane..(c + 1) * plane];
            y[out] = window_rows(g, corner).flat_map(|row| &image[row]).fold(T::zero(), |s, &v| s + v) / area;
        });
    });
    Ok(())
}

/// As `cpu::avgpool2d_backward`.
pub(crate) fn avgpool2d_backward<T: Scalar>(dx: &mut [T], dy: &[T], n: usize, g: &Pool2dShape) -> Result<()> {
    crate::cpu::pool::check(g, "avgpool2d_backward", n, dx, dy)?;
    let area = T::from(g.kernel.0 * g.kernel.1).unwrap_or_else(T::nan);
    let plane = g.image.0 * g.image.1;
    let samples = dx.par_chunks_mut(g.input_len()).zip(dy.par_chunks(g.output_len()));
    samples.for_each(|(dx, dy)| {
        dx.fill(T::zero());
        windows(g, |c, out, corner| {
            let image = &mut dx[c * plane..(c + 1) * plane];
            for row in window_rows(g, corner) {
                image[row].iter_mut().for_each(|v| *v = *v + dy[out] / area);
            }
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::test_util::worst_difference as worst;

    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f64 / 1000.0 - 1.0).collect()
    }

    /// Planes of 1, 7 (under one group of eight), 9 and 196 values (and none: no statistics,
    /// nothing else to write), 1 to 5 channels, batches of 1 to 3; the sums' order differs
    /// from the reference's, so values agree to rounding.
    #[test]
    fn batch_norm_equals_the_reference() {
        for (n, c, plane) in [(2, 1, 1), (3, 5, 7), (1, 2, 9), (3, 2, 196), (2, 3, 0)] {
            let g = BatchNorm::new(c).momentum(0.3);
            let (x, dy) = (values(n * c * plane, 1), values(n * c * plane, 2));
            let (gain, bias) = (values(c, 3), values(c, 4));
            let running = || (values(c, 5), values(c, 6).iter().map(|v| v.abs() + 0.5).collect::<Vec<_>>());
            let (mut mean, mut var) = running();
            let (mut want_mean, mut want_var) = running();
            let (mut stats, mut want_stats) = (vec![f64::NAN; 2 * c], vec![0.0; 2 * c]);
            let got = batch_norm_stats(&mut stats, &mut mean, &mut var, &x, n, plane, &g);
            let want =
                cpu::batch_norm_stats(&mut want_stats, &mut want_mean, &mut want_var, &x, n, plane, &g);
            if plane == 0 {
                assert!(got.is_err() && want.is_err(), "no values, no statistics");
                stats = values(2 * c, 9).iter().map(|v| v.abs() + 0.5).collect();
            } else {
                got.unwrap();
                want.unwrap();
                for (what, got, want) in
                    [("stats", &stats, &want_stats), ("mean", &mean, &want_mean), ("var", &var, &want_var)]
                {
                    assert!(worst(got, want) < 1e-12, "{what} n={n} c={c} plane={plane}");
                }
            }

            let (mut y, mut want_y) = (vec![f64::NAN; x.len()], vec![0.0; x.len()]);
            batch_norm_forward(&mut y, &x, &stats, &gain, &bias, n, plane, &g).unwrap();
            cpu::batch_norm_forward(&mut want_y, &x, &stats, &gain, &bias, n, plane, &g).unwrap();
            assert_eq!(y, want_y, "forward: the reference's formula, value for value");

            for with_dx in [true, false] {
                let (mut dgain, mut dbias, mut dx) =
                    (vec![f64::NAN; c], vec![f64::NAN; c], vec![f64::NAN; x.len()]);
                let (mut want_dgain, mut want_dbias, mut want_dx) =
                    (vec![0.0; c], vec![0.0; c], vec![0.0; x.len()]);
                let dx_arg = with_dx.then_some(&mut dx[..]);
                batch_norm_backward(dx_arg, &mut dgain, &mut dbias, &x, &stats, &gain, &dy, n, plane, &g)
                    .unwrap();
                let want_arg = with_dx.then_some(&mut want_dx[..]);
                cpu::batch_norm_backward(
                    want_arg,
                    &mut want_dgain,
                    &mut want_dbias,
                    &x,
                    &stats,
                    &gain,
                    &dy,
                    n,
                    plane,
                    &g,
                )
                .unwrap();
                assert!(worst(&dgain, &want_dgain) < 1e-12 && worst(&dbias, &want_dbias) < 1e-12);
                if with_dx {
                    assert!(worst(&dx, &want_dx) < 1e-12, "dx n={n} c={c} plane={plane}");
                } else {
                    assert!(dx.iter().all(|v| v.is_nan()), "no dx asked, none written");
                }
            }
        }
    }

    #[test]
    fn batch_norm_errors_name_the_op() {
        let g = BatchNorm::new(2);
        let (mut stats, mut mean, mut var) = ([0.0f32; 4], [0.0; 2], [0.0; 2]);
        let err = batch_norm_stats(&mut stats, &mut mean, &mut var, &[0.0; 5], 1, 3, &g).unwrap_err();
        assert!(err.to_string().contains("batch_norm_stats"), "{err}");
        let err = batch_norm_stats(&mut stats, &mut mean, &mut var, &[0.0; 2], 1, 1, &g).unwrap_err();
        assert!(err.to_string().contains("more than 1 value"), "{err}");
    }

    /// Windows that tile, overlap (stride < kernel) and skip (stride > kernel), with ties and
    /// NaNs among the values, against the reference, value for value.
    #[test]
    fn pooling_equals_the_reference() {
        let shapes = [
            (3, Pool2dShape::new(2, (6, 4), (2, 2))),
            (2, Pool2dShape::new(3, (7, 5), (3, 2)).stride((1, 2))),
            (1, Pool2dShape::new(1, (9, 9), (2, 3)).stride((3, 4))),
        ];
        for (n, g) in shapes {
            // Rounded to tenths so that windows hold ties; every 37th value NaN.
            let mut x: Vec<f64> = values(n * g.input_len(), 7).iter().map(|v| (v * 10.0).round()).collect();
            x.iter_mut().step_by(37).for_each(|v| *v = f64::NAN);
            let dy = values(n * g.output_len(), 8);
            let outputs = || vec![f64::NAN; n * g.output_len()];
            let (mut y, mut argmax, mut want_y, mut want_argmax) =
                (outputs(), outputs(), outputs(), outputs());
            maxpool2d_forward(&mut y, &mut argmax, &x, n, &g).unwrap();
            cpu::maxpool2d_forward(&mut want_y, &mut want_argmax, &x, n, &g).unwrap();
            let bits = |v: &[f64]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want_y), "max forward {g:?}");
            assert_eq!(argmax, want_argmax, "argmax {g:?}");

            let (mut dx, mut want_dx) = (vec![f64::NAN; x.len()], vec![f64::NAN; x.len()]);
            maxpool2d_backward(&mut dx, &dy, &argmax, n, &g).unwrap();
            cpu::maxpool2d_backward(&mut want_dx, &dy, &argmax, n, &g).unwrap();
            assert_eq!(dx, want_dx, "max backward {g:?}");

            let x: Vec<f64> = x.iter().map(|v| if v.is_nan() { 0.5 } else { *v }).collect();
            let (mut y, mut want_y) = (outputs(), outputs());
            avgpool2d_forward(&mut y, &x, n, &g).unwrap();
            cpu::avgpool2d_forward(&mut want_y, &x, n, &g).unwrap();
            assert_eq!(y, want_y, "avg forward {g:?}");
            let (mut dx, mut want_dx) = (vec![f64::NAN; x.len()], vec![f64::NAN; x.len()]);
            avgpool2d_backward(&mut dx, &dy, n, &g).unwrap();
            cpu::avgpool2d_backward(&mut want_dx, &dy, n, &g).unwrap();
            assert_eq!(dx, want_dx, "avg backward {g:?}");
        }
    }

    #[test]
    fn pooling_errors_name_the_op() {
        let g = Pool2dShape::new(1, (4, 4), (2, 2));
        let err = maxpool2d_forward(&mut [0.0f32; 4], &mut [0.0; 4], &[0.0; 15], 1, &g).unwrap_err();
        assert!(err.to_string().contains("maxpool2d_forward"), "{err}");
        let err =
            maxpool2d_backward(&mut [0.0f32; 16], &[0.0; 4], &[0.0, 1.0, 2.0, 99.0], 1, &g).unwrap_err();
        assert!(err.to_string().contains("indices within the image (0..16)"), "{err}");
        assert!(err.to_string().contains("99 at output 3"), "{err}");
    }
}
