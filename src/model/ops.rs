//! Every layer's forward and backward, written once against [`Ops`], the kernels both backends
//! provide. The CPU backend computes each op as it is called; the GPU backend binds each into
//! a `Dispatch` of its per-batch plan (bound once, recorded every step). Operands are named by
//! [`Slot`]s, which each backend maps to its own buffers, so nothing here knows either.
//!
//! A new layer is a [`Layer`] variant, its parameters and saved buffers in `graph.rs`, and
//! its two arms below; a new kernel is one method here with its two implementations.
//!
//! Dense layers run as [`Block`]s, with the activation and dropout after them. A block's ops
//! ([`Ops::dense`], [`Ops::dense_weight_grads`], [`Ops::dense_input_grad`]) have default
//! bodies made of the plain ops, which the CPU backend runs as they are, one textbook step at
//! a time; the GPU backend binds each as one matmul whose epilogue does the element-wise work
//! (`shaders/matmul_common.wgsl`), so a hidden layer is one launch forward and two backward.

use super::config::{Layer, Loss, Optimizer};
use super::graph::{Block, Graph, Node, Slot};
use crate::shape::{BatchNorm, Conv2dShape, MatmulForm, Pool2dShape};
use crate::{Activation, Result};

/// The kernels a layer is made of, with the same names as the GPU's ops and the CPU
/// reference. Each call computes (CPU) or binds (GPU) one op.
pub(crate) trait Ops {
    /// `out = A·B (+ bias)` in one of the three forms.
    fn matmul(&mut self, out: Slot, a: Slot, b: Slot, bias: Option<Slot>, form: MatmulForm) -> Result<()>;
    /// `out[j] = Σ_r x[r, j]`.
    fn sum_columns(&mut self, out: Slot, x: Slot) -> Result<()>;
    fn activation(&mut self, f: Activation, out: Slot, x: Slot) -> Result<()>;
    fn activation_backward(&mut self, f: Activation, dx: Slot, saved: Slot, dy: Slot) -> Result<()>;
    /// Softmax (or, with `log`, log-softmax) over each row.
    fn softmax(&mut self, log: bool, out: Slot, x: Slot) -> Result<()>;
    fn softmax_backward(&mut self, log: bool, dx: Slot, y: Slot, dy: Slot) -> Result<()>;
    /// Dropout with the mask of the current step (each backend keeps the step count).
    fn dropout(&mut self, out: Slot, mask: Slot, x: Slot, p: f32, seed: u32) -> Result<()>;
    fn dropout_backward(&mut self, dx: Slot, mask: Slot, dy: Slot) -> Result<()>;
    /// `y = conv2d(x; w) (+ b)`, one NCHW image per row.
    fn conv2d(&mut self, y: Slot, x: Slot, w: Slot, bias: Option<Slot>, shape: &Conv2dShape) -> Result<()>;
    fn conv2d_input_grad(&mut self, dx: Slot, dy: Slot, w: Slot, shape: &Conv2dShape) -> Result<()>;
    /// The weights' gradient and, given `db`, the bias's.
    fn conv2d_weight_grad(
        &mut self,
        dw: Slot,
        db: Option<Slot>,
        dy: Slot,
        x: Slot,
        shape: &Conv2dShape,
    ) -> Result<()>;
    /// Max pooling, keeping each window's winner in `argmax`.
    fn maxpool2d(&mut self, y: Slot, argmax: Slot, x: Slot, shape: &Pool2dShape) -> Result<()>;
    fn maxpool2d_backward(&mut self, dx: Slot, dy: Slot, argmax: Slot, shape: &Pool2dShape) -> Result<()>;
    fn avgpool2d(&mut self, y: Slot, x: Slot, shape: &Pool2dShape) -> Result<()>;
    fn avgpool2d_backward(&mut self, dx: Slot, dy: Slot, shape: &Pool2dShape) -> Result<()>;
    fn layer_norm_stats(&mut self, stats: Slot, x: Slot) -> Result<()>;
    fn layer_norm(&mut self, out: Slot, x: Slot, stats: Slot, gain: Slot, bias: Slot) -> Result<()>;
    fn layer_norm_backward(&mut self, dx: Slot, x: Slot, stats: Slot, gain: Slot, dy: Slot) -> Result<()>;
    fn layer_norm_gain_terms(&mut self, terms: Slot, x: Slot, stats: Slot, dy: Slot) -> Result<()>;
    /// Each channel's mean and 1/σ into `stats`: in training the batch's (moving the
    /// `running` mean and variance towards them), else from the running ones.
    fn batch_norm_stats(
        &mut self,
        stats: Slot,
        running: [Slot; 2],
        x: Slot,
        g: &BatchNorm,
        training: bool,
    ) -> Result<()>;
    fn batch_norm(
        &mut self,
        y: Slot,
        x: Slot,
        stats: Slot,
        gain: Slot,
        bias: Slot,
        g: &BatchNorm,
    ) -> Result<()>;
    /// The gain's and bias's gradients, and (given `dx`) the input's.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &mut self,
        dx: Option<Slot>,
        grads: [Slot; 2],
        x: Slot,
        stats: Slot,
        gain: Slot,
        dy: Slot,
        g: &BatchNorm,
    ) -> Result<()>;
    /// The per-sample (or per-value) loss terms of `y` against the batch's targets.
    fn loss(&mut self, loss: Loss, terms: Slot, y: Slot) -> Result<()>;
    /// The gradient of the mean loss with respect to `y`.
    fn loss_backward(&mut self, loss: Loss, dy: Slot, y: Slot) -> Result<()>;
    /// `out = mean of terms`.
    fn mean(&mut self, out: Slot, terms: Slot) -> Result<()>;
    /// Adds the step's loss to the running total, halting the updates at the first
    /// non-finite one: on the GPU a kernel; the CPU checks the loss on the host instead.
    fn watch_loss(&mut self, loss: Slot) -> Result<()>;
    /// Every parameter's optimizer update from its gradient: one parameter at a time on the
    /// CPU, one launch over the flat parameter buffers on the GPU.
    fn updates(&mut self, optimizer: Optimizer) -> Result<()>;

    /// A training step's loss: its mean into [`Slot::Loss`], the watch, and the gradient of
    /// the mean with respect to `y` into `dy`.
    fn loss_step(&mut self, loss: Loss, dy: Slot, y: Slot) -> Result<()> {
        separate_loss_step(self, loss, dy, y)
    }

    /// A block's forward: `z = x·Wᵀ + b`, then its activation and dropout.
    fn dense(&mut self, d: &DenseForward) -> Result<()> {
        self.matmul(d.z, d.x, d.w, d.bias, MatmulForm::ABt)?;
        let mut y = d.z;
        if let Some((f, a)) = d.activation {
            self.activation(f, a, y)?;
            y = a;
        }
        if let Some(drop) = d.dropout {
            self.dropout(drop.out, drop.mask, y, drop.p, drop.seed)?;
        }
        Ok(())
    }

    /// A convolution block's forward: `z = conv2d(x; w) (+ b)`, then its activation and
    /// dropout.
    fn conv_block(&mut self, d: &DenseForward, shape: &Conv2dShape) -> Result<()> {
        self.conv2d(d.z, d.x, d.w, d.bias, shape)?;
        let mut y = d.z;
        if let Some((f, a)) = d.activation {
            self.activation(f, a, y)?;
            y = a;
        }
        if let Some(drop) = d.dropout {
            self.dropout(drop.out, drop.mask, y, drop.p, drop.seed)?;
        }
        Ok(())
    }

    /// A block's parameter gradients from `dz`, the gradient of its product:
    /// `dW = dzᵀ·x`, `db` = the column sums of dz.
    fn dense_weight_grads(&mut self, dw: Slot, db: Option<Slot>, dz: Slot, x: Slot) -> Result<()> {
        self.matmul(dw, dz, x, None, MatmulForm::AtB)?;
        if let Some(db) = db {
            self.sum_columns(db, dz)?;
        }
        Ok(())
    }

    /// A block's input gradient `dx = dz·W`, carried on through the tail of the block below
    /// (its dropout, then its activation) when there is one.
    fn dense_input_grad(&mut self, dx: Slot, dz: Slot, w: Slot, below: Option<&Tail>) -> Result<()> {
        self.matmul(dx, dz, w, None, MatmulForm::AB)?;
        below.map_or(Ok(()), |tail| tail_backward(self, tail))
    }
}

