//! Shapes shared by the CPU reference and the GPU kernels: every tensor here is a row-major
//! matrix, and checks live in one place so both backends reject bad input alike.

use crate::{Error, Result};

/// Which operand a matmul reads transposed. These are the three products a dense layer needs:
/// `AB` for the forward pass, `ABt` and `AtB` for the gradients of its input and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MatmulForm {
    /// `C[m,n] = A[m,k] · B[k,n]`
    AB,
    /// `C[m,n] = A[m,k] · B[n,k]ᵀ`
    ABt,
    /// `C[m,n] = A[k,m]ᵀ · B[k,n]`
    AtB,
}

impl MatmulForm {
    /// The three forms, for tests and benches that try each.
    pub const ALL: [MatmulForm; 3] = [MatmulForm::AB, MatmulForm::ABt, MatmulForm::AtB];

    /// The stored shapes `(rows, cols)` of A and B for a product of size `m×k·k×n`.
    pub fn operand_shapes(self, m: usize, k: usize, n: usize) -> ((usize, usize), (usize, usize)) {
        match self {
            MatmulForm::AB => ((m, k), (k, n)),
            MatmulForm::ABt => ((m, k), (n, k)),
            MatmulForm::AtB => ((k, m), (k, n)),
        }
    }

    /// `(m, k, n)` from the stored shapes of A and B, or a shape error naming the op.
    pub fn dims(self, a: (usize, usize), b: (usize, usize)) -> Result<(usize, usize, usize)> {
        let (m, k, k2, n) = match self {
            MatmulForm::AB => (a.0, a.1, b.0, b.1),
            MatmulForm::ABt => (a.0, a.1, b.1, b.0),
            MatmulForm::AtB => (a.1, a.0, b.0, b.1),
        };
        if k != k2 {
            let ((ar, ac), (br, bc)) = self.operand_shapes(m, k, n);
            return Err(Error::shape(
                self.op_name(),
                format!("A {ar}x{ac} with B {br}x{bc} (shared dimension {k})"),
                format!("A {}x{}, B {}x{}", a.0, a.1, b.0, b.1),
            ));
        }
        Ok((m, k, n))
    }

    /// The form's name in errors and reports (`matmul A·Bᵀ`).
    pub fn op_name(self) -> &'static str {
        match self {
            MatmulForm::AB => "matmul A·B",
            MatmulForm::ABt => "matmul A·Bᵀ",
            MatmulForm::AtB => "matmul Aᵀ·B",
        }
    }
}

/// Fails unless `len == rows * cols`.
pub(crate) fn check_len(op: &'static str, what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    // Checked: the CPU's products trust this length in an unsafe block.
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::shape(op, format!("{what} of {rows}x{cols} values"), format!("{len} values")));
    }
    Ok(())
}

/// Fails unless two matrices have the same shape.
pub(crate) fn check_same(
    op: &'static str,
    what: &str,
    got: (usize, usize),
    want: (usize, usize),
) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("{what} of {}x{}", want.0, want.1),
            format!("{}x{}", got.0, got.1),
        ));
    }
    Ok(())
}

/// Fails unless every label is a valid class index.
pub(crate) fn check_labels(op: &'static str, labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::shape(
            op,
            format!("labels in 0..{classes}"),
            format!("label {} at row {i}", labels[i]),
        )),
    }
}

/// NaN and infinities are refused at the door: one would turn every weight it reaches into
/// NaN. (A loss that overflows in training is caught on the GPU by the loss watch instead.)
pub(crate) fn check_finite(op: &'static str, what: &'static str, values: &[f32], width: usize) -> Result<()> {
    // Checked a chunk at a time without stopping early, which the compiler vectorizes: it ran
    // at 6% of a CPU training step value by value. The first bad value is looked up after.
    if values.chunks(1024).all(|chunk| chunk.iter().fold(true, |ok, v| ok & v.is_finite())) {
        return Ok(());
    }
    let i = values.iter().position(|v| !v.is_finite()).expect("a value that is not finite");
    Err(Error::NotFinite { op, what, row: i / width, col: i % width, value: values[i] })
}
