//! The layer graph: a [`ModelConfig`] built into a [`Model`] that trains on the GPU (weights,
//! gradients, optimizer state and activations in GPU buffers, one submit per step, the loss
//! read back only when asked) or on the CPU (the reference ops), from the same description and
//! the same initial weights.
//!
//! ```
//! use wgpu_nn::model::{Loss, ModelConfig, Optimizer};
//! # fn main() -> wgpu_nn::Result<()> {
//! let mut model = ModelConfig::new(2).dense(8).tanh().dense(1).sigmoid()
//!     .loss(Loss::BinaryCrossEntropy).optimizer(Optimizer::Adam { lr: 0.05 }).seed(1)
//!     .build_cpu()?; // or .build_gpu(&gpu)?
//! let (x, t) = ([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]);
//! for _ in 0..300 {
//!     model.train_step(&x, &t[..].into())?;
//! }
//! let p = model.predict(&x)?;
//! assert!(p[0] < 0.5 && p[1] > 0.5 && p[2] > 0.5 && p[3] < 0.5, "{p:?}");
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod config;
#[doc(hidden)]
pub mod cpu;
mod gemm;
mod gpu;
mod graph;
mod ops;

pub use crate::Activation;
pub use config::{Backend, Init, Layer, Loss, ModelConfig, Optimizer};
#[doc(hidden)]
pub use gemm::Scalar;
pub use gpu::{Forward, LossReading};

use checkpoint::Checkpointed;
use graph::Graph;

use std::sync::atomic::{AtomicU64, Ordering};

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::data::Dataset;
use crate::{Counters, Error, Result};

/// A labelled data set held by a model's backend: on the GPU, uploaded once, so that an
/// epoch's minibatches are gathered there by index and no pixels move per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    model: u64,
    index: usize,
    len: usize,
}

impl Resident {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Loss, accuracy and the predicted class of every sample of a resident data set.
#[derive(Clone, Debug, PartialEq)]
pub struct DataEvaluation {
    pub loss: f32,
    pub accuracy: f32,
    pub predictions: Vec<u32>,
}

/// What [`Model::train_epoch`] reports as it goes (no read-back is needed for it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochProgress {
    pub steps_done: usize,
    pub steps: usize,
    pub samples_done: usize,
    /// The mean loss of the epoch so far: after every step on the CPU; on the GPU every
    /// [`LOSS_REPORT_STEPS`] steps (one 48-byte read of the settings row with the loss watch),
    /// `None` in between.
    pub running_loss: Option<f32>,
}

/// How often (in steps) a GPU epoch reads its running loss back for [`EpochProgress`].
pub const LOSS_REPORT_STEPS: usize = 128;

/// Rows evaluated per submit by `evaluate_resident`.
pub(crate) const EVAL_ROWS: usize = 1000;

/// The order of an epoch: the same permutation for a seed on every backend.
pub(crate) fn epoch_order(len: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
}

/// The `(offset, rows)` of each minibatch; the last may be short.
pub(crate) fn batches(len: usize, batch_size: usize) -> Vec<(usize, usize)> {
    (0..len).step_by(batch_size.max(1)).map(|start| (start, batch_size.min(len - start))).collect()
}

pub(crate) fn next_model_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What a batch is trained towards: values (MSE, MAE, BCE; row-major, outputs per sample)
/// or class labels (cross-entropy, NLL; one per sample).
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Values(&'a [f32]),
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

/// Loss (and, for label targets, accuracy) over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f32,
    pub accuracy: Option<f32>,
}

/// A built model on one backend: every method works the same on both. Build one with
/// [`ModelConfig::build`] (or [`Model::build`]).
#[derive(Debug)]
pub struct Model {
    engine: Box<dyn Engine>,
}

/// What a backend does for a [`Model`]. The embedding calls are the GPU's alone: the CPU
/// keeps the defaults, which say so.
pub(crate) trait Engine: std::fmt::Debug + Send {
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
    fn checkpointed(&mut self) -> &mut dyn Checkpointed;
    fn checkpoint_view(&self) -> &dyn Checkpointed;

    fn counters(&self) -> Counters {
        Counters::default()
    }

