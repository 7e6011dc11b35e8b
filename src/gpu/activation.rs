//! Pipelines of `shaders/activation.wgsl`: every [`Activation`], forward and backward, each
//! a pipeline specialized by the activation's code (named nowhere here: see `activation.rs`).

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Binding, Dispatch, Family, fold};
use crate::Result;
use crate::activation::Activation;
use crate::shape::check_same;

const WORKGROUP: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    slope: f32,
    _pad: [u32; 2],
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "activation",
        &super::shaders::elementwise(include_str!("../../shaders/activation.wgsl")),
        &[Uniform(size_of::<Params>() as u64), Read, Read, ReadWrite],
        &["activation_forward", "activation_backward"],
    )
}

impl Kernels<'_> {
    /// Binds `out = f(x)`.
    pub fn activation_forward(&self, f: Activation, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation(f, "activation_forward", out, x, None)
    }

    /// Binds `dx = f'(x) · dy`; `saved` is the forward's output when
    /// [`Activation::backward_reads_output`], else its input.
    pub fn activation_backward(
        &self,
        f: Activation,
        dx: &GpuTensor,
        saved: &GpuTensor,
        dy: &GpuTensor,
    ) -> Result<Dispatch> {
        self.bind_activation(f, "activation_backward", dx, saved, Some(dy))
    }

    /// Binds `out = max(x, 0)`.
    pub fn relu_forward(&self, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.activation_forward(Activation::Relu, out, x)
    }

    /// Binds `dx = dy · [x > 0]`, from the forward input x.
    pub fn relu_backward(&self, dx: &GpuTensor, x: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        self.activation_backward(Activation::Relu, dx, x, dy)
    }

    /// Binds `out = 1 / (1 + e^-x)`.
    pub fn sigmoid_forward(&self, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.activation_forward(Activation::Sigmoid, out, x)
    }

    /// Binds `dx = dy · y · (1 − y)`, from the forward output y.
    pub fn sigmoid_backward(&self, dx: &GpuTensor, y: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        self.activation_backward(Activation::Sigmoid, dx, y, dy)
    }

    /// Binds `out = tanh(x)`.
    pub fn tanh_forward(&self, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.activation_forward(Activation::Tanh, out, x)
    }

    /// Binds `dx = dy · (1 − y²)`, from the forward output y.
    pub fn tanh_backward(&self, dx: &GpuTensor, y: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        self.activation_backward(Activation::Tanh, dx, y, dy)
    }

    fn bind_activation(
        &self,
        f: Activation,
        entry: &'static str,
        out: &GpuTensor,
        saved: &GpuTensor,
        dy: Option<&GpuTensor>,
    ) -> Result<Dispatch> {
        // Errors and the dispatch's label name the activation's own op (`relu_forward`, …).
        let op = if dy.is_some() { f.entry_points().1 } else { f.entry_points().0 };
        check_same(op, "input", saved.shape(), out.shape())?;
        if !f.parameter().is_finite() {
            let slope = f.parameter().to_string();
            return Err(crate::Error::shape(op, "a finite LeakyReLU slope", slope));
        }
        if let Some(dy) = dy {
            check_same(op, "output gradient", dy.shape(), out.shape())?;
        }
        let len = out.len();
        let params = Params {
            len: u32::try_from(len)
                .map_err(|_| crate::Error::shape(op, "below 2^32 elements", len.to_string()))?,
            slope: f.parameter(),
            _pad: [0; 2],
        };
        let step = self.compiled.activation.step_as(
            self,
            op,
            entry,
            &[("F", f.code())],
            bytemuck::bytes_of(&params),
            &[saved.into(), dy.into(), out.into()],
            fold((len as u64).div_ceil(WORKGROUP), self.max_workgroups())?,
        )?;
        Ok(Dispatch::new(op, vec![step], self.id()))
    }
}
