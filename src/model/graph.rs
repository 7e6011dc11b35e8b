//! The graph both backends run, derived once from a [`ModelConfig`]: the width of every
//! activation, every learned tensor (any layer may own some), the buffers a batch needs, the
//! checks a description must pass, the starting values, the dropout mask contract and the
//! optimizer's state layout. The backends read it; neither knows the other.

use super::batch::check_finite;
use super::config::{Init, Layer, Loss, ModelConfig, Optimizer};
use crate::data::Dataset;
use crate::random::Random;
use crate::target::Target;
use crate::{Error, Result};

/// A buffer a layer reads or writes, named by its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// Activation i: 0 is the batch's input, i the output of layer i − 1.
    Act(usize),
    /// The gradient of the loss with respect to activation i.
    Grad(usize),
    /// What layer l keeps from its forward for its backward: dropout's mask, a layer norm's
    /// per-row mean and 1/σ.
    Saved(usize),
    /// Layer l's working space in the backward (a layer norm's gain terms).
    Scratch(usize),
    /// The value targets (MSE, MAE, BCE); label targets are the backend's own.
    Targets,
    /// The loss of each sample (or output value).
    Terms,
    /// The batch's mean loss, (1, 1).
    Loss,
    /// Parameter p of the graph, and its gradient.
    Param(usize),
    ParamGrad(usize),
    /// Buffer b of the graph: state a layer keeps that no optimizer updates (a batch norm's
    /// running statistics).
    Buffer(usize),
}

/// A dense layer, or a convolution, with the activation and the dropout right after it
/// (either may be absent): forward one product with its epilogue, backward one product for
/// the weight and bias gradients and one for the input's, which for a dense layer also takes
/// the derivative of the block below.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Block {
    /// The dense layer's (or convolution's) index.
    pub(crate) dense: usize,
    /// The convolution's shape, when the block is one.
    pub(crate) conv: Option<crate::Conv2dShape>,
    /// The activation at layer `dense + 1`.
    pub(crate) activation: Option<crate::Activation>,
    /// The dropout layer's index and probability (in training only).
    pub(crate) dropout: Option<(usize, f32)>,
    /// The layer after the block: its output is activation `end`.
    pub(crate) end: usize,
}

/// The unit the ops run layers in: a [`Block`], or any other layer alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Node {
    Block(Block),
    Layer(usize),
}

/// One learned tensor: a dense layer's weight `(out, in)` or bias `(1, out)`, a layer norm's
/// gain or bias `(1, width)`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Param {
    /// The index of its layer in the config.
    pub(crate) layer: usize,
    /// `weight` or `bias`: PyTorch's name, so a checkpoint says `layers.{layer}.{name}`.
    pub(crate) name: &'static str,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Stored as a vector in checkpoints (`(cols)`, as PyTorch's biases and norm gains).
    pub(crate) vector: bool,
    /// A convolution's weights: `(in_channels, kh, kw)`, the columns' shape in checkpoints,
    /// which store them `(out, in_channels, kh, kw)` as PyTorch does.
    pub(crate) filter: Option<[usize; 3]>,
}