/// A block's forward, as slots: the product `z`, the activation's output, dropout's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DenseForward {
    pub(crate) x: Slot,
    pub(crate) w: Slot,
    pub(crate) bias: Option<Slot>,
    pub(crate) z: Slot,
    /// The activation and its output.
    pub(crate) activation: Option<(Activation, Slot)>,
    pub(crate) dropout: Option<DropoutStage>,
    /// Whether a backward follows, which reads what the activation saved.
    pub(crate) training: bool,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct DropoutStage {
    pub(crate) out: Slot,
    pub(crate) mask: Slot,
    pub(crate) p: f32,
    pub(crate) seed: u32,
}

impl DenseForward {
    /// The block's output.
    pub(crate) fn out(&self) -> Slot {
        self.dropout.map(|d| d.out).or(self.activation.map(|(_, a)| a)).unwrap_or(self.z)
    }
}

/// The backward through a block's tail, from the gradient of its output to that of its
/// product: dropout's `dx = dy ⊙ mask`, then the activation's `dx = f'(saved) ⊙ dy`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tail {
    /// The mask, and the gradients of dropout's output and input.
    pub(crate) dropout: Option<(Slot, Slot, Slot)>,
    /// The activation, what it saved, and the gradients of its output and input.
    pub(crate) activation: Option<(Activation, Slot, Slot, Slot)>,
    /// The gradient of the block's product (where the tail ends).
    pub(crate) dz: Slot,
}

