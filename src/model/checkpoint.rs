//! Checkpoints in the safetensors format, so a model saved here opens in PyTorch or NumPy and
//! weights from there load here. Tensor names follow PyTorch's `nn.Sequential`, numbered by the
//! layer's index in the config (PyTorch numbers every module, activations too, as the config
//! does):
//!
//! - `layers.{i}.weight`: f32 `(out, in)`; `layers.{i}.bias`: f32 `(out)`; a layer norm's
//!   gain and bias as `layers.{i}.weight` and `layers.{i}.bias`, f32 `(width)`
//! - a batch norm's `layers.{i}.weight` (gain) and `layers.{i}.bias`, and its buffers as
//!   PyTorch names them: `layers.{i}.running_mean` and `layers.{i}.running_var`, f32
//!   `(channels)`, and `layers.{i}.num_batches_tracked`, I64 `()` (the training steps it saw)
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
//! (converted to f32; a value that is not finite in f32 is an error). Every parameter and
//! running statistic must be there with its shape, and no other may be (PyTorch's `strict`
//! loading); a `num_batches_tracked` may be missing (PyTorch's files before 0.4.1), as 0. The
//! optimizer's state is all there or not at all: with all of it, it and the step count are
//! restored; with none (a file from PyTorch, from another optimizer, or from a model rebuilt
//! for inference), training starts afresh from the file's weights, with zero state at step 0.
//! Names, shapes and dtypes are all checked before anything is decoded; errors name the file
//! and the tensor, and leave the model as it was.
//!
//! The config in the metadata holds the starting learning rate: a schedule set through
//! `set_learning_rate` is the training loop's to apply again after a reload.
//!
//! Saving is atomic and durable (`atomic_file.rs`): a crash midway leaves the old checkpoint
//! whole, and saves from several threads or processes at once never tear each other's file.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::config::{Init, Layer, ModelConfig};
use super::graph::Graph;
use crate::Result;
use crate::blocking::Pending;
use crate::error::data_error;

/// Which tensor of a parameter an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Value,
    /// The optimizer's state `k` (see `graph::state_names`).
    State(usize),
    /// A buffer of the graph (the entry's `param` is its index in `Graph::buffers`).
    Buffer,
    /// A batch norm's `num_batches_tracked` (the entry's `param` is the batch norm's
    /// number among the model's batch norms).
    Tracked,
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

/// The most training steps a checkpoint may say were taken: half the u32 counters' range, so
/// a loaded model trains on for two billion steps before they would wrap.
pub(crate) const MAX_STEPS: u32 = i32::MAX as u32;

/// What a backend gives and takes for checkpoints.
pub(crate) trait Checkpointed {
    fn read_entry(&self, param: usize, which: Which) -> Pending<'_, Vec<f32>>;
    fn write_entry(&mut self, param: usize, which: Which, values: &[f32]) -> Result<()>;
    fn steps(&self) -> Pending<'_, u32>;
    fn set_steps(&mut self, steps: u32) -> Result<()>;
    /// Each batch norm's `num_batches_tracked` less the steps taken: 0 for a model trained
    /// here from the start, the file's count less its steps for one loaded.
    fn tracked_before(&self) -> &[i64];
    fn set_tracked_before(&mut self, before: Vec<i64>);
}

