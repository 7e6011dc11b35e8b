//! Data sets: the IDX reader for MNIST-style files, and samples with their labels or target
//! values, ready to train on.

pub mod idx;
mod spirals;
mod toy;

pub use spirals::spirals;
pub use toy::{circles, gaussians, xor};

use std::path::Path;

use crate::shape::check_finite;
use crate::target::Target;
use crate::{Error, Result};

/// Samples and what each should come out as: class labels (for cross-entropy and NLL) or
/// target values (for MSE, MAE and BCE: regression). Built by [`Dataset::labelled`] or
/// [`Dataset::regression`], which check that the parts agree, so a data set is always whole
/// (an empty one can still be cut from it by [`Dataset::slice`], but not loaded).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    inputs: Vec<f32>,
    width: usize,
    targets: Targets,
    /// The samples' shape as images, when they are ([`Dataset::with_image`]).
    image: Option<crate::ImageShape>,
}

/// What a data set trains towards, one entry (a label, or a row of values) per sample.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Targets {
    /// One class per sample, each below `classes`.
    Labels {
        /// The classes, in sample order.
        labels: Vec<u32>,
        /// How many classes there are (10 for digits): the model's output width.
        classes: usize,
    },
    /// `outputs` values per sample, row-major: what each of the model's outputs should be.
    Values {
        /// `len × outputs` values, row-major.
        values: Vec<f32>,
        /// Values per sample: the model's output width.
        outputs: usize,
    },
}

