//! The model description: layers, loss, optimizer, seed. Plain data with a builder; the graph
//! (`graph.rs`) checks it and derives what the backends run, and [`crate::model::Model::build`] builds it.

use serde::{Deserialize, Serialize};

use crate::Activation;
pub use crate::loss::Loss;

/// How a dense layer's weights start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Init {
    /// He (Kaiming) uniform: `U(−√(6/in), √(6/in))`, for ReLU nets. Biases start at 0.
    He,
    /// Xavier (Glorot) uniform: `U(−√(6/(in+out)), √(6/(in+out)))`. Biases start at 0.
    Xavier,
    /// `U(low, high)` for weights and biases alike (the lessons' `2·rand − 1` is `(-1, 1)`).
    Uniform(f32, f32),
    /// PyTorch's default for `Linear` and `Conv2d`: weights and bias alike
    /// `U(−1/√in, 1/√in)`, `in` the values one output reads (a convolution's
    /// `in_channels · kernel_h · kernel_w`).
    PyTorch,
    /// Exactly these: weights row-major `(out, in)`, and the bias when the layer has one.
    Given {
        /// `outputs × inputs` values, row-major `(out, in)`.
        weights: Vec<f32>,
        /// `outputs` values, or `None` for zeros.
        bias: Option<Vec<f32>>,
    },
}

/// One layer. Dense weights are stored `(out, in)`, PyTorch's layout: `y = x · Wᵀ + b`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Layer {
    /// A fully connected layer from `inputs` to `outputs` values, with an optional bias.
    Dense {
        /// Values per sample it takes: the width before it.
        inputs: usize,
        /// Values per sample it gives.
        outputs: usize,
        /// Whether it adds a learned bias.
        bias: bool,
        /// How its weights start.
        init: Init,
    },
    /// A 2-D convolution, PyTorch's `Conv2d`, over each sample as the NCHW image `shape`
    /// describes (its width must be `shape.input_len()`); it gives `shape.output_len()`
    /// values, the output image in the same order, so a dense layer after it reads it as
    /// PyTorch's `Flatten` would give it. Weights `(out_channels, in_channels · kh · kw)`,
    /// checkpointed as PyTorch's `(out_channels, in_channels, kh, kw)`.
    Conv2d {
        /// Its channels, image size, kernel, stride and padding.
        shape: crate::Conv2dShape,
        /// Whether it adds a learned bias per output channel.
        bias: bool,
        /// How its weights (and bias) start; [`Init::PyTorch`] by default, as PyTorch's.
        init: Init,
    },
    /// PyTorch's `MaxPool2d` (no padding) over each sample as the NCHW images `shape`
    /// describes: each window's largest value.
    MaxPool2d(crate::Pool2dShape),
    /// PyTorch's `AvgPool2d` (no padding): each window's mean.
    AvgPool2d(crate::Pool2dShape),
    /// PyTorch's `Flatten`: the identity here, since every sample is already one row in
    /// NCHW order; it keeps a PyTorch model's layer indices, and so its checkpoint names.
    Flatten,
    /// An element-wise activation: any [`Activation`].
    Activation(Activation),
    /// Softmax over each row. Followed by [`Loss::SoftmaxCrossEntropy`], the two are fused.
    Softmax,
    /// Log-softmax over each row, for [`Loss::Nll`].
    LogSoftmax,
    /// Drops each value with probability p while training (scaling the rest by 1/(1 − p));
    /// the identity in evaluation.
    Dropout(f32),
    /// PyTorch's `BatchNorm2d` over each sample as [`crate::BatchNorm`]'s equal planes (an
    /// NCHW image): in training each channel is normalised by its mean and biased variance
    /// over the batch and the plane, and `running_mean` and `running_var` move towards them
    /// by the momentum (the variance unbiased, as PyTorch's); in evaluation the running
    /// statistics normalise. A learned gain (starting at 1) and bias (at 0) per channel
    /// follow. Checkpointed under PyTorch's names: `weight`, `bias`, `running_mean`,
    /// `running_var` and `num_batches_tracked` (the training steps taken).
    BatchNorm2d(crate::BatchNorm),
    /// Layer normalisation over each sample's values, with a learned gain (starting at 1) and
    /// bias (at 0), as PyTorch's `LayerNorm(width)` with ε = 1e-5. Checkpointed as
    /// `layers.{i}.weight` (the gain) and `layers.{i}.bias`.
    LayerNorm,
}

