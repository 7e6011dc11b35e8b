//! Checkpoints in the safetensors format, so a model saved here opens in PyTorch or NumPy and
//! weights from there load here. Tensor names follow PyTorch's `nn.Sequential`, numbered by the
//! layer's index in the config (PyTorch numbers every module, activations too, as the config
//! does):
//!
//! - `layers.{i}.weight`: f32 `(out, in)`; `layers.{i}.bias`: f32 `(out)`; a layer norm's
//!   gain and bias as `layers.{i}.weight` and `layers.{i}.bias`, f32 `(width)`
//! - `optimizer.layers.{i}.weight.{velocity | m | v}` and likewise `.bias.…`: the optimizer's
//!   state (momentum's velocity, Adam's moments), so training resumes where it stopped
//! - metadata `format`: `wgpu-nn 1`; `steps`: training steps taken (Adam's bias correction
//!   and dropout's masks continue from it); `config`: the [`ModelConfig`] as JSON, from which
//!   `Model::from_checkpoint` rebuilds the model (a layer's `given` starting weights are
//!   written as `he`: the weights themselves are the tensors). Dropout masks also depend on
//!   the model's seed, which the config holds.
//!
//! Loading takes the parameters under any one prefix: `layers.{i}.weight` as saved here,
//! `{i}.weight` as a plain `nn.Sequential`'s `state_dict()` has them, or `model.{i}.weight`,
//! `net.{i}.weight`… as a module holding one has them. Tensors may be F32, F16, BF16 or F64
//! (converted to f32; a value that is not finite in f32 is an error). Every parameter must be
//! there with its shape, and no other parameter may be (PyTorch's `strict` loading); optimizer
//! state is restored when present (a file from PyTorch has none, and the state starts afresh).
//! Errors name the file and the tensor, and leave the model as it was.
//!
//! Saving is atomic and durable (`atomic_file.rs`): a crash midway leaves the old checkpoint
//! whole, and saves from several threads or processes at once never tear each other's file.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::config::{Init, Layer, ModelConfig};
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
    /// Its name as saved here, `layers.{i}.…` or `optimizer.layers.{i}.…`.
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
        ("config".to_string(), config_json(&graph.config).map_err(|e| data_error(path, e.to_string()))?),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| data_error(path, e.to_string()))?;
    atomic_file::write(path, &bytes)
}

/// The config as saved: JSON, with given starting weights written as `he` (the weights are
/// in the file; a config carrying them would double its size).
fn config_json(config: &ModelConfig) -> serde_json::Result<String> {
    let mut config = config.clone();
    for layer in &mut config.layers {
        if let Layer::Dense { init: init @ Init::Given { .. }, .. } = layer {
            *init = Init::He;
        }
    }
    serde_json::to_string(&config)
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
    // Check everything before changing anything, so a bad file leaves the model as it was.
    let contents = read(graph, bytes, path)?;
    for (entry, values) in contents.tensors {
        model.write_entry(entry.param, entry.which, &values)?;
    }
    if let Some(steps) = contents.steps {
        model.set_steps(steps)?;
    }
    Ok(())
}

/// What a checkpoint holds for a model of `graph`, checked and converted to f32.
pub(crate) struct Contents {
    /// Every parameter's values (in layout order), then whatever optimizer state the file has.
    pub(crate) tensors: Vec<(Entry, Vec<f32>)>,
    pub(crate) steps: Option<u32>,
}

impl Contents {
    /// Each parameter's values, by its index in the graph.
    pub(crate) fn values(&self, graph: &Graph) -> Vec<Vec<f32>> {
        let mut values = vec![Vec::new(); graph.params.len()];
        for (entry, v) in &self.tensors {
            if entry.which == Which::Value {
                values[entry.param] = v.clone();
            }
        }
        values
    }
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let not_safetensors =
        |e: safetensors::SafeTensorError| data_error(path, format!("not a safetensors file: {e}"));
    let file = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    Ok((file, metadata.metadata().clone().unwrap_or_default()))
}

/// The model config saved in a checkpoint's metadata (see the module's notes).
pub(crate) fn config(bytes: &[u8], path: &Path) -> Result<ModelConfig> {
    let (_, metadata) = parse(bytes, path)?;
    let json = metadata.get("config").ok_or_else(|| {
        data_error(
            path,
            "holds no model config (metadata \"config\", written by Model::save): build the model \
             from its ModelConfig and call load_checkpoint",
        )
    })?;
    serde_json::from_str(json)
        .map_err(|e| data_error(path, format!("metadata config is not a model config: {e}")))
}

