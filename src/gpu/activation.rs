//! Pipelines of `shaders/activation.wgsl`: ReLU, sigmoid and tanh, forward and backward.

use bytemuck::{Pod, Zeroable};

use super::dispatch::{Binding, Dispatch, Family, fold};
use super::{Gpu, GpuTensor};
use crate::Result;
use crate::shape::check_same;

const WORKGROUP: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "activation",
        super::shaders::ACTIVATION,
        &[Uniform(size_of::<Params>() as u64), Read, Read, ReadWrite],
        &[
            "relu_forward",
            "relu_backward",
            "sigmoid_forward",
            "sigmoid_backward",
            "tanh_forward",
            "tanh_backward",
        ],
    )
}

impl Gpu {
    /// Binds `out = max(x, 0)`.
    pub fn relu_forward(&self, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation("relu_forward", out, x, None)
    }

    /// Binds `dx = dy · [x > 0]`, from the forward input x.
    pub fn relu_backward(&self, dx: &GpuTensor, x: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation("relu_backward", dx, x, Some(dy))
    }

    /// Binds `out = 1 / (1 + e^-x)`.
    pub fn sigmoid_forward(&self, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation("sigmoid_forward", out, x, None)
    }

    /// Binds `dx = dy · y · (1 − y)`, from the forward output y.
    pub fn sigmoid_backward(&self, dx: &GpuTensor, y: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation("sigmoid_backward", dx, y, Some(dy))
    }

    /// Binds `out = tanh(x)`.
    pub fn tanh_forward(&self, out: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation("tanh_forward", out, x, None)
    }

    /// Binds `dx = dy · (1 − y²)`, from the forward output y.
    pub fn tanh_backward(&self, dx: &GpuTensor, y: &GpuTensor, dy: &GpuTensor) -> Result<Dispatch> {
        self.bind_activation("tanh_backward", dx, y, Some(dy))
    }

    fn bind_activation(
        &self,
        entry: &'static str,
        out: &GpuTensor,
        saved: &GpuTensor,
        dy: Option<&GpuTensor>,
    ) -> Result<Dispatch> {
        check_same(entry, "input", saved.shape(), out.shape())?;
        if let Some(dy) = dy {
            check_same(entry, "output gradient", dy.shape(), out.shape())?;
        }
        let len = out.len();
        let params = Params {
            len: u32::try_from(len)
                .map_err(|_| crate::Error::shape(entry, "below 2^32 elements", len.to_string()))?,
            _pad: [0; 3],
        };
        self.kernels.activation.bind(
            self,
            entry,
            bytemuck::bytes_of(&params),
            &[saved.into(), dy.into(), out.into()],
            fold((len as u64).div_ceil(WORKGROUP), self.max_workgroups())?,
        )
    }
}
