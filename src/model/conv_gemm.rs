//! The CPU backend's convolutions: each sample's patches unrolled into a matrix (im2col)
//! and multiplied through [`Scalar::matmul`], the samples spread over rayon's pool. They keep
//! the contract and checks of the reference loops in `cpu/conv.rs`, which the tests hold
//! them to; the reference walks every connection one multiply-add at a time, which left the
//! CPU backend's CNN at 90 samples a second.
//!
//! With `K = in_channels · kh · kw` (a filter's values) and `P = out_h · out_w` (an output
//! plane's), each sample's patches are `cols (K, P)`, and
//! - forward: `y (out, P) = W (out, K) · cols`, plus each channel's bias;
//! - input gradient: `dcols = Wᵀ · dy`, scattered back onto the image (col2im);
//! - weight gradient: `dW = Σ_samples dy · colsᵀ`.

use rayon::prelude::*;

use super::gemm::Scalar;
use crate::Result;
use crate::cpu::conv::check;
use crate::shape::{Conv2dShape, MatmulForm, check_len};

/// Samples per task of the weight gradient. Each task's sum is added to the total in task
/// order, so the result does not depend on how many threads ran them.
const SAMPLES_PER_TASK: usize = 8;

/// `y = conv2d(x; w) (+ b)`, as `cpu::conv2d_forward`.
pub(crate) fn forward<T: Scalar>(
    y: &mut [T],
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    n: usize,
    g: &Conv2dShape,
) -> Result<()> {
    check(g, "conv2d_forward", n, x, w, y)?;
    if let Some(b) = b {
        check_len("conv2d_forward", "bias", b.len(), g.out_channels, 1)?;
    }
    let (k, p) = (g.filter_len(), plane(g));
    let samples = x.par_chunks(g.input_len()).zip(y.par_chunks_mut(g.output_len()));
    samples.try_for_each_init(
        || vec![T::zero(); k * p],
        |cols, (x, y)| {
            im2col(cols, x, g);
            T::matmul(y, w, cols, None, g.out_channels, k, p, MatmulForm::AB)?;
            if let Some(b) = b {
                for (row, &bias) in y.chunks_exact_mut(p).zip(b) {
                    row.iter_mut().for_each(|v| *v = *v + bias);
                }
            }
            Ok(())
        },
    )
}

/// `dx`, the gradient of the input, as `cpu::conv2d_input_grad`.
pub(crate) fn input_grad<T: Scalar>(
    dx: &mut [T],
    dy: &[T],
    w: &[T],
    n: usize,
    g: &Conv2dShape,
) -> Result<()> {
    check(g, "conv2d_input_grad", n, dx, w, dy)?;
    let (k, p) = (g.filter_len(), plane(g));
    let samples = dx.par_chunks_mut(g.input_len()).zip(dy.par_chunks(g.output_len()));
    samples.try_for_each_init(
        || vec![T::zero(); k * p],
        |dcols, (dx, dy)| {
            T::matmul(dcols, w, dy, None, k, g.out_channels, p, MatmulForm::AtB)?;
            col2im(dx, dcols, g);
            Ok(())
        },
    )
}

/// `dw`, the gradient of the weights, as `cpu::conv2d_weight_grad`.
pub(crate) fn weight_grad<T: Scalar>(
    dw: &mut [T],
    dy: &[T],
    x: &[T],
    n: usize,
    g: &Conv2dShape,
) -> Result<()> {
    check(g, "conv2d_weight_grad", n, x, dw, dy)?;
    let (k, p) = (g.filter_len(), plane(g));
    let tasks =
        x.par_chunks(SAMPLES_PER_TASK * g.input_len()).zip(dy.par_chunks(SAMPLES_PER_TASK * g.output_len()));
    let sums: Vec<Vec<T>> = tasks
        .map(|(x, dy)| {
            let (mut sum, mut cols, mut term) =
                (vec![T::zero(); dw.len()], vec![T::zero(); k * p], vec![T::zero(); dw.len()]);
            for (x, dy) in x.chunks_exact(g.input_len()).zip(dy.chunks_exact(g.output_len())) {
                im2col(&mut cols, x, g);
                T::matmul(&mut term, dy, &cols, None, g.out_channels, p, k, MatmulForm::ABt)?;
                sum.iter_mut().zip(&term).for_each(|(s, &t)| *s = *s + t);
            }
            Ok(sum)
        })
        .collect::<Result<_>>()?;
    dw.fill(T::zero());
    for sum in sums {
        dw.iter_mut().zip(&sum).for_each(|(d, &s)| *d = *d + s);
    }
    Ok(())
}

/// Values in one output plane: `out_h · out_w`.
fn plane(g: &Conv2dShape) -> usize {
    let (oh, ow) = g.out_size();
    oh * ow
}

/// The image row (or column) that kernel offset `k` reads at output position `pos` along one
/// axis, or None in the padding.
fn tap(pos: usize, k: usize, stride: usize, padding: usize, len: usize) -> Option<usize> {
    (pos * stride + k).checked_sub(padding).filter(|&v| v < len)
}

