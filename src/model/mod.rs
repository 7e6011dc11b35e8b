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
//!
//! Inside, `config.rs` is the description (plain data), `graph.rs` what both backends derive
//! from it, `ops.rs` every layer's forward and backward written once against the kernels'
//! trait, and `cpu.rs` and `gpu/` the two backends, which import neither each other nor this
//! file: only [`Model::build`] knows both. `trainer.rs` is the loop over epochs
//! ([`Trainer`]), written on [`Model`]'s public calls alone.

mod batch;
mod checkpoint;
mod config;
mod conv_gemm;
#[cfg(feature = "internals")]
pub mod cpu;
#[cfg(not(feature = "internals"))]
mod cpu;
mod engine;
mod gemm;
mod gpu;
mod graph;
mod ops;
mod parallel;
mod planes;
mod trainer;

#[doc(no_inline)]
pub use crate::Activation;
pub use crate::target::Target;
pub use batch::{DataEvaluation, EpochProgress, Evaluation, LOSS_REPORT_STEPS, Resident};
pub use config::{Backend, Init, Layer, Loss, ModelConfig, Optimizer};
#[cfg(feature = "internals")]
pub use gemm::Scalar;
pub use gpu::{Forward, LossReading};
pub use trainer::{EpochReport, FitReport, Monitor, Schedule, Stop, Trainer};

use batch::check_finite;
use engine::{Engine, Part, check_new_values};
use graph::Graph;

use crate::data::Dataset;
use crate::{Counters, Error, Result};
/// A built model on one backend: every method works the same on both. Build one with
/// [`ModelConfig::build`] (or [`Model::build`]).
#[derive(Debug)]
pub struct Model {
    engine: Box<dyn Engine>,
}

impl Model {
    /// Checks `config` and builds it on `backend` (the GPU one needs `gpu`): the one place
    /// that knows both backends. Both start from the same weights, drawn from the config's
    /// seed. A description the crate cannot run is an error before anything is allocated:
    /// [`Error::Shape`] for widths that do not chain, [`Error::InvalidLayer`] for a bad
    /// layer setting, [`Error::MissingGpu`] for the GPU backend without a [`crate::Gpu`], and
    /// [`Error::BufferTooLarge`] for a parameter past the adapter's limits.
    pub fn build(config: &ModelConfig, backend: Backend, gpu: Option<&crate::Gpu>) -> Result<Model> {
        config.optimizer.check("build")?;
        let graph = Graph::new(config)?;
        Self::build_graph(graph, backend, gpu, |graph| graph.initial_values())
    }

    /// Rebuilds a model from a checkpoint alone, for inference: the config [`Model::save`]
    /// wrote into its metadata, and its weights. It keeps no gradients and no optimizer state,
    /// so training calls are [`Error::InferenceOnly`]; to train on, build its config
    /// (`model.config()`) and call [`Model::load_checkpoint`]. A file without a config (one
    /// exported from PyTorch) is an [`Error::Data`] saying so, as is a config the crate cannot
    /// build or a tensor that does not fit it; nothing is allocated for a tensor before the
    /// file's header has been checked against the config.
    pub fn from_checkpoint(
        path: impl AsRef<std::path::Path>,
        backend: Backend,
        gpu: Option<&crate::Gpu>,
    ) -> Result<Model> {
        let path = path.as_ref();
        Self::rebuild(&checkpoint::read_file(path)?, path, backend, gpu)
    }

    /// Like [`Model::from_checkpoint`], from a checkpoint held in memory; errors name the
    /// source as `name`.
    pub fn from_checkpoint_bytes(
        bytes: &[u8],
        name: &str,
        backend: Backend,
        gpu: Option<&crate::Gpu>,
    ) -> Result<Model> {
        Self::rebuild(bytes, name.as_ref(), backend, gpu)
    }

    fn rebuild(
        bytes: &[u8],
        path: &std::path::Path,
        backend: Backend,
        gpu: Option<&crate::Gpu>,
    ) -> Result<Model> {
        let config = checkpoint::config(bytes, path)?;
        let mut graph = Graph::new(&config)
            .map_err(|e| crate::error::data_error(path, format!("its model config: {e}")))?;
        graph.trains = false;
        let contents = checkpoint::read(&graph, bytes, path)?;
        let values = contents.values(&graph);
        let mut model = Self::build_graph(graph, backend, gpu, |_| Ok(values))?;
        contents.write_to(model.engine.as_mut())?;
        Ok(model)
    }

