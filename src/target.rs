//! [`Target`]: what a batch is trained towards, named by the data sets (`crate::data`) and
//! taken by the models (`crate::model`, which re-exports it), so that neither module needs the
//! other for it.

/// What a batch is trained towards: values (MSE, MAE, BCE; row-major, outputs per sample)
/// or class labels (cross-entropy, NLL; one per sample).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Target<'a> {
    /// `rows × outputs` values, row-major: what each output should be.
    Values(&'a [f32]),
    /// One class per row, each below the model's output width.
    Labels(&'a [u32]),
}

impl<'a> From<&'a [f32]> for Target<'a> {
    fn from(values: &'a [f32]) -> Self {
        Target::Values(values)
    }
}

impl<'a> From<&'a [u32]> for Target<'a> {
    fn from(labels: &'a [u32]) -> Self {
        Target::Labels(labels)
    }
}