impl Dataset {
    /// Labelled samples: `inputs` holds `labels.len()` rows of `width` values, row-major;
    /// every label is below `classes`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the mismatch: a width or class count of 0, inputs that are not
    /// one row per label, or a label at or past `classes`; [`Error::NotFinite`] for a NaN or
    /// infinite input.
    pub fn labelled(inputs: Vec<f32>, width: usize, labels: Vec<u32>, classes: usize) -> Result<Dataset> {
        check_rows("Dataset::labelled", &inputs, width, labels.len(), "labels")?;
        if classes == 0 {
            return Err(Error::shape("Dataset::labelled", "at least 1 class", "0"));
        }
        if let Some(bad) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(Error::shape(
                "Dataset::labelled",
                format!("labels in 0..{classes}"),
                format!("label {} at row {bad}", labels[bad]),
            ));
        }
        check_finite("Dataset::labelled", "inputs", &inputs, width)?;
        Ok(Dataset { inputs, width, targets: Targets::Labels { labels, classes }, image: None })
    }

    /// Samples with target values (regression): `inputs` holds rows of `width` values and
    /// `values` as many rows of `outputs` values, both row-major.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the mismatch: a width of 0, or inputs and values that are not
    /// whole rows of the same count; [`Error::NotFinite`] for a NaN or infinite value.
    pub fn regression(inputs: Vec<f32>, width: usize, values: Vec<f32>, outputs: usize) -> Result<Dataset> {
        if outputs == 0 || !values.len().is_multiple_of(outputs) {
            return Err(Error::shape(
                "Dataset::regression",
                "whole rows of at least 1 target value",
                format!("{} values in rows of {outputs}", values.len()),
            ));
        }
        check_rows("Dataset::regression", &inputs, width, values.len() / outputs, "rows of target values")?;
        check_finite("Dataset::regression", "inputs", &inputs, width)?;
        check_finite("Dataset::regression", "target values", &values, outputs)?;
        Ok(Dataset { inputs, width, targets: Targets::Values { values, outputs }, image: None })
    }

    /// The same samples said to be images of `image`'s shape (PyTorch's NCHW, one image per
    /// row): a model built with [`crate::model::ModelConfig::image`] then loads the set only
    /// if its images have that shape. Sets read from IDX files (MNIST's) say theirs.
    ///
    /// # Errors
    /// [`Error::Shape`] when the shape's values are not the set's width.
    pub fn with_image(self, image: crate::ImageShape) -> Result<Dataset> {
        image.check("Dataset::with_image")?;
        if image.len() != self.width {
            return Err(Error::shape(
                "Dataset::with_image",
                format!("images of {} values, the set's width", self.width),
                format!("{image:?}, {} values", image.len()),
            ));
        }
        Ok(Dataset { image: Some(image), ..self })
    }

    /// The samples' shape as images, when the set says it.
    pub fn image(&self) -> Option<crate::ImageShape> {
        self.image
    }

    /// The set followed by `copies` copies of it in which each image is moved by a random
    /// whole number of pixels, at most `max_shift` along each axis, zeros moving in at the
    /// edges (every channel of an image moves alike); targets are copied with their images.
    /// The classic augmentation for digits: a network that sees each digit in a few places
    /// learns shapes rather than positions. The same `seed` gives the same shifts.
    ///
    /// # Errors
    /// [`Error::Shape`] for a set that does not say its images' shape
    /// ([`Dataset::with_image`]), or one whose copies would not fit in memory.
    pub fn with_shifted_copies(&self, copies: usize, max_shift: usize, seed: u64) -> Result<Dataset> {
        let op = "Dataset::with_shifted_copies";
        let Some(image) = self.image else {
            return Err(Error::shape(op, "a set of images (Dataset::with_image)", "rows without a shape"));
        };
        let total = copies.checked_add(1).and_then(|c| c.checked_mul(self.inputs.len()));
        if total.is_none_or(|t| t > isize::MAX as usize / 4) {
            return Err(Error::shape(
                op,
                "copies that fit in memory",
                format!("{copies} copies of {} values", self.inputs.len()),
            ));
        }
        let mut random = crate::random::Random::new(seed);
        let mut inputs = self.inputs.clone();
        let reach = u32::try_from(2 * max_shift.min(image.height.max(image.width)) + 1).unwrap_or(u32::MAX);
        for _ in 0..copies {
            for sample in self.inputs.chunks_exact(self.width) {
                let dy = random.below(reach) as isize - (reach / 2) as isize;
                let dx = random.below(reach) as isize - (reach / 2) as isize;
                inputs.extend(shifted(sample, image, dy, dx));
            }
        }
        let targets = match &self.targets {
            Targets::Labels { labels, classes } => {
                Targets::Labels { labels: labels.repeat(copies + 1), classes: *classes }
            }
            Targets::Values { values, outputs } => {
                Targets::Values { values: values.repeat(copies + 1), outputs: *outputs }
            }
        };
        Ok(Dataset { inputs, width: self.width, targets, image: self.image })
    }

    /// Samples in the set.
    pub fn len(&self) -> usize {
        self.inputs.len() / self.width
    }

    /// Whether it has no samples.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// `len × width` values, row-major: sample i is `inputs[i * width..(i + 1) * width]`
    /// (pixels scaled to [0, 1] for the image sets).
    pub fn inputs(&self) -> &[f32] {
        &self.inputs
    }

    /// Values per sample (784 for MNIST).
    pub fn width(&self) -> usize {
        self.width
    }

    /// What the samples train towards.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The labels, for a labelled set.
    pub fn labels(&self) -> Option<&[u32]> {
        match &self.targets {
            Targets::Labels { labels, .. } => Some(labels),
            Targets::Values { .. } => None,
        }
    }

    /// The whole set's targets as one batch's, for [`crate::model::Model::train_step`] and
    /// [`crate::model::Model::evaluate`].
    pub fn target(&self) -> Target<'_> {
        match &self.targets {
            Targets::Labels { labels, .. } => Target::Labels(labels),
            Targets::Values { values, .. } => Target::Values(values),
        }
    }

    /// The samples in `range` (cut to the set's length), as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        let targets = match &self.targets {
            Targets::Labels { labels, classes } => {
                Targets::Labels { labels: labels[start..end].to_vec(), classes: *classes }
            }
            Targets::Values { values, outputs } => {
                Targets::Values { values: values[start * outputs..end * outputs].to_vec(), outputs: *outputs }
            }
        };
        Dataset {
            inputs: self.inputs[start * self.width..end * self.width].to_vec(),
            width: self.width,
            targets,
            image: self.image,
        }
    }

    /// The first `n` samples (all of them when there are fewer).
    pub fn take(&self, n: usize) -> Dataset {
        self.slice(0..n)
    }

    /// The first `at` samples and the rest: a validation set held out of a training set
    /// (shuffle first if the set is ordered by class).
    pub fn split(&self, at: usize) -> (Dataset, Dataset) {
        (self.slice(0..at), self.slice(at..self.len()))
    }
}

