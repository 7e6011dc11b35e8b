//! Matrices in GPU buffers, and the one helper that reads a buffer back.

use super::Gpu;
use super::context::Locked;
use super::counters::Held;
use crate::shape::{check_labels, check_len};
use crate::{Error, Result};

/// A row-major `rows × cols` matrix of f32 in a GPU storage buffer, or in part of one.
///
/// Its range is padded to a multiple of 16 bytes so kernels may read it as `vec4<f32>`;
/// the padding is zero and never read back. A model's parameters are views into a few large
/// buffers (one each for the values, the gradients and each optimizer state), so that one
/// launch updates them all: bind [`GpuTensor::binding`], which covers exactly the tensor.
#[derive(Debug)]
pub struct GpuTensor {
    owner: u64,
    buffer: Locked<wgpu::Buffer>,
    /// None for an app's buffer wrapped by [`Gpu::tensor_from_buffer`] (the app holds it) and
    /// for a view (the whole buffer's tensor holds it).
    _held: Option<Held>,
    rows: usize,
    cols: usize,
    /// Where the values start in `buffer`, in bytes, and the bytes a binding covers: None
    /// for a tensor that is its whole buffer.
    offset: u64,
    size: Option<wgpu::BufferSize>,
}

impl GpuTensor {
    /// Rows: samples, for a batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns: values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Values held: `rows × cols`.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying buffer (usage `STORAGE | COPY_SRC | COPY_DST`), for binding in an
    /// app's own pipelines. Element `(r, c)` is the f32 at byte `offset() + 4 · (r · cols + c)`;
    /// [`GpuTensor::binding`] gives exactly that range.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Where its values start in [`GpuTensor::buffer`], in bytes (a multiple of the device's
    /// `min_storage_buffer_offset_alignment`): 0 unless it is a view into a larger buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its range of the buffer, to bind in an app's bind group (`BindingResource::Buffer`).
    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding { buffer: &self.buffer, offset: self.offset, size: self.size }
    }

    /// The bytes of the buffer it covers: `[offset, end)`.
    pub(crate) fn byte_range(&self) -> std::ops::Range<u64> {
        self.offset..self.size.map_or(self.buffer.size(), |size| self.offset + size.get())
    }

    /// The id of the [`Gpu`] that made it.
    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }
}

/// Class labels (u32, one per row) in a GPU buffer, each checked to be below `classes`.
#[derive(Debug)]
pub struct GpuLabels {
    owner: u64,
    buffer: Locked<wgpu::Buffer>,
    _held: Held,
    len: usize,
    classes: usize,
}

impl GpuLabels {
    /// Labels held: one per row of the batch they label.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no labels.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of classes every label was checked to be below.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The underlying buffer of u32 labels, for binding in an app's own pipelines.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }
}

impl Gpu {
    /// Copies a row-major `rows × cols` matrix to a new GPU buffer.
    pub fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<GpuTensor> {
        check_len("upload", "data", data.len(), rows, cols)?;
        let (buffer, held) =
            self.create_buffer("upload", "tensor", rows, cols, Some(bytemuck::cast_slice(data)), no_usage())?;
        let buffer = Locked::new(buffer, &self.serial);
        Ok(GpuTensor { owner: self.id(), buffer, _held: Some(held), rows, cols, offset: 0, size: None })
    }

    /// A new `rows × cols` matrix of zeros.
    pub fn zeros(&self, rows: usize, cols: usize) -> Result<GpuTensor> {
        self.zeros_with("zeros", rows, cols, no_usage())
    }

    /// [`Gpu::zeros`] in a buffer that a uniform binding can read too (the fused MLP step
    /// reads its parameters so: see `shaders/mlp.wgsl`).
    pub(crate) fn zeros_uniform(&self, rows: usize, cols: usize) -> Result<GpuTensor> {
        self.zeros_with("zeros_uniform", rows, cols, wgpu::BufferUsages::UNIFORM)
    }

    fn zeros_with(
        &self,
        op: &'static str,
        rows: usize,
        cols: usize,
        usage: wgpu::BufferUsages,
    ) -> Result<GpuTensor> {
        let (buffer, held) = self.create_buffer(op, "tensor", rows, cols, None, usage)?;
        let buffer = Locked::new(buffer, &self.serial);
        Ok(GpuTensor { owner: self.id(), buffer, _held: Some(held), rows, cols, offset: 0, size: None })
    }

