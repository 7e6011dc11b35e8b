//! The CPU backend's matrix product. It keeps the contract of the reference
//! [`crate::cpu::matmul_forward`] (same arguments, same checks) but computes with
//! cache-blocked, vectorised kernels, so that GPU-vs-CPU figures compare the GPU with a real
//! CPU implementation rather than with the textbook loops the tests use as their oracle.
//!
//! Two kernel crates, each for the forms where it measured faster (2-core AMD EPYC,
//! 2026-12-05, both in the bands below; BENCHMARKS.md has the table): `gemm` (candle's) for
//! `A·Bᵀ`, a dense layer's forward (1.15–1.45× `matrixmultiply` at the MNIST MLP's first
//! layer from batch 64 to 1024, 13× at batch 1, a row times a matrix), and `A·B`, its input
//! gradient (0.96–1.07×, 9× at batch 1); `matrixmultiply` for `Aᵀ·B`, its weight gradient
//! (where `gemm` ran at 0.88–1.08×).
//!
//! Threads only where they pay: a product of at least [`PARALLEL_MACS`] multiply-adds is cut
//! into bands of C (rows or columns), one per core, each a single-threaded product on rayon's
//! pool. Smaller ones run on the calling thread. (`matrixmultiply`'s own threading woke its
//! pool for every product; `gemm`'s split the weight gradients' shapes badly.)

use num_traits::Float;

use crate::Result;
use crate::shape::{MatmulForm, check_len};

/// A float the CPU backend computes in: f32 for models, f64 for gradient checks.
pub trait Scalar: Float + Send + Sync {
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

/// Products with fewer multiply-adds than this run on one thread: below it, handing work to
/// another thread costs more than it saves. Measured on 2 cores: 256×128·128×64 (2^21) runs
/// 1.2–1.4× faster in two bands, 16×784·784×128 (1.6 M) and a convolution's 32×144·144×196
/// (0.9 M) slower.
pub(crate) const PARALLEL_MACS: usize = 1 << 21;

/// How a product is cut into bands, one per core: along C's rows or along its columns,
/// whichever copies less. Each band packs its own A rows (or B columns) and all of the other
/// operand, so cutting along the longer side of C repeats the smaller operand.
#[derive(Clone, Copy)]
struct Bands {
    count: usize,
    along_rows: bool,
}

fn bands(m: usize, k: usize, n: usize) -> Bands {
    // The pool's threads (one per core unless RAYON_NUM_THREADS or an `install`ed pool says
    // otherwise; one in the browser, where rayon runs everything on the calling thread).
    let cores = rayon::current_num_threads();
    let along_rows = m >= n;
    let side = if along_rows { m } else { n };
    let count =
        if m.saturating_mul(k).saturating_mul(n) < PARALLEL_MACS { 1 } else { cores.min(side / 16).max(1) };
    Bands { count, along_rows }
}

/// A pointer handed to the band threads (raw pointers are not `Send`). Read through `get`, so
/// that a closure captures the wrapper and not the bare pointer field.
#[derive(Clone, Copy)]
struct Shared<T>(*const T);

// SAFETY: the bands read A and B and write disjoint blocks of C (see the band's SAFETY note),
// and every band ends before the product returns.
unsafe impl<T: Sync> Send for Shared<T> {}
unsafe impl<T: Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn get(self) -> *const T {
        self.0
    }
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
    ($t:ty, $mm:path) => {
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
                if m == 0 || n == 0 {
                    return Ok(()); // an empty C
                }
                let beta = start_with_bias(out, bias, n);
                let bands = bands(m, k, n);
                let side = if bands.along_rows { m } else { n };
                let width = side.div_ceil(bands.count);
                let (a_at, b_at, c_at) =
                    (Shared(a.as_ptr()), Shared(b.as_ptr()), Shared(out.as_mut_ptr().cast_const()));
                // Band i: rows (or columns) [i·width, …) of C, of A's rows (or B's columns).
                let band = move |i: usize| {
                    let first = i * width;
                    let len = width.min(side - first);
                    let (rows, cols, first_row, first_col) =
                        if bands.along_rows { (len, n, first, 0) } else { (m, len, 0, first) };
                    // SAFETY: the lengths were checked above against m, k, n, and the strides
                    // describe exactly those row-major (or transposed) layouts. This band reads
                    // rows first_row.. of A and columns first_col.. of B, and writes the block
                    // of C at (first_row, first_col) of rows × cols with C's row stride n: the
                    // bands' blocks are disjoint, and `out` aliases neither a nor b.
                    unsafe {
                        let a = a_at.get().offset(first_row as isize * rsa);
                        let b = b_at.get().offset(first_col as isize * csb);
                        let c = c_at.get().cast_mut().add(first_row * n + first_col);
                        match form {
                            MatmulForm::AB | MatmulForm::ABt => gemm::gemm(
                                rows,
                                cols,
                                k,
                                c,
                                1,
                                n as isize,
                                beta != 0.0, // add to the bias in C, or overwrite C
                                a,
                                csa,
                                rsa,
                                b,
                                csb,
                                rsb,
                                1.0, // C = 1 · C + 1 · A·B
                                1.0,
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            ),
                            MatmulForm::AtB => {
                                $mm(rows, k, cols, 1.0, a, rsa, csa, b, rsb, csb, beta, c, n as isize, 1)
                            }
                        }
                    }
                };
                if bands.count == 1 || m == 0 || n == 0 {
                    band(0);
                } else {
                    let count = side.div_ceil(width);
                    // On the pool even when called from outside it: the caller waits and a pool
                    // thread takes the last band, so the bands never share the cores with a
                    // third thread (the caller, beside a pool thread spinning for work). That
                    // made 256×128·128×64 1.25× faster (~30 µs calls) and 1024³ 1.05×, on 2
                    // cores. Called from a pool thread (a CPU model's step), it runs in place.
                    rayon::scope(|scope| {
                        for i in 0..count - 1 {
                            scope.spawn(move |_| band(i));
                        }
                        band(count - 1);
                    });
                }
                Ok(())
            }
        }
    };
}

