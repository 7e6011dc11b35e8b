//! The model on the GPU. Everything a step touches is allocated when the model is built (per
//! batch size, on first use), and every kernel is bound then; a training step writes the batch,
//! records forward, loss, backward and update into one encoder and submits it once. The loss
//! watch adds each step's loss to a total on the GPU, and halts the optimizer at the first
//! non-finite one; only `take_loss` reads it back (the settings row, 48 bytes).

mod embed;
mod plan;

pub use embed::{Forward, LossReading};

use plan::{Plan, build_plan};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::checkpoint::{Checkpointed, Which};
use super::config::DenseValues;
use super::cpu::{check_new_weights, no_bias, part_op};
use super::{
    DataEvaluation, EVAL_ROWS, EpochProgress, Evaluation, Graph, LOSS_REPORT_STEPS, Layer, ModelConfig,
    Optimizer, Part, Resident, Target, accuracy, arg_max, batches, check_dataset, check_resident,
    epoch_order, next_model_id,
};
use crate::data::Dataset;
use crate::settings::{WATCH, Watch};
use crate::{Counters, Dispatch, Error, Gpu, GpuLabels, GpuTensor, OptimizerSettings, Result};

/// One dense layer's tensors on the GPU, and its bound optimizer updates.
#[derive(Debug)]
struct Dense {
    inputs: usize,
    outputs: usize,
    w: GpuTensor,
    b: Option<GpuTensor>,
    gw: GpuTensor,
    gb: Option<GpuTensor>,
    /// Optimizer state (velocity, or first and second moments) of w and of b.
    w_state: Vec<GpuTensor>,
    b_state: Vec<GpuTensor>,
    updates: Vec<Dispatch>,
}

/// A data set uploaded once, and the gathers that cut minibatches out of it, bound on first
/// use for each (batch rows, offset, order).
#[derive(Debug)]
struct GpuData {
    /// The samples, in parts that each fit one storage binding: (first row, its rows).
    inputs: Vec<(usize, GpuTensor)>,
    labels: GpuLabels,
    /// The epoch's shuffled order, rewritten each epoch (the only per-epoch upload).
    order: GpuLabels,
    /// 0, 1, 2, …: the order evaluation reads in.
    identity: GpuLabels,
    /// Per (rows, offset, training): a gather from each part, then the labels'.
    gathers: HashMap<(usize, usize, bool), Vec<Dispatch>>,
}

/// Training steps recorded per submit in `train_epoch`: enough to amortise a submit, few
/// enough for a lively progress report.
const STEPS_PER_SUBMIT: usize = 16;
const _: () = assert!(LOSS_REPORT_STEPS.is_multiple_of(STEPS_PER_SUBMIT), "loss reports fall on submits");

/// A model on a [`Gpu`].
#[derive(Debug)]
pub struct GpuModel {
    gpu: Gpu,
    graph: Graph,
    dense: Vec<Dense>,
    settings: OptimizerSettings,
    /// The optimizer's settings, and the loss watch's slots (see [`WATCH`]).
    settings_row: GpuTensor,
    /// Dropout's step counter and the optimizer's, advanced on the GPU once per step.
    /// The dropout counter's advance runs first in a step (masks are drawn from it); the
    /// optimizer's (β powers) just before the updates, after the loss watch, so a step the
    /// watch halts does not advance it.
    dropout_advance: Option<Dispatch>,
    optimizer_advance: Dispatch,
    dropout_counter: GpuTensor,
    /// Training steps since the last loss read (the watch counts them too).
    loss_steps: u32,
    plans: HashMap<(usize, bool), Plan>,
    /// Training steps taken (the GPU's own counters advance with it).
    steps: u32,
    /// Steps a divergence report through a [`LossReading`] found were not applied: taken off
    /// `steps` at the model's next call (the reading has no `&mut` to the model).
    unapplied: Arc<AtomicU32>,
    id: u64,
    datasets: Vec<GpuData>,
    /// Staging memory for batches recorded into an app's encoder (see `embed.rs`).
    belt: Option<wgpu::util::StagingBelt>,
}