impl Tail {
    fn of(b: &Block) -> Tail {
        let act = b.dense + 1;
        Tail {
            dropout: b.dropout.map(|(l, _)| (Slot::Saved(l), Slot::Grad(l + 1), Slot::Grad(l))),
            activation: b.activation.map(|f| {
                let saved = if f.backward_reads_output() { Slot::Act(act + 1) } else { Slot::Act(act) };
                (f, saved, Slot::Grad(act + 1), Slot::Grad(act))
            }),
            dz: Slot::Grad(act),
        }
    }
}

/// [`Ops::loss_step`] as its four ops.
pub(crate) fn separate_loss_step<O: Ops + ?Sized>(ops: &mut O, loss: Loss, dy: Slot, y: Slot) -> Result<()> {
    ops.loss(loss, Slot::Terms, y)?;
    ops.mean(Slot::Loss, Slot::Terms)?;
    ops.watch_loss(Slot::Loss)?;
    ops.loss_backward(loss, dy, y)
}

fn tail_backward<O: Ops + ?Sized>(ops: &mut O, tail: &Tail) -> Result<()> {
    if let Some((mask, dy, dx)) = tail.dropout {
        ops.dropout_backward(dx, mask, dy)?;
    }
    if let Some((f, saved, dy, dx)) = tail.activation {
        ops.activation_backward(f, dx, saved, dy)?;
    }
    Ok(())
}

/// A block's forward ops, as slots.
fn dense_forward(graph: &Graph, b: &Block, training: bool) -> DenseForward {
    let mut params = graph.params_of(b.dense).map(Slot::Param);
    let (z, a) = (Slot::Act(b.dense + 1), Slot::Act(b.dense + 2));
    DenseForward {
        x: Slot::Act(b.dense),
        w: params.next().expect("a dense layer's weight"),
        bias: params.next(),
        z,
        activation: b.activation.map(|f| (f, a)),
        dropout: b.dropout.map(|(l, p)| DropoutStage {
            out: Slot::Act(l + 1),
            mask: Slot::Saved(l),
            p,
            seed: graph.dropout_seed(l),
        }),
        training,
    }
}

