//! Element-wise ops of the CPU backend cut into chunks on rayon's pool: the reference's own
//! loops (`crate::cpu`), each chunk told where it starts where the math needs the index.
//! (Dropout's hashes and the optimizers' checks and updates were a fifth of an MNIST-MLP step
//! on one thread while the other core waited.)

use rayon::prelude::*;

use super::config::Optimizer;
use super::gemm::Scalar;
use crate::Result;
use crate::cpu::dropout::{check_dropout, dropout_forward_from};
use crate::cpu::optimizer::{check_adam, check_momentum};
use crate::cpu::{self};
use crate::settings::OptimizerSettings;
use crate::shape::check_len;

/// Values per chunk: enough that a task outweighs handing it to another thread.
const CHUNK: usize = 1 << 14;

/// As `cpu::dropout_forward` (the same masks: each value's hash reads its index in the
/// whole tensor). Its three hashes per value made it 7% of an MNIST-MLP step on one thread.
pub(crate) fn dropout_forward<T: Scalar>(
    out: &mut [T],
    mask: &mut [T],
    x: &[T],
    p: f32,
    seed: u32,
    step: u32,
) -> Result<()> {
    check_dropout(out, mask, x, p)?;
    let chunks = out.par_chunks_mut(CHUNK).zip(mask.par_chunks_mut(CHUNK)).zip(x.par_chunks(CHUNK));
    chunks
        .enumerate()
        .try_for_each(|(c, ((out, mask), x))| dropout_forward_from(c * CHUNK, out, mask, x, p, seed, step))
}

/// Whether one parameter tensor's update would leave every value finite: `cpu::sgd_check`,
/// `momentum_check`, `adam_check` or `adamw_check`, as `optimizer` says, with `state` its
/// tensors for this parameter (none, the velocity, or Adam's m and v). Each value's update
/// reads only its own values, so the chunks are the reference's loops on parts of them.
pub(crate) fn check<T: Scalar>(
    optimizer: Optimizer,
    w: &[T],
    state: &[Vec<T>],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<bool> {
    let chunks = w.par_chunks(CHUNK).zip(g.par_chunks(CHUNK));
    let oks: Result<Vec<bool>> = match (optimizer, state) {
        (Optimizer::Sgd { .. }, []) => {
            check_len("sgd_check", "gradient", g.len(), w.len(), 1)?;
            chunks.map(|(w, g)| cpu::sgd_check(w, g, s)).collect()
        }
        (Optimizer::Momentum { .. }, [velocity]) => {
            check_momentum("momentum_check", w, velocity, g)?;
            chunks
                .zip(velocity.par_chunks(CHUNK))
                .map(|((w, g), v)| cpu::momentum_check(w, v, g, s))
                .collect()
        }
        (Optimizer::Adam { .. } | Optimizer::AdamW { .. }, [m, v]) => {
            let decoupled = matches!(optimizer, Optimizer::AdamW { .. });
            check_adam(if decoupled { "adamw_check" } else { "adam_check" }, w, m, v, g)?;
            let chunks = chunks.zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)));
            chunks
                .map(|((w, g), (m, v))| match decoupled {
                    false => cpu::adam_check(w, m, v, g, s),
                    true => cpu::adamw_check(w, m, v, g, s),
                })
                .collect()
        }
        _ => unreachable!("the state layout follows the optimizer (graph::state_names)"),
    };
    Ok(oks?.into_iter().all(|ok| ok))
}