scalar!(f32, matrixmultiply::sgemm);
scalar!(f64, matrixmultiply::dgemm);

#[cfg(test)]
mod tests {
    use super::*;

    /// Products on one thread and in bands on a pool of three, tall, wide and long, in every
    /// form, with and without a bias, and empty ones, against the reference's plain loops.
    #[test]
    fn products_equal_the_reference() {
        let values = |len: usize, seed: usize| -> Vec<f64> {
            (0..len).map(|i| ((i * 7919 + seed * 104_729) % 2001) as f64 / 1000.0 - 1.0).collect()
        };
        let shapes = [
            (301, 200, 150),
            (150, 200, 301),
            (17, 4000, 130),
            (1, 37, 9),
            (7, 5, 3),
            (4, 0, 3),
            (0, 3, 4),
            (3, 4, 0),
        ];
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for (m, k, n) in shapes {
                    let banded = threads > 1 && m * k * n >= PARALLEL_MACS;
                    assert_eq!(bands(m, k, n).count > 1, banded, "{m}x{k}x{n} on {threads} threads");
                    for form in MatmulForm::ALL {
                        let (a, b, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
                        for bias in [None, Some(&bias[..])] {
                            let (mut got, mut want) = (vec![f64::NAN; m * n], vec![0.0; m * n]);
                            f64::matmul(&mut got, &a, &b, bias, m, k, n, form).unwrap();
                            crate::cpu::matmul_forward(&mut want, &a, &b, bias, m, k, n, form).unwrap();
                            let worst = crate::test_util::worst_difference(&got, &want);
                            let with = if bias.is_some() { "with" } else { "without" };
                            assert!(
                                worst < 1e-9,
                                "{form:?} {m}x{k}x{n} {with} bias, {threads} threads: off by {worst}"
                            );
                        }
                    }
                }
            });
        }
    }
}
