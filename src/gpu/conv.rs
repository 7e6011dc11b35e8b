//! Pipelines of `shaders/conv.wgsl`: a 2-D convolution ([`Conv2dShape`]) and its gradients as
//! matrix products whose operands are gathered from the images inside the product (implicit
//! GEMM), through the parameters and epilogue of the dense layers' products
//! (`shaders/matmul_common.wgsl`). Each value of C is one invocation's sum, so no float
//! atomics are needed.

use super::Kernels;
use bytemuck::Zeroable;

use super::GpuTensor;
use super::dispatch::{Arg, Dispatch, Family, fold, segments};
use super::matmul::{BINDINGS, Params, check_epilogue};
use crate::gpu::Epilogue;
use crate::shape::{Conv2dShape, MatmulForm, check_same};
use crate::{Error, Result};

/// The most loop iterations the shader gives one invocation, with room to spare under
/// llvmpipe's 65535.
pub(crate) const ITERATIONS: usize = 32_768;

pub(crate) fn family(device: &wgpu::Device) -> Family {
    Family::new(
        device,
        "conv",
        &super::shaders::matmul(include_str!("../../shaders/conv.wgsl")),
        &BINDINGS,
        &["conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad"],
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
        self.conv2d_fused(y, x, w, b, g, &Epilogue::default())
    }

    /// [`Kernels::conv2d_forward`] with a forward [`Epilogue`] fused into the store (an
    /// activation, what it keeps, dropout), as [`Kernels::matmul_fused`] gives a dense layer:
    /// the values and masks are those of the separate ops, element for element in NCHW order.
    pub fn conv2d_fused(
        &self,
        y: &GpuTensor,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        g: &Conv2dShape,
        epilogue: &Epilogue,
    ) -> Result<Dispatch> {
        let op = "conv2d_forward";
        let n = check(op, g, x, w, y)?;
        if let Some(b) = b {
            check_same(op, "bias", b.shape(), (1, g.out_channels))?;
        }
        if epilogue.mask.is_some() || epilogue.derivative.is_some() || epilogue.row_sums.is_some() {
            return Err(Error::shape(
                op,
                "a forward epilogue (activation, keep, dropout)",
                "backward stages",
            ));
        }
        let (oh, ow) = g.out_size();
        // Checked as (m, n) = (1, values): the epilogue's tensors are shaped as y.
        let stages = check_epilogue(op, epilogue, MatmulForm::AB, n, g.output_len())?;
        let gemm = Gemm { m: g.out_channels, k: g.filter_len(), n: n * oh * ow, plane: oh * ow, nchw: true };
        let params =
            Params { has_bias: b.is_some() as u32, ..self.conv_params(op, g, n, &gemm, loop_turns(g).0)? };
        let dropout = epilogue.dropout.as_ref();
        let args = [
            w.into(),
            x.into(),
            b.into(),
            y.into(),
            epilogue.keep.map(|(_, t)| t).into(),
            dropout.map(|d| d.mask).into(),
            dropout.map(|d| &**d.counter).into(),
        ];
        let step = self.conv_step(op, stages.apply(params), &gemm, &stages.constants(), &args)?;
        Ok(Dispatch::new(op, vec![step], self.id()))
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
        let (h, w_) = g.image;
        let taps = g.out_channels * g.kernel.0 * g.kernel.1;
        let gemm = Gemm { m: g.in_channels, k: taps, n: n * h * w_, plane: h * w_, nchw: true };
        let params = self.conv_params(op, g, n, &gemm, loop_turns(g).1)?;
        let args = [w.into(), dy.into(), Arg::Unused, dx.into(), Arg::Unused, Arg::Unused, Arg::Unused];
        let unit_stride = [("UNIT_STRIDE", u32::from(g.stride == (1, 1)))];
        let step = self.conv_step(op, params, &gemm, &unit_stride, &args)?;
        Ok(Dispatch::new(op, vec![step], self.id()))
    }

    /// Binds the gradient of the weights, `dw` (out_channels, `g.filter_len()`), summed over
    /// the batch, and with `db` (1, out_channels) the bias's beside it (the sums of `dy`
    /// over each channel, in another order than [`crate::cpu::conv2d_bias_grad`]'s).
    pub fn conv2d_weight_grad(
        &self,
        dw: &GpuTensor,
        db: Option<&GpuTensor>,
        dy: &GpuTensor,
        x: &GpuTensor,
        g: &Conv2dShape,
    ) -> Result<Dispatch> {
        let op = "conv2d_weight_grad";
        let n = check(op, g, x, dw, dy)?;
        if let Some(db) = db {
            check_same(op, "bias gradient", db.shape(), (1, g.out_channels))?;
        }
        let (oh, ow) = g.out_size();
        let gemm = Gemm { m: g.out_channels, k: n, n: g.filter_len(), plane: 0, nchw: false };
        // One workgroup per 8×8 block of C, its 64 invocations each taking every 64th output
        // row (a loop over its columns): launches of as many samples as keep each invocation
        // under the limit, each adding to the last.
        let per_row = ow + 1;
        let samples = (ITERATIONS / per_row).saturating_sub(1) * 64 / oh;
        if samples == 0 {
            let turns = oh.div_ceil(64) * per_row;
            return Err(Error::shape(
                op,
                format!("at most {ITERATIONS} loop turns per invocation for one sample"),
                format!("{turns} ({g:?})"),
            ));
        }
        let blocks_n = gemm.n.div_ceil(8);
        let params = Params {
            row_sums: db.is_some() as u32,
            tiles_n: blocks_n as u32,
            tiles: (gemm.m.div_ceil(8) * blocks_n) as u32,
            ..self.conv_params(op, g, n, &gemm, per_row)?
        };
        let args = [dy.into(), x.into(), Arg::Unused, dw.into(), db.into(), Arg::Unused, Arg::Unused];
        let steps = segments(n, samples)
            .map(|(first, end)| {
                let segment = Params {
                    k_begin: first as u32,
                    k_end: end as u32,
                    accumulate: (first > 0) as u32,
                    ..params
                };
                self.conv_step(op, segment, &gemm, &[], &args)
            })
            .collect::<Result<_>>()?;
        Ok(Dispatch::new(op, steps, self.id()))
    }

    /// The product's parameters with the convolution's geometry, refusing work whose busiest
    /// invocation would take `per_value` loop turns, past llvmpipe's limit, or whose sizes do
    /// not fit in u32.
    fn conv_params(
        &self,
        op: &'static str,
        g: &Conv2dShape,
        n: usize,
        gemm: &Gemm,
        per_value: usize,
    ) -> Result<Params> {
        if per_value > ITERATIONS {
            return Err(Error::shape(
                op,
                format!("at most {ITERATIONS} loop turns per value for one launch"),
                format!("{per_value} ({g:?}, batch {n})"),
            ));
        }
        let u = |v: usize| {
            u32::try_from(v)
                .map_err(|_| Error::shape(op, "sizes below 2^32", format!("{v} ({g:?}, batch {n})")))
        };
        // Every index the shader forms stays below the largest tensor's length.
        u(n.saturating_mul(g.input_len().max(g.output_len())))?;
        let (oh, ow) = g.out_size();
        let (tile_m, tile_n) = (8 * gemm.rows(), 512 / gemm.rows());
        let tiles_n = gemm.n.div_ceil(tile_n);
        Ok(Params {
            m: u(gemm.m)?,
            k: u(gemm.k)?,
            n: u(gemm.n)?,
            tiles_n: u(tiles_n)?,
            tiles: u(gemm.m.div_ceil(tile_m).saturating_mul(tiles_n))?,
            k_end: u(gemm.k)?,
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
            plane: u(gemm.plane)?,
            ..Params::zeroed()
        })
    }

    fn conv_step(
        &self,
        op: &'static str,
        params: Params,
        gemm: &Gemm,
        constants: &[(&'static str, u32)],
        args: &[Arg; 7],
    ) -> Result<super::dispatch::Step> {
        // Only the constants an entry point reads: each set of values is a pipeline of its own.
        let mut constants: Vec<_> = constants.iter().copied().filter(|&(_, v)| v != 0).collect();
        if gemm.nchw {
            constants.extend([("LAYOUT", 1), ("ROWS", gemm.rows() as u32)]);
        }
        let workgroups = fold(u64::from(params.tiles), self.max_workgroups())?;
        self.compiled.conv.step_with(self, op, &constants, bytemuck::bytes_of(&params), args, workgroups)
    }
}

/// Every loop turn one invocation of the forward and of the input gradient takes (llvmpipe
/// counts the outer loops' too): `(c, i, j)` or `(o, i, j)` as nested loops.
pub(crate) fn loop_turns(g: &Conv2dShape) -> (usize, usize) {
    let per_channel = 1 + g.kernel.0 * (1 + g.kernel.1);
    (g.in_channels.saturating_mul(per_channel), g.out_channels.saturating_mul(per_channel))
}

/// A convolution as a product: C is (m, n) and sums k terms per value (for the weight
/// gradient, k counts samples); with `nchw`, C is stored as images of `plane` positions.
struct Gemm {
    m: usize,
    k: usize,
    n: usize,
    plane: usize,
    nchw: bool,
}

impl Gemm {
    /// Blocks of 8 rows per tile (the shader's ROWS): the fewest that cover C's rows, a
    /// power of two up to 8.
    fn rows(&self) -> usize {
        self.m.div_ceil(8).next_power_of_two().min(8)
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
