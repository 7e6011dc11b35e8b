//! The model description: layers, loss, optimizer, seed. Built once into a [`Model`] on the
//! GPU or the CPU; both start from the same weights, drawn here from the seed.

use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::Model;
use crate::{Error, Result};

/// How a dense layer's weights start.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// He (Kaiming) uniform: `U(−√(6/in), √(6/in))`, for ReLU nets. Biases start at 0.
    He,
    /// Xavier (Glorot) uniform: `U(−√(6/(in+out)), √(6/(in+out)))`. Biases start at 0.
    Xavier,
    /// `U(low, high)` for weights and biases alike (the lessons' `2·rand − 1` is `(-1, 1)`).
    Uniform(f32, f32),
    /// Exactly these: weights row-major `(out, in)`, and the bias when the layer has one.
    Given { weights: Vec<f32>, bias: Option<Vec<f32>> },
}

/// One layer. Dense weights are stored `(out, in)`, PyTorch's layout: `y = x · Wᵀ + b`.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Dense {
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
    },
    Relu,
    Sigmoid,
    Tanh,
    /// Softmax over each row. Followed by [`Loss::SoftmaxCrossEntropy`], the two are fused.
    Softmax,
    /// Log-softmax over each row, for [`Loss::Nll`].
    LogSoftmax,
    /// Drops each value with probability p while training (scaling the rest by 1/(1 − p));
    /// the identity in evaluation.
    Dropout(f32),
}

/// What training minimises: the mean over the batch (and outputs) of a per-sample loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `(y − t)²`, averaged over every output value.
    Mse,
    /// `|y − t|`, averaged over every output value.
    Mae,
    /// Binary cross-entropy of probabilities y against targets t in [0, 1].
    BinaryCrossEntropy,
    /// Cross-entropy of softmax(logits) against class labels, computed stably from the
    /// logits: the model's output, or the input of its final [`Layer::Softmax`].
    SoftmaxCrossEntropy,
    /// Negative log-likelihood of log-probabilities (a final [`Layer::LogSoftmax`]).
    Nll,
}

impl Loss {
    /// Whether targets are class labels rather than values.
    pub fn takes_labels(self) -> bool {
        matches!(self, Loss::SoftmaxCrossEntropy | Loss::Nll)
    }
}

/// The update rule, with its learning rate (changeable later with `set_learning_rate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f32,
    },
    Momentum {
        lr: f32,
        momentum: f32,
    },
    /// Adam with PyTorch's defaults (β1 0.9, β2 0.999, ε 1e-8).
    Adam {
        lr: f32,
    },
    /// AdamW: Adam with decoupled weight decay.
    AdamW {
        lr: f32,
        weight_decay: f32,
    },
}

impl Optimizer {
    pub(crate) fn settings(self) -> crate::OptimizerSettings {
        let mut s = crate::OptimizerSettings::new(0.0);
        match self {
            Optimizer::Sgd { lr } | Optimizer::Adam { lr } => s.lr = lr,
            Optimizer::Momentum { lr, momentum } => (s.lr, s.momentum) = (lr, momentum),
            Optimizer::AdamW { lr, weight_decay } => (s.lr, s.weight_decay) = (lr, weight_decay),
        }
        s
    }
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Gpu,
    Cpu,
}

/// A model description, built with [`ModelConfig::build`] on a [`crate::Gpu`] or the CPU.
///
/// ```
/// use wgpu_nn::model::{Loss, ModelConfig, Optimizer, Target};
/// let config = ModelConfig::new(3).dense(4).relu().dense(1).loss(Loss::Mse).optimizer(Optimizer::Sgd { lr: 0.1 });
/// let mut model = config.build_cpu().unwrap();
/// model.train_step(&[1.0, 0.0, 1.0], &Target::Values(&[1.0])).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub(crate) inputs: usize,
    pub(crate) layers: Vec<Layer>,
    pub(crate) loss: Loss,
    pub(crate) optimizer: Optimizer,
    pub(crate) seed: u64,
}