    fn record_train_step(&mut self, _: &mut wgpu::CommandEncoder, _: &[f32], _: &Target) -> Result<()> {
        Err(Error::NeedsGpu { op: "record_train_step" })
    }

    fn record_loss(&mut self, _: &mut wgpu::CommandEncoder) -> Result<LossReading> {
        Err(Error::NeedsGpu { op: "record_loss" })
    }

    fn bind_forward(&mut self, _: crate::GpuTensor) -> Result<Forward> {
        Err(Error::NeedsGpu { op: "bind_forward" })
    }

    fn param_tensor(&self, _: usize) -> Result<&crate::GpuTensor> {
        Err(Error::NeedsGpu { op: "weights_tensor" })
    }
}

/// Which of a parameter's tensors to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Value,
    Gradient,
}

impl Model {
    /// Checks `config` and builds it on `backend` (the GPU one needs `gpu`): the one place
    /// that knows both backends. Both start from the same weights, drawn from the config's
    /// seed. A description the crate cannot run is an error before anything is allocated:
    /// [`Error::Shape`] for widths that do not chain, [`Error::InvalidLayer`] for a bad
    /// layer setting, [`Error::MissingGpu`] for the GPU backend without a [`crate::Gpu`], and
    /// [`Error::BufferTooLarge`] for a parameter past the adapter's limits.
    pub fn build(config: &ModelConfig, backend: Backend, gpu: Option<&crate::Gpu>) -> Result<Model> {
        let graph = Graph::new(config)?;
        let engine: Box<dyn Engine> = match backend {
            Backend::Cpu => {
                let values = graph.initial_values()?;
                Box::new(cpu::CpuModel::<f32>::new(graph, values))
            }
            Backend::Gpu => {
                let gpu = gpu.ok_or(Error::MissingGpu)?;
                gpu::GpuModel::check_fits(gpu, &graph)?;
                let values = graph.initial_values()?;
                Box::new(gpu::GpuModel::new(gpu, graph, values)?)
            }
        };
        Ok(Model { engine })
    }

