//! Pipelines of `shaders/conv.wgsl`: a 2-D convolution ([`Conv2dShape`]) and its gradients,
//! each value gathered by one invocation (or one workgroup), so no float atomics are needed.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use crate::shape::{Conv2dShape, check_same};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
    has_bias: u32,
    len: u32,
    _pad: u32,
}

/// The most loop iterations the shader gives one invocation, with room to spare under
/// llvmpipe's 65535.
pub(crate) const ITERATIONS: usize = 32_768;

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "conv",
        include_str!("../../shaders/conv.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, Read, Read, ReadWrite],
        &["conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad", "conv2d_bias_grad"],
    )
}

impl Kernels<'_> {
    /// Binds `y = conv2d(x; w) (+ b)`, PyTorch's `Conv2d`: `x` is (batch, `g.input_len()`),
    /// one NCHW image per row; `w` is (out_channels, `g.filter_len()`), PyTorch's
    /// `(out, in, kh, kw)`; `b` is (1, out_channels); `y` is (batch, `g.output_len()`).
    pub fn conv2d_forward(
        &self,
        y: &GpuTensor,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        g: &Conv2dShape,
    ) -> Result<Dispatch> {
        let op = "conv2d_forward";
        let n = check(op, g, x, w, y)?;
        if let Some(b) = b {
            check_same(op, "bias", b.shape(), (1, g.out_channels))?;
        }
        let params = params(op, g, n, y.len(), b.is_some(), g.filter_len())?;
        self.bind_conv(op, &params, [x.into(), w.into(), b.into(), y.into()], false)
    }

    /// Binds the gradient of the input, `dx` (batch, `g.input_len()`), from that of the
    /// output, `dy`, and the weights.
    pub fn conv2d_input_grad(
        &self,
        dx: &GpuTensor,
        dy: &GpuTensor,
        w: &GpuTensor,
        g: &Conv2dShape,
    ) -> Result<Dispatch> {
        let op = "conv2d_input_grad";
        let n = check(op, g, dx, w, dy)?;
        let per_value = g.out_channels * g.kernel.0 * g.kernel.1;
        let params = params(op, g, n, dx.len(), false, per_value)?;
        self.bind_conv(op, &params, [dy.into(), w.into(), Arg::Unused, dx.into()], false)
    }

    /// Binds the gradient of the weights, `dw` (out_channels, `g.filter_len()`), summed over
    /// the batch.
    pub fn conv2d_weight_grad(
        &self,
        dw: &GpuTensor,
        dy: &GpuTensor,
        x: &GpuTensor,
        g: &Conv2dShape,
    ) -> Result<Dispatch> {
        let op = "conv2d_weight_grad";
        let n = check(op, g, x, dw, dy)?;
        let (oh, ow) = g.out_size();
        let params = params(op, g, n, dw.len(), false, (oh * ow).div_ceil(64).saturating_mul(n))?;
        self.bind_conv(op, &params, [dy.into(), x.into(), Arg::Unused, dw.into()], true)
    }

    /// Binds the gradient of the bias, `db` (1, out_channels), summed over the batch.
    pub fn conv2d_bias_grad(&self, db: &GpuTensor, dy: &GpuTensor, g: &Conv2dShape) -> Result<Dispatch> {
        let op = "conv2d_bias_grad";
        g.check(op)?;
        check_same(op, "output gradient", dy.shape(), (dy.rows(), g.output_len()))?;
        check_same(op, "bias gradient", db.shape(), (1, g.out_channels))?;
        let (oh, ow) = g.out_size();
        let n = dy.rows();
        let params = params(op, g, n, g.out_channels, false, (n * oh * ow).div_ceil(64))?;
        self.bind_conv(op, &params, [dy.into(), Arg::Unused, Arg::Unused, db.into()], true)
    }

    fn bind_conv(
        &self,
        op: &'static str,
        params: &Params,
        args: [Arg; 4],
        per_workgroup: bool,
    ) -> Result<Dispatch> {
        let len = u64::from(params.len);
        let groups = if per_workgroup { len } else { len.div_ceil(256) };
        let workgroups = fold(groups, self.max_workgroups())?;
        self.compiled.conv.bind(self, op, bytemuck::bytes_of(params), &args, workgroups)
    }
}

/// The geometry, then the input-side, weight-side and output-side tensors' shapes; the batch.
fn check(op: &'static str, g: &Conv2dShape, x: &GpuTensor, w: &GpuTensor, y: &GpuTensor) -> Result<usize> {
    g.check(op)?;
    let n = x.rows();
    check_same(op, "images", x.shape(), (n, g.input_len()))?;
    check_same(op, "weights", w.shape(), (g.out_channels, g.filter_len()))?;
    check_same(op, "outputs", y.shape(), (n, g.output_len()))?;
    Ok(n)
}

/// The shader's parameters, refusing work whose busiest invocation would loop `per_value`
/// times past llvmpipe's limit, or whose values do not fit in u32.
fn params(
    op: &'static str,
    g: &Conv2dShape,
    n: usize,
    len: usize,
    has_bias: bool,
    per_value: usize,
) -> Result<Params> {
    if per_value > ITERATIONS {
        return Err(Error::shape(
            op,
            format!("at most {ITERATIONS} terms per value for one launch"),
            format!("{per_value} ({g:?}, batch {n})"),
        ));
    }
    let u = |v: usize| {
        u32::try_from(v).map_err(|_| Error::shape(op, "sizes below 2^32", format!("{v} ({g:?}, batch {n})")))
    };
    let (oh, ow) = g.out_size();
    Ok(Params {
        n: u(n)?,
        ci: u(g.in_channels)?,
        h: u(g.image.0)?,
        w: u(g.image.1)?,
        co: u(g.out_channels)?,
        kh: u(g.kernel.0)?,
        kw: u(g.kernel.1)?,
        sh: u(g.stride.0)?,
        sw: u(g.stride.1)?,
        ph: u(g.padding.0)?,
        pw: u(g.padding.1)?,
        oh: u(oh)?,
        ow: u(ow)?,
        has_bias: u32::from(has_bias),
        len: u(len)?,
        _pad: 0,
    })
}
