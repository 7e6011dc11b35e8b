//! The losses training minimises, registered once. The element-wise ones (a term per output
//! value against a target value) share every kernel: a variant here, its row in
//! [`VALUE_LOSSES`] and in [`Loss::ALL`], its case in `shaders/loss.wgsl`'s `value_loss`, and
//! its two functions in `cpu/loss.rs` make it a loss on both backends, fused step included.
//! The label losses (cross-entropy, NLL) have kernels of their own.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What training minimises: the mean over the batch (and outputs) of a per-sample loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Loss {
    /// `(y − t)²`, averaged over every output value.
    Mse,
    /// `|y − t|`, averaged over every output value.
    Mae,
    /// Binary cross-entropy of probabilities y against targets t in [0, 1].
    BinaryCrossEntropy,
    /// Cross-entropy of softmax(logits) against class labels, computed stably from the
    /// logits: the model's output, or the input of its final
    /// [`Layer::Softmax`](crate::model::Layer::Softmax).
    SoftmaxCrossEntropy,
    /// Negative log-likelihood of log-probabilities (a final
    /// [`Layer::LogSoftmax`](crate::model::Layer::LogSoftmax)).
    Nll,
    /// Huber loss (PyTorch's `HuberLoss(delta)`): `½d²` for `|d| < δ`, else `δ(|d| − ½δ)`,
    /// with `d = y − t`, averaged over every output value: MSE's pull near the target, MAE's
    /// calm about outliers.
    Huber {
        /// δ, where the loss turns from quadratic to linear (PyTorch's default is 1).
        delta: f32,
    },
}

/// An element-wise loss as the kernels know it: its WGSL constant (whose value is its code),
/// and the names of its forward, backward and fused step (the CPU reference's functions, and
/// the ops errors and dispatch labels name).
struct ValueLoss {
    wgsl: &'static str,
    ops: ValueOps,
}

/// The names of an element-wise loss's forward, backward and fused step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ValueOps {
    pub(crate) forward: &'static str,
    pub(crate) backward: &'static str,
    pub(crate) step: &'static str,
}

const fn ops(forward: &'static str, backward: &'static str, step: &'static str) -> ValueOps {
    ValueOps { forward, backward, step }
}

/// The element-wise losses, in code order (code = index + 1).
const VALUE_LOSSES: [ValueLoss; 4] = [
    ValueLoss { wgsl: "MSE", ops: ops("mse_forward", "mse_backward", "mse_step") },
    ValueLoss { wgsl: "MAE", ops: ops("mae_forward", "mae_backward", "mae_step") },
    ValueLoss { wgsl: "BCE", ops: ops("bce_forward", "bce_backward", "bce_step") },
    ValueLoss { wgsl: "HUBER", ops: ops("huber_forward", "huber_backward", "huber_step") },
];

impl Loss {
    /// One of each, Huber with PyTorch's default δ = 1: what the tests loop over.
    pub const ALL: [Loss; 6] = [
        Loss::Mse,
        Loss::Mae,
        Loss::BinaryCrossEntropy,
        Loss::SoftmaxCrossEntropy,
        Loss::Nll,
        Loss::Huber { delta: 1.0 },
    ];

    /// Whether targets are class labels rather than values.
    pub fn takes_labels(self) -> bool {
        matches!(self, Loss::SoftmaxCrossEntropy | Loss::Nll)
    }

    /// Where an element-wise loss is in [`VALUE_LOSSES`]; `None` for the label losses.
    fn value_index(self) -> Option<usize> {
        match self {
            Loss::Mse => Some(0),
            Loss::Mae => Some(1),
            Loss::BinaryCrossEntropy => Some(2),
            Loss::Huber { .. } => Some(3),
            Loss::SoftmaxCrossEntropy | Loss::Nll => None,
        }
    }

    /// An element-wise loss's code in `shaders/loss.wgsl`, and its ops' names; `None` for
    /// the label losses.
    pub(crate) fn value_code(self) -> Option<(u32, ValueOps)> {
        self.value_index().map(|i| (i as u32 + 1, VALUE_LOSSES[i].ops))
    }

    /// The one number the loss takes (Huber's δ; 0 for the others).
    pub(crate) fn parameter(self) -> f32 {
        match self {
            Loss::Huber { delta } => delta,
            _ => 0.0,
        }
    }

    /// Refuses a loss no step could use (`op` is the refusing call): a Huber δ that is not
    /// finite and positive.
    pub(crate) fn check(self, op: &'static str) -> Result<()> {
        match self {
            Loss::Huber { delta } if !(delta.is_finite() && delta > 0.0) => Err(Error::InvalidLoss {
                op,
                problem: format!("a Huber loss's δ must be finite and positive, not {delta}"),
            }),
            _ => Ok(()),
        }
    }

    /// The WGSL constants `loss.wgsl` switches on (`const MSE: u32 = 1u;`, …), prepended to
    /// it by the host.
    pub(crate) fn wgsl_constants() -> String {
        let rows = VALUE_LOSSES.iter().enumerate();
        rows.map(|(i, l)| format!("const {}: u32 = {}u;\n", l.wgsl, i + 1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Loss, VALUE_LOSSES};

    #[test]
    fn each_value_loss_has_its_own_row() {
        let codes: Vec<u32> = Loss::ALL.iter().filter_map(|l| l.value_code()).map(|(code, _)| code).collect();
        assert_eq!(codes, (1..=VALUE_LOSSES.len() as u32).collect::<Vec<_>>());
        assert_eq!(Loss::Nll.value_code(), None);
        assert!(Loss::wgsl_constants().contains("const HUBER: u32 = 4u;"));
        for delta in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let refused = Loss::Huber { delta }.check("build");
            assert!(matches!(refused, Err(crate::Error::InvalidLoss { .. })), "δ = {delta}: {refused:?}");
        }
    }
}