impl GpuModel {
    pub(crate) fn new(gpu: &Gpu, config: &ModelConfig, parameters: Vec<DenseValues>) -> Result<Self> {
        let graph = Graph::new(config);
        let settings = config.optimizer.settings();
        let settings_row = gpu.upload_settings(&settings)?;
        let dropout_counter = gpu.zeros(1, 1)?;
        let optimizer_advance = gpu.optimizer_advance(&settings_row)?;
        let dropout_advance = config
            .layers
            .iter()
            .any(|l| matches!(l, Layer::Dropout(_)))
            .then(|| gpu.dropout_advance(&dropout_counter))
            .transpose()?;
        let dims = config.layers.iter().filter_map(|l| match l {
            Layer::Dense { inputs, outputs, .. } => Some((*inputs, *outputs)),
            _ => None,
        });
        let dense = dims
            .zip(parameters)
            .map(|((inputs, outputs), (w, b))| {
                dense(gpu, config.optimizer, &settings_row, inputs, outputs, &w, b.as_deref())
            })
            .collect::<Result<_>>()?;
        Ok(GpuModel {
            gpu: gpu.clone(),
            graph,
            dense,
            settings,
            settings_row,
            dropout_advance,
            optimizer_advance,
            dropout_counter,
            loss_steps: 0,
            plans: HashMap::new(),
            steps: 0,
            unapplied: Arc::default(),
            id: next_model_id(),
            datasets: Vec::new(),
            belt: None,
        })
    }

    pub fn load(&mut self, data: &Dataset) -> Result<Resident> {
        check_dataset(&self.graph, data)?;
        let gpu = &self.gpu;
        let identity: Vec<u32> = (0..data.len() as u32).collect();
        self.datasets.push(GpuData {
            inputs: upload_in_parts(gpu, data)?,
            labels: gpu.upload_labels(&data.labels, self.graph.width(self.graph.trunk))?,
            order: gpu.upload_labels(&identity, data.len())?,
            identity: gpu.upload_labels(&identity, data.len())?,
            gathers: HashMap::new(),
        });
        Ok(Resident { model: self.id, index: self.datasets.len() - 1, len: data.len() })
    }

    pub fn train_epoch(
        &mut self,
        data: &Resident,
        batch_size: usize,
        seed: u64,
        progress: &mut dyn FnMut(EpochProgress),
    ) -> Result<f32> {
        check_resident("train_epoch", data, self.id, self.datasets.len())?;
        self.settle_steps();
        let batches = batches(data.len, batch_size);
        for &(offset, rows) in &batches {
            self.gather(data.index, rows, offset, true)?;
        }
        if self.loss_steps > 0 {
            // Steps taken since the last take_loss are not this epoch's, but a divergence
            // among them is still reported.
            self.take_loss()?;
        }
        let set = &self.datasets[data.index];
        self.gpu.write_labels(&set.order, &epoch_order(data.len, seed))?;
        for (chunk, steps) in batches.chunks(STEPS_PER_SUBMIT).enumerate() {
            let mut all: Vec<&Dispatch> = Vec::new();
            for &(offset, rows) in steps {
                let plan = &self.plans[&(rows, true)];
                all.extend(self.step(plan, &set.gathers[&(rows, offset, true)]));
            }
            self.gpu.run(&all)?;
            self.loss_steps += steps.len() as u32;
            self.steps += steps.len() as u32;
            let (steps_done, &(offset, rows)) =
                (chunk * STEPS_PER_SUBMIT + steps.len(), steps.last().expect("a chunk"));
            let running_loss = if steps_done % LOSS_REPORT_STEPS == 0 && steps_done < batches.len() {
                let watch = self.read_watch()?;
                if watch.first_bad.is_some() {
                    return self.take_loss(); // stop the epoch here with the report
                }
                Some(watch.total / self.loss_steps as f32)
            } else {
                None
            };
            progress(EpochProgress {
                steps_done,
                steps: batches.len(),
                samples_done: offset + rows,
                running_loss,
            });
        }
        self.take_loss()
    }

