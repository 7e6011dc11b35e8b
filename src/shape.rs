//! Shapes shared by the CPU reference and the GPU kernels: every tensor here is a row-major
//! matrix, and checks live in one place so both backends reject bad input alike.

use crate::{Error, Result};

/// Which operand a matmul reads transposed. These are the three products a dense layer needs:
/// `AB` for the forward pass, `ABt` and `AtB` for the gradients of its input and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MatmulForm {
    /// `C[m,n] = A[m,k] · B[k,n]`
    AB,
    /// `C[m,n] = A[m,k] · B[n,k]ᵀ`
    ABt,
    /// `C[m,n] = A[k,m]ᵀ · B[k,n]`
    AtB,
}

impl MatmulForm {
    /// The three forms, for tests and benches that try each.
    pub const ALL: [MatmulForm; 3] = [MatmulForm::AB, MatmulForm::ABt, MatmulForm::AtB];

    /// The stored shapes `(rows, cols)` of A and B for a product of size `m×k·k×n`.
    pub fn operand_shapes(self, m: usize, k: usize, n: usize) -> ((usize, usize), (usize, usize)) {
        match self {
            MatmulForm::AB => ((m, k), (k, n)),
            MatmulForm::ABt => ((m, k), (n, k)),
            MatmulForm::AtB => ((k, m), (k, n)),
        }
    }

    /// `(m, k, n)` from the stored shapes of A and B, or a shape error naming the op.
    pub fn dims(self, a: (usize, usize), b: (usize, usize)) -> Result<(usize, usize, usize)> {
        let (m, k, k2, n) = match self {
            MatmulForm::AB => (a.0, a.1, b.0, b.1),
            MatmulForm::ABt => (a.0, a.1, b.1, b.0),
            MatmulForm::AtB => (a.1, a.0, b.0, b.1),
        };
        if k != k2 {
            let ((ar, ac), (br, bc)) = self.operand_shapes(m, k, n);
            return Err(Error::shape(
                self.op_name(),
                format!("A {ar}x{ac} with B {br}x{bc} (shared dimension {k})"),
                format!("A {}x{}, B {}x{}", a.0, a.1, b.0, b.1),
            ));
        }
        Ok((m, k, n))
    }

    /// The form's name in errors and reports (`matmul A·Bᵀ`).
    pub fn op_name(self) -> &'static str {
        match self {
            MatmulForm::AB => "matmul A·B",
            MatmulForm::ABt => "matmul A·Bᵀ",
            MatmulForm::AtB => "matmul Aᵀ·B",
        }
    }
}

/// The shapes of a 2-D convolution, PyTorch's `Conv2d`, over images stored as PyTorch stores
/// them (NCHW, row-major): each sample `(in_channels, height, width)`, the weights
/// `(out_channels, in_channels, kernel_h, kernel_w)`, each output `(out_channels, out_h, out_w)`
/// with `out_h = (height + 2·padding_h − kernel_h) / stride_h + 1`, and alike across.
/// A batch is a matrix of one sample per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Conv2dShape {
    /// Channels of each input image.
    pub in_channels: usize,
    /// `(height, width)` of each input image.
    pub image: (usize, usize),
    /// Channels of each output (one per filter).
    pub out_channels: usize,
    /// `(kernel_h, kernel_w)`.
    pub kernel: (usize, usize),
    /// `(stride_h, stride_w)`: 1 unless set.
    pub stride: (usize, usize),
    /// `(padding_h, padding_w)` zeros on each side: 0 unless set.
    pub padding: (usize, usize),
}

impl Conv2dShape {
    /// `in_channels` images of `image = (height, width)` through `out_channels` filters of
    /// `kernel = (kernel_h, kernel_w)`, stride 1, no padding.
    pub fn new(
        in_channels: usize,
        image: (usize, usize),
        out_channels: usize,
        kernel: (usize, usize),
    ) -> Self {
        Conv2dShape { in_channels, image, out_channels, kernel, stride: (1, 1), padding: (0, 0) }
    }

    /// The same with this `(stride_h, stride_w)`.
    pub fn stride(self, stride: (usize, usize)) -> Self {
        Conv2dShape { stride, ..self }
    }

    /// The same with this `(padding_h, padding_w)`.
    pub fn padding(self, padding: (usize, usize)) -> Self {
        Conv2dShape { padding, ..self }
    }

    /// `(out_h, out_w)`; meaningful once [`Conv2dShape::check`] passes.
    pub fn out_size(&self) -> (usize, usize) {
        let along = |size: usize, pad: usize, kernel: usize, stride: usize| {
            (size + 2 * pad).saturating_sub(kernel) / stride.max(1) + 1
        };
        (
            along(self.image.0, self.padding.0, self.kernel.0, self.stride.0),
            along(self.image.1, self.padding.1, self.kernel.1, self.stride.1),
        )
    }

