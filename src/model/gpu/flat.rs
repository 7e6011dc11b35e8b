//! A model's parameters in a few flat buffers: one for every value, one for every gradient,
//! one per optimizer state, each parameter a view at its own aligned offset. The optimizer
//! then updates them all in one launch per buffer, as PyTorch's fused ("foreach") optimizers
//! do, instead of one launch per tensor. The gaps between views hold zeros with zero
//! gradients, which every update keeps at zero.

use crate::model::graph::Graph;
use crate::{Gpu, GpuTensor, Result};

/// One parameter's tensors on the GPU: its values, gradient and optimizer state (no gradient
/// and no state in a model that does not train).
#[derive(Debug)]
pub(crate) struct ParamTensors {
    pub(crate) value: GpuTensor,
    pub(crate) grad: Option<GpuTensor>,
    pub(crate) state: Vec<GpuTensor>,
}

/// One group of parameters that a single binding can hold: the flat tensors (1, len).
#[derive(Debug)]
pub(crate) struct Flat {
    pub(crate) values: GpuTensor,
    /// The buffer `values` starts, when it is the model's one group and fits a uniform
    /// binding: the fused MLP step reads the parameters through it (`gpu/mlp.rs`).
    pub(crate) uniform: Option<GpuTensor>,
    /// None in a model that does not train.
    pub(crate) grads: Option<GpuTensor>,
    pub(crate) states: Vec<GpuTensor>,
}

/// Lays the parameters out in as few flat groups as the adapter's binding limit allows
/// (one, unless a model's parameters pass 128 MiB on lavapipe), uploads `values` and returns
/// each parameter's views and the groups.
pub(crate) fn layout(
    gpu: &Gpu,
    graph: &Graph,
    values: &[Vec<f32>],
) -> Result<(Vec<ParamTensors>, Vec<Flat>)> {
    let align = gpu.view_alignment();
    let limits = gpu.limits();
    let most = (limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / 4) as usize;
    // Each parameter's group and first element, in order; `check_fits` made sure each fits
    // a binding alone.
    let mut places = Vec::new();
    let mut lens: Vec<usize> = Vec::new(); // none for a model without parameters
    for param in &graph.params {
        let len = param.len().next_multiple_of(align);
        if lens.last().is_none_or(|&last| last + len > most) {
            lens.push(0);
        }
        let group = lens.len() - 1;
        places.push((group, lens[group]));
        lens[group] += len;
    }
    let states = graph.state_names().len();
    // Only a model that may train fused pays for the uniform buffer's 64 KiB.
    let dense = graph.layers().iter().all(|l| {
        use crate::model::config::Layer::*;
        matches!(l, Dense { .. } | Activation(_) | Dropout(_) | Softmax | LogSoftmax)
    });
    let narrow = (0..=graph.layers().len()).all(|i| graph.width(i) <= crate::gpu::MLP_MAX_WIDTH);
    let uniform = graph.trains
        && dense
        && narrow
        && lens.len() == 1
        && lens[0] <= crate::gpu::MLP_MAX_PARAMS
        && gpu.limits().max_uniform_buffer_binding_size >= 4 * crate::gpu::MLP_UNIFORM_FLOATS as u64;
    let groups = lens
        .iter()
        .map(|&len| {
            let uniform =
                uniform.then(|| gpu.zeros_uniform(1, crate::gpu::MLP_UNIFORM_FLOATS)).transpose()?;
            Ok(Flat {
                values: match &uniform {
                    Some(whole) => gpu.view(whole, 0, 1, len)?,
                    None => gpu.zeros(1, len)?,
                },
                uniform,
                grads: graph.trains.then(|| gpu.zeros(1, len)).transpose()?,
                states: (0..states).map(|_| gpu.zeros(1, len)).collect::<Result<_>>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let params = graph
        .params
        .iter()
        .zip(values)
        .zip(&places)
        .map(|((param, values), &(g, first))| {
            let (group, (rows, cols)) = (&groups[g], (param.rows, param.cols));
            let value = gpu.view(&group.values, first, rows, cols)?;
            gpu.write(&value, values)?;
            Ok(ParamTensors {
                value,
                grad: group.grads.as_ref().map(|grads| gpu.view(grads, first, rows, cols)).transpose()?,
                state: group.states.iter().map(|s| gpu.view(s, first, rows, cols)).collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((params, groups))
}
