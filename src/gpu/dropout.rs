//! Pipelines of `shaders/dropout.wgsl`: dropout with a counter-based random mask.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use crate::shape::check_same;
use crate::{Error, Result};

const WORKGROUP: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    p: f32,
    seed: u32,
    _pad: u32,
}

/// The shader's two layouts: forward (and the counter), backward.
pub(crate) struct DropoutKernels {
    forward: Family,
    backward: Family,
}

pub(crate) fn kernels(device: &wgpu::Device) -> DropoutKernels {
    use Binding::*;
    let uniform = Uniform(size_of::<Params>() as u64);
    let source = &super::shaders::elementwise(include_str!("../../shaders/dropout.wgsl"));
    DropoutKernels {
        forward: Family::new(
            device,
            "dropout",
            source,
            &[uniform, Read, Read, ReadWrite, ReadWrite, ReadWrite],
            &["dropout_forward", "dropout_advance"],
        ),
        backward: Family::new(
            device,
            "dropout_backward",
            source,
            &[uniform, Read, Read, ReadWrite],
            &["dropout_backward"],
        ),
    }
}

/// The step counter dropout masks are drawn from: a (1, 1) tensor whose bits hold the step
/// as a u32, made by [`Kernels::dropout_counter`] and advanced by
/// [`Kernels::dropout_advance`]. A type of its own, so no other tensor can be bound in its
/// place; it reads and writes as a tensor.
#[derive(Debug)]
pub struct DropoutCounter(GpuTensor);

impl std::ops::Deref for DropoutCounter {
    type Target = GpuTensor;

    fn deref(&self) -> &GpuTensor {
        &self.0
    }
}

impl Kernels<'_> {
    /// A dropout step counter at step 0.
    pub fn dropout_counter(&self) -> Result<DropoutCounter> {
        Ok(DropoutCounter(self.zeros(1, 1)?))
    }

    /// Binds `counter += 1`: record this once per step, before the forward passes.
    pub fn dropout_advance(&self, counter: &DropoutCounter) -> Result<Dispatch> {
        check_same("dropout_advance", "counter", counter.shape(), (1, 1))?;
        let params = Params { len: 1, p: 0.0, seed: 0, _pad: 0 };
        let args = [Arg::Unused, Arg::Unused, Arg::Unused, Arg::Unused, counter.into()];
        self.compiled.dropout.forward.bind(
            self,
            "dropout_advance",
            bytemuck::bytes_of(&params),
            &args,
            [1, 1, 1],
        )
    }

    /// Binds `mask = keep ? 1 / (1 − p) : 0; out = x · mask`, the mask drawn from
    /// `(seed, counter, element)` exactly as [`crate::cpu::dropout_forward`] draws it.
    pub fn dropout_forward(
        &self,
        out: &GpuTensor,
        mask: &GpuTensor,
        x: &GpuTensor,
        p: f32,
        seed: u32,
        counter: &DropoutCounter,
    ) -> Result<Dispatch> {
        let op = "dropout_forward";
        check_same(op, "output", out.shape(), x.shape())?;
        check_same(op, "mask", mask.shape(), x.shape())?;
        check_same(op, "counter", counter.shape(), (1, 1))?;
        if !(0.0..1.0).contains(&p) {
            return Err(Error::shape(op, "a drop probability in [0, 1)", p.to_string()));
        }
        let params = Params { len: len_u32(op, x.len())?, p, seed, _pad: 0 };
        let args = [x.into(), Arg::Unused, out.into(), mask.into(), counter.into()];
        let workgroups = fold(u64::from(params.len).div_ceil(WORKGROUP), self.max_workgroups())?;
        self.compiled.dropout.forward.bind(self, op, bytemuck::bytes_of(&params), &args, workgroups)
    }

    /// Binds `dx = dy · mask`, with the mask the forward pass wrote.
    pub fn dropout_backward(&self, dx: &GpuTensor, mask: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        let op = "dropout_backward";
        check_same(op, "mask", mask.shape(), dx.shape())?;
        check_same(op, "output gradient", dy.shape(), dx.shape())?;
        let params = Params { len: len_u32(op, dx.len())?, p: 0.0, seed: 0, _pad: 0 };
        let workgroups = fold(u64::from(params.len).div_ceil(WORKGROUP), self.max_workgroups())?;
        let args = [mask.into(), dy.into(), dx.into()];
        self.compiled.dropout.backward.bind(self, op, bytemuck::bytes_of(&params), &args, workgroups)
    }
}

fn len_u32(op: &'static str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::shape(op, "below 2^32 values", len.to_string()))
}
