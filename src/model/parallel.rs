//! Element-wise ops of the CPU backend cut into chunks on rayon's pool: the reference's own
//! loops (`crate::cpu`), each chunk told where it starts where the math needs the index.
//! (Dropout's hashes and the optimizers' checks and updates were a fifth of an MNIST-MLP step
//! on one thread while the other core waited.)

use rayon::prelude::*;

use super::config::Optimizer;
use super::gemm::Scalar;
use crate::Result;
use crate::cpu::{self, dropout::dropout_forward_from};
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
    check_len("dropout_forward", "output", out.len(), x.len(), 1)?;
    check_len("dropout_forward", "mask", mask.len(), x.len(), 1)?;
    dropout_forward_from::<T>(0, &mut [], &mut [], &[], p, seed, step)?; // checks p
    let chunks = out.par_chunks_mut(CHUNK).zip(mask.par_chunks_mut(CHUNK)).zip(x.par_chunks(CHUNK));
    chunks
        .enumerate()
        .try_for_each(|(c, ((out, mask), x))| dropout_forward_from(c * CHUNK, out, mask, x, p, seed, step))
}

/// One parameter tensor's update (`cpu::sgd_update`, `momentum_update`, `adam_update` or
/// `adamw_update`, as `optimizer` says), or with `apply` false its check (`cpu::sgd_check`
/// …): whether the update would leave everything finite. `state` holds the optimizer's
/// tensors for it (none, the velocity, or Adam's m and v). Every value's update reads only
/// its own values, so the chunks are the reference's loops on parts of the tensors.
pub(crate) fn update<T: Scalar>(
    optimizer: Optimizer,
    apply: bool,
    w: &mut [T],
    state: &mut [Vec<T>],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<bool> {
    check_len("update", "gradient", g.len(), w.len(), 1)?;
    for tensor in state.iter() {
        check_len("update", "optimizer state", tensor.len(), w.len(), 1)?;
    }
    let all = |oks: Vec<bool>| oks.into_iter().all(|ok| ok);
    let chunks = w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK));
    let oks: Result<Vec<bool>> = match (optimizer, state) {
        (Optimizer::Sgd { .. }, []) => chunks
            .map(
                |(w, g)| {
                    if apply { cpu::sgd_update(w, g, s).map(|()| true) } else { cpu::sgd_check(w, g, s) }
                },
            )
            .collect(),
        (Optimizer::Momentum { .. }, [velocity]) => chunks
            .zip(velocity.par_chunks_mut(CHUNK))
            .map(|((w, g), velocity)| match apply {
                true => cpu::momentum_update(w, velocity, g, s).map(|()| true),
                false => cpu::momentum_check(w, velocity, g, s),
            })
            .collect(),
        (Optimizer::Adam { .. } | Optimizer::AdamW { .. }, [m, v]) => {
            let decoupled = matches!(optimizer, Optimizer::AdamW { .. });
            chunks
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .map(|((w, g), (m, v))| match (apply, decoupled) {
                    (true, false) => cpu::adam_update(w, m, v, g, s).map(|()| true),
                    (true, true) => cpu::adamw_update(w, m, v, g, s).map(|()| true),
                    (false, false) => cpu::adam_check(w, m, v, g, s),
                    (false, true) => cpu::adamw_check(w, m, v, g, s),
                })
                .collect()
        }
        _ => unreachable!("the state layout follows the optimizer (graph::state_names)"),
    };
    oks.map(all)
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
    /// false.
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
            assert!(update(optimizer, false, &mut got_w, &mut got_state, &g, &s).unwrap());
            assert_eq!((&got_w, &got_state), (&w, &state), "a check writes nothing");
            update(optimizer, true, &mut got_w, &mut got_state, &g, &s).unwrap();
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
            let (mut w, mut state) = (w.clone(), state.clone());
            assert!(!update(optimizer, false, &mut w, &mut state, &bad, &s).unwrap(), "{optimizer:?}");
        }
        let err =
            update(Optimizer::Sgd { lr: 0.1 }, true, &mut [0.0f32; 3], &mut [], &[0.0; 2], &s).unwrap_err();
        assert!(err.to_string().contains("gradient"), "{err}");
    }
}
