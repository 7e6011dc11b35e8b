//! Pipelines of `shaders/optimizer.wgsl`: SGD, momentum, Adam and AdamW updates in place, the
//! checks that keep a step whose update would not be finite from being taken, and the step
//! counter Adam's bias correction reads. Settings come from a (1, 14) GPU row made from
//! [`OptimizerSettings::to_row`], so they change with [`Gpu::write`], not by rebinding.
//!
//! A training step records, after its backward pass, one check per parameter tensor (the
//! check also advances the step's β powers), then one update per tensor: all the checks
//! before all the updates. A step recorded without checks records [`Kernels::optimizer_advance`]
//! in their place.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use crate::settings::{OptimizerSettings, SETTINGS_LEN};
use crate::shape::check_same;
use crate::{Error, Result};

const WORKGROUP: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

/// The shader's three layouts: SGD (and the step counter), momentum, Adam.
pub(crate) struct OptimizerKernels {
    sgd: Family,
    momentum: Family,
    adam: Family,
}

pub(crate) fn kernels(device: &wgpu::Device) -> OptimizerKernels {
    use Binding::*;
    let uniform = Uniform(size_of::<Params>() as u64);
    let family = |name, bindings: &[Binding], entries: &[&'static str]| {
        Family::new(
            device,
            name,
            &super::shaders::settings_row(&super::shaders::optimizer_math(include_str!(
                "../../shaders/optimizer.wgsl"
            ))),
            bindings,
            entries,
        )
    };
    OptimizerKernels {
        sgd: family(
            "sgd",
            &[uniform, ReadWrite, Read, ReadWrite],
            &["sgd_update", "sgd_check", "optimizer_advance"],
        ),
        momentum: family(
            "momentum",
            &[uniform, ReadWrite, Read, ReadWrite, ReadWrite],
            &["momentum_update", "momentum_check"],
        ),
        adam: family(
            "adam",
            &[uniform, ReadWrite, Read, ReadWrite, ReadWrite, ReadWrite],
            &["adam_update", "adamw_update", "adam_check", "adamw_check"],
        ),
    }
}

/// The optimizer's settings and the loss watch on the GPU: the (1, 14) row of
/// [`OptimizerSettings::to_row`] that the update, advance and loss-watch kernels read and keep,
/// made by [`Kernels::upload_settings`]. A type of its own, so no other tensor can be bound
/// in its place; it reads and writes as a tensor (`gpu.read(&row)`, and
/// `gpu.write_at(&row, 0, &[lr])` for a new learning rate).
#[derive(Debug)]
pub struct SettingsRow(GpuTensor);

impl std::ops::Deref for SettingsRow {
    type Target = GpuTensor;

    fn deref(&self) -> &GpuTensor {
        &self.0
    }
}