    /// A `rows × cols` view of `whole`'s values from element `first` on, which must start at
    /// a multiple of the device's storage offset alignment (see [`Gpu::view_alignment`]) and
    /// leave room for the view's 16-byte padding. It shares `whole`'s buffer, which `whole`
    /// keeps alive and counts; writing either changes both.
    pub(crate) fn view(
        &self,
        whole: &GpuTensor,
        first: usize,
        rows: usize,
        cols: usize,
    ) -> Result<GpuTensor> {
        let op = "view";
        let offset = whole.offset + 4 * first as u64;
        let bytes = (rows as u64 * cols as u64 * 4).next_multiple_of(16);
        if !first.is_multiple_of(self.view_alignment())
            || rows * cols == 0
            || offset + bytes > whole.byte_range().end
        {
            return Err(Error::shape(
                op,
                format!("an aligned, non-empty range inside {} bytes", whole.byte_range().end),
                format!("{rows}x{cols} from element {first}"),
            ));
        }
        Ok(GpuTensor {
            owner: whole.owner,
            buffer: whole.buffer.clone(),
            _held: None,
            rows,
            cols,
            offset,
            size: wgpu::BufferSize::new(bytes),
        })
    }

    /// The element alignment of a view's start: the device's storage offset alignment (at
    /// least 16 bytes, so views can be read as vec4s), in f32s.
    pub(crate) fn view_alignment(&self) -> usize {
        (self.limits().min_storage_buffer_offset_alignment.max(16) / 4) as usize
    }