    /// Builds `graph` on `backend` with the parameters' starting `values`: the one place that
    /// knows both backends.
    fn build_graph(
        graph: Graph,
        backend: Backend,
        gpu: Option<&crate::Gpu>,
        values: impl FnOnce(&Graph) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Model> {
        let engine: Box<dyn Engine> = match backend {
            Backend::Cpu => {
                check_host_memory(&graph)?;
                let values = values(&graph)?;
                Box::new(cpu::CpuModel::<f32>::new(graph, values))
            }
            Backend::Gpu => {
                let gpu = gpu.ok_or(Error::MissingGpu)?;
                gpu::GpuModel::check_fits(gpu, &graph)?;
                let values = values(&graph)?;
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

    /// One step of training on a batch: forward, loss, backward and the optimizer update. On
    /// the GPU this is one submit, and the loss stays on the GPU, added to a running total
    /// that [`Model::take_loss`] reads.
    ///
    /// # Shapes
    /// `x`: `rows × inputs` values, row-major (any `rows` ≥ 1). `target`: `rows × outputs`
    /// values for MSE, MAE and BCE; `rows` labels below `outputs` for cross-entropy and NLL.
    ///
    /// # Errors
    /// [`Error::Shape`] for a batch or target of the wrong size or kind, [`Error::NotFinite`]
    /// for a NaN or infinity in them (both before anything is uploaded),
    /// [`Error::InferenceOnly`] on a model rebuilt by [`Model::from_checkpoint`],
    /// [`Error::BufferTooLarge`] for a batch past the adapter's limits, [`Error::Gpu`] if the
    /// device fails. A diverging loss is not an error here: [`Model::take_loss`] reports it.
    pub fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        self.engine.graph().check_trains("train_step")?;
        self.engine.train_step(x, target)
    }

    /// The mean loss of the steps since the last call, and resets it: on the GPU, the one
    /// read-back of training (the 56-byte settings row that holds the loss watch). If a step's
    /// loss was NaN or infinite, or its update would have made a weight so, this is
    /// `Error::Diverged` with that step's number: that step
    /// and the later ones since the last read were not applied, and training goes on from the
    /// weights from before it. [`Error::NoSteps`] when no step was taken since the last read.
    ///
    /// Blocks on the GPU backend: for native programs (in the browser it is
    /// [`Error::WouldBlock`]; [`Model::take_loss_async`] is the form that works everywhere).
    pub fn take_loss(&mut self) -> Result<f32> {
        self.block("take_loss")?;
        crate::blocking::wait("take_loss", self.engine.take_loss())
    }

    /// [`Model::take_loss`] without blocking, on every target and backend: in the browser the
    /// read is delivered by the page's event loop; on native targets the future waits for the
    /// GPU when polled. Needs no particular executor.
    pub async fn take_loss_async(&mut self) -> Result<f32> {
        self.engine.take_loss().await
    }

    /// The model's outputs for `x` (dropout off).
    ///
    /// # Shapes
    /// `x`: `rows × inputs` values, row-major; the result: `rows × outputs`
    /// ([`ModelConfig::width`]), row-major.
    ///
    /// # Errors
    /// [`Error::Shape`] for `x` of the wrong size, [`Error::NotFinite`] for a NaN or
    /// infinity in it, [`Error::BufferTooLarge`] or [`Error::Gpu`] from the device.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.block("predict")?;
        crate::blocking::wait("predict", self.engine.predict(x))
    }

    /// [`Model::predict`] without blocking (see [`Model::take_loss_async`]).
    pub async fn predict_async(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.engine.predict(x).await
    }

    /// The mean loss over a data set (dropout off), and the accuracy for label targets (the
    /// arg-max of each output row against its label). Nothing is trained.
    ///
    /// # Shapes and errors
    /// As [`Model::train_step`]'s (a rebuilt model may evaluate).
    pub fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation> {
        self.block("evaluate")?;
        crate::blocking::wait("evaluate", self.engine.evaluate(x, target))
    }

    /// [`Model::evaluate`] without blocking (see [`Model::take_loss_async`]).
    pub async fn evaluate_async(&mut self, x: &[f32], target: &Target<'_>) -> Result<Evaluation> {
        self.engine.evaluate(x, target).await
    }

    /// Layer `layer`'s weights: a dense layer's, row-major `(out, in)`, or a layer norm's
    /// gain (an explicit read-back on the GPU).
    pub fn weights(&self, layer: usize) -> Result<Vec<f32>> {
        self.block("weights")?;
        crate::blocking::wait(
            "weights",
            self.engine.read(self.param("weights", layer, "weight")?, Part::Value),
        )
    }

    /// [`Model::weights`] without blocking (see [`Model::take_loss_async`]).
    pub async fn weights_async(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("weights", layer, "weight")?, Part::Value).await
    }

    /// Layer `layer`'s bias, or an error when it has none.
    pub fn bias(&self, layer: usize) -> Result<Vec<f32>> {
        self.block("bias")?;
        crate::blocking::wait("bias", self.engine.read(self.param("bias", layer, "bias")?, Part::Value))
    }

    /// [`Model::bias`] without blocking (see [`Model::take_loss_async`]).
    pub async fn bias_async(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("bias", layer, "bias")?, Part::Value).await
    }

