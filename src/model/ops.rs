//! Every layer's forward and backward, written once against [`Ops`], the kernels both backends
//! provide. The CPU backend computes each op as it is called; the GPU backend binds each into
//! a `Dispatch` of its per-batch plan (bound once, recorded every step). Operands are named by
//! [`Slot`]s, which each backend maps to its own buffers, so nothing here knows either.
//!
//! A new layer is a [`Layer`] variant, its parameters and saved buffers in `graph.rs`, and
//! its two arms below; a new kernel is one method here with its two implementations. A fused
//! node (a dense layer with its bias and activation in one kernel, say) is a method like any
//! other: the plan only holds the dispatches it is given.

use super::config::{Layer, Loss, Optimizer};
use super::graph::{Graph, Slot};
use crate::shape::MatmulForm;
use crate::{Activation, Result};

/// The kernels a layer is made of, with the same names as the WGSL entry points and the CPU
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
    fn layer_norm_stats(&mut self, stats: Slot, x: Slot) -> Result<()>;
    fn layer_norm(&mut self, out: Slot, x: Slot, stats: Slot, gain: Slot, bias: Slot) -> Result<()>;
    fn layer_norm_backward(&mut self, dx: Slot, x: Slot, stats: Slot, gain: Slot, dy: Slot) -> Result<()>;
    fn layer_norm_gain_terms(&mut self, terms: Slot, x: Slot, stats: Slot, dy: Slot) -> Result<()>;
    /// The per-sample (or per-value) loss terms of `y` against the batch's targets.
    fn loss(&mut self, loss: Loss, terms: Slot, y: Slot) -> Result<()>;
    /// The gradient of the mean loss with respect to `y`.
    fn loss_backward(&mut self, loss: Loss, dy: Slot, y: Slot) -> Result<()>;
    /// `out = mean of terms`.
    fn mean(&mut self, out: Slot, terms: Slot) -> Result<()>;
    /// Adds the step's loss to the running total, halting the updates at the first
    /// non-finite one: on the GPU a kernel; the CPU checks the loss on the host instead.
    fn watch_loss(&mut self, loss: Slot) -> Result<()>;
    /// One optimizer update of parameter p from its gradient.
    fn update(&mut self, optimizer: Optimizer, p: usize) -> Result<()>;
}

/// Layer `l`'s forward, from activation l to activation l + 1. Dropout is the identity
/// outside training, where its output is stored as its input: nothing to run.
pub(crate) fn forward(ops: &mut impl Ops, graph: &Graph, l: usize, training: bool) -> Result<()> {
    let (x, y) = (Slot::Act(l), Slot::Act(l + 1));
    let mut params = graph.params_of(l).map(Slot::Param);
    match graph.layers()[l] {
        Layer::Dense { .. } => {
            let w = params.next().expect("a dense layer's weight");
            ops.matmul(y, x, w, params.next(), MatmulForm::ABt)
        }
        Layer::Activation(f) => ops.activation(f, y, x),
        Layer::Softmax => ops.softmax(false, y, x),
        Layer::LogSoftmax => ops.softmax(true, y, x),
        Layer::Dropout(p) if training => ops.dropout(y, Slot::Saved(l), x, p, graph.dropout_seed(l)),
        Layer::Dropout(_) => Ok(()),
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

/// Layer `l`'s backward: from the gradient of activation l + 1, its parameters' gradients
/// and (above the first layer) the gradient of activation l.
pub(crate) fn backward(ops: &mut impl Ops, graph: &Graph, l: usize) -> Result<()> {
    let (x, y, dy, dx) = (Slot::Act(l), Slot::Act(l + 1), Slot::Grad(l + 1), Slot::Grad(l));
    let below = l > 0; // nothing below the input needs a gradient
    match graph.layers()[l] {
        Layer::Dense { .. } => {
            let mut params = graph.params_of(l);
            let w = params.next().expect("a dense layer's weight");
            // y = x·Wᵀ + b: dW = dyᵀ·x, db = column sums of dy, dx = dy·W.
            ops.matmul(Slot::ParamGrad(w), dy, x, None, MatmulForm::AtB)?;
            if let Some(b) = params.next() {
                ops.sum_columns(Slot::ParamGrad(b), dy)?;
            }
            if below {
                ops.matmul(dx, dy, Slot::Param(w), None, MatmulForm::AB)?;
            }
            Ok(())
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
    }
}

/// The batch's mean loss into [`Slot::Loss`], from the trunk's output (a fused softmax's
/// input; in evaluation the whole net ran, and that is one activation back).
pub(crate) fn loss(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    ops.loss(graph.config.loss, Slot::Terms, Slot::Act(graph.trunk))?;
    ops.mean(Slot::Loss, Slot::Terms)
}

/// A training step's forward, loss, loss watch and backward (not the updates).
pub(crate) fn training_step(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    for l in 0..graph.trunk {
        forward(ops, graph, l, true)?;
    }
    loss(ops, graph)?;
    ops.watch_loss(Slot::Loss)?;
    ops.loss_backward(graph.config.loss, Slot::Grad(graph.trunk), Slot::Act(graph.trunk))?;
    for l in (0..graph.trunk).rev() {
        backward(ops, graph, l)?;
    }
    Ok(())
}

/// Every layer's forward outside training.
pub(crate) fn inference(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    (0..graph.layers().len()).try_for_each(|l| forward(ops, graph, l, false))
}

/// Every parameter's optimizer update.
pub(crate) fn updates(ops: &mut impl Ops, graph: &Graph) -> Result<()> {
    (0..graph.params.len()).try_for_each(|p| ops.update(graph.config.optimizer, p))
}
