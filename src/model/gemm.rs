//! The CPU backend's matrix product. It keeps the contract of the reference
//! [`crate::cpu::matmul_forward`] (same arguments, same checks) but computes with
//! `matrixmultiply`'s cache-blocked, vectorised kernels, so that GPU-vs-CPU figures compare
//! the GPU with a real CPU implementation rather than with the textbook loops the tests use
//! as their oracle.
//!
//! Threads only where they pay: a product of at least [`PARALLEL_MACS`] multiply-adds is cut
//! into bands of rows of C, one per core, each a single-threaded product. Smaller ones run on
//! the calling thread. (`matrixmultiply`'s own threading woke its pool for every product: on 2
//! cores it made MNIST-MLP training 10–30% slower at batch 64 and 256 than one thread.)

use std::sync::OnceLock;

use num_traits::Float;

use crate::Result;
use crate::shape::{MatmulForm, check_len};

/// A float the CPU backend computes in: f32 for models, f64 for gradient checks.
pub trait Scalar: Float {
    /// `out = A·B (+ bias)` in one of the three forms; shapes as in the reference.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        out: &mut [Self],
        a: &[Self],
        b: &[Self],
        bias: Option<&[Self]>,
        m: usize,
        k: usize,
        n: usize,
        form: MatmulForm,
    ) -> Result<()>;
}

/// Checks the shapes and gives the element strides `(row, col)` of A and B as `m×k` and `k×n`.
fn strides<T>(
    out: &[T],
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    (m, k, n): (usize, usize, usize),
    form: MatmulForm,
) -> Result<[isize; 4]> {
    let op = form.op_name();
    let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
    check_len(op, "A", a.len(), ar, ac)?;
    check_len(op, "B", b.len(), br, bc)?;
    check_len(op, "output", out.len(), m, n)?;
    if let Some(bias) = bias {
        check_len(op, "bias", bias.len(), 1, n)?;
    }
    let (k_, m_, n_) = (k as isize, m as isize, n as isize);
    Ok(match form {
        MatmulForm::AB => [k_, 1, n_, 1],
        MatmulForm::ABt => [k_, 1, 1, k_],
        MatmulForm::AtB => [1, m_, n_, 1],
    })
}

/// Products with fewer multiply-adds than this run on one thread: below it, starting a
/// thread costs more than it saves (2^23 is ~0.1 ms of work on one core; at batch 256 only the
/// MNIST MLP's first layer, forward and weight gradient, reaches it).
pub(crate) const PARALLEL_MACS: usize = 1 << 24;

/// The bands of rows to cut `(m, k, n)` into: one per core for big products, at least 16
/// rows each.
fn bands(m: usize, k: usize, n: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if m.saturating_mul(k).saturating_mul(n) < PARALLEL_MACS { 1 } else { cores.min(m / 16).max(1) }
}

/// Starts each row of `out` as the bias (the product then adds to it), or says the product
/// overwrites `out`: matrixmultiply's `beta`.
fn start_with_bias<T: Float>(out: &mut [T], bias: Option<&[T]>, n: usize) -> T {
    match bias {
        Some(bias) => {
            for row in out.chunks_mut(n) {
                row.copy_from_slice(bias);
            }
            T::one()
        }
        None => T::zero(),
    }
}

macro_rules! scalar {
    ($t:ty, $gemm:path) => {
        impl Scalar for $t {
            fn matmul(
                out: &mut [$t],
                a: &[$t],
                b: &[$t],
                bias: Option<&[$t]>,
                m: usize,
                k: usize,
                n: usize,
                form: MatmulForm,
            ) -> Result<()> {
                let [rsa, csa, rsb, csb] = strides(out, a, b, bias, (m, k, n), form)?;
                let beta = start_with_bias(out, bias, n);
                let bands = bands(m, k, n);
                let rows = m.div_ceil(bands);
                // Raw addresses, to hand to the band threads (pointers are not Send).
                let (a_at, b_at) = (a.as_ptr() as usize, b.as_ptr() as usize);
                let band = |first_row: usize, c: &mut [$t]| {
                    // SAFETY: the lengths were checked above against m, k, n and the strides
                    // describe exactly those row-major (or transposed) layouts; this band's
                    // rows of A start `first_row` rows in, and `c` is exactly its rows of C
                    // (a disjoint part of `out`, which does not alias a or b).
                    unsafe {
                        $gemm(
                            c.len() / n,
                            k,
                            n,
                            1.0,
                            (a_at as *const $t).offset(first_row as isize * rsa),
                            rsa,
                            csa,
                            b_at as *const $t,
                            rsb,
                            csb,
                            beta,
                            c.as_mut_ptr(),
                            n as isize,
                            1,
                        );
                    }
                };
                if bands == 1 || n == 0 {
                    band(0, out);
                } else {
                    rayon::in_place_scope(|scope| {
                        let mut chunks = out.chunks_mut(rows * n).enumerate();
                        let last = chunks.next_back();
                        for (i, c) in chunks {
                            scope.spawn(move |_| band(i * rows, c));
                        }
                        // The calling thread takes the last band.
                        if let Some((i, c)) = last {
                            band(i * rows, c);
                        }
                    });
                }
                Ok(())
            }
        }
    };
}

scalar!(f32, matrixmultiply::sgemm);
scalar!(f64, matrixmultiply::dgemm);