impl Layer {
    /// The image this layer gives when given `image` (see [`ModelConfig::image_at`]).
    pub(crate) fn image_after(&self, image: Option<crate::ImageShape>) -> Option<crate::ImageShape> {
        match self {
            Layer::Conv2d { shape, .. } => Some(shape.output_image()),
            Layer::MaxPool2d(shape) | Layer::AvgPool2d(shape) => Some(shape.output_image()),
            Layer::BatchNorm2d(_) | Layer::Activation(_) | Layer::Dropout(_) | Layer::LayerNorm => image,
            _ => None,
        }
    }
}

/// The update rule, with its starting learning rate (changed later only through
/// [`crate::model::Model::set_learning_rate`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Optimizer {
    /// Plain gradient descent: `w −= lr · g`.
    Sgd {
        /// The learning rate.
        lr: f32,
    },
    /// Gradient descent with momentum, as PyTorch's SGD with `momentum`: `v = μ·v + g`,
    /// `w −= lr · v`.
    Momentum {
        /// The learning rate.
        lr: f32,
        /// μ, how much of the last step's velocity carries over (0.9 is usual).
        momentum: f32,
    },
    /// Adam with PyTorch's defaults (β1 0.9, β2 0.999, ε 1e-8).
    Adam {
        /// The learning rate.
        lr: f32,
    },
    /// AdamW: Adam with decoupled weight decay.
    AdamW {
        /// The learning rate.
        lr: f32,
        /// λ: each step also shrinks the weights by `lr · λ · w`.
        weight_decay: f32,
    },
}

impl Optimizer {
    /// The starting learning rate.
    pub fn lr(self) -> f32 {
        match self {
            Optimizer::Sgd { lr } | Optimizer::Adam { lr } => lr,
            Optimizer::Momentum { lr, .. } | Optimizer::AdamW { lr, .. } => lr,
        }
    }

