//! Pipelines of `shaders/loss.wgsl`: every element-wise [`Loss`] (a pipeline specialized by
//! its code, named nowhere here: see `loss.rs`) and NLL, as per-element terms (averaged by
//! [`Kernels::sum_all`]) and the gradient of their mean; and each training loss in one launch.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use super::{GpuLabels, GpuTensor};
use crate::loss::Loss;
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
    param: f32,
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "loss",
        &super::shaders::settings_row(&super::shaders::loss_math(include_str!("../../shaders/loss.wgsl"))),
        &[Uniform(size_of::<Params>() as u64), Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
        &[
            "value_forward",
            "value_backward",
            "nll_forward",
            "nll_backward",
            "watch_loss",
            "cross_entropy_step",
            "value_step",
        ],
    )
}

impl Kernels<'_> {
    /// Binds the terms of an element-wise loss (its value per output, which
    /// [`Kernels::sum_all`] with `1 / len` averages into the loss): any [`Loss`] that does not
    /// [take labels](Loss::takes_labels).
    pub fn value_loss_forward(
        &self,
        loss: Loss,
        terms: &GpuTensor,
        y: &GpuTensor,
        t: &GpuTensor,
    ) -> Result<Dispatch> {
        self.bind_value_loss(loss, false, terms, y, t)
    }

    /// Binds the gradient of an element-wise loss's mean with respect to `y`.
    pub fn value_loss_backward(
        &self,
        loss: Loss,
        dy: &GpuTensor,
        y: &GpuTensor,
        t: &GpuTensor,
    ) -> Result<Dispatch> {
        self.bind_value_loss(loss, true, dy, y, t)
    }

    /// Binds `terms = (y − t)²`; the loss is `sum_all(terms, 1 / len)`.
    pub fn mse_forward(&self, terms: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.value_loss_forward(Loss::Mse, terms, y, t)
    }

    /// Binds `dy = 2 (y − t) / len`, the gradient of the mean squared error.
    pub fn mse_backward(&self, dy: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.value_loss_backward(Loss::Mse, dy, y, t)
    }

    /// Binds `terms = |y − t|`.
    pub fn mae_forward(&self, terms: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.value_loss_forward(Loss::Mae, terms, y, t)
    }

    /// Binds `dy = sign(y − t) / len`.
    pub fn mae_backward(&self, dy: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.value_loss_backward(Loss::Mae, dy, y, t)
    }

    /// Binds `terms = −(t ln y + (1 − t) ln(1 − y))` for probabilities y (clamped to [ε, 1 − ε]).
    pub fn bce_forward(&self, terms: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.value_loss_forward(Loss::BinaryCrossEntropy, terms, y, t)
    }

    /// Binds `dy = (y − t) / (y (1 − y)) / len`.
    pub fn bce_backward(&self, dy: &GpuTensor, y: &GpuTensor, t: &GpuTensor) -> Result<Dispatch> {
        self.value_loss_backward(Loss::BinaryCrossEntropy, dy, y, t)
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
        let params = Params { len: 1, cols: 1, scale: 1.0, param: 0.0 };
        let args = [batch_loss.into(), Arg::Unused, Arg::Unused, Arg::Unused, Arg::Unused, settings.into()];
        self.compiled.loss.bind(self, op, bytemuck::bytes_of(&params), &args, [1, 1, 1])
    }

    /// Binds a training step's whole loss as one launch (`shaders/loss.wgsl`'s
    /// `cross_entropy_step` and `value_step`): the gradient of the mean loss into `dy`, the
    /// mean into `mean` (1, 1), and the watch of [`Kernels::watch_loss`]. Cross-entropy (from
    /// logits) takes labels, the element-wise losses target values: the other kind is an error.
    ///
    /// One workgroup sums every term, so this is for a training batch's loss, not a data
    /// set's: `None` when the batch is too large for one invocation's share to stay within
    /// llvmpipe's loop limit, or for NLL (which has no fused step), and the separate kernels
    /// should run instead.
    pub fn loss_step(
        &self,
        loss: Loss,
        dy: &GpuTensor,
        y: &GpuTensor,
        target: StepTarget,
        mean: &GpuTensor,
        settings: &super::SettingsRow,
    ) -> Result<Option<Dispatch>> {
        let (entry, label, kind) = match (loss, loss.value_code()) {
            (Loss::SoftmaxCrossEntropy, _) => ("cross_entropy_step", "cross_entropy_step", None),
            (_, Some((code, ops))) => ("value_step", ops.step, Some(code)),
            _ => return Ok(None),
        };
        loss.check(label)?;
        if matches!(target, StepTarget::Labels(_)) != kind.is_none() {
            return Err(Error::shape(
                label,
                if kind.is_none() { "label targets" } else { "value targets" },
                "the other kind",
            ));
        }
        check_same(label, "gradient", dy.shape(), y.shape())?;
        check_same(label, "mean", mean.shape(), (1, 1))?;
        check_same(label, "settings row", settings.shape(), (1, SETTINGS_LEN))?;
        let (terms, per_term, target) = match target {
            StepTarget::Labels(labels) => {
                check_same(label, "labels", (labels.len(), 1), (y.rows(), 1))?;
                (y.rows(), 3 * y.cols() + 1, Arg::Labels(labels))
            }
            StepTarget::Values(t) => {
                check_same(label, "targets", t.shape(), y.shape())?;
                (y.len(), 1, Arg::Tensor(t))
            }
        };
        // Loop iterations of the busiest invocation: llvmpipe stops one at 65535 in all.
        if terms.div_ceil(WORKGROUP as usize).saturating_mul(per_term) > STEP_ITERATIONS {
            return Ok(None);
        }
        let params = Params {
            len: len_u32(label, terms)?,
            cols: y.cols() as u32,
            scale: 1.0 / terms as f32,
            param: loss.parameter(),
        };
        let (labels, values) = match target {
            Arg::Labels(_) => (target, Arg::Unused),
            _ => (Arg::Unused, target),
        };
        let args = [y.into(), values, labels, dy.into(), mean.into(), settings.into()];
        let constants: Vec<_> = kind.map(|code| ("L", code)).into_iter().collect();
        let step = self.compiled.loss.step_as(
            self,
            label,
            entry,
            &constants,
            bytemuck::bytes_of(&params),
            &args,
            [1, 1, 1],
        )?;
        Ok(Some(Dispatch::new(label, vec![step], self.id())))
    }

    fn bind_value_loss(
        &self,
        loss: Loss,
        backward: bool,
        out: &GpuTensor,
        y: &GpuTensor,
        t: &GpuTensor,
    ) -> Result<Dispatch> {
        let Some((code, ops)) = loss.value_code() else {
            let op = if backward { "value_loss_backward" } else { "value_loss_forward" };
            return Err(Error::shape(op, "an element-wise loss", format!("{loss:?}, which takes labels")));
        };
        let (entry, op) =
            if backward { ("value_backward", ops.backward) } else { ("value_forward", ops.forward) };
        loss.check(op)?;
        check_same(op, "targets", t.shape(), y.shape())?;
        check_same(op, "output", out.shape(), y.shape())?;
        let params = Params {
            len: len_u32(op, y.len())?,
            cols: y.cols() as u32,
            scale: 1.0 / y.len() as f32,
            param: loss.parameter(),
        };
        let args = [y.into(), t.into(), Arg::Unused, out.into(), Arg::Unused, Arg::Unused];
        let workgroups = fold(u64::from(params.len).div_ceil(WORKGROUP), self.max_workgroups())?;
        let step = self.compiled.loss.step_as(
            self,
            op,
            entry,
            &[("L", code)],
            bytemuck::bytes_of(&params),
            &args,
            workgroups,
        )?;
        Ok(Dispatch::new(op, vec![step], self.id()))
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
            param: 0.0,
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

/// What [`Kernels::loss_step`] scores against.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum StepTarget<'a> {
    /// One class label per row (cross-entropy).
    Labels(&'a GpuLabels),
    /// A target value per prediction (the element-wise losses).
    Values(&'a GpuTensor),
}

fn len_u32(op: &'static str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::shape(op, "below 2^32 values", len.to_string()))
}