    /// The gradient of the last step's loss with respect to layer `layer`'s weights.
    pub fn weight_gradients(&self, layer: usize) -> Result<Vec<f32>> {
        self.block("weight_gradients")?;
        crate::blocking::wait(
            "weight_gradients",
            self.engine.read(self.param("weight_gradients", layer, "weight")?, Part::Gradient),
        )
    }

    /// [`Model::weight_gradients`] without blocking (see [`Model::take_loss_async`]).
    pub async fn weight_gradients_async(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("weight_gradients", layer, "weight")?, Part::Gradient).await
    }

    /// The gradient with respect to layer `layer`'s bias.
    pub fn bias_gradients(&self, layer: usize) -> Result<Vec<f32>> {
        self.block("bias_gradients")?;
        crate::blocking::wait(
            "bias_gradients",
            self.engine.read(self.param("bias_gradients", layer, "bias")?, Part::Gradient),
        )
    }

    /// [`Model::bias_gradients`] without blocking (see [`Model::take_loss_async`]).
    pub async fn bias_gradients_async(&self, layer: usize) -> Result<Vec<f32>> {
        self.engine.read(self.param("bias_gradients", layer, "bias")?, Part::Gradient).await
    }

    /// Replaces layer `layer`'s weights (and bias, when given). Everything is checked
    /// before anything changes.
    pub fn set_weights(&mut self, layer: usize, weights: &[f32], bias: Option<&[f32]>) -> Result<()> {
        let graph = self.engine.graph();
        let w = graph.param("set_weights", layer, "weight")?;
        check_new_values(graph, w, weights)?;
        check_finite("set_weights", "weights", weights, graph.params[w].cols)?;
        let b = match bias {
            None => None,
            Some(values) => {
                let b =
                    graph.params_of(layer).find(|&p| graph.params[p].name == "bias").ok_or_else(|| {
                        Error::shape(
                            "set_weights",
                            format!("layer {layer}: no bias"),
                            format!("{} bias values", values.len()),
                        )
                    })?;
                check_new_values(graph, b, values)?;
                check_finite("set_weights", "bias", values, values.len())?;
                Some((b, values))
            }
        };
        self.engine.write(w, weights)?;
        if let Some((b, values)) = b {
            self.engine.write(b, values)?;
        }
        Ok(())
    }

    /// Changes the learning rate from the next step on: the one way to change it.
    ///
    /// # Errors
    /// [`Error::InvalidOptimizer`] for a NaN, infinite or negative rate (nothing changes).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        crate::settings::check_lr("set_learning_rate", lr)?;
        self.engine.set_learning_rate(lr)
    }

    /// Loads a data set into the backend (once; on the GPU an upload of the whole set, targets
    /// included), for [`Model::train_epoch`], [`Model::evaluate_resident`] and [`Trainer`].
    ///
    /// # Errors
    /// [`Error::Shape`] for an empty set, samples of the wrong width, targets of the other
    /// kind than the loss takes (labels for cross-entropy and NLL, values otherwise), labels
    /// at or past the model's outputs or rows of values not as wide; [`Error::NotFinite`] for
    /// a NaN or infinity; [`Error::BufferTooLarge`] or [`Error::Gpu`] from the device.
    pub fn load(&mut self, data: &Dataset) -> Result<Resident> {
        self.engine.load(data)
    }

    /// One epoch over a resident data set in minibatches of `batch_size`, in an order shuffled
    /// by `seed`. On the GPU the order is the only upload, batches are gathered there, and
    /// steps are submitted in chunks; `progress` is called after each chunk. Returns the mean
    /// loss of the epoch's steps (the epoch's one read-back).
    ///
    /// # Errors
    /// [`Error::Shape`] for a batch size of 0 or a `Resident` of another model,
    /// [`Error::Diverged`] when a step's loss or update was not finite (the epoch stops there),
    /// [`Error::InferenceOnly`] on a model rebuilt by [`Model::from_checkpoint`].
    pub fn train_epoch(
        &mut self,
        data: &Resident,
        batch_size: usize,
        seed: u64,
        progress: &mut dyn FnMut(EpochProgress),
    ) -> Result<f32> {
        self.block("train_epoch")?;
        crate::blocking::wait("train_epoch", self.train_epoch_async(data, batch_size, seed, progress))
    }

    /// [`Model::train_epoch`] without blocking (see [`Model::take_loss_async`]): in the
    /// browser it yields to the page at each running-loss read (every
    /// [`LOSS_REPORT_STEPS`] steps on the GPU) and at the epoch's end; an epoch of many steps
    /// is best run a few hundred at a time with `train_step` between frames. Not `Send`:
    /// `progress` is borrowed across its awaits.
    pub async fn train_epoch_async(
        &mut self,
        data: &Resident,
        batch_size: usize,
        seed: u64,
        progress: &mut dyn FnMut(EpochProgress),
    ) -> Result<f32> {
        self.engine.graph().check_trains("train_epoch")?;
        if batch_size == 0 {
            return Err(Error::shape("train_epoch", "a batch size of at least 1", "0"));
        }
        // The epoch's last batch is its smallest (`batches`): a batch norm must be able to
        // train on it before the first step changes anything.
        let last = match data.len % batch_size {
            0 => batch_size.min(data.len),
            short => short,
        };
        self.engine.graph().check_training_rows("train_epoch", last)?;
        self.engine.train_epoch(data, batch_size, seed, progress).await
    }

    /// Lets go of a loaded set now (its GPU buffers, or the CPU backend's copy), unless
    /// another clone of its handle is still alive. Dropping every handle does the same at the
    /// model's next `load`, epoch or evaluation of a resident set; this is for a program that
    /// wants the memory back at once.
    ///
    /// # Errors
    /// [`Error::Shape`] for a set loaded into another model.
    pub fn unload(&mut self, data: Resident) -> Result<()> {
        self.engine.unload(data)
    }

    /// How many loaded sets the model holds (those whose handles are all gone are let go
    /// first).
    pub fn resident_sets(&mut self) -> usize {
        self.engine.resident_sets()
    }

    /// Whether `data` was loaded into this model (a [`Resident`] of another is refused).
    pub fn owns(&self, data: &Resident) -> bool {
        self.engine.owns(data)
    }

    /// Loss over a resident data set (dropout off), and for a labelled one the accuracy and
    /// each sample's predicted class.
    pub fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation> {
        self.block("evaluate_resident")?;
        crate::blocking::wait("evaluate_resident", self.engine.evaluate_resident(data))
    }

    /// [`Model::evaluate_resident`] without blocking (see [`Model::take_loss_async`]).
    pub async fn evaluate_resident_async(&mut self, data: &Resident) -> Result<DataEvaluation> {
        self.engine.evaluate_resident(data).await
    }

    /// Saves the weights, the optimizer's state, the step count and the config as a
    /// safetensors file, atomically (see [`Model::from_checkpoint`] for the config).
    ///
    /// Tensor names: `layers.{i}.weight` (a dense layer's `(out, in)`, a layer norm's gain)
    /// and `layers.{i}.bias` for the layer at index i of the config;
    /// `optimizer.layers.{i}.weight.{velocity|m|v}` likewise.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file when it cannot be written (the old file, if any, is
    /// left whole); [`Error::Gpu`] if the weights cannot be read back.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        self.block("save")?;
        let bytes = crate::blocking::wait(
            "save",
            checkpoint::to_bytes(self.engine.as_ref(), self.engine.graph(), path),
        )?;
        crate::atomic_file::write(path, &bytes)
    }

    /// The checkpoint [`Model::save`] writes, as bytes (for the browser, a download or a
    /// database): [`Model::from_checkpoint_bytes`] and [`Model::load_checkpoint_bytes`] read
    /// them back. Blocks on the GPU backend, as [`Model::take_loss`] does.
    pub fn save_bytes(&self) -> Result<Vec<u8>> {
        self.block("save_bytes")?;
        crate::blocking::wait("save_bytes", self.save_bytes_async())
    }

    /// [`Model::save_bytes`] without blocking (see [`Model::take_loss_async`]).
    pub async fn save_bytes_async(&self) -> Result<Vec<u8>> {
        checkpoint::to_bytes(self.engine.as_ref(), self.engine.graph(), "checkpoint bytes".as_ref()).await
    }

    /// Loads a checkpoint saved by [`Model::save`], or a PyTorch `state_dict` saved with
    /// safetensors: an `nn.Sequential`'s own (`0.weight`, `2.weight`, …, numbered as the
    /// config numbers its layers) or one under any one prefix (`model.0.weight`, …), in F32,
    /// F16, BF16 or F64. A missing, misshapen or extra parameter, or a value not finite in
    /// f32, is an [`Error::Data`] naming the file and the tensor, and then the model is left
    /// unchanged. The optimizer's state and the step count are restored when the file has the
    /// state for every parameter (one saved here by a model with this optimizer); a file with
    /// none starts training afresh from its weights (zero state, step 0); a file with part of
    /// it is an error.
    pub fn load_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let graph = self.engine.graph().clone();
        checkpoint::load(self.engine.as_mut(), &graph, path.as_ref())
    }

    /// Like [`Model::load_checkpoint`], from a checkpoint held in memory (embedded with
    /// `include_bytes!`, say); errors name the source as `name`.
    pub fn load_checkpoint_bytes(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        let graph = self.engine.graph().clone();
        checkpoint::load_bytes(self.engine.as_mut(), &graph, bytes, name.as_ref())
    }

    /// The GPU's counters (all zero on the CPU backend).
    pub fn counters(&self) -> Counters {
        self.engine.counters()
    }

    /// Whether a GPU training step of `batch` samples runs *fused*: the whole step (forward,
    /// loss, backward, the optimizer's checked update and the loss watch) in two launches
    /// (three with dropout, whose step counter advances first) instead of two or three per
    /// layer. It does for stacks of up to 8 dense layers, each with its activation and
    /// dropout (a final softmax or log-softmax is fused into its loss as always), no
    /// activation wider than 64, at most 16,380 values in the flat parameter buffer (one
    /// uniform binding; each tensor padded to the adapter's storage alignment), any loss and
    /// any optimizer. The batch's gradient is summed without atomics (each workgroup writes
    /// its rows' share, the update adds the shares in order), so a step gives the same bits
    /// every run on one adapter. Anything else runs layer by layer, and the `Err` says why. Results agree with the layer-by-layer path within the float rounding of a
    /// different summation order. [`Error::NeedsGpu`] on the CPU backend.
    ///
    /// ```no_run
    /// use wgpu_nn::model::{Backend, ModelConfig};
    /// # fn main() -> wgpu_nn::Result<()> {
    /// let gpu = wgpu_nn::Gpu::new()?;
    /// let model = ModelConfig::new(2).dense(64).tanh().dense(64).tanh().dense(3).build_gpu(&gpu)?;
    /// assert_eq!(model.fused(256)?, Ok(()));
    /// let wide = ModelConfig::new(784).dense(128).relu().dense(10).build_gpu(&gpu)?;
    /// assert!(wide.fused(256)?.unwrap_err().contains("widths up to 64"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fused(&self, batch: usize) -> Result<std::result::Result<(), String>> {
        Ok(self.gpu_view("fused")?.fused(batch))
    }

    /// Turns the fused training step on (the default) or off: off, every step runs layer by
    /// layer, the fused step's reference. [`Error::NeedsGpu`] on the CPU backend.
    pub fn set_fused(&mut self, on: bool) -> Result<()> {
        self.gpu_model("set_fused")?.set_fused(on);
        Ok(())
    }

    /// Records one training step into an app's `encoder` instead of submitting it: the batch
    /// travels as a copy in the same encoder (from upload buffers reused once the app's
    /// submit is done), then forward, loss, backward and update, so several steps may be
    /// recorded in one frame. Nothing blocks, polls or maps. GPU backend only.
    ///
    /// # Shapes and errors
    /// As [`Model::train_step`]'s, and [`Error::NeedsGpu`] on the CPU backend;
    /// [`Error::Gpu`] ("the device is lost") once the device is gone.
    pub fn record_train_step(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &[f32],
        target: &Target,
    ) -> Result<()> {
        self.engine.graph().check_trains("record_train_step")?;
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

    /// Layer `layer`'s weights on the GPU, `(out, in)` row-major f32: bind it read-only
    /// to draw with (training updates it in place). It is a view into the model's flat
    /// parameter buffer: bind [`crate::GpuTensor::binding`], not the whole buffer. GPU
    /// backend only.
    pub fn weights_tensor(&self, layer: usize) -> Result<&crate::GpuTensor> {
        let p = self.param("weights_tensor", layer, "weight")?;
        Ok(self.gpu_view("weights_tensor")?.param_tensor(p))
    }

    /// Layer `layer`'s bias on the GPU, `(1, out)`, a view like [`Model::weights_tensor`].
    /// GPU backend only.
    pub fn bias_tensor(&self, layer: usize) -> Result<&crate::GpuTensor> {
        let p = self.param("bias_tensor", layer, "bias")?;
        Ok(self.gpu_view("bias_tensor")?.param_tensor(p))
    }

    /// [`Error::WouldBlock`] for a blocking read on the GPU backend in the browser, before
    /// anything starts; the CPU backend's answers need no waiting anywhere.
    fn block(&self, op: &'static str) -> Result<()> {
        match self.backend() {
            Backend::Gpu => crate::blocking::refuse_on_web(op),
            Backend::Cpu => Ok(()),
        }
    }

    /// The GPU backend, for the calls only it has.
    fn gpu_model(&mut self, op: &'static str) -> Result<&mut gpu::GpuModel> {
        let engine: &mut dyn std::any::Any = self.engine.as_mut();
        engine.downcast_mut().ok_or(Error::NeedsGpu { op })
    }

    fn gpu_view(&self, op: &'static str) -> Result<&gpu::GpuModel> {
        let engine: &dyn std::any::Any = self.engine.as_ref();
        engine.downcast_ref().ok_or(Error::NeedsGpu { op })
    }

    fn param(&self, op: &'static str, layer: usize, name: &'static str) -> Result<usize> {
        self.engine.graph().param(op, layer, name)
    }
}