    /// Views an app's own buffer as a `rows × cols` f32 matrix, so kernels (a forward pass
    /// over a grid of points, say) read or write it in place, with no copy. The buffer must
    /// have been created on this `Gpu`'s device with `STORAGE` usage, and hold at least
    /// `rows · cols` f32 rounded up to 16 bytes (kernels may read in `vec4`s).
    ///
    /// wgpu cannot be asked which device a buffer belongs to; one from another device on the
    /// same instance is a validation error (an `Error::Gpu`) when bound.
    pub fn tensor_from_buffer(&self, buffer: &wgpu::Buffer, rows: usize, cols: usize) -> Result<GpuTensor> {
        let op = "tensor_from_buffer";
        if rows == 0 || cols == 0 {
            return Err(Error::shape(op, "at least 1 row and 1 column", format!("{rows}x{cols}")));
        }
        let needed = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_next_multiple_of(16));
        let Some(needed) = needed else {
            return Err(Error::shape(op, "a size that fits in 64 bits", format!("{rows}x{cols} f32")));
        };
        if buffer.size() < needed {
            return Err(Error::shape(
                op,
                format!("a buffer of at least {needed} bytes for {rows}x{cols} f32"),
                format!("{} bytes", buffer.size()),
            ));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::shape(op, "a buffer with STORAGE usage", format!("{:?}", buffer.usage())));
        }
        self.check_buffer_size(&format!("a {rows}x{cols} tensor"), needed)?;
        Ok(GpuTensor {
            owner: self.id(),
            buffer: Locked::new(buffer.clone(), &self.serial),
            _held: None,
            rows,
            cols,
            offset: 0,
            size: None,
        })
    }

    /// Overwrites a tensor's values in place (one small upload, no rebinding): how a
    /// learning rate changes between steps.
    pub fn write(&self, tensor: &GpuTensor, data: &[f32]) -> Result<()> {
        check_len("write", "data", data.len(), tensor.rows, tensor.cols)?;
        self.write_at(tensor, 0, data)
    }

    /// Overwrites `data.len()` values from element `first` on, leaving the rest.
    pub fn write_at(&self, tensor: &GpuTensor, first: usize, data: &[f32]) -> Result<()> {
        if first.checked_add(data.len()).is_none_or(|end| end > tensor.len()) {
            return Err(Error::shape(
                "write_at",
                format!("at most {} values", tensor.len()),
                format!("{} from {first}", data.len()),
            ));
        }
        self.check_owner("write_at", tensor)?;
        self.tally.uploaded(size_of_val(data) as u64);
        self.scoped("writing a tensor", || {
            self.queue().write_buffer(
                &tensor.buffer,
                tensor.offset + 4 * first as u64,
                bytemuck::cast_slice(data),
            )
        })
    }

    /// Overwrites labels in place, rejecting any label `>= classes`.
    pub fn write_labels(&self, labels: &GpuLabels, values: &[u32]) -> Result<()> {
        check_len("write_labels", "labels", values.len(), labels.len, 1)?;
        check_labels("write_labels", values, labels.classes)?;
        if labels.owner != self.id() {
            return Err(Error::Gpu {
                context: "write_labels".into(),
                message: "the labels belong to another Gpu context (another device)".into(),
            });
        }
        self.tally.uploaded(size_of_val(values) as u64);
        self.scoped("writing labels", || {
            self.queue().write_buffer(&labels.buffer, 0, bytemuck::cast_slice(values))
        })
    }

    /// Copies labels back (an explicit read, like [`Gpu::read`]).
    pub fn read_labels(&self, labels: &GpuLabels) -> Result<Vec<u32>> {
        crate::blocking::refuse_on_web("read_labels")?;
        crate::blocking::wait("read_labels", self.read_labels_async(labels))
    }

    /// [`Gpu::read_labels`] without blocking: works in the browser.
    pub async fn read_labels_async(&self, labels: &GpuLabels) -> Result<Vec<u32>> {
        if labels.owner != self.id() {
            return Err(Error::Gpu {
                context: "read_labels".into(),
                message: "the labels belong to another Gpu context (another device)".into(),
            });
        }
        let bytes = (labels.len * 4) as u64;
        let values = self.read_buffer_async(&labels.buffer, 0, bytes).await?;
        Ok(bytemuck::pod_collect_to_vec(&values))
    }

    /// Copies class labels to the GPU, rejecting any label `>= classes`.
    pub fn upload_labels(&self, labels: &[u32], classes: usize) -> Result<GpuLabels> {
        check_labels("upload_labels", labels, classes)?;
        let (buffer, _held) = self.create_buffer(
            "upload_labels",
            "labels",
            labels.len(),
            1,
            Some(bytemuck::cast_slice(labels)),
            no_usage(),
        )?;
        let buffer = Locked::new(buffer, &self.serial);
        Ok(GpuLabels { owner: self.id(), buffer, _held, len: labels.len(), classes })
    }

    /// Copies `tensor` back once the work submitted before this call has finished (through
    /// the staging pool of `readback.rs`, the one place the crate maps buffers). Blocks: for
    /// native programs; in the browser it is [`Error::WouldBlock`], and
    /// [`Gpu::read_async`] is the call to make.
    pub fn read(&self, tensor: &GpuTensor) -> Result<Vec<f32>> {
        crate::blocking::refuse_on_web("read")?;
        crate::blocking::wait("read", self.read_async(tensor))
    }

    /// [`Gpu::read`] without blocking, on every target: in the browser the map is delivered
    /// by the page's event loop; on native targets the future waits for the GPU when polled.
    /// Needs no particular executor.
    pub async fn read_async(&self, tensor: &GpuTensor) -> Result<Vec<f32>> {
        self.read_first_async(tensor, tensor.len()).await
    }

    /// The first `len` values of `tensor` (at most all of them).
    pub(crate) async fn read_first_async(&self, tensor: &GpuTensor, len: usize) -> Result<Vec<f32>> {
        self.check_owner("read", tensor)?;
        let bytes = (len.min(tensor.len()) * 4) as u64;
        let bytes = self.read_buffer_async(&tensor.buffer, tensor.offset, bytes).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Operands of kernels are checked in `Family::step`; this is for the copies.
    fn check_owner(&self, op: &str, tensor: &GpuTensor) -> Result<()> {
        if tensor.owner != self.id() {
            return Err(Error::Gpu {
                context: op.into(),
                message: "the tensor belongs to another Gpu context (another device)".into(),
            });
        }
        Ok(())
    }

    /// A storage buffer (copied to and from, and with `usage` besides) for `rows × cols`
    /// values, filled with `contents` when given.
    fn create_buffer(
        &self,
        op: &'static str,
        what: &str,
        rows: usize,
        cols: usize,
        contents: Option<&[u8]>,
        usage: wgpu::BufferUsages,
    ) -> Result<(wgpu::Buffer, Held)> {
        if rows == 0 || cols == 0 {
            return Err(Error::shape(op, "at least 1 row and 1 column", format!("{rows}x{cols}")));
        }
        let bytes = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| Error::shape(op, "a size that fits in memory", format!("{rows}x{cols}")))?;
        let size = bytes.next_multiple_of(16);
        self.check_buffer_size(&format!("a {rows}x{cols} {what}"), size)?;
        let buffer = self.scoped("allocating a buffer", || {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST
                    | usage,
                mapped_at_creation: contents.is_some(),
            })
        })?;
        if let Some(contents) = contents {
            {
                let mut view = buffer.get_mapped_range_mut(..).map_err(|e| Error::Gpu {
                    context: "filling a new buffer".into(),
                    message: e.to_string(),
                })?;
                view.slice(..contents.len()).copy_from_slice(contents);
            }
            buffer.unmap();
            self.tally.uploaded(contents.len() as u64);
        }
        Ok((buffer, Held::new(&self.tally, size)))
    }
}

/// No usage beyond the storage and copies every tensor has.
fn no_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::empty()
}