    /// Where this model runs.
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// The description it was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.engine.graph().config
    }

    /// One step of training on a batch (`x` is row-major, `inputs` values per sample): forward,
    /// loss, backward and the optimizer update. On the GPU this is one submit, and the loss
    /// stays on the GPU, added to a running total that [`Model::take_loss`] reads.
    pub fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        self.engine.train_step(x, target)
    }

    /// The mean loss of the steps since the last call, and resets it: on the GPU, the one
    /// read-back of training (the 48-byte settings row that holds the loss watch). If a step's
    /// loss was NaN or infinite, this is `Error::Diverged` with that step's number: that step
    /// and the later ones since the last read were not applied, and training goes on from the
    /// weights from before it. [`Error::NoSteps`] when no step was taken since the last read.
    pub fn take_loss(&mut self) -> Result<f32> {
        self.engine.take_loss()
    }

    /// The model's outputs for `x` (dropout off): row-major, [`ModelConfig::width`] per sample.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.engine.predict(x)
    }

    /// The mean loss over a data set (dropout off), and the accuracy for label targets (the
    /// arg-max of each output row against its label). Nothing is trained.
    pub fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation> {
        self.engine.evaluate(x, target)
    }

    /// Layer `layer`'s weights: a dense layer's, row-major `(out, in)`, or a layer norm's
    /// gain (an explicit read-back on the GPU).
    pub fn weights(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("weights", layer, "weight")?, Part::Value)
    }

    /// Layer `layer`'s bias, or an error when it has none.
    pub fn bias(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("bias", layer, "bias")?, Part::Value)
    }

    /// The gradient of the last step's loss with respect to layer `layer`'s weights.
    pub fn weight_gradients(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("weight_gradients", layer, "weight")?, Part::Gradient)
    }

    /// The gradient with respect to layer `layer`'s bias.
    pub fn bias_gradients(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("bias_gradients", layer, "bias")?, Part::Gradient)
    }

    /// Replaces layer `layer`'s weights (and bias, when given). Everything is checked
    /// before anything changes.
    pub fn set_weights(&mut self, layer: usize, weights: &[f32], bias: Option<&[f32]>) -> Result<()> {
        let w = self.param("set_weights", layer, "weight")?;
        let b = bias.map(|_| self.param("set_weights", layer, "bias")).transpose()?;
        let graph = self.engine.graph();
        check_new_values(graph, w, weights)?;
        if let (Some(b), Some(values)) = (b, bias) {
            check_new_values(graph, b, values)?;
        }
        self.engine.write(w, weights)?;
        if let (Some(b), Some(values)) = (b, bias) {
            self.engine.write(b, values)?;
        }
        Ok(())
    }

    /// Changes the learning rate from the next step on: the one way to change it.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.engine.set_learning_rate(lr)
    }

    /// Loads a labelled data set into the backend (once; on the GPU an upload of the whole set).
    pub fn load(&mut self, data: &Dataset) -> Result<Resident> {
        self.engine.load(data)
    }

    /// One epoch over a resident data set in minibatches of `batch_size`, in an order shuffled
    /// by `seed`. On the GPU the order is the only upload, batches are gathered there, and
    /// steps are submitted in chunks; `progress` is called after each chunk. Returns the mean
    /// loss of the epoch's steps (the epoch's one read-back).
    pub fn train_epoch(
        &mut self,
        data: &Resident,
        batch_size: usize,
        seed: u64,
        progress: &mut dyn FnMut(EpochProgress),
    ) -> Result<f32> {
        if batch_size == 0 {
            return Err(Error::shape("train_epoch", "a batch size of at least 1", "0"));
        }
        self.engine.train_epoch(data, batch_size, seed, progress)
    }

    /// Loss, accuracy and predictions over a resident data set (dropout off).
    pub fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation> {
        self.engine.evaluate_resident(data)
    }

    /// Saves the weights, the optimizer's state and the step count as a safetensors file,
    /// atomically.
    ///
    /// Tensor names: `layers.{i}.weight` (a dense layer's `(out, in)`, a layer norm's gain)
    /// and `layers.{i}.bias` for the layer at index i of the config;
    /// `optimizer.layers.{i}.weight.{velocity|m|v}` likewise.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        checkpoint::save(self.engine.checkpoint_view(), self.engine.graph(), path.as_ref())
    }

    /// Loads a checkpoint saved by [`Model::save`] (or any safetensors file with the
    /// `layers.*` tensors, from PyTorch say). A missing or misshapen tensor is an error naming
    /// the file, and then the model is left unchanged.
    pub fn load_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let graph = self.engine.graph().clone();
        checkpoint::load(self.engine.checkpointed(), &graph, path.as_ref())
    }

    /// Like [`Model::load_checkpoint`], from a checkpoint held in memory (embedded with
    /// `include_bytes!`, say); errors name the source as `name`.
    pub fn load_checkpoint_bytes(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        let graph = self.engine.graph().clone();
        checkpoint::load_bytes(self.engine.checkpointed(), &graph, bytes, name.as_ref())
    }

    /// The GPU's counters (all zero on the CPU backend).
    pub fn counters(&self) -> Counters {
        self.engine.counters()
    }

    /// Records one training step into an app's `encoder` instead of submitting it: the batch
    /// travels as a copy in the same encoder (through a staging belt, reused once the app's
    /// submit is done), then forward, loss, backward and update, so several steps may be
    /// recorded in one frame. Nothing blocks, polls or maps. GPU backend only.
    pub fn record_train_step(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &[f32],
        target: &Target,
    ) -> Result<()> {
        self.engine.record_train_step(encoder, x, target)
    }

    /// Records a read of the mean loss of the steps since the last read into `encoder`, and
    /// returns a [`LossReading`] to poll after the app has submitted it. Like
    /// [`Model::take_loss`], it starts the next mean afresh. GPU backend only.
    pub fn record_loss(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<LossReading> {
        self.engine.record_loss(encoder)
    }

    /// Binds a forward pass (dropout off) over `input`, an `(rows, inputs)` tensor, for
    /// example an app's buffer wrapped by [`crate::Gpu::tensor_from_buffer`]. The returned
    /// [`Forward`] is recorded each frame and exposes its output buffer. GPU backend only.
    pub fn bind_forward(&mut self, input: crate::GpuTensor) -> Result<Forward> {
        self.engine.bind_forward(input)
    }

    /// Layer `layer`'s weights on the GPU, `(out, in)` row-major f32: bind it read-only
    /// to draw with (training updates it in place). GPU backend only.
    pub fn weights_tensor(&self, layer: usize) -> Result<&crate::GpuTensor> {
        self.gpu_only("weights_tensor")?;
        self.engine.param_tensor(self.param("weights_tensor", layer, "weight")?)
    }

    /// Layer `layer`'s bias on the GPU, `(1, out)`. GPU backend only.
    pub fn bias_tensor(&self, layer: usize) -> Result<&crate::GpuTensor> {
        self.gpu_only("bias_tensor")?;
        self.engine.param_tensor(self.param("bias_tensor", layer, "bias")?)
    }

    fn gpu_only(&self, op: &'static str) -> Result<()> {
        match self.backend() {
            Backend::Gpu => Ok(()),
            Backend::Cpu => Err(Error::NeedsGpu { op }),
        }
    }

    fn param(&self, op: &'static str, layer: usize, name: &'static str) -> Result<usize> {
        self.engine.graph().param(op, layer, name)
    }
}

