//! What a backend does for a [`super::Model`]: the one trait both backends implement, so
//! that the model calls either without knowing which.

use std::any::Any;

use super::batch::{DataEvaluation, EpochProgress, Evaluation, Resident, Target};
use super::checkpoint::Checkpointed;
use super::config::Backend;
use super::graph::Graph;
use crate::data::Dataset;
use crate::{Counters, Error, Result};

/// What a backend does for a model: everything both backends do.
pub(crate) trait Engine: Checkpointed + Any + std::fmt::Debug + Send {
    fn graph(&self) -> &Graph;
    fn backend(&self) -> Backend;
    fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()>;
    fn take_loss(&mut self) -> Result<f32>;
    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>>;
    fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation>;
    /// Parameter p's values or gradient.
    fn read(&self, p: usize, part: Part) -> Result<Vec<f32>>;
    /// Replaces parameter p's values.
    fn write(&mut self, p: usize, values: &[f32]) -> Result<()>;
    fn set_learning_rate(&mut self, lr: f32) -> Result<()>;
    fn load(&mut self, data: &Dataset) -> Result<Resident>;
    fn train_epoch(
        &mut self,
        data: &Resident,
        batch_size: usize,
        seed: u64,
        progress: &mut dyn FnMut(EpochProgress),
    ) -> Result<f32>;
    fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation>;
    /// Whether `data` was loaded into this model.
    fn owns(&self, data: &Resident) -> bool;

    fn counters(&self) -> Counters {
        Counters::default()
    }
}

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