/// Every tensor a checkpoint of this model holds, in a fixed order: each layer's parameters,
/// then their optimizer state.
pub(crate) fn layout(graph: &Graph) -> Vec<Entry> {
    let states = graph.state_names();
    let mut entries = Vec::new();
    let mut norms = 0;
    for l in 0..graph.layers().len() {
        for p in graph.params_of(l) {
            let param = &graph.params[p];
            let name = format!("layers.{l}.{}", param.name);
            entries.push(Entry { name, shape: param.dims(), param: p, which: Which::Value });
        }
        for b in graph.buffers_of(l) {
            let buffer = &graph.buffers[b];
            let name = format!("layers.{l}.{}", buffer.name);
            entries.push(Entry { name, shape: buffer.dims(), param: b, which: Which::Buffer });
        }
        if let Layer::BatchNorm2d(_) = graph.layers()[l] {
            let name = format!("layers.{l}.num_batches_tracked");
            entries.push(Entry { name, shape: Vec::new(), param: norms, which: Which::Tracked });
            norms += 1;
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

/// The checkpoint of `model` as safetensors bytes; errors name the destination `path`.
pub(crate) async fn to_bytes<M: Checkpointed + Sync + ?Sized>(
    model: &M,
    graph: &Graph,
    path: &Path,
) -> Result<Vec<u8>> {
    let steps = model.steps().await?;
    if steps > MAX_STEPS {
        return Err(data_error(
            path,
            format!("{steps} training steps are more than a checkpoint holds ({MAX_STEPS})"),
        ));
    }
    let entries = layout(graph);
    let mut values: Vec<(Dtype, Vec<u8>)> = Vec::with_capacity(entries.len());
    for e in &entries {
        values.push(match e.which {
            // PyTorch keeps the count as a 0-dimensional int64.
            Which::Tracked => {
                let count = model.tracked_before()[e.param].saturating_add(i64::from(steps));
                (Dtype::I64, count.to_le_bytes().to_vec())
            }
            which => (Dtype::F32, bytemuck::cast_slice(&model.read_entry(e.param, which).await?).to_vec()),
        });
    }
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .zip(&values)
        .map(|(e, (dtype, bytes))| {
            let view = TensorView::new(*dtype, e.shape.clone(), bytes)
                .map_err(|err| data_error(path, format!("tensor {}: {err}", e.name)))?;
            Ok((e.name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), "wgpu-nn 1".to_string()),
        ("steps".to_string(), steps.to_string()),
        ("config".to_string(), config_json(&graph.config).map_err(|e| data_error(path, e.to_string()))?),
    ]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| data_error(path, e.to_string()))
}

/// The config as saved: JSON, with given starting weights written as `he` (the weights are
/// in the file; a config carrying them would double its size).
fn config_json(config: &ModelConfig) -> serde_json::Result<String> {
    let mut config = config.clone();
    for layer in &mut config.layers {
        if let Layer::Dense { init: init @ Init::Given { .. }, .. }
        | Layer::Conv2d { init: init @ Init::Given { .. }, .. } = layer
        {
            *init = Init::He;
        }
    }
    serde_json::to_string(&config)
}

pub(crate) fn load(model: &mut dyn Checkpointed, graph: &Graph, path: &Path) -> Result<()> {
    load_bytes(model, graph, &read_file(path)?, path)
}

/// A checkpoint file's bytes, or an error naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| data_error(path, format!("cannot read: {e}")))
}

/// Loads checkpoint `bytes`; errors name `path`, where they came from.
pub(crate) fn load_bytes(
    model: &mut dyn Checkpointed,
    graph: &Graph,
    bytes: &[u8],
    path: &Path,
) -> Result<()> {
    // Check everything before changing anything, so a bad file leaves the model as it was.
    read(graph, bytes, path)?.write_to(model)
}

/// What a checkpoint holds for a model of `graph`, checked and converted to f32.
pub(crate) struct Contents {
    /// Every tensor the model has: its parameters' values and its optimizer state (the
    /// file's, or zeros when the file has none).
    pub(crate) tensors: Vec<(Entry, Vec<f32>)>,
    /// Training steps taken: the file's, or 0 when the state starts afresh.
    pub(crate) steps: u32,
    /// Each batch norm's `num_batches_tracked` (0 where the file has none).
    pub(crate) tracked: Vec<i64>,
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

    /// Writes everything into `model`: every tensor, the steps, the batch norms' counts.
    pub(crate) fn write_to(self, model: &mut dyn Checkpointed) -> Result<()> {
        for (entry, values) in self.tensors {
            model.write_entry(entry.param, entry.which, &values)?;
        }
        model.set_steps(self.steps)?;
        let steps = i64::from(self.steps);
        model.set_tracked_before(self.tracked.iter().map(|count| count - steps).collect());
        Ok(())
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

/// Reads and checks every tensor a model of `graph` needs from checkpoint `bytes`: first every
/// name, shape and dtype against the graph (nothing is decoded before the whole file fits),
/// then the values.
pub(crate) fn read(graph: &Graph, bytes: &[u8], path: &Path) -> Result<Contents> {
    let (file, metadata) = parse(bytes, path)?;
    let names: Vec<&str> = file.names();
    let entries = layout(graph);
    let prefix = parameter_prefix(&entries, &names, path)?;
    let mut found = Vec::new();
    let mut expected = HashSet::new();
    let (mut states, mut states_found) = (0, 0);
    let mut tracked = Vec::new();
    for entry in entries {
        let name = match entry.which {
            Which::State(_) => entry.name.clone(),
            _ => format!("{prefix}{}", entry.name.trim_start_matches("layers.")),
        };
        let tensor = file.tensor(&name).ok();
        match (entry.which, tensor) {
            (Which::Tracked, tensor) => {
                expected.insert(name.clone());
                tracked.push(tensor.map_or(Ok(0), |t| count(&t, &name, path))?);
            }
            (Which::Value | Which::Buffer, None) => {
                return Err(data_error(path, format!("missing tensor {name}")));
            }
            (Which::Value | Which::Buffer, Some(tensor)) => {
                expected.insert(name.clone());
                found.push((check(tensor, &entry.shape, &name, path)?, entry, name));
            }
            (Which::State(_), tensor) => {
                states += 1;
                // Optimizer state is ours alone: only in files saved here.
                if let Some(tensor) = tensor.filter(|_| prefix == "layers.") {
                    states_found += 1;
                    found.push((check(tensor, &entry.shape, &name, path)?, entry, name));
                }
            }
        }
    }
    // PyTorch's strict loading: a parameter the config has no place for means another model.
    let stray = names
        .iter()
        .filter(|n| !n.starts_with("optimizer."))
        .find(|n| n.strip_prefix(prefix.as_str()).is_some_and(is_parameter_name) && !expected.contains(**n));
    if let Some(stray) = stray {
        let mut expected: Vec<_> = expected.into_iter().collect();
        expected.sort();
        return Err(data_error(
            path,
            format!("tensor {stray} has no place in this model's config (its parameters: {expected:?})"),
        ));
    }
    // The optimizer's state is all there or not at all: a mix would pair new moments with
    // old ones. With none (a file from PyTorch, from another optimizer, or from a model that
    // did not train), it starts afresh, as from a new model: zero state, step 0.
    if states_found != 0 && states_found != states {
        return Err(data_error(
            path,
            format!(
                "has {states_found} of the {states} optimizer state tensors this model needs: all or none"
            ),
        ));
    }
    let fresh = states_found == 0 && states > 0;
    let mut tensors = Vec::new();
    for (tensor, entry, name) in found {
        tensors.push((entry, decode(&tensor, &name, path)?));
    }
    if fresh {
        for entry in layout(graph).into_iter().filter(|e| matches!(e.which, Which::State(_))) {
            let len = graph.params[entry.param].len();
            tensors.push((entry, vec![0.0; len]));
        }
    }
    let steps = match metadata.get("steps") {
        _ if fresh => 0,
        Some(steps) => match steps.parse::<u32>() {
            // Counters on both backends are u32: leave room to train on without wrapping.
            Ok(n) if n <= MAX_STEPS => n,
            Ok(n) => return Err(data_error(path, format!("metadata steps {n} is more than {MAX_STEPS}"))),
            Err(_) => return Err(data_error(path, format!("metadata steps {steps:?} is not a count"))),
        },
        None => 0,
    };
    Ok(Contents { tensors, steps, tracked })
}

/// `{i}.weight`, `{i}.bias` or a batch norm's buffer: a name a layer's tensor has below
/// its prefix.
fn is_parameter_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((index, kind)) => {
            index.parse::<usize>().is_ok()
                && matches!(kind, "weight" | "bias" | "running_mean" | "running_var" | "num_batches_tracked")
        }
        None => false,
    }
}

/// A `num_batches_tracked`: a count of shape `()` (or `(1)`), as PyTorch's int64 or any
/// integer or float type that holds a whole number of at least 0.
fn count(tensor: &TensorView, name: &str, path: &Path) -> Result<i64> {
    let bad = |why: String| data_error(path, format!("tensor {name} {why}"));
    if tensor.shape().iter().product::<usize>() != 1 || tensor.shape().len() > 1 {
        return Err(bad(format!(
            "is {:?} {:?}, expected a count of shape []",
            tensor.dtype(),
            tensor.shape()
        )));
    }
    let b = tensor.data();
    let value: f64 = match tensor.dtype() {
        Dtype::I64 => i64::from_le_bytes(b.try_into().map_err(|_| bad("is not 8 bytes".into()))?) as f64,
        Dtype::I32 => i32::from_le_bytes(b.try_into().map_err(|_| bad("is not 4 bytes".into()))?).into(),
        Dtype::F64 => f64::from_le_bytes(b.try_into().map_err(|_| bad("is not 8 bytes".into()))?),
        Dtype::F32 => f32::from_le_bytes(b.try_into().map_err(|_| bad("is not 4 bytes".into()))?).into(),
        other => return Err(bad(format!("is {other:?}, expected I64"))),
    };
    if !(value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(62)) {
        return Err(bad(format!("is {value}, expected a count of at least 0")));
    }
    Ok(value as i64)
}

/// The one prefix the file's parameters are under: whatever comes before the first
/// parameter's `{i}.weight` (`layers.` in our own files, `""` for a plain `nn.Sequential`).
fn parameter_prefix(entries: &[Entry], names: &[&str], path: &Path) -> Result<String> {
    let Some(first) = entries.first() else { return Ok("layers.".into()) };
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

/// The tensor, if its shape is `shape` and its dtype a float this loader converts.
fn check<'a>(tensor: TensorView<'a>, shape: &[usize], name: &str, path: &Path) -> Result<TensorView<'a>> {
    if tensor.shape() != shape {
        return Err(data_error(
            path,
            format!("tensor {name} is {:?} {:?}, expected {shape:?}", tensor.dtype(), tensor.shape()),
        ));
    }
    if !matches!(tensor.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
        return Err(data_error(
            path,
            format!(
                "tensor {name} is {:?} {:?}, expected F32, F16, BF16 or F64",
                tensor.dtype(),
                tensor.shape()
            ),
        ));
    }
    Ok(tensor)
}

/// A checked tensor's values as f32 (F16, BF16 and F64 converted); a value that is not finite
/// in f32 is an error.
fn decode(tensor: &TensorView, name: &str, path: &Path) -> Result<Vec<f32>> {
    // The data need not be aligned in the file: decode from bytes rather than cast.
    let data = tensor.data();
    let values: Vec<f32> = match tensor.dtype() {
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => {
            data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        Dtype::F64 => {
            data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        _ => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(data_error(
            path,
            format!("tensor {name} value {} at index {i} is not finite as f32", values[i]),
        ));
    }
    Ok(values)
}