/// Checks new values for parameter p against its shape.
pub(crate) fn check_new_values(graph: &Graph, p: usize, values: &[f32]) -> Result<()> {
    let param = &graph.params[p];
    if values.len() != param.len() {
        let what = if param.name == "bias" { "bias" } else { "weights" };
        return Err(Error::shape(
            "set_weights",
            format!("layer {}: {}x{} {what}", param.layer, param.rows, param.cols),
            format!("{} values", values.len()),
        ));
    }
    check_finite("set_weights", "weight", values, param.cols)
}

/// NaN and infinities are refused at the door: one would turn every weight it reaches into
/// NaN. (A loss that overflows in training is caught on the GPU by the loss watch instead.)
pub(crate) fn check_finite(op: &'static str, what: &'static str, values: &[f32], width: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NotFinite { op, what, row: i / width, col: i % width, value: values[i] }),
    }
}

/// The fraction of rows whose arg-max output is the label.
pub(crate) fn accuracy(outputs: &[f32], labels: &[u32], width: usize) -> f32 {
    let correct = arg_max(outputs, width).iter().zip(labels).filter(|(p, l)| p == l).count();
    correct as f32 / labels.len() as f32
}

/// The arg-max of each row.
pub(crate) fn arg_max(outputs: &[f32], width: usize) -> Vec<u32> {
    outputs
        .chunks(width)
        .map(|row| {
            row.iter().enumerate().fold(0, |best, (j, &v)| if v > row[best] { j } else { best }) as u32
        })
        .collect()
}

pub(crate) fn check_resident(op: &'static str, data: &Resident, model: u64, loaded: usize) -> Result<()> {
    if data.model != model || data.index >= loaded {
        return Err(Error::shape(op, "a data set loaded into this model", "one loaded elsewhere"));
    }
    Ok(())
}

pub(crate) fn check_dataset(graph: &Graph, data: &Dataset) -> Result<()> {
    let op = "load";
    if data.is_empty() || data.inputs.len() != data.len() * data.width {
        return Err(Error::shape(
            op,
            "a non-empty data set of whole samples",
            format!("{} labels", data.len()),
        ));
    }
    if data.width != graph.inputs() {
        return Err(Error::shape(
            op,
            format!("samples of {} inputs", graph.inputs()),
            format!("{} inputs", data.width),
        ));
    }
    if !graph.config.loss.takes_labels() {
        return Err(Error::shape(
            op,
            "a model trained on labels (cross-entropy or NLL)",
            format!("{:?}", graph.config.loss),
        ));
    }
    check_finite(op, "input", &data.inputs, data.width)?;
    let classes = graph.classes();
    if let Some(bad) = data.labels.iter().position(|&l| l as usize >= classes) {
        return Err(Error::shape(
            op,
            format!("labels in 0..{classes}"),
            format!("label {} at row {bad}", data.labels[bad]),
        ));
    }
    Ok(())
}
