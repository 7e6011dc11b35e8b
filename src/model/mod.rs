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
pub mod cpu;
mod gemm;
mod gpu;

pub use config::{Backend, Init, Layer, Loss, ModelConfig, Optimizer};
pub use gemm::Scalar;
pub use gpu::{Forward, LossReading};

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

/// A built model on one backend. Every method works the same on both.
#[derive(Debug)]
pub enum Model {
    Gpu(Box<gpu::GpuModel>),
    Cpu(Box<cpu::CpuModel<f32>>),
}

macro_rules! either {
    ($self:expr, $model:ident => $body:expr) => {
        match $self {
            Model::Gpu($model) => $body,
            Model::Cpu($model) => $body,
        }
    };
}

impl Model {
    /// One step of training on a batch (`x` is row-major, `inputs` values per sample): forward,
    /// loss, backward and the optimizer update. On the GPU this is one submit, and the loss
    /// stays on the GPU, added to a running total that [`Model::take_loss`] reads.
    pub fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        either!(self, m => m.train_step(x, target))
    }

    /// The mean loss of the steps since the last call, and resets it: on the GPU, the one
    /// read-back of training (the 48-byte settings row that holds the loss watch). If a step's
    /// loss was NaN or infinite, this is `Error::Diverged` with that step's number: that step
    /// and the later ones since the last read were not applied, and training goes on from the
    /// weights from before it.
    pub fn take_loss(&mut self) -> Result<f32> {
        either!(self, m => m.take_loss())
    }

    /// The model's outputs for `x` (dropout off): row-major, [`ModelConfig::width`] per sample.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        either!(self, m => m.predict(x))
    }

    /// The mean loss over a data set (dropout off), and the accuracy for label targets (the
    /// arg-max of each output row against its label). Nothing is trained.
    pub fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation> {
        either!(self, m => m.evaluate(x, target))
    }

    /// Dense layer `layer`'s weights, row-major `(out, in)` (an explicit read-back on the GPU).
    pub fn weights(&self, layer: usize) -> Result<Vec<f32>> {
        either!(self, m => m.parameter(layer, Part::Weights))
    }

    /// Dense layer `layer`'s bias, or an error when it has none.
    pub fn bias(&self, layer: usize) -> Result<Vec<f32>> {
        either!(self, m => m.parameter(layer, Part::Bias))
    }

    /// The gradient of the last step's loss with respect to dense layer `layer`'s weights.
    pub fn weight_gradients(&self, layer: usize) -> Result<Vec<f32>> {
        either!(self, m => m.parameter(layer, Part::WeightGradients))
    }

    /// The gradient with respect to dense layer `layer`'s bias.
    pub fn bias_gradients(&self, layer: usize) -> Result<Vec<f32>> {
        either!(self, m => m.parameter(layer, Part::BiasGradients))
    }

    /// Replaces dense layer `layer`'s weights (and bias, when given).
    pub fn set_weights(&mut self, layer: usize, weights: &[f32], bias: Option<&[f32]>) -> Result<()> {
        either!(self, m => m.set_weights(layer, weights, bias))
    }

    /// Changes the learning rate from the next step on.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        either!(self, m => m.set_learning_rate(lr))
    }

    /// Loads a labelled data set into the backend (once; on the GPU an upload of the whole set).
    pub fn load(&mut self, data: &Dataset) -> Result<Resident> {
        either!(self, m => m.load(data))
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
        either!(self, m => m.train_epoch(data, batch_size, seed, progress))
    }

    /// Loss, accuracy and predictions over a resident data set (dropout off).
    pub fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation> {
        either!(self, m => m.evaluate_resident(data))
    }

    /// Saves the weights, the optimizer's state and the step count as a safetensors file
    /// (see [`checkpoint`](self) names below), atomically.
    ///
    /// Tensor names: `layers.{i}.weight` `(out, in)` and `layers.{i}.bias` for the dense
    /// layer at index i of the config; `optimizer.layers.{i}.weight.{velocity|m|v}` likewise.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        either!(self, m => checkpoint::save(m.as_ref(), m.graph(), path.as_ref()))
    }

    /// Loads a checkpoint saved by [`Model::save`] (or any safetensors file with the
    /// `layers.*` tensors, from PyTorch say). A missing or misshapen tensor is an error naming
    /// the file, and then the model is left unchanged.
    pub fn load_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        either!(self, m => {
            let graph = m.graph().clone();
            checkpoint::load(m.as_mut(), &graph, path.as_ref())
        })
    }

    /// Like [`Model::load_checkpoint`], from a checkpoint held in memory (embedded with
    /// `include_bytes!`, say); errors name the source as `name`.
    pub fn load_checkpoint_bytes(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        either!(self, m => {
            let graph = m.graph().clone();
            checkpoint::load_bytes(m.as_mut(), &graph, bytes, name.as_ref())
        })
    }

    /// The GPU's counters (all zero on the CPU backend).
    pub fn counters(&self) -> Counters {
        match self {
            Model::Gpu(m) => m.counters(),
            Model::Cpu(_) => Counters::default(),
        }
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
        self.gpu_model("record_train_step")?.record_train_step(encoder, x, target)
    }

    /// Records a read of the mean loss of the steps since the last read into `encoder`, and
    /// returns a [`LossReading`] to poll after the app has submitted it. Like
    /// [`Model::take_loss`], it starts the next mean afresh. GPU backend only.
    pub fn record_loss(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<LossReading> {
        self.gpu_model("record_loss")?.record_loss(encoder)
    }

    /// Binds a forward pass (dropout off) over `input`, an `(rows, inputs)` tensor, for
    /// example an app's buffer wrapped by [`crate::Gpu::tensor_from_buffer`]. The returned
    /// [`Forward`] is recorded each frame and exposes its output buffer. GPU backend only.
    pub fn bind_forward(&mut self, input: crate::GpuTensor) -> Result<Forward> {
        self.gpu_model("bind_forward")?.bind_forward(input)
    }

    /// Dense layer `layer`'s weights on the GPU, `(out, in)` row-major f32: bind it read-only
    /// to draw with (training updates it in place). GPU backend only.
    pub fn weights_tensor(&self, layer: usize) -> Result<&crate::GpuTensor> {
        match self {
            Model::Gpu(m) => m.parameter_tensor("weights_tensor", layer, false),
            Model::Cpu(_) => Err(Error::NeedsGpu { op: "weights_tensor" }),
        }
    }

    /// Dense layer `layer`'s bias on the GPU, `(1, out)`. GPU backend only.
    pub fn bias_tensor(&self, layer: usize) -> Result<&crate::GpuTensor> {
        match self {
            Model::Gpu(m) => m.parameter_tensor("bias_tensor", layer, true),
            Model::Cpu(_) => Err(Error::NeedsGpu { op: "bias_tensor" }),
        }
    }

    fn gpu_model(&mut self, op: &'static str) -> Result<&mut gpu::GpuModel> {
        match self {
            Model::Gpu(m) => Ok(m),
            Model::Cpu(_) => Err(Error::NeedsGpu { op }),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Model::Gpu(_) => Backend::Gpu,
            Model::Cpu(_) => Backend::Cpu,
        }
    }
}