    /// Values in one input sample: `in_channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.image.0 * self.image.1
    }

    /// The image it takes.
    pub fn input_image(&self) -> ImageShape {
        ImageShape::new(self.in_channels, self.image.0, self.image.1)
    }

    /// The image it gives; meaningful once [`Conv2dShape::check`] passes.
    pub fn output_image(&self) -> ImageShape {
        let (oh, ow) = self.out_size();
        ImageShape::new(self.out_channels, oh, ow)
    }

    /// Values in one output sample: `out_channels · out_h · out_w`.
    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_size();
        self.out_channels * oh * ow
    }

    /// Values in one filter, the columns of the weights: `in_channels · kernel_h · kernel_w`.
    pub fn filter_len(&self) -> usize {
        self.in_channels * self.kernel.0 * self.kernel.1
    }

    /// Refuses a convolution no input could go through (`op` is the refusing call): a
    /// dimension or stride of 0, a kernel larger than the padded image, or sizes whose
    /// products do not fit in memory's index range.
    pub fn check(&self, op: &'static str) -> Result<()> {
        let Conv2dShape { in_channels, image, out_channels, kernel, stride, padding } = *self;
        let given = format!("{self:?}");
        if [in_channels, image.0, image.1, out_channels, kernel.0, kernel.1, stride.0, stride.1].contains(&0)
        {
            return Err(Error::shape(op, "channels, image, kernel and stride of at least 1", given));
        }
        let padded = |size: usize, pad: usize| pad.checked_mul(2).and_then(|p| p.checked_add(size));
        let (Some(ph), Some(pw)) = (padded(image.0, padding.0), padded(image.1, padding.1)) else {
            return Err(Error::shape(op, "a padding that fits in memory's index range", given));
        };
        if kernel.0 > ph || kernel.1 > pw {
            return Err(Error::shape(op, "a kernel no larger than the padded image", given));
        }
        let (oh, ow) = self.out_size();
        let products = [
            [in_channels, image.0, image.1, 1],
            [out_channels, oh, ow, 1],
            [out_channels, in_channels, kernel.0, kernel.1],
        ];
        if products.iter().any(|p| {
            p.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).is_none_or(|n| n > u32::MAX as usize)
        }) {
            return Err(Error::shape(
                op,
                "a sample, an output and the weights of below 2^32 values each",
                given,
            ));
        }
        Ok(())
    }
}

/// The shape of an image sample, PyTorch's `(channels, height, width)`: stored row-major
/// (NCHW), so a sample is `channels · height · width` values, plane after plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ImageShape {
    /// Planes per image (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Rows of each plane.
    pub height: usize,
    /// Columns of each plane.
    pub width: usize,
}

impl ImageShape {
    /// `channels` planes of `height × width`.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageShape { channels, height, width }
    }

    /// Values in one image: `channels · height · width` (saturating: [`ImageShape::check`]
    /// refuses what overflows).
    pub fn len(&self) -> usize {
        self.channels.saturating_mul(self.height).saturating_mul(self.width)
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Refuses a shape of no values, or of more than memory's index range.
    pub fn check(&self, op: &'static str) -> Result<()> {
        let len = self.channels.checked_mul(self.height).and_then(|n| n.checked_mul(self.width));
        match len {
            Some(len) if len > 0 && len <= isize::MAX as usize / 4 => Ok(()),
            _ => Err(Error::shape(
                op,
                "an image of at least 1 value that memory can hold",
                format!("{self:?}"),
            )),
        }
    }
}

/// Batch normalisation's settings, PyTorch's `BatchNorm2d(channels, eps, momentum)`: each
/// sample is `channels` equal planes (an NCHW image), and each channel is normalised over
/// every value of its plane in the batch. The plane's size is the sample's width over
/// `channels`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct BatchNorm {
    /// Channels of each sample: the planes statistics are kept for.
    pub channels: usize,
    /// Added to the variance before its square root.
    pub eps: f32,
    /// How far each training step moves the running statistics towards the batch's.
    pub momentum: f32,
}

impl BatchNorm {
    /// `channels` planes with PyTorch's defaults: ε 1e-5, momentum 0.1.
    pub fn new(channels: usize) -> Self {
        BatchNorm { channels, eps: 1e-5, momentum: 0.1 }
    }

    /// The same with this ε.
    pub fn eps(self, eps: f32) -> Self {
        BatchNorm { eps, ..self }
    }

    /// The same with this momentum.
    pub fn momentum(self, momentum: f32) -> Self {
        BatchNorm { momentum, ..self }
    }

    /// Values per channel in a sample of `width` values, or an error naming `op` when
    /// `width` is not `channels` planes.
    pub fn plane(&self, op: &'static str, width: usize) -> Result<usize> {
        if self.channels == 0 || width == 0 || !width.is_multiple_of(self.channels) {
            return Err(Error::shape(
                op,
                format!("samples of {} equal channels", self.channels),
                format!("{width} values"),
            ));
        }
        Ok(width / self.channels)
    }

    /// Refuses settings no normalisation could use: 0 channels, an ε that is negative or not
    /// finite, a momentum outside [0, 1].
    pub fn check(&self, op: &'static str) -> Result<()> {
        if self.channels == 0 {
            return Err(Error::shape(op, "batch normalisation over at least 1 channel", "0 channels"));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::shape(op, "a finite ε of at least 0", self.eps.to_string()));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::shape(op, "a momentum in [0, 1]", self.momentum.to_string()));
        }
        Ok(())
    }
}