/// Walks the patch matrix of one sample row by row: for each patch row `(c, i, j)` and output
/// row `oy`, `visit` gets the image row that patch row reads there (None in the padding), the
/// kernel column j, and the `ow` values of `cols` for it.
fn patch_rows<T, C: IntoIterator<Item = T>>(
    g: &Conv2dShape,
    cols: C,
    mut visit: impl FnMut(Option<usize>, usize, T),
) {
    let (oh, _) = g.out_size();
    let (kh, kw) = g.kernel;
    let mut rows = cols.into_iter();
    for c in 0..g.in_channels {
        for i in 0..kh {
            for j in 0..kw {
                for oy in 0..oh {
                    let line = tap(oy, i, g.stride.0, g.padding.0, g.image.0);
                    let row = rows.next().expect("K · out_h rows of out_w");
                    visit(line.map(|iy| (c * g.image.0 + iy) * g.image.1), j, row);
                }
            }
        }
    }
}

/// `cols[(c, i, j), (oy, ox)]`: the pixel each kernel offset reads at each output position
/// of one sample `x`, 0 in the padding.
fn im2col<T: Scalar>(cols: &mut [T], x: &[T], g: &Conv2dShape) {
    let ow = g.out_size().1;
    patch_rows(g, cols.chunks_exact_mut(ow), |line, j, out| match line {
        None => out.fill(T::zero()),
        Some(start) => {
            let line = &x[start..start + g.image.1];
            if g.stride.1 == 1 {
                // Output column ox reads pixel ox + j − padding: one run of pixels, zeros
                // either side.
                let first = g.padding.1.saturating_sub(j).min(out.len());
                let end = (g.image.1 + g.padding.1).saturating_sub(j).clamp(first, out.len());
                out[..first].fill(T::zero());
                if end > first {
                    let from = first + j - g.padding.1;
                    out[first..end].copy_from_slice(&line[from..from + end - first]);
                }
                out[end..].fill(T::zero());
            } else {
                for (ox, v) in out.iter_mut().enumerate() {
                    *v = tap(ox, j, g.stride.1, g.padding.1, g.image.1).map_or(T::zero(), |ix| line[ix]);
                }
            }
        }
    });
}

/// The reverse of [`im2col`]: each patch value's gradient added onto the pixel it read.
fn col2im<T: Scalar>(dx: &mut [T], dcols: &[T], g: &Conv2dShape) {
    let ow = g.out_size().1;
    dx.fill(T::zero());
    patch_rows(g, dcols.chunks_exact(ow), |line, j, row| {
        if let Some(start) = line {
            let line = &mut dx[start..start + g.image.1];
            for (ox, &v) in row.iter().enumerate() {
                if let Some(ix) = tap(ox, j, g.stride.1, g.padding.1, g.image.1) {
                    line[ix] = line[ix] + v;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;

    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f64 / 1000.0 - 1.0).collect()
    }

    /// Odd kernels, stride 2, padding (some wider than the kernel), 1×1 kernels, 1 and 3 input
    /// channels, and batches of more than one task of the weight gradient, against the
    /// reference's loops.
    #[test]
    fn unrolled_convolutions_equal_the_reference() {
        let shapes = [
            (3, Conv2dShape::new(1, (7, 6), 4, (3, 3)).padding((1, 1))),
            (2, Conv2dShape::new(3, (9, 7), 5, (3, 2)).stride((2, 2)).padding((1, 0))),
            (17, Conv2dShape::new(3, (5, 5), 2, (1, 1))),
            (9, Conv2dShape::new(2, (8, 5), 3, (5, 5)).stride((2, 1)).padding((2, 2))),
            // Padding wider than the kernel: whole rows and runs of zeros (stride 1).
            (2, Conv2dShape::new(2, (3, 4), 2, (2, 3)).padding((4, 5))),
        ];
        for (n, g) in shapes {
            let (x, w, b, dy) = (
                values(n * g.input_len(), 1),
                values(g.out_channels * g.filter_len(), 2),
                values(g.out_channels, 3),
                values(n * g.output_len(), 4),
            );
            let close = |what: &str, got: &[f64], want: &[f64]| {
                let worst = crate::test_util::worst_difference(got, want);
                assert!(worst < 1e-12, "{what} {g:?} batch {n}: off by {worst}");
            };
            let (mut got, mut want) = (vec![f64::NAN; dy.len()], vec![0.0; dy.len()]);
            forward(&mut got, &x, &w, Some(&b), n, &g).unwrap();
            cpu::conv2d_forward(&mut want, &x, &w, Some(&b), n, &g).unwrap();
            close("forward", &got, &want);
            let (mut got, mut want) = (vec![f64::NAN; x.len()], vec![0.0; x.len()]);
            input_grad(&mut got, &dy, &w, n, &g).unwrap();
            cpu::conv2d_input_grad(&mut want, &dy, &w, n, &g).unwrap();
            close("input gradient", &got, &want);
            let (mut got, mut want) = (vec![f64::NAN; w.len()], vec![0.0; w.len()]);
            weight_grad(&mut got, &dy, &x, n, &g).unwrap();
            cpu::conv2d_weight_grad(&mut want, &dy, &x, n, &g).unwrap();
            close("weight gradient", &got, &want);
        }
    }

    #[test]
    fn wrong_lengths_are_errors_naming_the_op() {
        let g = Conv2dShape::new(1, (4, 4), 2, (3, 3));
        let err = forward(&mut [0.0f32; 7], &[0.0; 16], &[0.0; 18], None, 1, &g).unwrap_err();
        assert!(err.to_string().contains("conv2d_forward"), "{err}");
    }
}
