use num_traits::Float;

use crate::Result;
use crate::shape::check_len;

// Dropout with the same counter-based mask as `shaders/dropout.wgsl`: element i of step t
// keeps its value with probability 1 − p, scaled by 1 / (1 − p). Shapes: every slice has the
// same length n.

/// The uniform number in [0, 1) that decides element `i` of step `step`: the shader's hash.
pub fn dropout_uniform(seed: u32, step: u32, i: u32) -> f32 {
    let hashed = pcg(pcg(pcg(i) ^ step) ^ seed);
    (hashed >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// `mask[i] = keep ? 1 / (1 − p) : 0;  out[i] = x[i] · mask[i]`
pub fn dropout_forward<T: Float>(
    out: &mut [T],
    mask: &mut [T],
    x: &[T],
    p: f32,
    seed: u32,
    step: u32,
) -> Result<()> {
    dropout_forward_from(0, out, mask, x, p, seed, step)
}

/// [`dropout_forward`] on part of a tensor: element i of these slices is element `first + i`
/// of the whole (the hash's counter), so the CPU backend can cut a tensor into chunks.
pub(crate) fn dropout_forward_from<T: Float>(
    first: usize,
    out: &mut [T],
    mask: &mut [T],
    x: &[T],
    p: f32,
    seed: u32,
    step: u32,
) -> Result<()> {
    check_dropout(out, mask, x, p)?;
    let scale = T::from(1.0 / (1.0 - p)).unwrap_or_else(T::nan);
    for i in 0..x.len() {
        let keep = dropout_uniform(seed, step, (first + i) as u32) >= p;
        mask[i] = if keep { scale } else { T::zero() };
        out[i] = x[i] * mask[i];
    }
    Ok(())
}

/// Checks `dropout_forward`'s arguments: one length for every slice, `p` in [0, 1).
pub(crate) fn check_dropout<T>(out: &[T], mask: &[T], x: &[T], p: f32) -> Result<()> {
    check_len("dropout_forward", "output", out.len(), x.len(), 1)?;
    check_len("dropout_forward", "mask", mask.len(), x.len(), 1)?;
    match (0.0..1.0).contains(&p) {
        true => Ok(()),
        false => Err(crate::Error::shape("dropout_forward", "a drop probability in [0, 1)", p.to_string())),
    }
}

/// `dx[i] = dy[i] · mask[i]`
pub fn dropout_backward<T: Float>(dx: &mut [T], mask: &[T], dy: &[T]) -> Result<()> {
    check_len("dropout_backward", "mask", mask.len(), dx.len(), 1)?;
    check_len("dropout_backward", "output gradient", dy.len(), dx.len(), 1)?;
    for i in 0..dx.len() {
        dx[i] = dy[i] * mask[i];
    }
    Ok(())
}

/// PCG's output permutation as a hash (Jarzynski and Olano, 2020), as in the shader.
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}
