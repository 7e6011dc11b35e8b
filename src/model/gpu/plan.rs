//! A model's plan for one batch size: every activation, gradient and loss buffer it needs,
//! and the forward, loss and backward kernels bound to them, built once on first use.

use super::Dense;
use crate::model::cpu::dropout_seed;
use crate::model::{Graph, Layer, Loss};
use crate::shape::MatmulForm;
use crate::{Dispatch, Gpu, GpuLabels, GpuTensor, Result};

/// Buffers and bound kernels for one batch size, in training or in evaluation.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) x: GpuTensor,
    pub(super) targets: Option<GpuTensor>,
    pub(super) labels: Option<GpuLabels>,
    /// Activation i lives in `tensors[act[i]]`; in evaluation a dropout layer's output is its
    /// input, so they share a slot.
    pub(super) tensors: Vec<GpuTensor>,
    pub(super) act: Vec<usize>,
    /// The mean loss of the batch lives here.
    pub(super) loss: GpuTensor,
    /// Forward, then (training) loss, its watch, backward: everything but the updates.
    pub(super) dispatches: Vec<Dispatch>,
    /// The loss and its mean, for evaluation (not part of `dispatches`, which predicts).
    pub(super) loss_dispatches: Vec<Dispatch>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_plan(
    gpu: &Gpu,
    graph: &Graph,
    dense: &[Dense],
    settings_row: &GpuTensor,
    counter: &GpuTensor,
    rows: usize,
    training: bool,
) -> Result<Plan> {
    let layers = &graph.config.layers;
    let x = gpu.zeros(rows, graph.inputs())?;
    let mut tensors = Vec::new();
    let mut act = vec![usize::MAX]; // the input is `x`, kept apart; see `get` below
    let mut masks: Vec<Option<GpuTensor>> = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        if matches!(layer, Layer::Dropout(_)) && !training {
            act.push(act[l]);
            masks.push(None);
            continue;
        }
        tensors.push(gpu.zeros(rows, graph.width(l + 1))?);
        act.push(tensors.len() - 1);
        let mask =
            matches!(layer, Layer::Dropout(_)).then(|| gpu.zeros(rows, graph.width(l + 1))).transpose()?;
        masks.push(mask);
    }
    let get = |i: usize| if act[i] == usize::MAX { &x } else { &tensors[act[i]] };

    // Forward: in training up to the loss's input, in evaluation every layer.
    let end = if training { graph.trunk } else { layers.len() };
    let mut dispatches = Vec::new();
    for (l, layer) in layers[..end].iter().enumerate() {
        let dropout = masks[l].as_ref().map(|mask| (mask, counter));
        dispatches.extend(layer_forward(gpu, graph, dense, l, layer, get(l), get(l + 1), dropout)?);
    }

    // The loss, on the trunk's output (a fused softmax's input).
    let y = get(graph.trunk);
    let loss = graph.config.loss;
    let (targets, labels) = if loss.takes_labels() {
        (None, Some(gpu.upload_labels(&vec![0; rows], y.cols())?))
    } else {
        (Some(gpu.zeros(rows, y.cols())?), None)
    };
    let terms = if loss.takes_labels() { gpu.zeros(rows, 1)? } else { gpu.zeros(rows, y.cols())? };
    let d_y = gpu.zeros(rows, y.cols())?;
    let (forward, backward) = match (loss, &targets, &labels) {
        (Loss::SoftmaxCrossEntropy, _, Some(l)) => (
            gpu.softmax_cross_entropy_forward(&terms, y, l)?,
            gpu.softmax_cross_entropy_backward(&d_y, y, l)?,
        ),
        (Loss::Nll, _, Some(l)) => (gpu.nll_forward(&terms, y, l)?, gpu.nll_backward(&d_y, y, l)?),
        (Loss::Mse, Some(t), _) => (gpu.mse_forward(&terms, y, t)?, gpu.mse_backward(&d_y, y, t)?),
        (Loss::Mae, Some(t), _) => (gpu.mae_forward(&terms, y, t)?, gpu.mae_backward(&d_y, y, t)?),
        (Loss::BinaryCrossEntropy, Some(t), _) => {
            (gpu.bce_forward(&terms, y, t)?, gpu.bce_backward(&d_y, y, t)?)
        }
        _ => unreachable!("label losses get labels, value losses targets"),
    };
    let mean = 1.0 / terms.len() as f32;
    let loss_out = gpu.zeros(1, 1)?;
    let mut loss_dispatches = Vec::new();
    // Gradient buffers for activations 1..trunk (the trunk's own is `d_y`).
    let grads = if training {
        (1..graph.trunk).map(|i| gpu.zeros(rows, graph.width(i))).collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    if training {
        dispatches.push(forward);
        dispatches.push(gpu.sum_all(&loss_out, &terms, mean)?);
        dispatches.push(gpu.watch_loss(settings_row, &loss_out)?);
        dispatches.push(backward);
        backward_pass(gpu, graph, dense, &get, &masks, &d_y, &grads, &mut dispatches)?;
    } else {
        loss_dispatches.push(forward);
        loss_dispatches.push(gpu.sum_all(&loss_out, &terms, mean)?);
    }
    // Keep every buffer the bindings use alive (and counted) with the plan.
    tensors.extend([terms, d_y]);
    tensors.extend(grads);
    tensors.extend(masks.into_iter().flatten());
    Ok(Plan { x, targets, labels, tensors, act, loss: loss_out, dispatches, loss_dispatches })
}

