//! Pipelines of `shaders/norm.wgsl`: layer normalisation's statistics, forward and backward.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Binding, Dispatch, Family, fold};
use crate::shape::check_same;
use crate::{Error, Result};

/// The widest row the kernels take: a row kernel walks its row twice, and llvmpipe stops an
/// invocation after 65535 loop iterations (the same bound as softmax's).
pub const MAX_LAYER_NORM_COLS: usize = 16_383;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "norm",
        include_str!("../../shaders/norm.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, Read, Read, Read, ReadWrite],
        &["layer_norm_stats", "layer_norm_forward", "layer_norm_backward", "layer_norm_gain_terms"],
    )
}

impl Kernels<'_> {
    /// Binds `stats[r] = (mean, 1/√(var + ε))` of each row of `x`; `stats` is (rows, 2).
    pub fn layer_norm_stats(&self, stats: &GpuTensor, x: &GpuTensor) -> Result<Dispatch> {
        check_same("layer_norm_stats", "stats", stats.shape(), (x.rows(), 2))?;
        self.bind_norm("layer_norm_stats", stats, x, [None, None, None], true)
    }

    /// Binds `y = (x − mean) · rstd · gain + bias`; gain and bias are (1, cols).
    pub fn layer_norm_forward(
        &self,
        y: &GpuTensor,
        x: &GpuTensor,
        stats: &GpuTensor,
        gain: &GpuTensor,
        bias: &GpuTensor,
    ) -> Result<Dispatch> {
        let op = "layer_norm_forward";
        check_same(op, "output", y.shape(), x.shape())?;
        check_same(op, "stats", stats.shape(), (x.rows(), 2))?;
        check_same(op, "gain", gain.shape(), (1, x.cols()))?;
        check_same(op, "bias", bias.shape(), (1, x.cols()))?;
        self.bind_norm(op, y, x, [Some(stats), Some(gain), Some(bias)], false)
    }

    /// Binds `dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂))` per row, `g = dy ⊙ gain`.
    pub fn layer_norm_backward(
        &self,
        dx: &GpuTensor,
        x: &GpuTensor,
        stats: &GpuTensor,
        gain: &GpuTensor,
        dy: &GpuTensor,
    ) -> Result<Dispatch> {
        let op = "layer_norm_backward";
        check_same(op, "input gradient", dx.shape(), x.shape())?;
        check_same(op, "output gradient", dy.shape(), x.shape())?;
        check_same(op, "stats", stats.shape(), (x.rows(), 2))?;
        check_same(op, "gain", gain.shape(), (1, x.cols()))?;
        self.bind_norm(op, dx, x, [Some(stats), Some(gain), Some(dy)], true)
    }

    /// Binds `terms = x̂ ⊙ dy`, whose column sums are the gain's gradient.
    pub fn layer_norm_gain_terms(
        &self,
        terms: &GpuTensor,
        x: &GpuTensor,
        stats: &GpuTensor,
        dy: &GpuTensor,
    ) -> Result<Dispatch> {
        let op = "layer_norm_gain_terms";
        check_same(op, "output", terms.shape(), x.shape())?;
        check_same(op, "output gradient", dy.shape(), x.shape())?;
        check_same(op, "stats", stats.shape(), (x.rows(), 2))?;
        self.bind_norm(op, terms, x, [Some(stats), None, Some(dy)], false)
    }

    /// `per_row`: one invocation per row (the row kernels), else one per element.
    fn bind_norm(
        &self,
        entry: &'static str,
        out: &GpuTensor,
        x: &GpuTensor,
        [b, c, d]: [Option<&GpuTensor>; 3],
        per_row: bool,
    ) -> Result<Dispatch> {
        let (rows, cols) = x.shape();
        if cols > MAX_LAYER_NORM_COLS {
            return Err(Error::shape(
                entry,
                format!("rows of at most {MAX_LAYER_NORM_COLS} values"),
                cols.to_string(),
            ));
        }
        let too_big = |_| Error::shape(entry, "below 2^32 elements", x.len().to_string());
        let params = Params {
            rows: u32::try_from(rows).map_err(too_big)?,
            cols: cols as u32,
            eps: crate::cpu::LAYER_NORM_EPS as f32,
            _pad: 0,
        };
        u32::try_from(x.len()).map_err(too_big)?;
        let groups = if per_row { (rows as u64).div_ceil(64) } else { (x.len() as u64).div_ceil(256) };
        self.compiled.norm.bind(
            self,
            entry,
            bytemuck::bytes_of(&params),
            &[x.into(), b.into(), c.into(), d.into(), out.into()],
            fold(groups, self.max_workgroups())?,
        )
    }
}
