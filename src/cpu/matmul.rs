use num_traits::Float;

use crate::Result;
use crate::shape::{MatmulForm, check_len};

/// `out = A·B (+ bias)` in one of the three forms.
///
/// Shapes: `out` is (m, n); A and B as [`MatmulForm::operand_shapes`] says; `bias` is (n),
/// added to every row.
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward<T: Float>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    m: usize,
    k: usize,
    n: usize,
    form: MatmulForm,
) -> Result<()> {
    let op = form.op_name();
    let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
    check_len(op, "A", a.len(), ar, ac)?;
    check_len(op, "B", b.len(), br, bc)?;
    check_len(op, "output", out.len(), m, n)?;
    if let Some(bias) = bias {
        check_len(op, "bias", bias.len(), 1, n)?;
    }
    let a_at = |i: usize, p: usize| match form {
        MatmulForm::AtB => a[p * m + i],
        _ => a[i * k + p],
    };
    let b_at = |p: usize, j: usize| match form {
        MatmulForm::ABt => b[j * k + p],
        _ => b[p * n + j],
    };
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                acc = acc + a_at(i, p) * b_at(p, j);
            }
            out[i * n + j] = acc + bias.map_or(T::zero(), |bias| bias[j]);
        }
    }
    Ok(())
}

/// Gradients of `out = A·B + bias` given `d_out`, each itself a matmul in another form
/// (for `AB`: dA = dOut·Bᵀ, dB = Aᵀ·dOut, dBias = column sums of dOut).
///
/// Shapes: `d_out` is (m, n); `d_a`, `d_b` have the shapes of A and B; `d_bias` is (n).
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward<T: Float>(
    d_a: &mut [T],
    d_b: &mut [T],
    d_bias: Option<&mut [T]>,
    d_out: &[T],
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    form: MatmulForm,
) -> Result<()> {
    use MatmulForm::*;
    check_len(form.op_name(), "output gradient", d_out.len(), m, n)?;
    match form {
        AB => {
            matmul_forward(d_a, d_out, b, None, m, n, k, ABt)?;
            matmul_forward(d_b, a, d_out, None, k, m, n, AtB)?;
        }
        ABt => {
            matmul_forward(d_a, d_out, b, None, m, n, k, AB)?;
            matmul_forward(d_b, d_out, a, None, n, m, k, AtB)?;
        }
        AtB => {
            matmul_forward(d_a, b, d_out, None, k, n, m, ABt)?;
            matmul_forward(d_b, a, d_out, None, k, m, n, AB)?;
        }
    }
    if let Some(d_bias) = d_bias {
        super::sum_columns(d_bias, d_out, m, n, T::one())?;
    }
    Ok(())
}