    /// Refuses settings no step could use, naming the setting (`op` is the refusing call).
    pub(crate) fn check(self, op: &'static str) -> crate::Result<()> {
        self.settings().check(op)
    }

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
#[non_exhaustive]
pub enum Backend {
    /// Weights, activations and training in GPU buffers, on a [`crate::Gpu`].
    Gpu,
    /// The same layers in plain Rust on the host (products through `gemm` and `matrixmultiply`).
    Cpu,
}

impl Backend {
    /// `"gpu"` or `"cpu"`, as the examples' `--backend` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// A model description, built with [`ModelConfig::build`] on a [`crate::Gpu`] or the CPU.
///
/// ```
/// use wgpu_nn::model::{Loss, ModelConfig, Optimizer, Target};
/// let config = ModelConfig::new(3).dense(4).relu().dense(1).loss(Loss::Mse).optimizer(Optimizer::Sgd { lr: 0.1 });
/// let mut model = config.build_cpu().unwrap();
/// model.train_step(&[1.0, 0.0, 1.0], &Target::Values(&[1.0])).unwrap();
/// ```
///
/// It is serde data: [`crate::model::Model::save`] writes it into the checkpoint's metadata
/// as JSON, and [`crate::model::Model::from_checkpoint`] rebuilds the model from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub(crate) inputs: usize,
    /// The inputs as an image, when they are one ([`ModelConfig::image`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<crate::ImageShape>,
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
            image: None,
            layers: Vec::new(),
            loss: Loss::Mse,
            optimizer: Optimizer::Sgd { lr: 0.01 },
            seed: 0,
        }
    }

    /// A model taking images of `channels` planes of `height × width` (PyTorch's NCHW, one
    /// image per row of a batch): the shape-following builders ([`ModelConfig::conv`],
    /// [`ModelConfig::max_pool`], [`ModelConfig::avg_pool`], [`ModelConfig::batch_norm`])
    /// read each layer's input shape from the one before it, `build` checks every layer
    /// against the shapes it is given, and a data set that says its images' shape must say
    /// this one to load. Checkpoints keep the shape with the rest of the config.
    ///
    /// ```
    /// use wgpu_nn::model::ModelConfig;
    /// let config = ModelConfig::image(1, 28, 28).conv(8, 3, 1, 1).batch_norm().relu().max_pool(2).flatten().dense(10);
    /// assert_eq!(config.width_at(4), 8 * 14 * 14);
    /// # config.build_cpu().unwrap();
    /// ```
    pub fn image(channels: usize, height: usize, width: usize) -> ModelConfig {
        let image = crate::ImageShape::new(channels, height, width);
        ModelConfig { image: Some(image), ..ModelConfig::new(image.len()) }
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

    /// A small CNN for MNIST's 28×28 digits, as PyTorch's `nn.Sequential` would list it:
    /// conv 1 → 16 (3×3, padding 1, no bias), batch norm, ReLU, 2×2 max pool, conv 16 → 32
    /// (the same), batch norm, ReLU, 2×2 max pool, flatten, 1568 → 128 (ReLU, dropout 0.5)
    /// → 10, log-softmax and NLL.
    pub fn mnist_cnn(optimizer: Optimizer) -> ModelConfig {
        ModelConfig::image(1, 28, 28)
            .conv(16, 3, 1, 1)
            .no_bias()
            .batch_norm()
            .relu()
            .max_pool(2)
            .conv(32, 3, 1, 1)
            .no_bias()
            .batch_norm()
            .relu()
            .max_pool(2)
            .flatten()
            .dense(128)
            .relu()
            .dropout(0.5)
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

    /// PyTorch's `Conv2d(in, out_channels, kernel, stride, padding)` over the images the
    /// layers before give (their channels are `in`): a square kernel, the same stride and
    /// padding along both axes, a bias, PyTorch's initialisation. After layers that give no
    /// image, `build` refuses it: use [`ModelConfig::conv2d`] with a [`crate::Conv2dShape`].
    pub fn conv(self, out_channels: usize, kernel: usize, stride: usize, padding: usize) -> Self {
        let image = self.current_image();
        let shape = crate::Conv2dShape::new(image.channels, image.size(), out_channels, (kernel, kernel))
            .stride((stride, stride))
            .padding((padding, padding));
        self.conv2d(shape)
    }

    /// PyTorch's `MaxPool2d(kernel)`, square windows at a stride of their size, over the
    /// images the layers before give (else `build` refuses it).
    pub fn max_pool(self, kernel: usize) -> Self {
        let shape = self.pool_shape(kernel);
        self.max_pool2d(shape)
    }

    /// PyTorch's `AvgPool2d(kernel)`, as [`ModelConfig::max_pool`].
    pub fn avg_pool(self, kernel: usize) -> Self {
        let shape = self.pool_shape(kernel);
        self.avg_pool2d(shape)
    }

    /// PyTorch's `BatchNorm2d` with its defaults over the channels of the images the
    /// layers before give (else it has 0 channels, which `build` refuses).
    pub fn batch_norm(self) -> Self {
        let channels = self.current_image().channels;
        self.batch_norm2d(channels)
    }

    fn pool_shape(&self, kernel: usize) -> crate::Pool2dShape {
        let image = self.current_image();
        crate::Pool2dShape::new(image.channels, image.size(), (kernel, kernel))
    }

    /// The image the layers so far give, or an empty one (which `build` refuses, naming the
    /// layer) when they give none.
    fn current_image(&self) -> crate::ImageShape {
        self.image_at(self.layers.len()).unwrap_or(crate::ImageShape::new(0, 0, 0))
    }

    /// Takes the bias off the last dense or convolution layer (PyTorch's `bias=False`): the
    /// usual choice before a batch norm, whose mean subtraction leaves a bias nothing to do.
    pub fn no_bias(mut self) -> Self {
        let last =
            self.layers.iter_mut().rev().find(|l| matches!(l, Layer::Dense { .. } | Layer::Conv2d { .. }));
        if let Some(Layer::Dense { bias, .. } | Layer::Conv2d { bias, .. }) = last {
            *bias = false;
        }
        self
    }

    /// A 2-D convolution with a bias, initialised as PyTorch's (see [`Layer::Conv2d`]).
    pub fn conv2d(self, shape: crate::Conv2dShape) -> Self {
        self.conv2d_with(shape, true, Init::PyTorch)
    }

    /// A 2-D convolution with the given bias choice and initialisation.
    pub fn conv2d_with(self, shape: crate::Conv2dShape, bias: bool, init: Init) -> Self {
        self.layer(Layer::Conv2d { shape, bias, init })
    }

    /// A max pooling layer (see [`Layer::MaxPool2d`]).
    pub fn max_pool2d(self, shape: crate::Pool2dShape) -> Self {
        self.layer(Layer::MaxPool2d(shape))
    }

    /// An average pooling layer (see [`Layer::AvgPool2d`]).
    pub fn avg_pool2d(self, shape: crate::Pool2dShape) -> Self {
        self.layer(Layer::AvgPool2d(shape))
    }

    /// A flatten layer (see [`Layer::Flatten`]).
    pub fn flatten(self) -> Self {
        self.layer(Layer::Flatten)
    }

    /// An element-wise activation layer.
    pub fn activation(self, f: Activation) -> Self {
        self.layer(Layer::Activation(f))
    }

    /// `max(x, 0)`.
    pub fn relu(self) -> Self {
        self.activation(Activation::Relu)
    }

    /// `x` for `x > 0`, `slope · x` otherwise.
    pub fn leaky_relu(self, slope: f32) -> Self {
        self.activation(Activation::LeakyRelu(slope))
    }

    /// `1 / (1 + e^-x)`.
    pub fn sigmoid(self) -> Self {
        self.activation(Activation::Sigmoid)
    }

    /// `tanh(x)`.
    pub fn tanh(self) -> Self {
        self.activation(Activation::Tanh)
    }

    /// GELU, tanh approximation (PyTorch's `GELU(approximate="tanh")`).
    pub fn gelu(self) -> Self {
        self.activation(Activation::Gelu)
    }

    /// Layer normalisation with a learned gain and bias over the current width.
    pub fn layer_norm(self) -> Self {
        self.layer(Layer::LayerNorm)
    }

    /// Batch normalisation over `channels` planes with PyTorch's defaults, ε 1e-5 and
    /// momentum 0.1 (see [`Layer::BatchNorm2d`]).
    pub fn batch_norm2d(self, channels: usize) -> Self {
        self.layer(Layer::BatchNorm2d(crate::BatchNorm::new(channels)))
    }

    /// Softmax over each sample's values (fused with [`Loss::SoftmaxCrossEntropy`]).
    pub fn softmax(self) -> Self {
        self.layer(Layer::Softmax)
    }

    /// Log-softmax over each sample's values, for [`Loss::Nll`].
    pub fn log_softmax(self) -> Self {
        self.layer(Layer::LogSoftmax)
    }

    /// Dropout with drop probability `p` in [0, 1) while training; the identity otherwise.
    pub fn dropout(self, p: f32) -> Self {
        self.layer(Layer::Dropout(p))
    }

    /// Appends any layer (a [`Layer::Dense`] must take the current width; `build` checks).
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// What training minimises (default: [`Loss::Mse`]).
    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// The update rule and its starting learning rate (default: SGD at 0.01).
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

    /// The optimizer and its settings (`optimizer` is the builder call that sets it).
    pub fn optimizer_kind(&self) -> Optimizer {
        self.optimizer
    }

    /// Values per sample the model takes.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The seed of its starting weights and dropout masks.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// Values per sample after the first `layers` layers (0: the inputs).
    pub fn width_at(&self, layers: usize) -> usize {
        self.layers[..layers.min(self.layers.len())]
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Dense { outputs, .. } => Some(*outputs),
                Layer::Conv2d { shape, .. } => Some(shape.output_len()),
                Layer::MaxPool2d(shape) | Layer::AvgPool2d(shape) => Some(shape.output_len()),
                _ => None,
            })
            .unwrap_or(self.inputs)
    }

    /// The image after the first `layers` layers (0: the inputs), when there is one: the
    /// config's [`ModelConfig::image`], then each convolution's and pooling's output;
    /// batch norms, activations, dropout and layer norms keep it, and any other layer
    /// (flatten, dense, softmax) ends it. Read as described: `build` checks it.
    pub fn image_at(&self, layers: usize) -> Option<crate::ImageShape> {
        self.layers[..layers.min(self.layers.len())]
            .iter()
            .fold(self.image, |image, layer| layer.image_after(image))
    }

    /// Values per sample the model outputs.
    pub fn width(&self) -> usize {
        self.width_at(self.layers.len())
    }
}
