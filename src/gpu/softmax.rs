//! Pipelines of `shaders/softmax.wgsl`: softmax, log-softmax and the fused softmax +
//! cross-entropy loss, forward and backward.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::dispatch::{Binding, Dispatch, Family, fold};
use super::{GpuLabels, GpuTensor};
use crate::shape::check_same;
use crate::{Error, Result};

const WORKGROUP: u64 = 64;

/// The widest row the kernels take. One invocation walks its row up to four times, and
/// llvmpipe stops an invocation after 65535 loop iterations in all; wider rows get an error
/// rather than a silently truncated sum.
pub const MAX_SOFTMAX_COLS: usize = 16_383;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "softmax",
        include_str!("../../shaders/softmax.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, Read, Read, ReadWrite],
        &[
            "softmax_forward",
            "softmax_backward",
            "log_softmax_forward",
            "log_softmax_backward",
            "softmax_cross_entropy_forward",
            "softmax_cross_entropy_backward",
        ],
    )
}

impl Kernels<'_> {
    /// Binds `y = softmax(x)` over each row.
    pub fn softmax_forward(&self, y: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        check_same("softmax_forward", "output", y.shape(), x.shape())?;
        self.bind_softmax("softmax_forward", y, x, None, None)
    }

    /// Binds `dx = y ⊙ (dy − Σ dy ⊙ y)` per row, from the forward output y.
    pub fn softmax_backward(&self, dx: &GpuTensor, y: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        check_same("softmax_backward", "output gradient", dy.shape(), y.shape())?;
        check_same("softmax_backward", "input gradient", dx.shape(), y.shape())?;
        self.bind_softmax("softmax_backward", dx, y, Some(dy), None)
    }

    /// Binds `y = log_softmax(x)` over each row.
    pub fn log_softmax_forward(&self, y: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        check_same("log_softmax_forward", "output", y.shape(), x.shape())?;
        self.bind_softmax("log_softmax_forward", y, x, None, None)
    }

    /// Binds `dx = dy − e^y · Σ dy` per row, from the forward output y (log-probabilities).
    pub fn log_softmax_backward(&self, dx: &GpuTensor, y: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        check_same("log_softmax_backward", "output gradient", dy.shape(), y.shape())?;
        check_same("log_softmax_backward", "input gradient", dx.shape(), y.shape())?;
        self.bind_softmax("log_softmax_backward", dx, y, Some(dy), None)
    }

    /// Binds the per-row loss `losses[r] = ln Σ e^logits[r] − logits[r, label[r]]`;
    /// `losses` is (rows, 1). [`Kernels::sum_all`] with scale 1/rows turns it into the mean.
    pub fn softmax_cross_entropy_forward(
        &self,
        losses: &GpuTensor,
        logits: &GpuTensor,
        labels: &GpuLabels,
    ) -> Result<Dispatch> {
        let op = "softmax_cross_entropy_forward";
        check_same(op, "losses", losses.shape(), (logits.rows(), 1))?;
        check_labels_fit(op, labels, logits)?;
        self.bind_softmax(op, losses, logits, None, Some(labels))
    }

    /// Binds the gradient of the mean loss: `d_logits = (softmax(logits) − onehot) / rows`.
    pub fn softmax_cross_entropy_backward(
        &self,
        d_logits: &GpuTensor,
        logits: &GpuTensor,
        labels: &GpuLabels,
    ) -> Result<Dispatch> {
        let op = "softmax_cross_entropy_backward";
        check_same(op, "logit gradient", d_logits.shape(), logits.shape())?;
        check_labels_fit(op, labels, logits)?;
        self.bind_softmax(op, d_logits, logits, None, Some(labels))
    }

    fn bind_softmax(
        &self,
        entry: &'static str,
        out: &GpuTensor,
        a: &GpuTensor,
        b: Option<&GpuTensor>,
        labels: Option<&GpuLabels>,
    ) -> Result<Dispatch> {
        let (rows, cols) = a.shape();
        if cols > MAX_SOFTMAX_COLS {
            return Err(Error::shape(
                entry,
                format!("rows of at most {MAX_SOFTMAX_COLS} values"),
                format!("{rows}x{cols}"),
            ));
        }
        let too_big = || Error::shape(entry, "dimensions below 2^32", format!("{rows}x{cols}"));
        let params = Params {
            rows: u32::try_from(rows).map_err(|_| too_big())?,
            cols: u32::try_from(cols).map_err(|_| too_big())?,
            scale: 1.0 / rows as f32,
            _pad: 0,
        };
        self.compiled.softmax.bind(
            self,
            entry,
            bytemuck::bytes_of(&params),
            &[a.into(), b.into(), labels.into(), out.into()],
            fold((rows as u64).div_ceil(WORKGROUP), self.max_workgroups())?,
        )
    }
}

fn check_labels_fit(op: &'static str, labels: &GpuLabels, logits: &GpuTensor) -> Result<()> {
    check_same(op, "labels", (labels.len(), 1), (logits.rows(), 1))?;
    if labels.classes() > logits.cols() {
        return Err(Error::shape(
            op,
            format!("labels for at most {} classes", logits.cols()),
            format!("labels checked against {} classes", labels.classes()),
        ));
    }
    Ok(())
}