    pub fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation> {
        check_resident("evaluate_resident", data, self.id, self.datasets.len())?;
        // As many rows per submit as the widest activation's binding allows, up to EVAL_ROWS.
        let widest = (0..=self.graph.config.layers.len()).map(|i| self.graph.width(i)).max().unwrap_or(1);
        let limits = self.gpu.limits();
        let most_bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let rows = ((most_bytes / (widest as u64 * 4)) as usize).clamp(1, EVAL_ROWS);
        let batches = batches(data.len, rows);
        for &(offset, rows) in &batches {
            self.gather(data.index, rows, offset, false)?;
        }
        let (mut loss, mut predictions) = (0.0, Vec::new());
        let set = &self.datasets[data.index];
        let last = self.graph.config.layers.len();
        for &(offset, rows) in &batches {
            let plan = &self.plans[&(rows, false)];
            let all: Vec<&Dispatch> = set.gathers[&(rows, offset, false)]
                .iter()
                .chain(&plan.dispatches)
                .chain(&plan.loss_dispatches)
                .collect();
            self.gpu.run(&all)?;
            loss += f64::from(self.gpu.read(&plan.loss)?[0]) * rows as f64;
            predictions.extend(arg_max(&self.gpu.read(&plan.tensors[plan.act[last]])?, self.graph.outputs()));
        }
        let labels = self.gpu.read_labels(&set.labels)?;
        let correct = predictions.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let (loss, accuracy) = ((loss / data.len as f64) as f32, correct as f32 / data.len as f32);
        Ok(DataEvaluation { loss, accuracy, predictions })
    }

    /// Binds, once, the gathers of a minibatch into the plan for `rows`.
    fn gather(&mut self, data: usize, rows: usize, offset: usize, training: bool) -> Result<()> {
        self.plan(rows, training)?;
        let set = &self.datasets[data];
        if set.gathers.contains_key(&(rows, offset, training)) {
            return Ok(());
        }
        let plan = &self.plans[&(rows, training)];
        let order = if training { &set.order } else { &set.identity };
        let labels = plan.labels.as_ref().expect("data sets train label losses");
        let mut gathers = Vec::new();
        for (first, part) in &set.inputs {
            gathers.push(self.gpu.gather_rows_from_part(&plan.x, part, *first, order, offset)?);
        }
        gathers.push(self.gpu.gather_labels(labels, &set.labels, order, offset)?);
        self.datasets[data].gathers.insert((rows, offset, training), gathers);
        Ok(())
    }