impl Targets {
    /// These targets as one batch's.
    pub fn as_target(&self) -> Target<'_> {
        match self {
            Targets::Labels { labels, .. } => Target::Labels(labels),
            Targets::Values { values, .. } => Target::Values(values),
        }
    }
}

/// `sample`, an image of `image`'s shape, moved down `dy` and right `dx` pixels (up and left
/// when negative), with zeros where nothing moved in.
fn shifted(sample: &[f32], image: crate::ImageShape, dy: isize, dx: isize) -> Vec<f32> {
    let (h, w) = (image.height as isize, image.width as isize);
    let mut out = vec![0.0; sample.len()];
    for (plane_in, plane_out) in
        sample.chunks_exact(image.height * image.width).zip(out.chunks_exact_mut(image.height * image.width))
    {
        for y in 0..h {
            for x in 0..w {
                let (from_y, from_x) = (y - dy, x - dx);
                if (0..h).contains(&from_y) && (0..w).contains(&from_x) {
                    plane_out[(y * w + x) as usize] = plane_in[(from_y * w + from_x) as usize];
                }
            }
        }
    }
    out
}

/// `inputs` must be `rows` whole rows of `width` values.
fn check_rows(op: &'static str, inputs: &[f32], width: usize, rows: usize, of: &str) -> Result<()> {
    if width == 0 || rows == 0 || rows.checked_mul(width) != Some(inputs.len()) {
        return Err(Error::shape(
            op,
            format!("a non-empty set: one row of {width} inputs for each of its {rows} {of}"),
            format!("{} input values", inputs.len()),
        ));
    }
    Ok(())
}

/// Reads an image file and its label file (plain or gzip IDX) as a data set of `classes`
/// classes, pixels scaled from 0..255 to [0, 1]. Errors name the file and the problem: a
/// count mismatch between the two, a label out of range, or anything [`idx`] rejects.
pub fn load_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>, classes: usize) -> Result<Dataset> {
    let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
    let images = idx::read_images(images_path)?;
    let labels = idx::read_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(crate::error::data_error(
            labels_path,
            format!("{} labels for the {} images of {}", labels.len(), images.count, images_path.display()),
        ));
    }
    if let Some(bad) = labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(crate::error::data_error(
            labels_path,
            format!("label {} at index {bad} is not below {classes}", labels[bad]),
        ));
    }
    let pixels = images.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    let labels = labels.iter().map(|&l| u32::from(l)).collect();
    Dataset::labelled(pixels, images.rows * images.cols, labels, classes)
        .and_then(|set| set.with_image(crate::ImageShape::new(1, images.rows, images.cols)))
        .map_err(|e| crate::error::data_error(images_path, e.to_string()))
}

/// The bundled MNIST subset (`data/` in this crate: 8000 training and 2000 test digits).
pub fn bundled_mnist() -> Result<(Dataset, Dataset)> {
    mnist_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("data"), "mnist-subset-")
}

/// MNIST from a folder holding the four standard files (`train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each plain
/// or with `.gz`).
pub fn mnist_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    let find = |name: &str| {
        [dir.join(name), dir.join(format!("{name}.gz"))].into_iter().find(|p| p.exists()).ok_or_else(|| {
            Error::Data {
                file: dir.join(name).display().to_string(),
                problem: "not found (plain or .gz)".into(),
            }
        })
    };
    let train = load_idx(find("train-images-idx3-ubyte")?, find("train-labels-idx1-ubyte")?, 10)?;
    let test = load_idx(find("t10k-images-idx3-ubyte")?, find("t10k-labels-idx1-ubyte")?, 10)?;
    Ok((train, test))
}

fn mnist_in(dir: impl AsRef<Path>, prefix: &str) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    let file = |part: &str| dir.join(format!("{prefix}{part}-ubyte.gz"));
    let train = load_idx(file("train-images-idx3"), file("train-labels-idx1"), 10)?;
    let test = load_idx(file("test-images-idx3"), file("test-labels-idx1"), 10)?;
    Ok((train, test))
}

/// The bundled 8×8 digits (scikit-learn's `load_digits`: 1437 training, 360 test).
pub fn bundled_digits8x8() -> Result<(Dataset, Dataset)> {
    mnist_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("data"), "digits8x8-")
}
