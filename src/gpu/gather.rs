//! Pipelines of `shaders/gather.wgsl`: minibatches cut from GPU-resident data by index.

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::dispatch::{Arg, Binding, Dispatch, Family, fold};
use super::{GpuLabels, GpuTensor};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    offset: u32,
    first: u32,
    source_rows: u32,
    _pad: [u32; 3],
}

pub(crate) fn family(device: &wgpu::Device) -> Family {
    use Binding::*;
    Family::new(
        device,
        "gather",
        include_str!("../../shaders/gather.wgsl"),
        &[Uniform(size_of::<Params>() as u64), Read, Read, ReadWrite],
        &["gather_rows"],
    )
}

impl Kernels<'_> {
    /// Binds `out[r] = source[indices[offset + r]]` for every row r of `out`. The indices
    /// must have been uploaded with `classes` = the number of rows of `source`, so each is
    /// known to be in range.
    pub fn gather_rows(
        &self,
        out: &GpuTensor,
        source: &GpuTensor,
        indices: &GpuLabels,
        offset: usize,
    ) -> Result<Dispatch> {
        if indices.classes() > source.rows() {
            return Err(Error::shape(
                "gather_rows",
                format!("indices below {}", source.rows()),
                format!("indices below {}", indices.classes()),
            ));
        }
        self.gather_rows_from_part(out, source, 0, indices, offset)
    }

    /// Like [`Kernels::gather_rows`] from a part of a larger data set: `part` holds its rows
    /// `first..first + part.rows()`, and only rows of `out` whose index falls there are
    /// written. Gathering from every part in turn cuts a minibatch from a data set too big
    /// for one storage binding.
    pub fn gather_rows_from_part(
        &self,
        out: &GpuTensor,
        part: &GpuTensor,
        first: usize,
        indices: &GpuLabels,
        offset: usize,
    ) -> Result<Dispatch> {
        let source = part;
        if out.cols() != source.cols() {
            return Err(Error::shape(
                "gather_rows",
                format!("rows of {}", source.cols()),
                format!("rows of {}", out.cols()),
            ));
        }
        self.bind_gather(
            "gather_rows",
            (out.rows(), out.cols()),
            (first, source.rows()),
            indices,
            offset,
            [source.into(), indices.into(), out.into()],
        )
    }

    /// Binds `out[r] = labels[indices[offset + r]]`: the labels of a gathered minibatch.
    pub fn gather_labels(
        &self,
        out: &GpuLabels,
        labels: &GpuLabels,
        indices: &GpuLabels,
        offset: usize,
    ) -> Result<Dispatch> {
        if out.classes() != labels.classes() {
            return Err(Error::shape(
                "gather_labels",
                format!("labels of {} classes", labels.classes()),
                out.classes().to_string(),
            ));
        }
        if indices.classes() > labels.len() {
            return Err(Error::shape(
                "gather_labels",
                format!("indices below {}", labels.len()),
                format!("indices below {}", indices.classes()),
            ));
        }
        self.bind_gather(
            "gather_labels",
            (out.len(), 1),
            (0, labels.len()),
            indices,
            offset,
            [labels.into(), indices.into(), out.into()],
        )
    }

    fn bind_gather(
        &self,
        op: &'static str,
        (rows, cols): (usize, usize),
        (first, source_rows): (usize, usize),
        indices: &GpuLabels,
        offset: usize,
        args: [Arg; 3],
    ) -> Result<Dispatch> {
        if offset.checked_add(rows).is_none_or(|end| end > indices.len()) {
            return Err(Error::shape(
                op,
                format!("{rows} indices from {offset}"),
                format!("{} indices", indices.len()),
            ));
        }
        let as_u32 =
            |v: usize| u32::try_from(v).map_err(|_| Error::shape(op, "sizes below 2^32", v.to_string()));
        let params = Params {
            rows: as_u32(rows)?,
            cols: as_u32(cols)?,
            offset: as_u32(offset)?,
            first: as_u32(first)?,
            source_rows: as_u32(source_rows)?,
            _pad: [0; 3],
        };
        let workgroups = fold((rows as u64 * cols as u64).div_ceil(256), self.max_workgroups())?;
        // Labels are gathered as rows of one u32: the same kernel.
        self.compiled.gather.bind(self, "gather_rows", bytemuck::bytes_of(&params), &args, workgroups)
    }
}