/// Reads and checks every tensor a model of `graph` needs from checkpoint `bytes`.
pub(crate) fn read(graph: &Graph, bytes: &[u8], path: &Path) -> Result<Contents> {
    let (file, metadata) = parse(bytes, path)?;
    let names: Vec<&str> = file.names();
    let entries = layout(graph);
    let prefix = parameter_prefix(&entries, &names, path)?;
    // The parameters' names in this file, for the strict check below.
    let mut expected = Vec::new();
    let mut tensors = Vec::new();
    for entry in entries {
        let name = match entry.which {
            Which::Value => format!("{prefix}{}", entry.name.trim_start_matches("layers.")),
            // Optimizer state is ours alone: only in files saved here.
            Which::State(_) if prefix == "layers." => entry.name.clone(),
            Which::State(_) => continue,
        };
        let tensor = match file.tensor(&name) {
            Ok(tensor) => tensor,
            Err(_) if entry.which != Which::Value => continue,
            Err(_) => return Err(data_error(path, format!("missing tensor {name}"))),
        };
        if entry.which == Which::Value {
            expected.push(name.clone());
        }
        let values = decode(&tensor, &entry.shape, &name, path)?;
        tensors.push((entry, values));
    }
    // PyTorch's strict loading: a parameter the config has no place for means another model.
    let stray = names.iter().filter(|n| !n.starts_with("optimizer.")).find(|n| {
        n.strip_prefix(prefix.as_str()).is_some_and(is_parameter_name) && !expected.iter().any(|e| e == *n)
    });
    if let Some(stray) = stray {
        return Err(data_error(
            path,
            format!(
                "tensor {stray} has no place in this model's config (its layers have parameters at {expected:?})"
            ),
        ));
    }
    let steps = match metadata.get("steps") {
        Some(steps) => Some(
            steps
                .parse::<u32>()
                .map_err(|_| data_error(path, format!("metadata steps {steps:?} is not a count")))?,
        ),
        None => None,
    };
    Ok(Contents { tensors, steps })
}

/// `{i}.weight` or `{i}.bias`: a parameter's name below its prefix.
fn is_parameter_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((index, kind)) => index.parse::<usize>().is_ok() && matches!(kind, "weight" | "bias"),
        None => false,
    }
}

/// The one prefix the file's parameters are under: `layers.` when it has our own names, else
/// whatever comes before the first parameter's `{i}.weight` (`""` for a plain `nn.Sequential`).
fn parameter_prefix(entries: &[Entry], names: &[&str], path: &Path) -> Result<String> {
    let Some(first) = entries.first() else { return Ok("layers.".into()) };
    if names.contains(&first.name.as_str()) {
        return Ok("layers.".into());
    }
    let local = first.name.trim_start_matches("layers.");
    let mut prefixes: Vec<&str> = names
        .iter()
        .filter(|n| !n.starts_with("optimizer."))
        .filter_map(|n| n.strip_suffix(local))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .collect();
    prefixes.sort_unstable();
    match prefixes.as_slice() {
        [] => Err(data_error(path, format!("missing tensor {} (nor {local} under any prefix)", first.name))),
        [prefix] => Ok(prefix.to_string()),
        several => Err(data_error(
            path,
            format!("{local} is under several prefixes ({several:?}): save one model per file"),
        )),
    }
}

/// A tensor's values as f32, after checking its shape; F16, BF16 and F64 are converted.
fn decode(tensor: &TensorView, shape: &[usize], name: &str, path: &Path) -> Result<Vec<f32>> {
    if tensor.shape() != shape {
        return Err(data_error(
            path,
            format!("tensor {name} is {:?} {:?}, expected {shape:?}", tensor.dtype(), tensor.shape()),
        ));
    }
    // The data need not be aligned in the file: decode from bytes rather than cast.
    let data = tensor.data();
    let values: Vec<f32> = match tensor.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => {
            data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        Dtype::F64 => {
            data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        other => {
            return Err(data_error(
                path,
                format!("tensor {name} is {other:?} {:?}, expected F32, F16, BF16 or F64", tensor.shape()),
            ));
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(data_error(
            path,
            format!("tensor {name} value {} at index {i} is not finite as f32", values[i]),
        ));
    }
    Ok(values)
}