/// Binds layer `l`'s forward pass from `input` to `output`. Dropout draws its mask when given
/// one (training) and is the identity otherwise: then there is nothing to bind.
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_forward(
    gpu: &Gpu,
    graph: &Graph,
    dense: &[Dense],
    l: usize,
    layer: &Layer,
    input: &GpuTensor,
    output: &GpuTensor,
    dropout: Option<(&GpuTensor, &GpuTensor)>,
) -> Result<Option<Dispatch>> {
    Ok(Some(match layer {
        Layer::Dense { .. } => {
            let d = &dense[graph.dense_index[l].expect("a dense layer")];
            gpu.matmul_forward(output, input, &d.w, d.b.as_ref(), MatmulForm::ABt)?
        }
        Layer::Relu => gpu.relu_forward(output, input)?,
        Layer::Sigmoid => gpu.sigmoid_forward(output, input)?,
        Layer::Tanh => gpu.tanh_forward(output, input)?,
        Layer::Softmax => gpu.softmax_forward(output, input)?,
        Layer::LogSoftmax => gpu.log_softmax_forward(output, input)?,
        Layer::Dropout(p) => match dropout {
            Some((mask, counter)) => {
                gpu.dropout_forward(output, mask, input, *p, dropout_seed(graph.config.seed, l), counter)?
            }
            None => return Ok(None),
        },
    }))
}

#[allow(clippy::too_many_arguments)]
fn backward_pass<'a>(
    gpu: &Gpu,
    graph: &Graph,
    dense: &[Dense],
    get: &dyn Fn(usize) -> &'a GpuTensor,
    masks: &[Option<GpuTensor>],
    d_y: &GpuTensor,
    grads: &[GpuTensor],
    dispatches: &mut Vec<Dispatch>,
) -> Result<()> {
    // d(i) is the gradient of activation i: grads[i − 1] below the trunk, d_y at it.
    let d = |i: usize| if i == graph.trunk { d_y } else { &grads[i - 1] };
    for l in (0..graph.trunk).rev() {
        let (input, output, d_out) = (get(l), get(l + 1), d(l + 1));
        let layer = &graph.config.layers[l];
        if let Layer::Dense { .. } = layer {
            let p = &dense[graph.dense_index[l].expect("a dense layer")];
            // out = X·Wᵀ: dW = dOutᵀ·X, dX = dOut·W, dBias = column sums of dOut.
            dispatches.push(gpu.matmul_forward(&p.gw, d_out, input, None, MatmulForm::AtB)?);
            if let Some(gb) = &p.gb {
                dispatches.push(gpu.sum_columns(gb, d_out, 1.0)?);
            }
            if l > 0 {
                dispatches.push(gpu.matmul_forward(d(l), d_out, &p.w, None, MatmulForm::AB)?);
            }
            continue;
        }
        if l == 0 {
            continue; // nothing below the input needs a gradient
        }
        let d_in = d(l);
        dispatches.push(match layer {
            Layer::Relu => gpu.relu_backward(d_in, input, d_out)?,
            Layer::Sigmoid => gpu.sigmoid_backward(d_in, output, d_out)?,
            Layer::Tanh => gpu.tanh_backward(d_in, output, d_out)?,
            Layer::Softmax => gpu.softmax_backward(d_in, output, d_out)?,
            Layer::LogSoftmax => gpu.log_softmax_backward(d_in, output, d_out)?,
            Layer::Dropout(_) => gpu.dropout_backward(d_in, masks[l].as_ref().expect("a mask"), d_out)?,
            Layer::Dense { .. } => unreachable!("handled above"),
        });
    }
    Ok(())
}
