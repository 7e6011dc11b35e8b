//! Pipelines of `shaders/reduce.wgsl`: deterministic column sums and total sums.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use super::dispatch::{Binding, Dispatch, Family, fold, segments};
use crate::shape::check_same;
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    begin: u32,
    end: u32,
    accumulate: u32,
    _pad: [u32; 2],
}

/// Rows one `sum_columns` launch sums, and elements one `sum_all` launch sums (256 per
/// loop iteration): llvmpipe stops an invocation after 65535 loop iterations in all, so
/// longer sums take several launches, each adding to the last (see [`Dispatch`]).
const ROW_SEGMENT: usize = 32_768;
const ELEMENT_SEGMENT: usize = 256 * 32_768;

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "reduce",
        include_str!("../../shaders/reduce.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, ReadWrite],
        &["sum_columns", "sum_all"],
    )
}

impl Kernels<'_> {
    /// Binds `out[j] = scale · Σ_i x[i, j]`; `out` is (1, cols).
    pub fn sum_columns(&self, out: &GpuTensor, x: &GpuTensor, scale: f32) -> Result<Dispatch> {
        check_same("sum_columns", "output", out.shape(), (1, x.cols()))?;
        let groups = (x.cols() as u64).div_ceil(64);
        let workgroups = fold(groups, self.max_workgroups())?;
        self.bind_reduce("sum_columns", out, x, scale, (x.rows(), ROW_SEGMENT), workgroups)
    }

    /// Binds `out[0] = scale · Σ x` over every element; `out` is (1, 1).
    pub fn sum_all(&self, out: &GpuTensor, x: &GpuTensor, scale: f32) -> Result<Dispatch> {
        check_same("sum_all", "output", out.shape(), (1, 1))?;
        self.bind_reduce("sum_all", out, x, scale, (x.len(), ELEMENT_SEGMENT), [1, 1, 1])
    }

    fn bind_reduce(
        &self,
        entry: &'static str,
        out: &GpuTensor,
        x: &GpuTensor,
        scale: f32,
        (len, segment): (usize, usize),
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let (rows, cols) = x.shape();
        let too_big = || Error::shape(entry, "below 2^32 elements", format!("{rows}x{cols}"));
        u32::try_from(rows * cols).map_err(|_| too_big())?;
        let steps = segments(len, segment)
            .map(|(begin, end)| {
                let params = Params {
                    rows: rows as u32,
                    cols: cols as u32,
                    scale,
                    begin: begin as u32,
                    end: end as u32,
                    // Later segments add to what the earlier ones summed.
                    accumulate: (begin > 0) as u32,
                    _pad: [0; 2],
                };
                let args = [x.into(), out.into()];
                self.compiled.reduce.step(self, entry, bytemuck::bytes_of(&params), &args, workgroups)
            })
            .collect::<Result<_>>()?;
        Ok(Dispatch::new(entry, steps, self.id()))
    }
}