/// A node's forward.
fn forward_node(ops: &mut impl Ops, graph: &Graph, node: &Node, training: bool) -> Result<()> {
    match node {
        Node::Block(b) => match &b.conv {
            Some(shape) => ops.conv_block(&dense_forward(graph, b, training), shape),
            None => ops.dense(&dense_forward(graph, b, training)),
        },
        Node::Layer(l) => forward(ops, graph, *l, training),
    }
}

/// The backward of `nodes[i]`. A block whose gradient came from the block above through
/// [`Ops::dense_input_grad`] has had its tail run there; any other starts with its tail.
fn backward_node(ops: &mut impl Ops, graph: &Graph, nodes: &[Node], i: usize) -> Result<()> {
    let b = match &nodes[i] {
        Node::Layer(l) => return backward(ops, graph, *l),
        Node::Block(b) => b,
    };
    let tail = Tail::of(b);
    // A dense block above took this block's tail into its input gradient's epilogue.
    if !matches!(nodes.get(i + 1), Some(Node::Block(Block { conv: None, .. }))) {
        tail_backward(ops, &tail)?;
    }
    let mut params = graph.params_of(b.dense);
    let w = params.next().expect("a dense layer's weight");
    if let Some(shape) = &b.conv {
        ops.conv2d_weight_grad(
            Slot::ParamGrad(w),
            params.next().map(Slot::ParamGrad),
            tail.dz,
            Slot::Act(b.dense),
            shape,
        )?;
        if b.dense > 0 {
            ops.conv2d_input_grad(Slot::Grad(b.dense), tail.dz, Slot::Param(w), shape)?;
        }
        return Ok(());
    }
    ops.dense_weight_grads(
        Slot::ParamGrad(w),
        params.next().map(Slot::ParamGrad),
        tail.dz,
        Slot::Act(b.dense),
    )?;
    if b.dense == 0 {
        return Ok(()); // nothing below the input needs a gradient
    }
    let below = match i.checked_sub(1).map(|j| &nodes[j]) {
        Some(Node::Block(c)) => Some(Tail::of(c)),
        _ => None,
    };
    ops.dense_input_grad(Slot::Grad(b.dense), tail.dz, Slot::Param(w), below.as_ref())
}

/// Layer `l`'s forward (any but a dense layer), from activation l to activation l + 1.
/// Dropout is the identity outside training, where its output is stored as its input:
/// nothing to run.
pub(crate) fn forward(ops: &mut impl Ops, graph: &Graph, l: usize, training: bool) -> Result<()> {
    let (x, y) = (Slot::Act(l), Slot::Act(l + 1));
    match graph.layers()[l] {
        Layer::Dense { .. } | Layer::Conv2d { .. } => {
            unreachable!("dense layers and convolutions run as blocks (Graph::nodes)")
        }
        Layer::Activation(f) => ops.activation(f, y, x),
        Layer::Softmax => ops.softmax(false, y, x),
        Layer::LogSoftmax => ops.softmax(true, y, x),
        Layer::Dropout(p) if training => ops.dropout(y, Slot::Saved(l), x, p, graph.dropout_seed(l)),
        Layer::Dropout(_) => Ok(()),
        Layer::MaxPool2d(ref shape) => ops.maxpool2d(y, Slot::Saved(l), x, shape),
        Layer::AvgPool2d(ref shape) => ops.avgpool2d(y, x, shape),
        Layer::Flatten => Ok(()), // its output is its input (`Graph::storage`)
        Layer::BatchNorm2d(ref g) => {
            let [gain, bias] = pair(graph.params_of(l).map(Slot::Param));
            let running = pair(graph.buffers_of(l).map(Slot::Buffer));
            ops.batch_norm_stats(Slot::Saved(l), running, x, g, training)?;
            ops.batch_norm(y, x, Slot::Saved(l), gain, bias, g)
        }
        Layer::LayerNorm => {
            let (gain, bias) = (
                Slot::Param(graph.param("forward", l, "weight")?),
                Slot::Param(graph.param("forward", l, "bias")?),
            );
            ops.layer_norm_stats(Slot::Saved(l), x)?;
            ops.layer_norm(y, x, Slot::Saved(l), gain, bias)
        }
    }
}

