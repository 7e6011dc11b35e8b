//! Pipelines of `shaders/batch_norm.wgsl`: batch normalisation ([`BatchNorm`]) in training
//! and evaluation, and its gradients, each channel's sums one workgroup's, so no float
//! atomics are needed.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::dispatch::Arg::{self, Unused};
use super::dispatch::{Binding, Dispatch, Family, fold};
use super::{GpuTensor, SettingsRow};
use crate::shape::{BatchNorm, check_same};
use crate::{Error, Result};

/// The most values a channel may have in one batch (samples · plane): each of a workgroup's
/// 256 invocations walks its share twice (statistics; backward), and llvmpipe stops an
/// invocation after 65535 loop turns in all, the reductions' few included.
pub(crate) const MAX_BATCH_NORM_VALUES: usize = 32_000 * 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    channels: u32,
    plane: u32,
    eps: f32,
    momentum: f32,
    first_bad: u32,
    input_grad: u32,
    _pad: u32,
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "batch_norm",
        include_str!("../../shaders/batch_norm.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
        &["batch_norm_stats", "batch_norm_eval_stats", "batch_norm_forward", "batch_norm_backward"],
    )
}

impl Kernels<'_> {
    /// Binds training's statistics: `stats` (2, channels), each channel's mean and
    /// 1/√(var + ε) over the batch `x` (one NCHW image per row), and moves `running_mean`
    /// and `running_var` (1, channels) towards them by the momentum, as PyTorch's
    /// `BatchNorm2d` does (the variance unbiased). The running statistics stay as they are
    /// once a step has diverged (the `settings` row says so) or when the batch's are not
    /// finite.
    pub fn batch_norm_stats(
        &self,
        stats: &GpuTensor,
        running_mean: &GpuTensor,
        running_var: &GpuTensor,
        x: &GpuTensor,
        settings: &SettingsRow,
        g: &BatchNorm,
    ) -> Result<Dispatch> {
        let op = "batch_norm_stats";
        let plane = check(op, g, x, stats)?;
        check_running(op, g, running_mean, running_var)?;
        if x.rows() * plane < 2 {
            return Err(Error::shape(
                op,
                "more than 1 value per channel in training",
                format!("{} ({} rows of {plane})", x.rows() * plane, x.rows()),
            ));
        }
        let args = [
            x.into(),
            Unused,
            Unused,
            settings.into(),
            stats.into(),
            running_mean.into(),
            running_var.into(),
        ];
        self.bind_per_channel(op, g, x.rows(), plane, false, args)
    }

    /// Binds evaluation's statistics: `stats` from `running_mean` and `running_var`.
    pub fn batch_norm_eval_stats(
        &self,
        stats: &GpuTensor,
        running_mean: &GpuTensor,
        running_var: &GpuTensor,
        g: &BatchNorm,
    ) -> Result<Dispatch> {
        let op = "batch_norm_eval_stats";
        g.check(op)?;
        check_same(op, "stats", stats.shape(), (2, g.channels))?;
        check_running(op, g, running_mean, running_var)?;
        let args = [Unused, Unused, Unused, Unused, stats.into(), running_mean.into(), running_var.into()];
        let workgroups = fold((g.channels as u64).div_ceil(256), self.max_workgroups())?;
        self.bind_with(op, g, 1, 1, false, args, workgroups)
    }

    /// Binds `y = (x − mean) · rstd · gain + bias`, each value with its channel's `stats`;
    /// gain and bias are (1, channels).
    pub fn batch_norm_forward(
        &self,
        y: &GpuTensor,
        x: &GpuTensor,
        stats: &GpuTensor,
        gain: &GpuTensor,
        bias: &GpuTensor,
        g: &BatchNorm,
    ) -> Result<Dispatch> {
        let op = "batch_norm_forward";
        let plane = check(op, g, x, stats)?;
        check_same(op, "output", y.shape(), x.shape())?;
        check_same(op, "gain", gain.shape(), (1, g.channels))?;
        check_same(op, "bias", bias.shape(), (1, g.channels))?;
        let args = [x.into(), stats.into(), gain.into(), bias.into(), y.into(), Unused, Unused];
        // x along a plane, y and z over the (sample, channel) planes.
        let (planes, max) = ((x.rows() * g.channels) as u64, u64::from(self.max_workgroups()));
        let (across, down) = ((plane as u64).div_ceil(256), planes.min(max));
        let deep = planes.div_ceil(max);
        if across > max || deep > max {
            return Err(Error::shape(
                op,
                "planes and batches the grid can cover",
                format!("{} rows of {g:?}", x.rows()),
            ));
        }
        let workgroups = [across as u32, down as u32, deep as u32];
        self.bind_with(op, g, x.rows(), plane, false, args, workgroups)
    }

    /// Binds the gradients of the gain, `dgain = Σ dy · x̂`, and of the bias, `dbias = Σ dy`,
    /// per channel, and given `dx`, the input's: `dx = gain · rstd · (dy − mean(dy) − x̂ ·
    /// mean(dy · x̂))` over each channel (in training every value moves its channel's
    /// statistics).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_backward(
        &self,
        dx: Option<&GpuTensor>,
        dgain: &GpuTensor,
        dbias: &GpuTensor,
        x: &GpuTensor,
        stats: &GpuTensor,
        gain: &GpuTensor,
        dy: &GpuTensor,
        g: &BatchNorm,
    ) -> Result<Dispatch> {
        let op = "batch_norm_backward";
        let plane = check(op, g, x, stats)?;
        check_same(op, "output gradient", dy.shape(), x.shape())?;
        check_same(op, "gain", gain.shape(), (1, g.channels))?;
        check_same(op, "gain gradient", dgain.shape(), (1, g.channels))?;
        check_same(op, "bias gradient", dbias.shape(), (1, g.channels))?;
        if let Some(dx) = dx {
            check_same(op, "input gradient", dx.shape(), x.shape())?;
        }
        let args = [x.into(), stats.into(), gain.into(), dy.into(), dx.into(), dgain.into(), dbias.into()];
        self.bind_per_channel(op, g, x.rows(), plane, dx.is_some(), args)
    }

    /// One workgroup per channel, each walking its channel's values of the batch.
    fn bind_per_channel(
        &self,
        op: &'static str,
        g: &BatchNorm,
        n: usize,
        plane: usize,
        input_grad: bool,
        args: [Arg; 7],
    ) -> Result<Dispatch> {
        if n.saturating_mul(plane) > MAX_BATCH_NORM_VALUES {
            return Err(Error::shape(
                op,
                format!("at most {MAX_BATCH_NORM_VALUES} values per channel in a batch"),
                format!("{} ({n} rows of {plane})", n.saturating_mul(plane)),
            ));
        }
        let workgroups = fold(g.channels as u64, self.max_workgroups())?;
        self.bind_with(op, g, n, plane, input_grad, args, workgroups)
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_with(
        &self,
        op: &'static str,
        g: &BatchNorm,
        n: usize,
        plane: usize,
        input_grad: bool,
        args: [Arg; 7],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let u = |v: usize| {
            u32::try_from(v)
                .map_err(|_| Error::shape(op, "sizes below 2^32", format!("{v} ({g:?}, batch {n})")))
        };
        u(n.saturating_mul(plane).saturating_mul(g.channels))?;
        let params = Params {
            n: u(n)?,
            channels: u(g.channels)?,
            plane: u(plane)?,
            eps: g.eps,
            momentum: g.momentum,
            first_bad: (std::mem::offset_of!(crate::settings::Row, first_bad) / 4) as u32,
            input_grad: input_grad.into(),
            _pad: 0,
        };
        self.compiled.batch_norm.bind(self, op, bytemuck::bytes_of(&params), &args, workgroups)
    }
}

/// The settings, and `x` (rows of `channels` planes) with its `stats`; returns the plane's size.
fn check(op: &'static str, g: &BatchNorm, x: &GpuTensor, stats: &GpuTensor) -> Result<usize> {
    g.check(op)?;
    let plane = g.plane(op, x.cols())?;
    check_same(op, "stats", stats.shape(), (2, g.channels))?;
    Ok(plane)
}

fn check_running(op: &'static str, g: &BatchNorm, mean: &GpuTensor, var: &GpuTensor) -> Result<()> {
    check_same(op, "running mean", mean.shape(), (1, g.channels))?;
    check_same(op, "running variance", var.shape(), (1, g.channels))
}
