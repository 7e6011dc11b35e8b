//! The CPU backend's matrix product. It keeps the contract of the reference
//! [`crate::cpu::matmul_forward`] (same arguments, same checks) but computes with
//! `matrixmultiply`'s cache-blocked, vectorised and threaded kernels, so that GPU-vs-CPU
//! figures compare the GPU with a real CPU implementation rather than with the textbook
//! loops the tests use as their oracle.

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

fn add_bias<T: Float>(out: &mut [T], bias: Option<&[T]>, n: usize) {
    if let Some(bias) = bias {
        for row in out.chunks_mut(n) {
            for (o, &b) in row.iter_mut().zip(bias) {
                *o = *o + b;
            }
        }
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
                // SAFETY: the lengths were checked above against m, k, n and the strides
                // describe exactly those row-major (or transposed) layouts, so every element
                // matrixmultiply touches is inside its slice; `out` does not alias a or b.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        csb,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
                add_bias(out, bias, n);
                Ok(())
            }
        }
    };
}

scalar!(f32, matrixmultiply::sgemm);
scalar!(f64, matrixmultiply::dgemm);