/// Layer `l`'s backward (any but a dense layer): from the gradient of activation l + 1, its
/// parameters' gradients and (above the first layer) the gradient of activation l.
pub(crate) fn backward(ops: &mut impl Ops, graph: &Graph, l: usize) -> Result<()> {
    let (x, y, dy, dx) = (Slot::Act(l), Slot::Act(l + 1), Slot::Grad(l + 1), Slot::Grad(l));
    let below = l > 0; // nothing below the input needs a gradient
    match graph.layers()[l] {
        Layer::Dense { .. } | Layer::Conv2d { .. } => {
            unreachable!("dense layers and convolutions run as blocks (Graph::nodes)")
        }
        Layer::BatchNorm2d(ref g) => {
            let [gain, bias] = pair(graph.params_of(l));
            let grads = [Slot::ParamGrad(gain), Slot::ParamGrad(bias)];
            ops.batch_norm_backward(below.then_some(dx), grads, x, Slot::Saved(l), Slot::Param(gain), dy, g)
        }
        Layer::LayerNorm => {
            let (gain, bias) = (graph.param("backward", l, "weight")?, graph.param("backward", l, "bias")?);
            let stats = Slot::Saved(l);
            ops.layer_norm_gain_terms(Slot::Scratch(l), x, stats, dy)?;
            ops.sum_columns(Slot::ParamGrad(gain), Slot::Scratch(l))?;
            ops.sum_columns(Slot::ParamGrad(bias), dy)?;
            if below {
                ops.layer_norm_backward(dx, x, stats, Slot::Param(gain), dy)?;
            }
            Ok(())
        }
        _ if !below => Ok(()),
        Layer::Activation(f) => {
            ops.activation_backward(f, dx, if f.backward_reads_output() { y } else { x }, dy)
        }
        Layer::Softmax => ops.softmax_backward(false, dx, y, dy),
        Layer::LogSoftmax => ops.softmax_backward(true, dx, y, dy),
        Layer::Dropout(_) => ops.dropout_backward(dx, Slot::Saved(l), dy),
        Layer::MaxPool2d(ref shape) => ops.maxpool2d_backward(dx, dy, Slot::Saved(l), shape),
        Layer::AvgPool2d(ref shape) => ops.avgpool2d_backward(dx, dy, shape),
        Layer::Flatten => Ok(()), // its input's gradient is its output's (`Graph::storage`)
    }
}

/// A layer's two parameters (weight, bias) or buffers (running mean, variance), in order.
fn pair<T>(mut items: impl Iterator<Item = T>) -> [T; 2] {
    let mut next = || items.next().expect("the graph gives a batch norm two of each");
    [next(), next()]
}

/// The batch's mean loss into [`Slot::Loss`], from the trunk's output (a fused softmax's
/// input; in evaluation the whole net ran, and that is one activation back).
pub(crate) fn loss(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    ops.loss(graph.loss(), Slot::Terms, Slot::Act(graph.trunk))?;
    ops.mean(Slot::Loss, Slot::Terms)
}

/// The forward of a training step (to the loss's input).
pub(crate) fn training_forward(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    graph.nodes(true).iter().try_for_each(|node| forward_node(ops, graph, node, true))
}

/// A training step's forward, loss, loss watch and backward (not the updates).
pub(crate) fn training_step(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    training_forward(ops, graph)?;
    ops.loss_step(graph.loss(), Slot::Grad(graph.trunk), Slot::Act(graph.trunk))?;
    let nodes = graph.nodes(true);
    (0..nodes.len()).rev().try_for_each(|i| backward_node(ops, graph, &nodes, i))
}

/// Every layer's forward outside training.
pub(crate) fn inference(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    graph.nodes(false).iter().try_for_each(|node| forward_node(ops, graph, node, false))
}

/// Every parameter's optimizer update.
pub(crate) fn updates(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    ops.updates(graph.config.optimizer)
}