    pub fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        self.settle_steps();
        let rows = self.graph.rows("train_step", x)?;
        self.graph.check_target("train_step", target, rows)?;
        self.plan(rows, true)?;
        let plan = &self.plans[&(rows, true)];
        write_batch(&self.gpu, plan, x, target)?;
        self.gpu.run(&self.step(plan, &[]).collect::<Vec<_>>())?;
        self.loss_steps += 1;
        self.steps += 1;
        Ok(())
    }

    pub fn take_loss(&mut self) -> Result<f32> {
        if self.loss_steps == 0 {
            return Err(Error::shape("take_loss", "at least one training step since the last call", "none"));
        }
        self.settle_steps();
        let watch = self.read_watch()?;
        self.gpu.write_at(&self.settings_row, WATCH, &[0.0; 4])?;
        let steps = std::mem::take(&mut self.loss_steps);
        match watch.first_bad {
            Some(bad) => {
                // The bad step and those after it advanced nothing on the GPU but the dropout
                // counter: count only the applied ones, as the optimizer's β powers do.
                let skipped = steps.saturating_sub(bad);
                self.steps = self.steps.saturating_sub(skipped + 1);
                Err(Error::Diverged { step: u64::from(self.steps) + 1, loss: watch.bad_loss, skipped })
            }
            None => Ok(watch.total / steps as f32),
        }
    }

    /// Takes off `steps` what a [`LossReading`] found was not applied.
    fn settle_steps(&mut self) {
        let unapplied = self.unapplied.swap(0, Ordering::Relaxed);
        self.steps = self.steps.saturating_sub(unapplied);
    }

    /// One training step on `plan`, in order: the dropout counter, `gathers` (the batch cut
    /// from resident data, if any), forward, loss, watch and backward, then the optimizer's
    /// advance and every update. What `train_step`, `train_epoch` and `record_train_step` run.
    fn step<'a>(&'a self, plan: &'a Plan, gathers: &'a [Dispatch]) -> impl Iterator<Item = &'a Dispatch> {
        let updates =
            std::iter::once(&self.optimizer_advance).chain(self.dense.iter().flat_map(|d| &d.updates));
        self.dropout_advance.iter().chain(gathers).chain(&plan.dispatches).chain(updates)
    }

    /// The loss watch's slots (one read of the settings row).
    fn read_watch(&self) -> Result<Watch> {
        Ok(Watch::from_row(&self.gpu.read(&self.settings_row)?))
    }

    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let rows = self.graph.rows("predict", x)?;
        self.plan(rows, false)?;
        let plan = &self.plans[&(rows, false)];
        self.gpu.write(&plan.x, x)?;
        self.gpu.run(&plan.dispatches.iter().collect::<Vec<_>>())?;
        let last = self.graph.config.layers.len();
        self.gpu.read(&plan.tensors[plan.act[last]])
    }

    pub fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation> {
        let rows = self.graph.rows("evaluate", x)?;
        self.graph.check_target("evaluate", target, rows)?;
        self.plan(rows, false)?;
        let plan = &self.plans[&(rows, false)];
        write_batch(&self.gpu, plan, x, target)?;
        let all: Vec<&Dispatch> = plan.dispatches.iter().chain(&plan.loss_dispatches).collect();
        self.gpu.run(&all)?;
        let loss = self.gpu.read(&plan.loss)?[0];
        let accuracy = match target {
            Target::Labels(labels) => {
                let last = self.graph.config.layers.len();
                let outputs = self.gpu.read(&plan.tensors[plan.act[last]])?;
                Some(accuracy(&outputs, labels, self.graph.outputs()))
            }
            Target::Values(_) => None,
        };
        Ok(Evaluation { loss, accuracy })
    }

    pub(crate) fn parameter(&self, layer: usize, part: Part) -> Result<Vec<f32>> {
        let d = &self.dense[self.graph.dense(part_op(part), layer)?];
        let tensor = match part {
            Part::Weights => Some(&d.w),
            Part::Bias => d.b.as_ref(),
            Part::WeightGradients => Some(&d.gw),
            Part::BiasGradients => d.gb.as_ref(),
        };
        self.gpu.read(tensor.ok_or_else(|| no_bias(layer))?)
    }

    pub(crate) fn set_weights(&mut self, layer: usize, weights: &[f32], bias: Option<&[f32]>) -> Result<()> {
        let d = &self.dense[self.graph.dense("set_weights", layer)?];
        check_new_weights(layer, d.inputs, d.outputs, d.b.is_some(), weights, bias)?;
        self.gpu.write(&d.w, weights)?;
        if let (Some(b), Some(values)) = (&d.b, bias) {
            self.gpu.write(b, values)?;
        }
        Ok(())
    }

    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        // Only lr changes; the rest of the row (the step's β powers) lives on the GPU.
        self.settings.lr = lr;
        self.gpu.write_at(&self.settings_row, 0, &[lr])
    }

    pub fn counters(&self) -> Counters {
        self.gpu.counters()
    }

    /// Builds the buffers and bindings for `rows` samples, once.
    fn plan(&mut self, rows: usize, training: bool) -> Result<()> {
        if self.plans.contains_key(&(rows, training)) {
            return Ok(());
        }
        let plan = build_plan(
            &self.gpu,
            &self.graph,
            &self.dense,
            &self.settings_row,
            &self.dropout_counter,
            rows,
            training,
        )?;
        self.plans.insert((rows, training), plan);
        Ok(())
    }
}

impl GpuModel {
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    fn tensor(&self, dense: usize, which: Which) -> Option<&GpuTensor> {
        let d = &self.dense[dense];
        match which {
            Which::Weight => Some(&d.w),
            Which::Bias => d.b.as_ref(),
            Which::WeightState(k) => d.w_state.get(k),
            Which::BiasState(k) => d.b_state.get(k),
        }
    }
}

impl Checkpointed for GpuModel {
    fn read_entry(&self, dense: usize, which: Which) -> Result<Vec<f32>> {
        self.gpu.read(self.tensor(dense, which).ok_or_else(|| no_bias(dense))?)
    }