/// The shapes of a 2-D pooling, PyTorch's `MaxPool2d` or `AvgPool2d` without padding, over
/// NCHW images: each window of `kernel` at steps of `stride` (the kernel's size unless set, as
/// PyTorch's default) becomes one value per channel; `out_h = (height − kernel_h) / stride_h + 1`
/// (rounded down, as PyTorch's `ceil_mode=False`), and alike across.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Pool2dShape {
    /// Channels of each image (the same out as in).
    pub channels: usize,
    /// `(height, width)` of each input image.
    pub image: (usize, usize),
    /// `(kernel_h, kernel_w)`.
    pub kernel: (usize, usize),
    /// `(stride_h, stride_w)`.
    pub stride: (usize, usize),
}

impl Pool2dShape {
    /// Windows of `kernel` over `channels` images of `image = (height, width)`, at steps of
    /// the kernel's size.
    pub fn new(channels: usize, image: (usize, usize), kernel: (usize, usize)) -> Self {
        Pool2dShape { channels, image, kernel, stride: kernel }
    }

    /// The same with this `(stride_h, stride_w)`.
    pub fn stride(self, stride: (usize, usize)) -> Self {
        Pool2dShape { stride, ..self }
    }

    /// `(out_h, out_w)`; meaningful once [`Pool2dShape::check`] passes.
    pub fn out_size(&self) -> (usize, usize) {
        let along =
            |size: usize, kernel: usize, stride: usize| size.saturating_sub(kernel) / stride.max(1) + 1;
        (along(self.image.0, self.kernel.0, self.stride.0), along(self.image.1, self.kernel.1, self.stride.1))
    }

    /// Values in one input sample: `channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.channels * self.image.0 * self.image.1
    }

    /// The images it takes.
    pub fn input_image(&self) -> ImageShape {
        ImageShape::new(self.channels, self.image.0, self.image.1)
    }

    /// The images it gives; meaningful once [`Pool2dShape::check`] passes.
    pub fn output_image(&self) -> ImageShape {
        let (oh, ow) = self.out_size();
        ImageShape::new(self.channels, oh, ow)
    }

    /// Values in one output sample: `channels · out_h · out_w`.
    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_size();
        self.channels * oh * ow
    }

    /// Refuses a pooling no image could go through (`op` is the refusing call): a dimension
    /// or stride of 0, a kernel larger than the image, or a sample of 2^24 values or more
    /// (a max pool keeps each window's winner as an f32 index, exact below 2^24).
    pub fn check(&self, op: &'static str) -> Result<()> {
        let Pool2dShape { channels, image, kernel, stride } = *self;
        let given = format!("{self:?}");
        if [channels, image.0, image.1, kernel.0, kernel.1, stride.0, stride.1].contains(&0) {
            return Err(Error::shape(op, "channels, image, kernel and stride of at least 1", given));
        }
        if kernel.0 > image.0 || kernel.1 > image.1 {
            return Err(Error::shape(op, "a kernel no larger than the image", given));
        }
        let len = [channels, image.0, image.1].iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if len.is_none_or(|n| n >= 1 << 24) {
            return Err(Error::shape(op, "images of fewer than 2^24 values", given));
        }
        Ok(())
    }
}

/// Fails unless `len == rows * cols`.
pub(crate) fn check_len(op: &'static str, what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    // Checked: the CPU's products trust this length in an unsafe block.
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::shape(op, format!("{what} of {rows}x{cols} values"), format!("{len} values")));
    }
    Ok(())
}

/// Fails unless two matrices have the same shape.
pub(crate) fn check_same(
    op: &'static str,
    what: &str,
    got: (usize, usize),
    want: (usize, usize),
) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("{what} of {}x{}", want.0, want.1),
            format!("{}x{}", got.0, got.1),
        ));
    }
    Ok(())
}

/// Fails unless every label is a valid class index.
pub(crate) fn check_labels(op: &'static str, labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::shape(
            op,
            format!("labels in 0..{classes}"),
            format!("label {} at row {i}", labels[i]),
        )),
    }
}

/// NaN and infinities are refused at the door: one would turn every weight it reaches into
/// NaN. (A loss that overflows in training is caught on the GPU by the loss watch instead.)
pub(crate) fn check_finite(op: &'static str, what: &'static str, values: &[f32], width: usize) -> Result<()> {
    // Checked a chunk at a time without stopping early, which the compiler vectorizes: it ran
    // at 6% of a CPU training step value by value. The first bad value is looked up after.
    if values.chunks(1024).all(|chunk| chunk.iter().fold(true, |ok, v| ok & v.is_finite())) {
        return Ok(());
    }
    let i = values.iter().position(|v| !v.is_finite()).expect("a value that is not finite");
    Err(Error::NotFinite { op, what, row: i / width, col: i % width, value: values[i] })
}
