//! When a training step runs fused (`shaders/mlp.wgsl`: two launches) and how its plan binds
//! it. A graph of dense blocks up to 64 wide whose parameters share one flat buffer runs fused;
//! anything else, and any model whose fusion was turned off, runs layer by layer.

use super::plan::Shared;
use crate::gpu::{MlpLayer, MlpOptimizer, MlpShape, MlpTarget};
use crate::model::config::Optimizer;
use crate::model::graph::{Graph, Node};
use crate::{Dispatch, Gpu, GpuLabels, GpuTensor, Result};

/// The fused step's shape for `graph`, or why it has none (a sentence for
/// [`crate::model::Model::fused`]).
pub(crate) fn shape(graph: &Graph, shared: &Shared) -> std::result::Result<MlpShape, String> {
    if !graph.trains {
        return Err("the model does not train".into());
    }
    let mut layers = Vec::new();
    for node in graph.nodes(true) {
        let b = match node {
            Node::Block(b) if b.conv.is_none() => b,
            Node::Block(b) => return Err(format!("layer {} is a convolution", b.dense)),
            Node::Layer(l) => return Err(format!("layer {l} is not a dense layer, activation or dropout")),
        };
        let mut params = graph.params_of(b.dense);
        let offset = |p: usize| shared.params[p].value.offset() as usize / 4;
        let weight = params.next().expect("a dense layer's weight");
        layers.push(MlpLayer {
            inputs: graph.width(b.dense),
            outputs: graph.width(b.dense + 1),
            weight: offset(weight),
            bias: params.next().map(offset),
            activation: b.activation,
            dropout: b.dropout.map(|(l, p)| (p, graph.dropout_seed(l))),
        });
    }
    let shape = MlpShape::new(layers, graph.loss())?;
    let values: usize = shared.flat.iter().map(|f| f.values.len()).sum();
    if values > crate::gpu::MLP_MAX_PARAMS {
        return Err(format!(
            "its {values} parameter values (each tensor padded to the adapter's alignment) are more \
             than a fused step takes ({})",
            crate::gpu::MLP_MAX_PARAMS
        ));
    }
    if shared.flat[0].uniform.is_none() {
        return Err("the adapter's uniform bindings hold less than the fused step's 64 KiB".into());
    }
    Ok(shape)
}

/// A fused plan's own buffers: what `mlp_step` leaves for `mlp_update`.
#[derive(Debug)]
pub(crate) struct FusedBuffers {
    /// Rows per workgroup (see [`MlpShape::tile`]).
    tile: usize,
    scratch: GpuTensor,
    partials: GpuTensor,
}

impl FusedBuffers {
    pub(crate) fn new(gpu: &Gpu, shape: &MlpShape, rows: usize, flat: usize) -> Result<FusedBuffers> {
        let tile = MlpShape::tile(rows, crate::gpu::mlp_software(gpu));
        Ok(FusedBuffers {
            tile,
            scratch: gpu.zeros(1, shape.scratch_len(rows, tile))?,
            partials: gpu.zeros(1, shape.partials_len(rows, tile, flat))?,
        })
    }

    /// The step's two launches over the batch in `x` and its targets.
    pub(crate) fn bind(
        &self,
        gpu: &Gpu,
        graph: &Graph,
        shared: &Shared,
        shape: &MlpShape,
        x: &GpuTensor,
        target: (Option<&GpuLabels>, Option<&GpuTensor>),
    ) -> Result<Vec<Dispatch>> {
        let flat = &shared.flat[0];
        let target = match target {
            (Some(labels), _) => MlpTarget::Labels(labels),
            (None, Some(values)) => MlpTarget::Values(values),
            (None, None) => unreachable!("a training plan has its targets"),
        };
        let kernels = gpu.kernels();
        let uniform = flat.uniform.as_ref().expect("shape() takes only parameters in a uniform buffer");
        let step = kernels.mlp_step(
            shape,
            self.tile,
            &flat.values,
            uniform,
            x,
            target,
            &shared.dropout_counter,
            &self.scratch,
            &self.partials,
        )?;
        let optimizer = match graph.config.optimizer {
            Optimizer::Sgd { .. } => MlpOptimizer::Sgd,
            Optimizer::Momentum { .. } => MlpOptimizer::Momentum,
            Optimizer::Adam { .. } => MlpOptimizer::Adam,
            Optimizer::AdamW { .. } => MlpOptimizer::AdamW,
        };
        let grads = flat.grads.as_ref().expect("a model that trains has gradients");
        let update = kernels.mlp_update(
            shape,
            x.rows(),
            self.tile,
            optimizer,
            &shared.settings_row,
            &self.partials,
            grads,
            &flat.values,
            &flat.states,
        )?;
        Ok(vec![step, update])
    }
}