impl Param {
    pub(crate) fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Its shape in a checkpoint.
    pub(crate) fn dims(&self) -> Vec<usize> {
        match self.filter {
            Some([c, kh, kw]) => vec![self.rows, c, kh, kw],
            None if self.vector => vec![self.cols],
            None => vec![self.rows, self.cols],
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub(crate) config: ModelConfig,
    /// `widths[i]`: values per sample of activation i (0 is the input, i the output of
    /// layer i − 1).
    widths: Vec<usize>,
    pub(crate) params: Vec<Param>,
    /// Tensors layers keep beside their parameters, saved in checkpoints but not learned:
    /// a batch norm's `running_mean` and `running_var`, `(1, channels)` each.
    pub(crate) buffers: Vec<Param>,
    /// Layers that run in training before the loss: all, or all but a final Softmax (or
    /// LogSoftmax) whose cross-entropy (or NLL) is fused: computed from the logits.
    pub(crate) trunk: usize,
    /// False for a model rebuilt for inference ([`crate::model::Model::from_checkpoint`]):
    /// the backends then keep no gradients and no optimizer state, and training is an error.
    pub(crate) trains: bool,
}

impl Graph {
    /// Checks the description and derives the graph: every error a description can have is
    /// found here, before any backend allocates anything.
    pub(crate) fn new(config: &ModelConfig) -> Result<Graph> {
        let op = "build";
        if config.inputs == 0 {
            return Err(Error::shape(op, "at least one input", "0 inputs"));
        }
        if config.layers.is_empty() {
            return Err(Error::shape(op, "at least one layer", "none"));
        }
        if let Some(image) = config.image {
            image.check(op)?;
            if image.len() != config.inputs {
                return Err(Error::shape(
                    op,
                    format!("{} inputs for images of {image:?}", image.len()),
                    format!("{} inputs", config.inputs),
                ));
            }
        }
        let mut widths = vec![config.inputs];
        let mut params = Vec::new();
        let mut buffers = Vec::new();
        let mut image = config.image;
        for (i, layer) in config.layers.iter().enumerate() {
            let width = widths[i];
            check_image(i, layer, image)?;
            image = layer.image_after(image);
            let vector = |name, cols| Param { layer: i, name, rows: 1, cols, vector: true, filter: None };
            match layer {
                Layer::Conv2d { shape, bias, init } => {
                    shape.check(op)?;
                    check_init(i, init)?;
                    if shape.input_len() != width {
                        return Err(Error::shape(
                            op,
                            format!("layer {i} (conv2d) over images of {width} values"),
                            format!("{shape:?}, images of {} values", shape.input_len()),
                        ));
                    }
                    params.push(Param {
                        layer: i,
                        name: "weight",
                        rows: shape.out_channels,
                        cols: shape.filter_len(),
                        vector: false,
                        filter: Some([shape.in_channels, shape.kernel.0, shape.kernel.1]),
                    });
                    if *bias {
                        params.push(vector("bias", shape.out_channels));
                    }
                }
                Layer::MaxPool2d(shape) | Layer::AvgPool2d(shape) => {
                    shape.check(op)?;
                    if shape.input_len() != width {
                        return Err(Error::shape(
                            op,
                            format!("layer {i} (pooling) over images of {width} values"),
                            format!("{shape:?}, images of {} values", shape.input_len()),
                        ));
                    }
                }
                Layer::Dense { inputs, outputs, bias, init } => {
                    check_init(i, init)?;
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
                    // Sizes are multiplied everywhere after this: refuse what cannot be held.
                    let bytes = outputs.checked_mul(*inputs).and_then(|n| n.checked_mul(4));
                    if bytes.is_none_or(|b| b > isize::MAX as usize) {
                        return Err(Error::InvalidLayer {
                            layer: i,
                            problem: format!("{outputs}x{inputs} weights are more than any memory holds"),
                        });
                    }
                    params.push(Param {
                        layer: i,
                        name: "weight",
                        rows: *outputs,
                        cols: *inputs,
                        vector: false,
                        filter: None,
                    });
                    if *bias {
                        params.push(vector("bias", *outputs));
                    }
                }
                Layer::LayerNorm => params.extend([vector("weight", width), vector("bias", width)]),
                Layer::BatchNorm2d(g) => {
                    g.check(op).map_err(|e| Error::InvalidLayer { layer: i, problem: e.to_string() })?;
                    g.plane(op, width)
                        .map_err(|e| Error::InvalidLayer { layer: i, problem: e.to_string() })?;
                    params.extend([vector("weight", g.channels), vector("bias", g.channels)]);
                    buffers.extend([vector("running_mean", g.channels), vector("running_var", g.channels)]);
                }
                Layer::Dropout(p) if !(0.0..1.0).contains(p) => {
                    return Err(Error::InvalidLayer {
                        layer: i,
                        problem: format!("a drop probability must be in [0, 1), not {p}"),
                    });
                }
                Layer::Activation(crate::Activation::LeakyRelu(slope)) if !slope.is_finite() => {
                    return Err(Error::InvalidLayer {
                        layer: i,
                        problem: format!("a LeakyReLU slope must be finite, not {slope}"),
                    });
                }
                _ => {}
            }
            widths.push(match layer {
                Layer::Dense { outputs, .. } => *outputs,
                Layer::Conv2d { shape, .. } => shape.output_len(),
                Layer::MaxPool2d(shape) | Layer::AvgPool2d(shape) => shape.output_len(),
                _ => width,
            });
        }
        let last = *widths.last().expect("at least one layer");
        config.loss.check(op)?;
        if config.loss.takes_labels() && last < 2 {
            return Err(Error::shape(
                op,
                format!("{:?} over at least 2 classes", config.loss),
                format!("{last} outputs"),
            ));
        }
        if config.loss == Loss::Nll && config.layers.last() != Some(&Layer::LogSoftmax) {
            return Err(Error::shape(
                op,
                "a final LogSoftmax layer for the NLL loss",
                format!("{:?}", config.layers.last()),
            ));
        }
        // Cross-entropy over a final softmax, or NLL over a final log-softmax, is computed from
        // the logits in training: the gradient is then p − onehot, with no softmax backward.
        let fused = matches!(
            (config.loss, config.layers.last()),
            (Loss::SoftmaxCrossEntropy, Some(Layer::Softmax)) | (Loss::Nll, Some(Layer::LogSoftmax))
        );
        let trunk = config.layers.len() - usize::from(fused);
        Ok(Graph { config: config.clone(), widths, params, buffers, trunk, trains: true })
    }

    pub(crate) fn layers(&self) -> &[Layer] {
        &self.config.layers
    }

    pub(crate) fn inputs(&self) -> usize {
        self.config.inputs
    }

    /// Width of activation `i` (0 is the input, i is the output of layer i − 1).
    pub(crate) fn width(&self, i: usize) -> usize {
        self.widths[i]
    }

    pub(crate) fn outputs(&self) -> usize {
        self.width(self.layers().len())
    }

    /// The loss of the trunk's output: the config's, except that NLL over a log-softmax the
    /// trunk leaves out is the same number computed as cross-entropy from the logits.
    pub(crate) fn loss(&self) -> Loss {
        match self.config.loss {
            Loss::Nll if self.trunk < self.layers().len() => Loss::SoftmaxCrossEntropy,
            loss => loss,
        }
    }

    /// What the loss reads: the trunk's output (a fused softmax's input).
    pub(crate) fn classes(&self) -> usize {
        self.width(self.trunk)
    }

    /// The layers that run, in training (the trunk) or in evaluation (all), grouped into
    /// nodes: each dense layer or convolution with the activation and dropout that follow it,
    /// the rest alone.
    /// Outside training a dropout layer is the identity, so a block still spans it but does
    /// not drop.
    pub(crate) fn nodes(&self, training: bool) -> Vec<Node> {
        let end = if training { self.trunk } else { self.layers().len() };
        let layer = |l: usize| self.layers()[..end].get(l);
        let mut nodes = Vec::new();
        let mut l = 0;
        while l < end {
            let conv = match self.layers()[l] {
                Layer::Dense { .. } => None,
                Layer::Conv2d { shape, .. } => Some(shape),
                _ => {
                    nodes.push(Node::Layer(l));
                    l += 1;
                    continue;
                }
            };
            let mut block = Block { dense: l, conv, activation: None, dropout: None, end: l + 1 };
            if let Some(Layer::Activation(f)) = layer(block.end) {
                block.activation = Some(*f);
                block.end += 1;
            }
            if let Some(Layer::Dropout(p)) = layer(block.end) {
                block.dropout = training.then_some((block.end, *p));
                block.end += 1;
            }
            nodes.push(Node::Block(block));
            l = block.end;
        }
        nodes
    }

    /// The parameter named `name` of layer `layer`, or an error naming what is there.
    pub(crate) fn param(&self, op: &'static str, layer: usize, name: &'static str) -> Result<usize> {
        if let Some(p) = self.params_of(layer).find(|&p| self.params[p].name == name) {
            return Ok(p);
        }
        if name == "bias" && self.params_of(layer).next().is_some() {
            return Err(no_bias(layer));
        }
        Err(Error::shape(
            op,
            "the index of a layer with parameters (a dense layer or a layer norm)",
            format!("layer {layer} ({:?})", self.layers().get(layer)),
        ))
    }

    /// The parameters of layer `l`, in order (weight, then bias). They are stored in layer
    /// order, so this is a binary search, not a scan: a config of many layers (a hostile
    /// checkpoint's, say) costs linear time, not quadratic.
    pub(crate) fn params_of(&self, l: usize) -> std::ops::Range<usize> {
        self.params.partition_point(|p| p.layer < l)..self.params.partition_point(|p| p.layer <= l)
    }

    /// How many batch norms the model has.
    pub(crate) fn batch_norms(&self) -> usize {
        self.layers().iter().filter(|l| matches!(l, Layer::BatchNorm2d(_))).count()
    }

    /// The buffers of layer `l`, in order (a batch norm's running mean, then its variance).
    pub(crate) fn buffers_of(&self, l: usize) -> std::ops::Range<usize> {
        self.buffers.partition_point(|b| b.layer < l)..self.buffers.partition_point(|b| b.layer <= l)
    }

    /// Every buffer's starting values: running means at 0, running variances at 1, as
    /// PyTorch's.
    pub(crate) fn initial_buffers(&self) -> Vec<Vec<f32>> {
        let start = |b: &Param| if b.name == "running_var" { 1.0 } else { 0.0 };
        self.buffers.iter().map(|b| vec![start(b); b.len()]).collect()
    }

    /// Every parameter's starting values, drawn from the config's seed in layer order: the
    /// same on every backend and in every release (see `random.rs`).
    pub(crate) fn initial_values(&self) -> Result<Vec<Vec<f32>>> {
        let mut rng = Random::new(self.config.seed);
        let mut values = Vec::new();
        for (i, layer) in self.layers().iter().enumerate() {
            match layer {
                Layer::Dense { inputs, outputs, bias, init } => {
                    let (w, b) = draw(&mut rng, i, *inputs, *outputs, *bias, init)?;
                    values.push(w);
                    values.extend(b);
                }
                Layer::Conv2d { shape, bias, init } => {
                    let (w, b) = draw(&mut rng, i, shape.filter_len(), shape.out_channels, *bias, init)?;
                    values.push(w);
                    values.extend(b);
                }
                Layer::LayerNorm => {
                    let width = self.width(i);
                    values.extend([vec![1.0; width], vec![0.0; width]]);
                }
                Layer::BatchNorm2d(g) => values.extend([vec![1.0; g.channels], vec![0.0; g.channels]]),
                _ => {}
            }
        }
        Ok(values)
    }

    /// The names of the optimizer's state tensors per parameter (none in a model that does
    /// not train).
    pub(crate) fn state_names(&self) -> &'static [&'static str] {
        if self.trains { state_names(self.config.optimizer) } else { &[] }
    }

    /// An error unless the model trains: `op` needs gradients or optimizer state.
    pub(crate) fn check_trains(&self, op: &'static str) -> Result<()> {
        if self.trains { Ok(()) } else { Err(Error::InferenceOnly { op }) }
    }

    /// Each dropout layer draws its own mask: its seed mixes the model's seed with its index.
    /// Both backends hash (seed, step, element) with it the same way (`shaders/dropout.wgsl`).
    pub(crate) fn dropout_seed(&self, layer: usize) -> u32 {
        let seed = self.config.seed;
        (seed as u32) ^ ((seed >> 32) as u32) ^ (layer as u32).wrapping_mul(0x9e37_79b9)
    }

    pub(crate) fn has_dropout(&self) -> bool {
        self.layers().iter().any(|l| matches!(l, Layer::Dropout(_)))
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

    /// Checks a training batch of `rows` samples and its target: the target as
    /// [`Graph::check_target`] does, and the rows against every batch norm, which in
    /// training needs more than one value per channel (PyTorch's rule too).
    pub(crate) fn check_training(&self, op: &'static str, target: &Target, rows: usize) -> Result<()> {
        self.check_target(op, target, rows)?;
        self.check_training_rows(op, rows)
    }

    /// A training batch of `rows` samples against every batch norm (see
    /// [`Graph::check_training`]).
    pub(crate) fn check_training_rows(&self, op: &'static str, rows: usize) -> Result<()> {
        for (l, layer) in self.layers()[..self.trunk].iter().enumerate() {
            if let Layer::BatchNorm2d(g) = layer {
                let values = rows * (self.width(l) / g.channels);
                if values < 2 {
                    return Err(Error::shape(
                        op,
                        format!("more than 1 value per channel in training for layer {l} (batch norm)"),
                        format!("{rows} rows of {} values per channel", self.width(l) / g.channels),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks a target against the loss and the batch.
    pub(crate) fn check_target(&self, op: &'static str, target: &Target, rows: usize) -> Result<()> {
        let (loss, width) = (self.config.loss, self.classes());
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

    /// The buffers one batch of `rows` samples needs, and their shapes: in training every
    /// activation up to the loss with its gradient and what the layers save for their
    /// backward; in evaluation every activation. Parameters live with the model, not here.
    pub(crate) fn batch_slots(&self, rows: usize, training: bool) -> Vec<(Slot, (usize, usize))> {
        let mut slots = Vec::new();
        let end = if training { self.trunk } else { self.layers().len() };
        for l in 0..self.layers().len() {
            if self.storage(Slot::Act(l + 1), training) == Slot::Act(l + 1) {
                slots.push((Slot::Act(l + 1), (rows, self.width(l + 1))));
            }
            let width = self.width(l + 1);
            match self.layers()[l] {
                Layer::Dropout(_) if training && l < end => slots.push((Slot::Saved(l), (rows, width))),
                // Each window's winner, written by every forward.
                Layer::MaxPool2d(_) => slots.push((Slot::Saved(l), (rows, width))),
                // Each channel's mean and 1/σ: the batch's in training, else the running ones.
                Layer::BatchNorm2d(g) => slots.push((Slot::Saved(l), (2, g.channels))),
                // The statistics are computed in every forward; the gain terms only for a backward.
                Layer::LayerNorm => {
                    slots.push((Slot::Saved(l), (rows, 2)));
                    if training && l < end {
                        slots.push((Slot::Scratch(l), (rows, width)));
                    }
                }
                _ => {}
            }
        }
        let loss_width = self.classes();
        let terms_width = if self.config.loss.takes_labels() { 1 } else { loss_width };
        slots.push((Slot::Terms, (rows, terms_width)));
        slots.push((Slot::Loss, (1, 1)));
        if !self.config.loss.takes_labels() {
            slots.push((Slot::Targets, (rows, loss_width)));
        }
        if training {
            // The gradient of every activation the backward reaches, down to the first
            // layer's output (nothing needs the input's), and always the loss's own: a model
            // that is only a fused softmax has a trunk of 0 layers.
            for i in (1..=self.trunk).chain((self.trunk == 0).then_some(0)) {
                // A flatten's output gradient is its input's (`storage`): one buffer for both.
                let slot = self.storage(Slot::Grad(i), training);
                if !slots.iter().any(|&(s, _)| s == slot) {
                    slots.push((slot, (rows, self.width(i))));
                }
            }
        }
        slots
    }

    /// Where `slot` is stored: in evaluation a dropout layer's output is its input, and a
    /// flatten's output (and its gradient) is always its input's.
    pub(crate) fn storage(&self, slot: Slot, training: bool) -> Slot {
        let below = |i: usize| (i > 0).then(|| &self.layers()[i - 1]);
        match slot {
            Slot::Act(i) if !training && matches!(below(i), Some(Layer::Dropout(_))) => {
                self.storage(Slot::Act(i - 1), training)
            }
            // A flatten changes no value: its output, and its output's gradient, are its input's.
            Slot::Act(i) if matches!(below(i), Some(Layer::Flatten)) => {
                self.storage(Slot::Act(i - 1), training)
            }
            Slot::Grad(i) if matches!(below(i), Some(Layer::Flatten)) => {
                self.storage(Slot::Grad(i - 1), training)
            }
            other => other,
        }
    }
}

/// A layer that reads images against the image the layers before it give, when they give
/// one: a convolution or pooling must take exactly that image, a batch norm its channels.
fn check_image(i: usize, layer: &Layer, image: Option<crate::ImageShape>) -> Result<()> {
    let (name, takes) = match layer {
        Layer::Conv2d { shape, .. } => ("conv2d", shape.input_image()),
        Layer::MaxPool2d(shape) | Layer::AvgPool2d(shape) => ("pooling", shape.input_image()),
        Layer::BatchNorm2d(g) => match image {
            Some(image) if image.channels != g.channels => {
                return Err(Error::shape(
                    "build",
                    format!("layer {i} (batch norm) over the {} channels of {image:?}", image.channels),
                    format!("{} channels", g.channels),
                ));
            }
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    match image {
        Some(image) if image != takes => Err(Error::shape(
            "build",
            format!("layer {i} ({name}) over the {image:?} the layers before give"),
            format!("{takes:?}"),
        )),
        None if takes.is_empty() => Err(no_image(i, name)),
        _ => Ok(()),
    }
}

/// The error for a shape-following builder (`conv`, `max_pool`, `batch_norm`) after layers
/// that give no image.
fn no_image(i: usize, name: &str) -> Error {
    Error::shape(
        "build",
        format!(
            "an image into layer {i} ({name}): start the config with ModelConfig::image, or give the \
             layer its shape"
        ),
        "layers that give no image",
    )
}

/// The optimizer's state tensors per parameter.
pub(crate) fn state_names(optimizer: Optimizer) -> &'static [&'static str] {
    match optimizer {
        Optimizer::Sgd { .. } => &[],
        Optimizer::Momentum { .. } => &["velocity"],
        Optimizer::Adam { .. } | Optimizer::AdamW { .. } => &["m", "v"],
    }
}

pub(crate) fn no_bias(layer: usize) -> Error {
    Error::shape("bias", format!("layer {layer} with a bias"), "a layer without one")
}

/// A dense layer's weights `(out, in)` and bias.
/// Refuses starting values no layer could hold: a uniform range that is empty or not finite,
/// given values that are not finite.
fn check_init(layer: usize, init: &Init) -> Result<()> {
    if let Init::Uniform(low, high) = init
        && !(low < high && (high - low).is_finite())
    {
        return Err(Error::InvalidLayer {
            layer,
            problem: format!("a uniform initialisation needs finite low < high, not {low}..{high}"),
        });
    }
    if let Init::Given { weights, bias } = init
        && let Some(v) = weights.iter().chain(bias.iter().flatten()).find(|v| !v.is_finite())
    {
        return Err(Error::InvalidLayer {
            layer,
            problem: format!("given weights and bias must be finite, not {v}"),
        });
    }
    Ok(())
}

fn draw(
    rng: &mut Random,
    layer: usize,
    inputs: usize,
    outputs: usize,
    bias: bool,
    init: &Init,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let mut uniform = |n: usize, limit: f32| (0..n).map(|_| rng.uniform(-limit, limit)).collect::<Vec<f32>>();
    let zeros = bias.then(|| vec![0.0; outputs]);
    Ok(match init {
        Init::He => (uniform(inputs * outputs, (6.0 / inputs as f32).sqrt()), zeros),
        Init::PyTorch => {
            let limit = 1.0 / (inputs as f32).sqrt();
            let weights = uniform(inputs * outputs, limit);
            (weights, bias.then(|| uniform(outputs, limit)))
        }
        Init::Xavier => (uniform(inputs * outputs, (6.0 / (inputs + outputs) as f32).sqrt()), zeros),
        Init::Uniform(low, high) => {
            let mut between = |n: usize| (0..n).map(|_| rng.uniform(*low, *high)).collect::<Vec<f32>>();
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

/// Checks a data set against the model before it is loaded: its sample width, and its
/// targets against the loss (labels below the output width, or rows of values as wide).
pub(crate) fn check_dataset(graph: &Graph, data: &Dataset) -> Result<()> {
    let op = "load";
    if data.is_empty() {
        return Err(Error::shape(op, "a non-empty data set", "no samples"));
    }
    if data.width() != graph.inputs() {
        return Err(Error::shape(
            op,
            format!("samples of {} inputs", graph.inputs()),
            format!("{} inputs", data.width()),
        ));
    }
    if let (Some(wanted), Some(given)) = (graph.config.image, data.image())
        && wanted != given
    {
        return Err(Error::shape(op, format!("images of {wanted:?}"), format!("images of {given:?}")));
    }
    check_finite(op, "input", data.inputs(), data.width())?;
    // The targets as one batch of the whole set: the checks a step makes (kind, count, range,
    // finite values).
    graph.check_target(op, &data.target(), data.len())
}