/// Refuses, before the first weight is drawn, a CPU model whose parameters, gradients and
/// optimizer state the host cannot allocate: an [`Error::OutOfMemory`], where the allocator
/// would abort the process. (A probe: the memory is reserved and given back at once.)
fn check_host_memory(graph: &Graph) -> Result<()> {
    let copies = if graph.trains { 2 + graph.state_names().len() as u64 } else { 1 };
    let values = graph
        .params
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add((p.rows as u64).saturating_mul(p.cols as u64)));
    let bytes = values.saturating_mul(4 * copies);
    let fits = usize::try_from(bytes).is_ok_and(|b| Vec::<u8>::new().try_reserve_exact(b).is_ok());
    if fits {
        return Ok(());
    }
    Err(Error::OutOfMemory { what: format!("the CPU model's {values} parameters ({copies} copies)"), bytes })
}

impl ModelConfig {
    /// Builds the model on `gpu`, or on the CPU for [`Backend::Cpu`] (`gpu` may then be None).
    /// Checks the description first: see [`Model::build`].
    pub fn build(&self, backend: Backend, gpu: Option<&crate::Gpu>) -> Result<Model> {
        Model::build(self, backend, gpu)
    }

    /// Builds the model on the CPU backend.
    pub fn build_cpu(&self) -> Result<Model> {
        Model::build(self, Backend::Cpu, None)
    }

    /// Builds the model on `gpu`.
    pub fn build_gpu(&self, gpu: &crate::Gpu) -> Result<Model> {
        Model::build(self, Backend::Gpu, Some(gpu))
    }
}
