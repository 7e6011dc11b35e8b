//! Pipelines of `shaders/loss.wgsl`: MSE, MAE, binary cross-entropy and NLL, as per-element
//! terms (averaged by [`Kernels::sum_all`]) and the gradient of their mean.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use super::{GpuLabels, GpuTensor};
use crate::settings::SETTINGS_LEN;
use crate::shape::check_same;
use crate::{Error, Result};

const WORKGROUP: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "loss",
        super::shaders::LOSS,
        &[Uniform(size_of::<Params>() as u64), Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
        &[
            "mse_forward",
            "mse_backward",
            "mae_forward",
            "mae_backward",
            "bce_forward",
            "bce_backward",
            "nll_forward",
            "nll_backward",
            "watch_loss",
            "cross_entropy_step",
            "mse_step",
            "mae_step",
            "bce_step",
        ],
    )
}

impl Kernels<'_> {
    /// Binds `terms = (y − t)²`; the loss is `sum_all(terms, 1 / len)`.
    pub fn mse_forward(&self, terms: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.bind_pair_loss("mse_forward", terms, y, t)
    }

    /// Binds `dy = 2 (y − t) / len`, the gradient of the mean squared error.
    pub fn mse_backward(&self, dy: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.bind_pair_loss("mse_backward", dy, y, t)
    }

    /// Binds `terms = |y − t|`.
    pub fn mae_forward(&self, terms: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.bind_pair_loss("mae_forward", terms, y, t)
    }

    /// Binds `dy = sign(y − t) / len`.
    pub fn mae_backward(&self, dy: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.bind_pair_loss("mae_backward", dy, y, t)
    }

    /// Binds `terms = −(t ln y + (1 − t) ln(1 − y))` for probabilities y (clamped to [ε, 1 − ε]).
    pub fn bce_forward(&self, terms: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.bind_pair_loss("bce_forward", terms, y, t)
    }

    /// Binds `dy = (y − t) / (y (1 − y)) / len`.
    pub fn bce_backward(&self, dy: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.bind_pair_loss("bce_backward", dy, y, t)
    }

    /// Binds `losses[r] = −log_p[r, label[r]]`; `losses` is (rows, 1).
    pub fn nll_forward(&self, losses: &GpuTensor, log_p: &GpuTensor, labels: &GpuLabels) -> Result<Dispatch> {
        let op = "nll_forward";
        check_same(op, "losses", losses.shape(), (log_p.rows(), 1))?;
        self.bind_label_loss(op, losses, log_p, labels, log_p.rows())
    }

    /// Binds the gradient of the mean NLL: `−1/rows` at each row's label, 0 elsewhere.
    pub fn nll_backward(
        &self,
        d_log_p: &GpuTensor,
        log_p: &GpuTensor,
        labels: &GpuLabels,
    ) -> Result<Dispatch> {
        let op = "nll_backward";
        check_same(op, "gradient", d_log_p.shape(), log_p.shape())?;
        self.bind_label_loss(op, d_log_p, log_p, labels, log_p.len())
    }

    /// Binds the loss watch of one training step: counts the step, adds `batch_loss` (1, 1)
    /// to the total, and marks the first non-finite loss, which halts the optimizer, all in
    /// the watch slots of `settings` (its last four values). Nothing is read back.
    pub fn watch_loss(&self, settings: &super::SettingsRow, batch_loss: &GpuTensor) -> Result<Dispatch> {
        let op = "watch_loss";
        check_same(op, "batch loss", batch_loss.shape(), (1, 1))?;
        check_same(op, "settings row", settings.shape(), (1, SETTINGS_LEN))?;
        let params = Params { len: 1, cols: 1, scale: 1.0, _pad: 0 };
        let args = [batch_loss.into(), Arg::Unused, Arg::Unused, Arg::Unused, Arg::Unused, settings.into()];
        self.compiled.loss.bind(self, op, bytemuck::bytes_of(&params), &args, [1, 1, 1])
    }

    /// Binds a training step's whole loss as one launch (`shaders/loss.wgsl`'s `*_step`
    /// entry points): the gradient of the mean loss into `dy`, the mean into `mean` (1, 1),
    /// and the watch of [`Kernels::watch_loss`]. Cross-entropy (from logits) takes labels, the
    /// others target values: the other kind is an error.
    ///
    /// One workgroup sums every term, so this is for a training batch's loss, not a data
    /// set's: `None` when the batch is too large for one invocation's share to stay within
    /// llvmpipe's loop limit, and the separate kernels should run instead.
    pub fn loss_step(
        &self,
        loss: StepLoss,
        dy: &GpuTensor,
        y: &GpuTensor,
        target: StepTarget,
        mean: &GpuTensor,
        settings: &super::SettingsRow,
    ) -> Result<Option<Dispatch>> {
        let entry = match loss {
            StepLoss::CrossEntropy => "cross_entropy_step",
            StepLoss::Mse => "mse_step",
            StepLoss::Mae => "mae_step",
            StepLoss::BinaryCrossEntropy => "bce_step",
        };
        if matches!(target, StepTarget::Labels(_)) != (loss == StepLoss::CrossEntropy) {
            return Err(Error::shape(
                entry,
                if loss == StepLoss::CrossEntropy { "label targets" } else { "value targets" },
                "the other kind",
            ));
        }
        check_same(entry, "gradient", dy.shape(), y.shape())?;
        check_same(entry, "mean", mean.shape(), (1, 1))?;
        check_same(entry, "settings row", settings.shape(), (1, SETTINGS_LEN))?;
        let (terms, per_term, target) = match target {
            StepTarget::Labels(labels) => {
                check_same(entry, "labels", (labels.len(), 1), (y.rows(), 1))?;
                (y.rows(), 3 * y.cols() + 1, Arg::Labels(labels))
            }
            StepTarget::Values(t) => {
                check_same(entry, "targets", t.shape(), y.shape())?;
                (y.len(), 1, Arg::Tensor(t))
            }
        };
        // Loop iterations of the busiest invocation: llvmpipe stops one at 65535 in all.
        if terms.div_ceil(WORKGROUP as usize).saturating_mul(per_term) > STEP_ITERATIONS {
            return Ok(None);
        }
        let params =
            Params { len: len_u32(entry, terms)?, cols: y.cols() as u32, scale: 1.0 / terms as f32, _pad: 0 };
        let (labels, values) = match target {
            Arg::Labels(_) => (target, Arg::Unused),
            _ => (Arg::Unused, target),
        };
        let args = [y.into(), values, labels, dy.into(), mean.into(), settings.into()];
        self.compiled.loss.bind(self, entry, bytemuck::bytes_of(&params), &args, [1, 1, 1]).map(Some)
    }

    fn bind_pair_loss(
        &self,
        entry: &'static str,
        out: &GpuTensor,
        y: &GpuTensor,
        t: &GpuTensor,
    ) -> Result<Dispatch> {
        check_same(entry, "targets", t.shape(), y.shape())?;
        check_same(entry, "output", out.shape(), y.shape())?;
        let params = Params {
            len: len_u32(entry, y.len())?,
            cols: y.cols() as u32,
            scale: 1.0 / y.len() as f32,
            _pad: 0,
        };
        self.bind_loss(entry, &params, [y.into(), t.into(), Arg::Unused, out.into()])
    }

    fn bind_label_loss(
        &self,
        entry: &'static str,
        out: &GpuTensor,
        log_p: &GpuTensor,
        labels: &GpuLabels,
        len: usize,
    ) -> Result<Dispatch> {
        check_same(entry, "labels", (labels.len(), 1), (log_p.rows(), 1))?;
        if labels.classes() > log_p.cols() {
            return Err(Error::shape(
                entry,
                format!("labels for at most {} classes", log_p.cols()),
                format!("labels checked against {} classes", labels.classes()),
            ));
        }
        let params = Params {
            len: len_u32(entry, len)?,
            cols: log_p.cols() as u32,
            scale: 1.0 / log_p.rows() as f32,
            _pad: 0,
        };
        self.bind_loss(entry, &params, [log_p.into(), Arg::Unused, Arg::Labels(labels), out.into()])
    }

    fn bind_loss(&self, entry: &'static str, params: &Params, args: [Arg; 4]) -> Result<Dispatch> {
        let args = [args[0], args[1], args[2], args[3], Arg::Unused, Arg::Unused];
        let workgroups = fold(u64::from(params.len).div_ceil(WORKGROUP), self.max_workgroups())?;
        self.compiled.loss.bind(self, entry, bytemuck::bytes_of(params), &args, workgroups)
    }
}

/// The most loop iterations a fused loss step gives one invocation, with room to spare under
/// llvmpipe's 65535: a batch of up to 2,560 rows of 1000 classes, 270,000 rows of 10, or 8M
/// values.
const STEP_ITERATIONS: usize = 32_768;

/// The loss of [`Kernels::loss_step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepLoss {
    /// Softmax cross-entropy from logits, against labels.
    CrossEntropy,
    /// Mean squared error, against values.
    Mse,
    /// Mean absolute error, against values.
    Mae,
    /// Binary cross-entropy of probabilities, against values.
    BinaryCrossEntropy,
}

/// What [`Kernels::loss_step`] scores against.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum StepTarget<'a> {
    /// One class label per row (cross-entropy).
    Labels(&'a GpuLabels),
    /// A target value per prediction (MSE, MAE, binary cross-entropy).
    Values(&'a GpuTensor),
}

fn len_u32(op: &'static str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::shape(op, "below 2^32 values", len.to_string()))
}
