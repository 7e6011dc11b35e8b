//! What a backend does for a [`super::Model`]: the one trait both backends implement, so
//! that the model calls either without knowing which.

use std::any::Any;

use super::batch::{DataEvaluation, EpochProgress, Evaluation, Resident};
use super::checkpoint::Checkpointed;
use super::config::Backend;
use super::graph::Graph;
use crate::blocking::Pending;
use crate::data::Dataset;
use crate::target::Target;
use crate::{Counters, Error, Result};

/// What a backend does for a model: everything both backends do. The calls that read back
/// from the GPU return a [`Pending`] answer (the CPU's is ready at once); the model awaits it
/// in its `async` forms and blocks on it in the others.
pub(crate) trait Engine: Checkpointed + Any + std::fmt::Debug + Send + Sync {
    fn graph(&self) -> &Graph;
    fn backend(&self) -> Backend;
    fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()>;
    fn take_loss(&mut self) -> Pending<'_, f32>;
    fn predict<'a>(&'a mut self, x: &'a [f32]) -> Pending<'a, Vec<f32>>;
    fn evaluate<'a>(&'a mut self, x: &'a [f32], target: &'a Target<'a>) -> Pending<'a, Evaluation>;
    /// Parameter p's values or gradient.
    fn read(&self, p: usize, part: Part) -> Pending<'_, Vec<f32>>;
    /// Replaces parameter p's values.
    fn write(&mut self, p: usize, values: &[f32]) -> Result<()>;
    fn set_learning_rate(&mut self, lr: f32) -> Result<()>;
    fn load(&mut self, data: &Dataset) -> Result<Resident>;
    /// Not `Send`: `progress` is the caller's and need not be.
    fn train_epoch<'a>(
        &'a mut self,
        data: &'a Resident,
        batch_size: usize,
        seed: u64,
        progress: &'a mut dyn FnMut(EpochProgress),
    ) -> LocalPending<'a, f32>;
    fn evaluate_resident<'a>(&'a mut self, data: &'a Resident) -> Pending<'a, DataEvaluation>;
    /// Whether `data` was loaded into this model.
    fn owns(&self, data: &Resident) -> bool;
    /// Lets go of `data`'s set now, if no other handle to it is left.
    fn unload(&mut self, data: Resident) -> Result<()>;
    /// The sets held, after letting go of those without handles.
    fn resident_sets(&mut self) -> usize;

    fn counters(&self) -> Counters {
        Counters::default()
    }
}

/// A [`Pending`] that may hold a reference to the caller's progress callback.
pub(crate) type LocalPending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>;

/// Which of a parameter's tensors to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Value,
    Gradient,
}

/// Checks new values for parameter p against its shape.
pub(crate) fn check_new_values(graph: &Graph, p: usize, values: &[f32]) -> Result<()> {
    let param = &graph.params[p];
    if values.len() == param.len() {
        return Ok(());
    }
    let expected = match param.name {
        "bias" => format!("layer {}: a bias of {} values", param.layer, param.len()),
        _ => format!("layer {}: {}x{} weights", param.layer, param.rows, param.cols),
    };
    Err(Error::shape("set_weights", expected, format!("{} values", values.len())))
}