/// Which of a dense layer's tensors to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Weights,
    Bias,
    WeightGradients,
    BiasGradients,
}

/// The graph both backends run, derived once from the config.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub(crate) config: ModelConfig,
    /// Per layer: its width out.
    pub(crate) widths: Vec<usize>,
    /// For each layer, the index of its parameters among the dense layers.
    pub(crate) dense_index: Vec<Option<usize>>,
    /// Layers that run in training before the loss: all, or all but a final Softmax whose
    /// cross-entropy is fused (computed from the softmax's input).
    pub(crate) trunk: usize,
}

impl Graph {
    pub(crate) fn new(config: &ModelConfig) -> Graph {
        let mut width = config.inputs;
        let mut widths = Vec::new();
        let mut dense_index = Vec::new();
        let mut dense = 0;
        for layer in &config.layers {
            if let Layer::Dense { outputs, .. } = layer {
                width = *outputs;
                dense_index.push(Some(dense));
                dense += 1;
            } else {
                dense_index.push(None);
            }
            widths.push(width);
        }
        let fused = config.loss == Loss::SoftmaxCrossEntropy && config.layers.last() == Some(&Layer::Softmax);
        let trunk = config.layers.len() - usize::from(fused);
        Graph { config: config.clone(), widths, dense_index, trunk }
    }

    pub(crate) fn inputs(&self) -> usize {
        self.config.inputs
    }

    /// Width of activation `i` (0 is the input, i is the output of layer i − 1).
    pub(crate) fn width(&self, i: usize) -> usize {
        if i == 0 { self.config.inputs } else { self.widths[i - 1] }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.width(self.config.layers.len())
    }

    /// The batch size of `x`, or an error naming the mismatch.
    pub(crate) fn rows(&self, op: &'static str, x: &[f32]) -> Result<usize> {
        let inputs = self.inputs();
        if x.is_empty() || !x.len().is_multiple_of(inputs) {
            return Err(Error::shape(
                op,
                format!("a non-empty batch of rows of {inputs} inputs"),
                format!("{} values", x.len()),
            ));
        }
        check_finite(op, "input", x, inputs)?;
        Ok(x.len() / inputs)
    }

    /// Checks a target against the loss and the batch.
    pub(crate) fn check_target(&self, op: &'static str, target: &Target, rows: usize) -> Result<()> {
        let (loss, width) = (self.config.loss, self.width(self.trunk));
        match (target, loss.takes_labels()) {
            (Target::Labels(labels), true) => {
                if labels.len() != rows {
                    return Err(Error::shape(
                        op,
                        format!("{rows} labels"),
                        format!("{} labels", labels.len()),
                    ));
                }
                if let Some(bad) = labels.iter().position(|&l| l as usize >= width) {
                    return Err(Error::shape(
                        op,
                        format!("labels in 0..{width}"),
                        format!("label {} at row {bad}", labels[bad]),
                    ));
                }
                Ok(())
            }
            (Target::Values(values), false) => {
                if values.len() != rows * width {
                    return Err(Error::shape(
                        op,
                        format!("{rows}x{width} target values"),
                        format!("{} values", values.len()),
                    ));
                }
                check_finite(op, "target", values, width)
            }
            _ => Err(Error::shape(
                op,
                format!("{} targets for {loss:?}", if loss.takes_labels() { "label" } else { "value" }),
                "the other kind".to_string(),
            )),
        }
    }

    /// The dense layer behind index `layer` of `config.layers`, or an error.
    pub(crate) fn dense(&self, op: &'static str, layer: usize) -> Result<usize> {
        self.dense_index.get(layer).copied().flatten().ok_or_else(|| {
            Error::shape(
                op,
                "the index of a dense layer",
                format!("layer {layer} ({:?})", self.config.layers.get(layer)),
            )
        })
    }
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
    let classes = graph.width(graph.trunk);
    if let Some(bad) = data.labels.iter().position(|&l| l as usize >= classes) {
        return Err(Error::shape(
            op,
            format!("labels in 0..{classes}"),
            format!("label {} at row {bad}", data.labels[bad]),
        ));
    }
    Ok(())
}