    fn write_entry(&mut self, dense: usize, which: Which, values: &[f32]) -> Result<()> {
        self.gpu.write(self.tensor(dense, which).ok_or_else(|| no_bias(dense))?, values)
    }

    fn steps(&self) -> u32 {
        self.steps.saturating_sub(self.unapplied.load(Ordering::Relaxed))
    }

    fn set_steps(&mut self, steps: u32) -> Result<()> {
        self.settle_steps();
        self.steps = steps;
        self.settings.step = steps;
        // The settings and β powers only: the loss watch keeps the steps since the last read.
        self.gpu.write_at(&self.settings_row, 0, &self.settings.to_row()[..WATCH])?;
        // The dropout counter holds the step as u32 bits.
        self.gpu.write(&self.dropout_counter, &[f32::from_bits(steps)])
    }
}

fn dense(
    gpu: &Gpu,
    optimizer: Optimizer,
    settings: &GpuTensor,
    inputs: usize,
    outputs: usize,
    w: &[f32],
    b: Option<&[f32]>,
) -> Result<Dense> {
    let w = gpu.upload(w, outputs, inputs)?;
    let b = b.map(|b| gpu.upload(b, 1, outputs)).transpose()?;
    let gw = gpu.zeros(outputs, inputs)?;
    let gb = b.as_ref().map(|_| gpu.zeros(1, outputs)).transpose()?;
    let (w_state, w_update) = update(gpu, optimizer, settings, &w, &gw)?;
    let mut updates = vec![w_update];
    let mut b_state = Vec::new();
    if let (Some(b), Some(gb)) = (&b, &gb) {
        let (state, b_update) = update(gpu, optimizer, settings, b, gb)?;
        updates.push(b_update);
        b_state = state;
    }
    Ok(Dense { inputs, outputs, w, b, gw, gb, w_state, b_state, updates })
}

/// The optimizer's state for one parameter tensor, and its update bound to it.
fn update(
    gpu: &Gpu,
    optimizer: Optimizer,
    settings: &GpuTensor,
    param: &GpuTensor,
    grad: &GpuTensor,
) -> Result<(Vec<GpuTensor>, Dispatch)> {
    let (rows, cols) = param.shape();
    let states = super::checkpoint::state_names(optimizer).len();
    let state: Vec<GpuTensor> = (0..states).map(|_| gpu.zeros(rows, cols)).collect::<Result<_>>()?;
    let update = match optimizer {
        Optimizer::Sgd { .. } => gpu.sgd_update(param, grad, settings)?,
        Optimizer::Momentum { .. } => gpu.momentum_update(param, &state[0], grad, settings)?,
        Optimizer::Adam { .. } => gpu.adam_update(param, &state[0], &state[1], grad, settings)?,
        Optimizer::AdamW { .. } => gpu.adamw_update(param, &state[0], &state[1], grad, settings)?,
    };
    Ok((state, update))
}

/// Uploads a data set's samples in as few parts as the adapter's storage binding and buffer
/// limits allow (lavapipe binds at most 128 MiB: full MNIST's 188 MB training set takes two).
fn upload_in_parts(gpu: &Gpu, data: &Dataset) -> Result<Vec<(usize, GpuTensor)>> {
    let limits = gpu.limits();
    let most_bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    // Whole rows per part; a row bigger than the limit fails in upload, naming it.
    let rows_per_part = ((most_bytes / (data.width as u64 * 4)) as usize).max(1);
    (0..data.len())
        .step_by(rows_per_part)
        .map(|first| {
            let rows = rows_per_part.min(data.len() - first);
            let values = &data.inputs[first * data.width..(first + rows) * data.width];
            Ok((first, gpu.upload(values, rows, data.width)?))
        })
        .collect()
}

fn write_batch(gpu: &Gpu, plan: &Plan, x: &[f32], target: &Target) -> Result<()> {
    gpu.write(&plan.x, x)?;
    match (target, &plan.targets, &plan.labels) {
        (Target::Values(values), Some(t), _) => gpu.write(t, values),
        (Target::Labels(labels), _, Some(l)) => gpu.write_labels(l, labels),
        _ => unreachable!("check_target matched the target to the loss"),
    }
}
