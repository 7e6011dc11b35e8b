//! Data sets: the IDX reader for MNIST-style files, and labelled samples ready to train on.

pub mod idx;
mod spirals;

pub use spirals::spirals;

use std::path::Path;

use crate::{Error, Result};

/// Labelled samples: `inputs` is row-major, `width` values per sample (pixels scaled to [0, 1]).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `len × width` values, row-major: sample i is `inputs[i * width..(i + 1) * width]`.
    pub inputs: Vec<f32>,
    /// One class per sample, each below `classes`.
    pub labels: Vec<u32>,
    /// Values per sample (784 for MNIST).
    pub width: usize,
    /// How many classes the labels name (10 for digits).
    pub classes: usize,
}

impl Dataset {
    /// Samples in the set.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether it has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` samples (all of them when there are fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset { inputs: self.inputs[..n * self.width].to_vec(), labels: self.labels[..n].to_vec(), ..*self }
    }
}

/// Reads an image file and its label file (plain or gzip IDX) as a data set of `classes`
/// classes, pixels scaled from 0..255 to [0, 1]. Errors name the file and the problem: a
/// count mismatch between the two, a label out of range, or anything [`idx`] rejects.
pub fn load_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>, classes: usize) -> Result<Dataset> {
    let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
    let images = idx::read_images(images_path)?;
    let labels = idx::read_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(idx::data_error(
            labels_path,
            format!("{} labels for the {} images of {}", labels.len(), images.count, images_path.display()),
        ));
    }
    if let Some(bad) = labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(idx::data_error(
            labels_path,
            format!("label {} at index {bad} is not below {classes}", labels[bad]),
        ));
    }
    Ok(Dataset {
        inputs: images.pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels: labels.iter().map(|&l| u32::from(l)).collect(),
        width: images.rows * images.cols,
        classes,
    })
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