impl Kernels<'_> {
    /// Uploads optimizer settings as the row the update kernels read. Settings no step could
    /// use are [`Error::InvalidOptimizer`] (see [`OptimizerSettings::check`]).
    pub fn upload_settings(&self, settings: &OptimizerSettings) -> Result<SettingsRow> {
        settings.check("upload_settings")?;
        Ok(SettingsRow(self.upload(&settings.to_row(), 1, SETTINGS_LEN)?))
    }

    /// Binds one step of the settings row's counters (`β1^t`, `β2^t`) alone: record it once per
    /// step, before that step's updates, in a step recorded without the checks (which advance
    /// the counters themselves).
    pub fn optimizer_advance(&self, settings: &SettingsRow) -> Result<Dispatch> {
        check_settings("optimizer_advance", settings)?;
        let params = Params { len: 1, _pad: [0; 3] };
        let args = [settings.into(), Arg::Unused, Arg::Unused];
        self.compiled.optimizer.sgd.bind(
            self,
            "optimizer_advance",
            bytemuck::bytes_of(&params),
            &args,
            [1, 1, 1],
        )
    }

    /// Binds the check of [`Kernels::sgd_update`] with the step's advance: the step is marked
    /// as diverged (and its updates then leave everything as it is) if a new weight would be
    /// NaN or infinite. See [`crate::cpu::sgd_check`].
    pub fn sgd_check(&self, w: &GpuTensor, g: &GpuTensor, settings: &SettingsRow) -> Result<Dispatch> {
        self.bind_update(&self.compiled.optimizer.sgd, "sgd_check", w, g, &[], settings)
    }

    /// Binds the check of [`Kernels::momentum_update`] with the step's advance.
    pub fn momentum_check(
        &self,
        w: &GpuTensor,
        velocity: &GpuTensor,
        g: &GpuTensor,
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        let family = &self.compiled.optimizer.momentum;
        self.bind_update(family, "momentum_check", w, g, &[velocity], settings)
    }

    /// Binds the check of [`Kernels::adam_update`] with the step's advance.
    pub fn adam_check(
        &self,
        w: &GpuTensor,
        m: &GpuTensor,
        v: &GpuTensor,
        g: &GpuTensor,
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        self.bind_update(&self.compiled.optimizer.adam, "adam_check", w, g, &[m, v], settings)
    }

    /// Binds the check of [`Kernels::adamw_update`] with the step's advance.
    pub fn adamw_check(
        &self,
        w: &GpuTensor,
        m: &GpuTensor,
        v: &GpuTensor,
        g: &GpuTensor,
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        self.bind_update(&self.compiled.optimizer.adam, "adamw_check", w, g, &[m, v], settings)
    }

    /// Binds `w −= lr · g`.
    pub fn sgd_update(&self, w: &GpuTensor, g: &GpuTensor, settings: &SettingsRow) -> Result<Dispatch> {
        let family = &self.compiled.optimizer.sgd;
        self.bind_update(family, "sgd_update", w, g, &[], settings)
    }

    /// Binds `velocity = μ · velocity + g;  w −= lr · velocity`.
    pub fn momentum_update(
        &self,
        w: &GpuTensor,
        velocity: &GpuTensor,
        g: &GpuTensor,
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        let family = &self.compiled.optimizer.momentum;
        self.bind_update(family, "momentum_update", w, g, &[velocity], settings)
    }

    /// Binds Adam's update of `w` with moments `m`, `v` (see [`crate::cpu::adam_update`]).
    pub fn adam_update(
        &self,
        w: &GpuTensor,
        m: &GpuTensor,
        v: &GpuTensor,
        g: &GpuTensor,
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        self.bind_update(&self.compiled.optimizer.adam, "adam_update", w, g, &[m, v], settings)
    }

    /// Binds AdamW's update: decoupled weight decay, then Adam.
    pub fn adamw_update(
        &self,
        w: &GpuTensor,
        m: &GpuTensor,
        v: &GpuTensor,
        g: &GpuTensor,
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        self.bind_update(&self.compiled.optimizer.adam, "adamw_update", w, g, &[m, v], settings)
    }

    fn bind_update(
        &self,
        family: &Family,
        entry: &'static str,
        w: &GpuTensor,
        g: &GpuTensor,
        state: &[&GpuTensor],
        settings: &SettingsRow,
    ) -> Result<Dispatch> {
        check_settings(entry, settings)?;
        check_same(entry, "gradient", g.shape(), w.shape())?;
        for s in state {
            check_same(entry, "optimizer state", s.shape(), w.shape())?;
        }
        let len = u32::try_from(w.len())
            .map_err(|_| Error::shape(entry, "below 2^32 values", w.len().to_string()))?;
        let params = Params { len, _pad: [0; 3] };
        let mut args = vec![settings.into(), g.into(), w.into()];
        args.extend(state.iter().map(|&s| Arg::from(s)));
        let workgroups = fold(u64::from(len).div_ceil(WORKGROUP), self.max_workgroups())?;
        family.bind(self, entry, bytemuck::bytes_of(&params), &args, workgroups)
    }
}

fn check_settings(op: &'static str, settings: &SettingsRow) -> Result<()> {
    check_same(op, "settings row", settings.shape(), (1, SETTINGS_LEN))
}