impl ModelConfig {
    /// A model taking `inputs` values per sample; add layers with the builder methods.
    /// Defaults: MSE, SGD with learning rate 0.01, seed 0.
    pub fn new(inputs: usize) -> ModelConfig {
        ModelConfig {
            inputs,
            layers: Vec::new(),
            loss: Loss::Mse,
            optimizer: Optimizer::Sgd { lr: 0.01 },
            seed: 0,
        }
    }

    /// The MNIST lesson's network: 784 → 128 (ReLU, dropout 0.2) → 64 (ReLU, dropout 0.2)
    /// → 10, log-softmax and NLL (the lesson's softmax then NLL, computed stably).
    pub fn mnist_mlp(optimizer: Optimizer) -> ModelConfig {
        ModelConfig::new(784)
            .dense(128)
            .relu()
            .dropout(0.2)
            .dense(64)
            .relu()
            .dropout(0.2)
            .dense(10)
            .log_softmax()
            .loss(Loss::Nll)
            .optimizer(optimizer)
    }

    /// A dense layer with bias, He-initialised, from the current width to `outputs`.
    pub fn dense(self, outputs: usize) -> Self {
        self.dense_with(outputs, true, Init::He)
    }

    /// A dense layer with the given bias choice and initialisation.
    pub fn dense_with(mut self, outputs: usize, bias: bool, init: Init) -> Self {
        let inputs = self.width();
        self.layers.push(Layer::Dense { inputs, outputs, bias, init });
        self
    }

    pub fn relu(self) -> Self {
        self.layer(Layer::Relu)
    }

    pub fn sigmoid(self) -> Self {
        self.layer(Layer::Sigmoid)
    }

    pub fn tanh(self) -> Self {
        self.layer(Layer::Tanh)
    }

    pub fn softmax(self) -> Self {
        self.layer(Layer::Softmax)
    }

    pub fn log_softmax(self) -> Self {
        self.layer(Layer::LogSoftmax)
    }

    pub fn dropout(self, p: f32) -> Self {
        self.layer(Layer::Dropout(p))
    }

    /// Appends any layer (a [`Layer::Dense`] must take the current width; `build` checks).
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    pub fn optimizer(mut self, optimizer: Optimizer) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Seeds weight initialisation and dropout: the same seed gives the same run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The loss this model trains with.
    pub fn loss_kind(&self) -> Loss {
        self.loss
    }

