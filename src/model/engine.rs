//! What a backend does for a [`super::Model`]: the one trait both backends implement, so
//! that the model calls either without knowing which.

use std::any::Any;

use super::batch::{DataEvaluation, EpochProgress, Evaluation, Resident, batches, epoch_order};
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

/// What a backend does in an epoch, for [`run_epoch`], the one epoch loop both run.
pub(crate) trait Epoch {
    /// Training steps recorded per submit (the CPU runs one at a time).
    const STEPS_PER_CHUNK: usize;
    /// Steps taken since the loss was last read.
    fn pending_steps(&self) -> u32;
    async fn take_loss(&mut self) -> Result<f32>;
    /// Readies the epoch: `data`'s minibatches `batches` in `order` (on the GPU, the order's
    /// upload and the gathers bound once).
    fn prepare(&mut self, data: &Resident, batches: &[(usize, usize)], order: &[u32]) -> Result<()>;
    /// Trains on `chunk`, consecutive minibatches `(offset, rows)` of the epoch's order.
    fn run_chunk(&mut self, data: &Resident, chunk: &[(usize, usize)], order: &[u32]) -> Result<()>;
    /// The running mean loss after `steps_done` of the epoch's steps, if this backend reads
    /// one there, or that a step diverged (the epoch then stops with the report).
    async fn running_loss(&mut self, steps_done: usize, steps: usize) -> Result<Running>;
}

/// What an epoch knows of its loss after a chunk.
pub(crate) enum Running {
    /// The running mean, where the backend reads one.
    Loss(Option<f32>),
    /// A step's loss was not finite: the epoch stops, and `take_loss` reports it.
    Diverged,
}

/// One epoch over a resident set, the same on both backends: the order drawn from `seed`, a
/// divergence from before the epoch reported first, then chunks of minibatches with
/// `progress` after each, stopping at the first diverged step; the mean loss of its steps.
pub(crate) async fn run_epoch<E: Epoch>(
    engine: &mut E,
    data: &Resident,
    batch_size: usize,
    seed: u64,
    progress: &mut dyn FnMut(EpochProgress),
) -> Result<f32> {
    let order = epoch_order(data.len, seed);
    let batches = batches(data.len, batch_size);
    engine.prepare(data, &batches, &order)?;
    if engine.pending_steps() > 0 {
        // Steps taken since the last read are not this epoch's, but a divergence among them
        // is still reported.
        engine.take_loss().await?;
    }
    for (chunk, steps) in batches.chunks(E::STEPS_PER_CHUNK).enumerate() {
        engine.run_chunk(data, steps, &order)?;
        let steps_done = chunk * E::STEPS_PER_CHUNK + steps.len();
        let Running::Loss(running_loss) = engine.running_loss(steps_done, batches.len()).await? else {
            return engine.take_loss().await;
        };
        let &(offset, rows) = steps.last().expect("a chunk has steps");
        progress(EpochProgress {
            steps_done,
            steps: batches.len(),
            samples_done: offset + rows,
            running_loss,
        });
    }
    engine.take_loss().await
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
