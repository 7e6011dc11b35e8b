//! Checkpoints in the safetensors format, so a model saved here opens in PyTorch or NumPy and
//! weights from there load here. Tensor names follow PyTorch's `nn.Sequential`, numbered by the
//! layer's index in the config:
//!
//! - `layers.{i}.weight`: f32 `(out, in)`; `layers.{i}.bias`: f32 `(out)`; a layer norm's
//!   gain and bias as `layers.{i}.weight` and `layers.{i}.bias`, f32 `(width)`
//! - `optimizer.layers.{i}.weight.{velocity | m | v}` and likewise `.bias.…`: the optimizer's
//!   state (momentum's velocity, Adam's moments), so training resumes where it stopped
//! - metadata `steps`: training steps taken (Adam's bias correction and dropout's masks
//!   continue from it), and `format`: `wgpu-nn 1`. Dropout masks also depend on the model's
//!   seed: resume with the same config to draw the same masks.
//!
//! Loading needs every `layers.*` tensor with the right shape; optimizer state is restored when
//! present (a file exported from PyTorch has none, and training then starts its state afresh).
//! Saving is atomic and durable (`atomic_file.rs`): a crash midway leaves the old checkpoint
//! whole, and saves from several threads or processes at once never tear each other's file.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::graph::Graph;
use crate::data::idx::data_error;
use crate::{Result, atomic_file};

/// Which tensor of a parameter an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Value,
    /// The optimizer's state `k` (see `graph::state_names`).
    State(usize),
}

/// One tensor of a checkpoint: its name, shape, and where it lives in the model.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    /// The parameter's index in the graph.
    pub(crate) param: usize,
    pub(crate) which: Which,
}

/// What a backend gives and takes for checkpoints.
pub(crate) trait Checkpointed {
    fn read_entry(&self, param: usize, which: Which) -> Result<Vec<f32>>;
    fn write_entry(&mut self, param: usize, which: Which, values: &[f32]) -> Result<()>;
    fn steps(&self) -> u32;
    fn set_steps(&mut self, steps: u32) -> Result<()>;
}

/// Every tensor a checkpoint of this model holds, in a fixed order: each layer's parameters,
/// then their optimizer state.
pub(crate) fn layout(graph: &Graph) -> Vec<Entry> {
    let states = graph.state_names();
    let mut entries = Vec::new();
    for l in 0..graph.layers().len() {
        for p in graph.params_of(l) {
            let param = &graph.params[p];
            let name = format!("layers.{l}.{}", param.name);
            entries.push(Entry { name, shape: param.dims(), param: p, which: Which::Value });
        }
        for p in graph.params_of(l) {
            let param = &graph.params[p];
            for (k, state) in states.iter().enumerate() {
                let name = format!("optimizer.layers.{l}.{}.{state}", param.name);
                entries.push(Entry { name, shape: param.dims(), param: p, which: Which::State(k) });
            }
        }
    }
    entries
}

pub(crate) fn save(model: &dyn Checkpointed, graph: &Graph, path: &Path) -> Result<()> {
    let entries = layout(graph);
    let values: Vec<Vec<f32>> =
        entries.iter().map(|e| model.read_entry(e.param, e.which)).collect::<Result<_>>()?;
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .zip(&values)
        .map(|(e, v)| {
            let view = TensorView::new(Dtype::F32, e.shape.clone(), bytemuck::cast_slice(v))
                .map_err(|err| data_error(path, format!("tensor {}: {err}", e.name)))?;
            Ok((e.name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), "wgpu-nn 1".to_string()),
        ("steps".to_string(), model.steps().to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| data_error(path, e.to_string()))?;
    atomic_file::write(path, &bytes)
}

pub(crate) fn load(model: &mut dyn Checkpointed, graph: &Graph, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    load_bytes(model, graph, &bytes, path)
}

/// Loads checkpoint `bytes`; errors name `path`, where they came from.
pub(crate) fn load_bytes(
    model: &mut dyn Checkpointed,
    graph: &Graph,
    bytes: &[u8],
    path: &Path,
) -> Result<()> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| data_error(path, format!("not a safetensors file: {e}")))?;
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| data_error(path, format!("not a safetensors file: {e}")))?;
    // Check everything before changing anything, so a bad file leaves the model as it was.
    let mut found = Vec::new();
    for entry in layout(graph) {
        let tensor = match file.tensor(&entry.name) {
            Ok(tensor) => tensor,
            Err(_) if entry.name.starts_with("optimizer.") => continue,
            Err(_) => return Err(data_error(path, format!("missing tensor {}", entry.name))),
        };
        if tensor.dtype() != Dtype::F32 || tensor.shape() != entry.shape.as_slice() {
            return Err(data_error(
                path,
                format!(
                    "tensor {} is {:?} {:?}, expected F32 {:?}",
                    entry.name,
                    tensor.dtype(),
                    tensor.shape(),
                    entry.shape
                ),
            ));
        }
        // The data need not be 4-byte aligned in the file: decode rather than cast.
        let values: Vec<f32> =
            tensor.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        found.push((entry, values));
    }
    let steps = match metadata.metadata().as_ref().and_then(|m| m.get("steps")) {
        Some(steps) => Some(
            steps
                .parse::<u32>()
                .map_err(|_| data_error(path, format!("metadata steps {steps:?} is not a count")))?,
        ),
        None => None,
    };
    for (entry, values) in found {
        model.write_entry(entry.param, entry.which, &values)?;
    }
    if let Some(steps) = steps {
        model.set_steps(steps)?;
    }
    Ok(())
}
