//! Pipelines of `shaders/pool.wgsl`: max and average pooling ([`Pool2dShape`]) and their
//! gradients, each value gathered by one invocation, so no float atomics are needed.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use crate::shape::{Pool2dShape, check_same};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    oh: u32,
    ow: u32,
    len: u32,
    _pad: u32,
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "pool",
        include_str!("../../shaders/pool.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, Read, ReadWrite, ReadWrite],
        &["maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"],
    )
}

impl Kernels<'_> {
    /// Binds `y = maxpool2d(x)`, PyTorch's `MaxPool2d` without padding, keeping in `argmax`
    /// (shaped as `y`) each window's winner, its index in the sample, for the backward.
    /// `x` is (batch, `g.input_len()`), one NCHW image per row; `y` is (batch, `g.output_len()`).
    pub fn maxpool2d_forward(
        &self,
        y: &GpuTensor,
        argmax: &GpuTensor,
        x: &GpuTensor,
        g: &Pool2dShape,
    ) -> Result<Dispatch> {
        let op = "maxpool2d_forward";
        check(op, g, x, y)?;
        check_same(op, "argmax", argmax.shape(), y.shape())?;
        self.bind_pool(op, g, x.rows(), y.len(), [x.into(), Arg::Unused, y.into(), argmax.into()])
    }

    /// Binds `dx`: each window's output gradient, sent to its winner.
    pub fn maxpool2d_backward(
        &self,
        dx: &GpuTensor,
        dy: &GpuTensor,
        argmax: &GpuTensor,
        g: &Pool2dShape,
    ) -> Result<Dispatch> {
        let op = "maxpool2d_backward";
        check(op, g, dx, dy)?;
        check_same(op, "argmax", argmax.shape(), dy.shape())?;
        self.bind_pool(op, g, dx.rows(), dx.len(), [dy.into(), argmax.into(), dx.into(), Arg::Unused])
    }

    /// Binds `y = avgpool2d(x)`, PyTorch's `AvgPool2d` without padding.
    pub fn avgpool2d_forward(&self, y: &GpuTensor, x: &GpuTensor, g: &Pool2dShape) -> Result<Dispatch> {
        let op = "avgpool2d_forward";
        check(op, g, x, y)?;
        self.bind_pool(op, g, x.rows(), y.len(), [x.into(), Arg::Unused, y.into(), Arg::Unused])
    }

    /// Binds `dx`: each window's output gradient, shared evenly over it.
    pub fn avgpool2d_backward(&self, dx: &GpuTensor, dy: &GpuTensor, g: &Pool2dShape) -> Result<Dispatch> {
        let op = "avgpool2d_backward";
        check(op, g, dx, dy)?;
        self.bind_pool(op, g, dx.rows(), dx.len(), [dy.into(), Arg::Unused, dx.into(), Arg::Unused])
    }

    fn bind_pool(
        &self,
        op: &'static str,
        g: &Pool2dShape,
        n: usize,
        len: usize,
        args: [Arg; 4],
    ) -> Result<Dispatch> {
        let u = |v: usize| {
            u32::try_from(v)
                .map_err(|_| Error::shape(op, "sizes below 2^32", format!("{v} ({g:?}, batch {n})")))
        };
        let (oh, ow) = g.out_size();
        let params = Params {
            n: u(n)?,
            c: u(g.channels)?,
            h: u(g.image.0)?,
            w: u(g.image.1)?,
            kh: u(g.kernel.0)?,
            kw: u(g.kernel.1)?,
            sh: u(g.stride.0)?,
            sw: u(g.stride.1)?,
            oh: u(oh)?,
            ow: u(ow)?,
            len: u(len)?,
            _pad: 0,
        };
        let workgroups = fold((len as u64).div_ceil(256), self.max_workgroups())?;
        self.compiled.pool.bind(self, op, bytemuck::bytes_of(&params), &args, workgroups)
    }
}

/// The geometry (with a window the shader's loops can walk), and the input-side and
/// output-side tensors' shapes.
fn check(op: &'static str, g: &Pool2dShape, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
    g.check(op)?;
    // The window's two loops, the outer one's turns counted too (llvmpipe counts them all).
    if g.kernel.0 * (1 + g.kernel.1) > super::conv::ITERATIONS {
        let limit = super::conv::ITERATIONS;
        return Err(Error::shape(op, format!("windows of at most {limit} values"), format!("{g:?}")));
    }
    let n = x.rows();
    check_same(op, "images", x.shape(), (n, g.input_len()))?;
    check_same(op, "outputs", y.shape(), (n, g.output_len()))
}