/// One parameter tensor's update, as [`check`] names them (`cpu::sgd_update` …), in chunks.
pub(crate) fn update<T: Scalar>(
    optimizer: Optimizer,
    w: &mut [T],
    state: &mut [Vec<T>],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<()> {
    let decoupled = matches!(optimizer, Optimizer::AdamW { .. });
    match (optimizer, state) {
        (Optimizer::Sgd { .. }, []) => {
            check_len("sgd_update", "gradient", g.len(), w.len(), 1)?;
            let chunks = w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK));
            chunks.try_for_each(|(w, g)| cpu::sgd_update(w, g, s))
        }
        (Optimizer::Momentum { .. }, [velocity]) => {
            check_momentum("momentum_update", w, velocity, g)?;
            let chunks = w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(velocity.par_chunks_mut(CHUNK));
            chunks.try_for_each(|((w, g), v)| cpu::momentum_update(w, v, g, s))
        }
        (Optimizer::Adam { .. } | Optimizer::AdamW { .. }, [m, v]) => {
            check_adam(if decoupled { "adamw_update" } else { "adam_update" }, w, m, v, g)?;
            let moments = m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK));
            let chunks = w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(moments);
            chunks.try_for_each(|((w, g), (m, v))| match decoupled {
                false => cpu::adam_update(w, m, v, g, s),
                true => cpu::adamw_update(w, m, v, g, s),
            })
        }
        _ => unreachable!("the state layout follows the optimizer (graph::state_names)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensors of less than one chunk, of several, and of a partial last one: the reference's
    /// masks and outputs, value for value; bad input is the reference's error.
    #[test]
    fn dropout_equals_the_reference() {
        for len in [0, 5, CHUNK, 3 * CHUNK + 17] {
            let x: Vec<f64> = (0..len).map(|i| i as f64 * 0.25 - 3.0).collect();
            let (mut out, mut mask) = (vec![f64::NAN; len], vec![f64::NAN; len]);
            let (mut want_out, mut want_mask) = (vec![0.0; len], vec![0.0; len]);
            dropout_forward(&mut out, &mut mask, &x, 0.3, 7, 11).unwrap();
            crate::cpu::dropout_forward(&mut want_out, &mut want_mask, &x, 0.3, 7, 11).unwrap();
            assert_eq!((out, mask), (want_out, want_mask), "{len} values");
        }
        for p in [1.0, -0.1, f32::NAN] {
            let err = dropout_forward(&mut [0.0f32; 0], &mut [], &[], p, 1, 1).unwrap_err();
            assert!(err.to_string().contains("drop probability"), "{err}");
        }
        let err = dropout_forward(&mut [0.0f32; 3], &mut [0.0; 2], &[0.0; 3], 0.5, 1, 1).unwrap_err();
        assert!(err.to_string().contains("mask"), "{err}");
    }

    /// Every optimizer over several chunks and a partial one: the reference's updates value
    /// for value, and its checks, true and (with one infinite gradient in the last chunk)
    /// false; lengths that differ are the reference's errors.
    #[test]
    fn updates_equal_the_reference() {
        let len = 2 * CHUNK + 5;
        let values = |seed: usize| -> Vec<f64> {
            (0..len).map(|i| ((i * 31 + seed * 17) % 101) as f64 / 50.0 - 1.0).collect()
        };
        let mut s = OptimizerSettings::new(0.01);
        s.step = 3;
        let optimizers = [
            Optimizer::Sgd { lr: 0.01 },
            Optimizer::Momentum { lr: 0.01, momentum: 0.9 },
            Optimizer::Adam { lr: 0.01 },
            Optimizer::AdamW { lr: 0.01, weight_decay: 0.01 },
        ];
        for optimizer in optimizers {
            let states = match optimizer {
                Optimizer::Sgd { .. } => 0,
                Optimizer::Momentum { .. } => 1,
                _ => 2,
            };
            let (g, w) = (values(1), values(2));
            let state: Vec<Vec<f64>> =
                (0..states).map(|i| values(3 + i).iter().map(|v| v.abs()).collect()).collect();
            let (mut got_w, mut got_state) = (w.clone(), state.clone());
            assert!(check(optimizer, &got_w, &got_state, &g, &s).unwrap());
            update(optimizer, &mut got_w, &mut got_state, &g, &s).unwrap();
            let (mut want_w, mut want_state) = (w.clone(), state.clone());
            match &mut want_state[..] {
                [] => cpu::sgd_update(&mut want_w, &g, &s),
                [velocity] => cpu::momentum_update(&mut want_w, velocity, &g, &s),
                [m, v] if matches!(optimizer, Optimizer::Adam { .. }) => {
                    cpu::adam_update(&mut want_w, m, v, &g, &s)
                }
                [m, v] => cpu::adamw_update(&mut want_w, m, v, &g, &s),
                _ => unreachable!(),
            }
            .unwrap();
            assert_eq!((got_w, got_state), (want_w, want_state), "{optimizer:?}");

            let mut bad = g.clone();
            bad[len - 2] = f64::INFINITY;
            assert!(!check(optimizer, &w, &state, &bad, &s).unwrap(), "{optimizer:?}");
        }
        let err = update(Optimizer::Sgd { lr: 0.1 }, &mut [0.0f32; 3], &mut [], &[0.0; 2], &s).unwrap_err();
        assert!(err.to_string().contains("sgd_update") && err.to_string().contains("gradient"), "{err}");
        let adam = Optimizer::Adam { lr: 0.1 };
        let err = check(adam, &[0.0f32; 3], &[vec![0.0; 3], vec![0.0; 2]], &[0.0; 3], &s).unwrap_err();
        assert!(err.to_string().contains("adam_check") && err.to_string().contains("second moment"), "{err}");
    }
}