    /// Values per sample after the first `layers` layers (0: the inputs).
    pub fn width_at(&self, layers: usize) -> usize {
        self.layers[..layers.min(self.layers.len())]
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Dense { outputs, .. } => Some(*outputs),
                _ => None,
            })
            .unwrap_or(self.inputs)
    }

    /// Values per sample the model outputs.
    pub fn width(&self) -> usize {
        self.width_at(self.layers.len())
    }

    /// Builds the model on `gpu`, or on the CPU for [`Backend::Cpu`] (`gpu` may then be None).
    pub fn build(&self, backend: Backend, gpu: Option<&crate::Gpu>) -> Result<Model> {
        match (backend, gpu) {
            (Backend::Cpu, _) => self.build_cpu(),
            (Backend::Gpu, Some(gpu)) => self.build_gpu(gpu),
            (Backend::Gpu, None) => Err(Error::shape("build", "a Gpu for the GPU backend", "none")),
        }
    }

    pub fn build_cpu(&self) -> Result<Model> {
        Ok(Model::Cpu(Box::new(super::cpu::CpuModel::new(self, self.initial_parameters()?))))
    }

    pub fn build_gpu(&self, gpu: &crate::Gpu) -> Result<Model> {
        // Before drawing any weights on the host: a layer too big for the adapter is an
        // error naming the limit, not gigabytes of random numbers and then an error.
        for (i, layer) in self.layers.iter().enumerate() {
            if let Layer::Dense { inputs, outputs, .. } = layer {
                let bytes = (*inputs as u64).saturating_mul(*outputs as u64).saturating_mul(4);
                gpu.check_buffer_size(&format!("layer {i} (dense {inputs} -> {outputs}) weights"), bytes)?;
            }
        }
        Ok(Model::Gpu(Box::new(super::gpu::GpuModel::new(gpu, self, self.initial_parameters()?)?)))
    }

    /// Checks the description and draws every dense layer's starting weights and bias.
    pub(crate) fn initial_parameters(&self) -> Result<Vec<DenseValues>> {
        let op = "build";
        if self.inputs == 0 {
            return Err(Error::shape(op, "at least one input", "0 inputs"));
        }
        if self.layers.is_empty() {
            return Err(Error::shape(op, "at least one layer", "none"));
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut width = self.inputs;
        let mut parameters = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Dense { inputs, outputs, bias, init } => {
                    if *inputs != width {
                        return Err(Error::shape(
                            op,
                            format!("layer {i} (dense) to take {width} inputs"),
                            format!("{inputs} inputs"),
                        ));
                    }
                    if *outputs == 0 {
                        return Err(Error::shape(op, format!("layer {i} (dense) with outputs"), "0 outputs"));
                    }
                    parameters.push(draw(&mut rng, i, *inputs, *outputs, *bias, init)?);
                    width = *outputs;
                }
                Layer::Dropout(p) if !(0.0..1.0).contains(p) => {
                    return Err(Error::shape(
                        op,
                        format!("layer {i}: a drop probability in [0, 1)"),
                        p.to_string(),
                    ));
                }
                _ => {}
            }
        }
        let needs_two = matches!(self.loss, Loss::SoftmaxCrossEntropy | Loss::Nll);
        if needs_two && width < 2 {
            return Err(Error::shape(
                op,
                format!("{:?} over at least 2 classes", self.loss),
                format!("{width} outputs"),
            ));
        }
        if self.loss == Loss::Nll && self.layers.last() != Some(&Layer::LogSoftmax) {
            return Err(Error::shape(
                op,
                "a final LogSoftmax layer for the NLL loss",
                format!("{:?}", self.layers.last()),
            ));
        }
        Ok(parameters)
    }
}

/// A dense layer's weights `(out, in)` and bias.
pub(crate) type DenseValues = (Vec<f32>, Option<Vec<f32>>);

fn draw(
    rng: &mut StdRng,
    layer: usize,
    inputs: usize,
    outputs: usize,
    bias: bool,
    init: &Init,
) -> Result<DenseValues> {
    let mut uniform =
        |n: usize, limit: f32| (0..n).map(|_| rng.random_range(-limit..=limit)).collect::<Vec<f32>>();
    let zeros = bias.then(|| vec![0.0; outputs]);
    Ok(match init {
        Init::He => (uniform(inputs * outputs, (6.0 / inputs as f32).sqrt()), zeros),
        Init::Xavier => (uniform(inputs * outputs, (6.0 / (inputs + outputs) as f32).sqrt()), zeros),
        Init::Uniform(low, high) => {
            let mut between = |n: usize| (0..n).map(|_| rng.random_range(*low..*high)).collect::<Vec<f32>>();
            let weights = between(inputs * outputs);
            (weights, bias.then(|| between(outputs)))
        }
        Init::Given { weights, bias: given_bias } => {
            let op = "build";
            if weights.len() != inputs * outputs {
                return Err(Error::shape(
                    op,
                    format!("layer {layer}: {outputs}x{inputs} given weights"),
                    format!("{} values", weights.len()),
                ));
            }
            match (bias, given_bias) {
                (true, Some(b)) if b.len() == outputs => (weights.clone(), Some(b.clone())),
                (true, None) => (weights.clone(), zeros),
                (false, None) => (weights.clone(), None),
                (_, Some(b)) => {
                    return Err(Error::shape(
                        op,
                        format!("layer {layer}: a bias of {outputs} values, and bias enabled"),
                        format!("{} values, bias {}", b.len(), if bias { "enabled" } else { "disabled" }),
                    ));
                }
            }
        }
    })
}
