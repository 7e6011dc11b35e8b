//! The GPU model: its parameters, plans per batch size and resident data, and everything
//! both backends do (the [`Engine`] calls).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::plan::{Binder, Plan, Shared};
use crate::blocking::Pending;
use crate::data::{Dataset, Targets};
use crate::gpu::Uploads;
use crate::gpu::{MAX_LAYER_NORM_COLS, MAX_SOFTMAX_COLS};
use crate::model::batch::{
    DataEvaluation, EVAL_ROWS, EpochProgress, Evaluation, LOSS_REPORT_STEPS, Resident, ResidentSets,
    accuracy, arg_max, batches, next_model_id,
};
use crate::model::checkpoint::{Checkpointed, Which};
use crate::model::config::{Backend, Layer, Loss};
use crate::model::engine::{Engine, Epoch, LocalPending, Part, Running, check_new_values, run_epoch};
use crate::model::graph::{Graph, Slot, check_dataset};
use crate::model::ops;
use crate::settings::{WATCH, WATCH_LEN, Watch};
use crate::target::Target;
use crate::{Counters, Dispatch, Error, Gpu, GpuLabels, GpuTensor, OptimizerSettings, Result};

/// A data set uploaded once, and the gathers that cut minibatches out of it, bound on first
/// use for each (batch rows, offset, order).
#[derive(Debug)]
struct GpuData {
    /// The samples, in parts that each fit one storage binding: (first row, its rows).
    inputs: Vec<(usize, GpuTensor)>,
    targets: GpuTargets,
    /// The epoch's shuffled order, rewritten each epoch (the only per-epoch upload).
    order: GpuLabels,
    /// 0, 1, 2, …: the order evaluation reads in.
    identity: GpuLabels,
    /// Per (rows, offset, training): a gather from each part, then the targets'.
    gathers: HashMap<(usize, usize, bool), Vec<Dispatch>>,
}

/// A resident set's labels (on the GPU for the gathers, and a host copy to count correct
/// predictions without reading them back at each evaluation), or its target values in parts
/// like the samples'.
#[derive(Debug)]
enum GpuTargets {
    Labels(GpuLabels, Vec<u32>),
    Values(Vec<(usize, GpuTensor)>),
}

/// Plans a model keeps, least recently used out first: any stream of batch sizes (a
/// server's, a live app's) holds at most this many. An epoch uses two (its batch size and a
/// short last batch) and `evaluate_resident` two, so a loop of epochs and one evaluation
/// keeps every plan it uses; a loop over more sizes rebuilds the oldest each time it comes
/// back (a cost in speed, not memory).
pub(crate) const PLANS_KEPT: usize = 4;
// `train_epoch` and `evaluate_resident` each use two plans within one call.
const _: () = assert!(PLANS_KEPT >= 2);

/// A model's plans by (rows, training), the most recently used last.
#[derive(Debug, Default)]
pub(super) struct Plans(Vec<((usize, bool), Plan)>);

impl Plans {
    pub(super) fn get(&self, key: (usize, bool)) -> Option<&Plan> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, plan)| plan)
    }

    /// Marks `key`'s plan as just used; false if there is none.
    fn touch(&mut self, key: (usize, bool)) -> bool {
        let Some(i) = self.0.iter().position(|(k, _)| *k == key) else { return false };
        let used = self.0.remove(i);
        self.0.push(used);
        true
    }

    fn keys(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.0.iter().map(|(key, _)| *key)
    }

    fn remove(&mut self, key: (usize, bool)) {
        self.0.retain(|(k, _)| *k != key);
    }

    /// Keeps `plan`, and returns the key of the plan it pushed out, if any.
    fn insert(&mut self, key: (usize, bool), plan: Plan) -> Option<(usize, bool)> {
        self.0.push((key, plan));
        (self.0.len() > PLANS_KEPT).then(|| self.0.remove(0).0)
    }
}

impl std::ops::Index<&(usize, bool)> for Plans {
    type Output = Plan;

    fn index(&self, key: &(usize, bool)) -> &Plan {
        self.get(*key).expect("`GpuModel::plan` made the plan before it is used")
    }
}

/// Training steps recorded per submit in `train_epoch`: enough to amortise a submit, few
/// enough for a lively progress report.
const STEPS_PER_SUBMIT: usize = 16;
const _: () = assert!(LOSS_REPORT_STEPS.is_multiple_of(STEPS_PER_SUBMIT), "loss reports fall on submits");

/// A model on a [`Gpu`].
#[derive(Debug)]
pub(crate) struct GpuModel {
    pub(super) gpu: Gpu,
    pub(super) graph: Graph,
    pub(super) shared: Shared,
    /// Every parameter's optimizer check (with the step's advance of the β powers), then
    /// every update, bound once.
    updates: Vec<Dispatch>,
    settings: OptimizerSettings,
    /// The dropout counter's advance runs first in a step (masks are drawn from it).
    dropout_advance: Option<Dispatch>,
    /// Training steps since the last loss read (the watch counts them too).
    pub(super) loss_steps: u32,
    pub(super) plans: Plans,
    /// Training steps taken (the GPU's own counters advance with it).
    pub(super) steps: u32,
    /// Steps a divergence report through a [`LossReading`] found were not applied: taken off
    /// `steps` at the model's next call (the reading has no `&mut` to the model).
    pub(super) unapplied: Arc<AtomicU32>,
    datasets: ResidentSets<GpuData>,
    /// Upload buffers for batches recorded into an app's encoder (see `embed.rs`).
    pub(super) uploads: Uploads,
    /// See [`Checkpointed::tracked_before`].
    tracked_before: Vec<i64>,
    /// The fused step's shape for this graph, or why it has none (`fused.rs`).
    pub(super) mlp: std::result::Result<crate::gpu::MlpShape, String>,
    /// Whether training plans may run the fused step ([`crate::model::Model::set_fused`]).
    pub(super) fuse: bool,
}

impl GpuModel {
    /// Refuses, before any weight is drawn on the host, a parameter too big for the adapter:
    /// an error naming the limit, not gigabytes of random numbers and then an error.
    pub(crate) fn check_fits(gpu: &Gpu, graph: &Graph) -> Result<()> {
        // The softmax kernels walk a row in one invocation (llvmpipe's loop limit): a wider
        // one would build, then fail at the first step.
        let softmax = matches!(graph.config.loss_kind(), Loss::SoftmaxCrossEntropy);
        for (l, layer) in graph.layers().iter().enumerate() {
            let width = graph.width(l + 1);
            let over_rows = matches!(layer, Layer::Softmax | Layer::LogSoftmax)
                || (softmax && l + 1 == graph.layers().len());
            if over_rows && width > MAX_SOFTMAX_COLS {
                return Err(Error::shape(
                    "build",
                    format!("a softmax over at most {MAX_SOFTMAX_COLS} values on the GPU (layer {l})"),
                    width.to_string(),
                ));
            }
            // A pooling window is one invocation's loop too.
            if let Layer::MaxPool2d(shape) | Layer::AvgPool2d(shape) = layer
                && shape.kernel.0 * (1 + shape.kernel.1) > crate::gpu::CONV_TERMS
            {
                return Err(Error::shape(
                    "build",
                    format!("layer {l} (pooling) over windows of at most {} values", crate::gpu::CONV_TERMS),
                    format!("{shape:?}"),
                ));
            }
        }
        for param in &graph.params {
            let bytes = (param.rows as u64).saturating_mul(param.cols as u64).saturating_mul(4);
            let l = param.layer;
            let what = match (&graph.layers()[l], param.name) {
                (Layer::Dense { inputs, outputs, .. }, "weight") => {
                    format!("layer {l} (dense {inputs} -> {outputs}) weights")
                }
                (_, name) => format!("layer {l} {name}"),
            };
            gpu.check_buffer_size(&what, bytes)?;
            // A convolution's forward sums a filter per value, its input gradient
            // out_channels · kh · kw terms per pixel: each one invocation's loop on the GPU.
            if let Layer::Conv2d { shape, .. } = &graph.layers()[l]
                && param.name == "weight"
            {
                let (forward, input_grad) = crate::gpu::conv_loop_turns(shape);
                let terms = forward.max(input_grad);
                if terms > crate::gpu::CONV_TERMS {
                    return Err(Error::shape(
                        "build",
                        format!(
                            "layer {l} (conv2d) of at most {} loop turns per value",
                            crate::gpu::CONV_TERMS
                        ),
                        format!("{terms} ({shape:?})"),
                    ));
                }
            }
            if graph.layers()[l] == Layer::LayerNorm && param.cols > MAX_LAYER_NORM_COLS {
                return Err(Error::shape(
                    "build",
                    format!("layer {l} (layer norm) over at most {MAX_LAYER_NORM_COLS} values"),
                    param.cols.to_string(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn new(gpu: &Gpu, graph: Graph, values: Vec<Vec<f32>>) -> Result<Self> {
        let settings = graph.config.optimizer.settings();
        let settings_row = gpu.kernels().upload_settings(&settings)?;
        let dropout_counter = gpu.kernels().dropout_counter()?;
        let dropout_advance =
            graph.has_dropout().then(|| gpu.kernels().dropout_advance(&dropout_counter)).transpose()?;
        let (params, flat) = super::flat::layout(gpu, &graph, &values)?;
        let buffers =
            graph.initial_buffers().iter().map(|b| gpu.upload(b, 1, b.len())).collect::<Result<_>>()?;
        let shared = Shared { params, flat, buffers, settings_row, dropout_counter };
        let updates = if graph.trains {
            let mut binder = Binder::new(gpu, &graph, &shared, None);
            ops::updates(&mut binder, &graph)?;
            binder.out
        } else {
            Vec::new()
        };
        let graph_norms = graph.batch_norms();
        let mlp = super::fused::shape(&graph, &shared);
        Ok(GpuModel {
            gpu: gpu.clone(),
            graph,
            shared,
            updates,
            settings,
            dropout_advance,
            loss_steps: 0,
            plans: Plans::default(),
            steps: 0,
            unapplied: Arc::default(),
            datasets: ResidentSets::new(next_model_id()),
            uploads: Uploads::default(),
            tracked_before: vec![0; graph_norms],
            mlp,
            fuse: true,
        })
    }

    /// Takes off `steps` what a [`LossReading`] found was not applied.
    pub(super) fn settle_steps(&mut self) {
        let unapplied = self.unapplied.swap(0, Ordering::Relaxed);
        self.steps = self.steps.saturating_sub(unapplied);
    }

    /// One training step on `plan`, in order: the dropout counter, `gathers` (the batch cut
    /// from resident data, if any), forward, loss, watch and backward, then the optimizer's
    /// checks and updates. What `train_step`, `train_epoch` and `record_train_step` run.
    pub(super) fn step<'a>(
        &'a self,
        plan: &'a Plan,
        gathers: &'a [Dispatch],
    ) -> impl Iterator<Item = &'a Dispatch> {
        let updates = if plan.fused.is_some() { &[][..] } else { &self.updates[..] };
        self.dropout_advance.iter().chain(gathers).chain(&plan.dispatches).chain(updates)
    }

    /// Turns the fused step on or off for the training plans made from now on, and drops
    /// those made so far (their gathers go with them).
    pub(crate) fn set_fused(&mut self, on: bool) {
        if on == self.fuse {
            return;
        }
        self.fuse = on;
        let training: Vec<(usize, bool)> = self.plans.keys().filter(|(_, t)| *t).collect();
        for key in training {
            self.plans.remove(key);
            for set in self.datasets.iter_mut() {
                set.gathers.retain(|&(r, _, t), _| (r, t) != key);
            }
        }
    }

    /// Whether a training step of `rows` samples runs fused; if not, why.
    pub(crate) fn fused(&self, rows: usize) -> std::result::Result<(), String> {
        if !self.fuse {
            return Err("the fused step was turned off (Model::set_fused)".into());
        }
        let shape = self.mlp.as_ref().map_err(|why| why.clone())?;
        shape.fits(&self.gpu, rows, self.shared.flat[0].values.len())
    }

    /// The loss watch's slots (one read of the settings row).
    async fn read_watch(&self) -> Result<Watch> {
        Ok(Watch::from_row(&self.gpu.read_async(&self.shared.settings_row).await?))
    }

    /// Builds the buffers and bindings for `rows` samples, or marks them as just used. A plan
    /// pushed out of the cache takes the gathers bound into it along.
    pub(super) fn plan(&mut self, rows: usize, training: bool) -> Result<()> {
        if self.plans.touch((rows, training)) {
            return Ok(());
        }
        let fuse = self.mlp.as_ref().ok().filter(|_| self.fuse);
        let plan = Plan::new(&self.gpu, &self.graph, &self.shared, rows, training, None, fuse)?;
        if let Some((rows, training)) = self.plans.insert((rows, training), plan) {
            for set in self.datasets.iter_mut() {
                set.gathers.retain(|&(r, _, t), _| (r, t) != (rows, training));
            }
        }
        Ok(())
    }

    /// The most rows one plan can hold: the widest activation's binding sets the limit.
    fn most_rows(&self) -> usize {
        let widest = (0..=self.graph.layers().len()).map(|i| self.graph.width(i)).max().unwrap_or(1);
        let limits = self.gpu.limits();
        let most_bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        ((most_bytes / (widest as u64 * 4)) as usize).max(1)
    }

    /// Binds, once, the gathers of a minibatch into the plan for `rows`.
    fn gather(&mut self, data: &Resident, rows: usize, offset: usize, training: bool) -> Result<()> {
        self.plan(rows, training)?;
        let set = self.datasets.get("gather", data)?;
        if set.gathers.contains_key(&(rows, offset, training)) {
            return Ok(());
        }
        let plan = &self.plans[&(rows, training)];
        let order = if training { &set.order } else { &set.identity };
        let x = plan.get(&self.graph, Slot::Act(0));
        let mut gathers = Vec::new();
        for (first, part) in &set.inputs {
            gathers.push(self.gpu.kernels().gather_rows_from_part(x, part, *first, order, offset)?);
        }
        match (&set.targets, &plan.labels) {
            (GpuTargets::Labels(labels, _), Some(out)) => {
                gathers.push(self.gpu.kernels().gather_labels(out, labels, order, offset)?)
            }
            (GpuTargets::Values(parts), _) => {
                let out = plan.get(&self.graph, Slot::Targets);
                for (first, part) in parts {
                    gathers.push(self.gpu.kernels().gather_rows_from_part(out, part, *first, order, offset)?);
                }
            }
            _ => unreachable!("check_dataset matched the targets to the loss"),
        }
        self.datasets.get_mut("gather", data)?.gathers.insert((rows, offset, training), gathers);
        Ok(())
    }

    fn write_batch(&self, plan: &Plan, x: &[f32], target: &Target) -> Result<()> {
        self.gpu.write(plan.get(&self.graph, Slot::Act(0)), x)?;
        match (target, &plan.labels) {
            (Target::Values(values), _) => self.gpu.write(plan.get(&self.graph, Slot::Targets), values),
            (Target::Labels(labels), Some(l)) => self.gpu.write_labels(l, labels),
            _ => unreachable!("check_target matched the target to the loss"),
        }
    }
}

/// An epoch on the GPU: the order uploaded once, minibatches gathered on the device from the
/// resident set, steps submitted in chunks, and the running loss read only every
/// [`LOSS_REPORT_STEPS`] (the watch's one small read).
impl Epoch for GpuModel {
    const STEPS_PER_CHUNK: usize = STEPS_PER_SUBMIT;

    fn pending_steps(&self) -> u32 {
        self.loss_steps
    }

    async fn take_loss(&mut self) -> Result<f32> {
        self.take_loss_async().await
    }

    fn prepare(&mut self, data: &Resident, batches: &[(usize, usize)], order: &[u32]) -> Result<()> {
        self.settle_steps();
        self.datasets.sweep();
        for &(offset, rows) in batches {
            self.gather(data, rows, offset, true)?;
        }
        let set = self.datasets.get("train_epoch", data)?;
        self.gpu.write_labels(&set.order, order)
    }

    fn run_chunk(&mut self, data: &Resident, chunk: &[(usize, usize)], _: &[u32]) -> Result<()> {
        let set = self.datasets.get("train_epoch", data)?;
        let mut all: Vec<&Dispatch> = Vec::new();
        for &(offset, rows) in chunk {
            let plan = &self.plans[&(rows, true)];
            all.extend(self.step(plan, &set.gathers[&(rows, offset, true)]));
        }
        self.gpu.run(&all)?;
        self.loss_steps += chunk.len() as u32;
        self.steps += chunk.len() as u32;
        Ok(())
    }

    async fn running_loss(&mut self, steps_done: usize, steps: usize) -> Result<Running> {
        if !steps_done.is_multiple_of(LOSS_REPORT_STEPS) || steps_done == steps {
            return Ok(Running::Loss(None));
        }
        let watch = self.read_watch().await?;
        Ok(match watch.first_bad {
            Some(_) => Running::Diverged,
            None => Running::Loss(Some(watch.total / self.loss_steps as f32)),
        })
    }
}

/// What the [`Engine`] calls that read back do, awaiting the GPU.
impl GpuModel {
    async fn take_loss_async(&mut self) -> Result<f32> {
        if self.loss_steps == 0 {
            return Err(Error::NoSteps { op: "take_loss" });
        }
        self.settle_steps();
        let watch = self.read_watch().await?;
        self.gpu.write_at(&self.shared.settings_row, WATCH, &[0.0; WATCH_LEN])?;
        let recorded = std::mem::take(&mut self.loss_steps);
        // The GPU's watch counts the steps that ran, and is the count: fewer than recorded
        // were put into an encoder never submitted (dropped, or another device's), or not
        // submitted yet; more, when such steps were submitted after the last read. The
        // model's count follows it either way, as the GPU's β powers and dropout counter do.
        let steps = watch.steps;
        self.steps = self.steps.saturating_sub(recorded).saturating_add(steps);
        if steps == 0 {
            return Err(Error::NoSteps { op: "take_loss" });
        }
        match watch.first_bad {
            Some(bad) => {
                // The bad step and those after it advanced nothing on the GPU but the dropout
                // counter: count only the applied ones, as the optimizer's β powers do.
                let skipped = steps.saturating_sub(bad);
                self.steps = self.steps.saturating_sub(skipped + 1);
                Err(Error::Diverged {
                    step: u64::from(self.steps) + 1,
                    loss: watch.bad_loss,
                    in_update: watch.bad_loss.is_finite(),
                    skipped,
                })
            }
            None => Ok(watch.total / steps as f32),
        }
    }

    async fn predict_async(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let rows = self.graph.rows("predict", x)?;
        // Rows are independent in a forward pass without dropout, so any number of them runs
        // in the plan of the next power of two (the rest of its rows are left as they were and
        // not read): a server's ragged sizes share a few plans instead of building one each.
        let class = rows.next_power_of_two();
        let planned =
            if self.plans.get((rows, false)).is_some() || class > self.most_rows() { rows } else { class };
        self.plan(planned, false)?;
        let plan = &self.plans[&(planned, false)];
        self.gpu.write_at(plan.get(&self.graph, Slot::Act(0)), 0, x)?;
        self.gpu.run(&plan.dispatches.iter().collect::<Vec<_>>())?;
        self.gpu.read_first_async(plan.output(&self.graph), rows * self.graph.outputs()).await
    }

    async fn evaluate_async(&mut self, x: &[f32], target: &Target<'_>) -> Result<Evaluation> {
        let rows = self.graph.rows("evaluate", x)?;
        self.graph.check_target("evaluate", target, rows)?;
        self.plan(rows, false)?;
        let plan = &self.plans[&(rows, false)];
        self.write_batch(plan, x, target)?;
        let all: Vec<&Dispatch> = plan.dispatches.iter().chain(&plan.loss_dispatches).collect();
        self.gpu.run(&all)?;
        let loss = self.gpu.read_async(plan.get(&self.graph, Slot::Loss)).await?[0];
        let accuracy = match target {
            Target::Labels(labels) => {
                let outputs = self.gpu.read_async(plan.output(&self.graph)).await?;
                Some(accuracy(&outputs, labels, self.graph.outputs()))
            }
            Target::Values(_) => None,
        };
        Ok(Evaluation { loss, accuracy })
    }

    async fn read_async(&self, p: usize, part: Part) -> Result<Vec<f32>> {
        let tensors = &self.shared.params[p];
        self.gpu
            .read_async(match part {
                Part::Value => &tensors.value,
                Part::Gradient => tensors.grad.as_ref().ok_or(Error::InferenceOnly { op: "gradients" })?,
            })
            .await
    }

    async fn evaluate_resident_async(&mut self, data: &Resident) -> Result<DataEvaluation> {
        self.datasets.sweep();
        self.datasets.get("evaluate_resident", data)?;
        // As many rows per submit as the widest activation's binding allows, up to EVAL_ROWS.
        let rows = self.most_rows().min(EVAL_ROWS);
        let batches = batches(data.len, rows);
        for &(offset, rows) in &batches {
            self.gather(data, rows, offset, false)?;
        }
        let (mut loss, mut predictions) = (0.0, Vec::new());
        let set = self.datasets.get("train_epoch", data)?;
        for &(offset, rows) in &batches {
            let plan = &self.plans[&(rows, false)];
            let all: Vec<&Dispatch> = set.gathers[&(rows, offset, false)]
                .iter()
                .chain(&plan.dispatches)
                .chain(&plan.loss_dispatches)
                .collect();
            self.gpu.run(&all)?;
            loss += f64::from(self.gpu.read_async(plan.get(&self.graph, Slot::Loss)).await?[0]) * rows as f64;
            if let GpuTargets::Labels(..) = set.targets {
                predictions.extend(arg_max(
                    &self.gpu.read_async(plan.output(&self.graph)).await?,
                    self.graph.outputs(),
                ));
            }
        }
        let labels = match &set.targets {
            GpuTargets::Labels(_, host) => Some(&host[..]),
            GpuTargets::Values(_) => None,
        };
        Ok(DataEvaluation::new(loss / data.len as f64, predictions, labels))
    }
}

impl Engine for GpuModel {
    fn take_loss(&mut self) -> Pending<'_, f32> {
        Box::pin(self.take_loss_async())
    }

    fn predict<'a>(&'a mut self, x: &'a [f32]) -> Pending<'a, Vec<f32>> {
        Box::pin(self.predict_async(x))
    }

    fn evaluate<'a>(&'a mut self, x: &'a [f32], target: &'a Target<'a>) -> Pending<'a, Evaluation> {
        Box::pin(self.evaluate_async(x, target))
    }

    fn read(&self, p: usize, part: Part) -> Pending<'_, Vec<f32>> {
        Box::pin(self.read_async(p, part))
    }

    fn train_epoch<'a>(
        &'a mut self,
        data: &'a Resident,
        batch_size: usize,
        seed: u64,
        progress: &'a mut dyn FnMut(EpochProgress),
    ) -> LocalPending<'a, f32> {
        Box::pin(run_epoch(self, data, batch_size, seed, progress))
    }

    fn evaluate_resident<'a>(&'a mut self, data: &'a Resident) -> Pending<'a, DataEvaluation> {
        Box::pin(self.evaluate_resident_async(data))
    }

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn backend(&self) -> Backend {
        Backend::Gpu
    }

    fn load(&mut self, data: &Dataset) -> Result<Resident> {
        check_dataset(&self.graph, data)?;
        let gpu = &self.gpu;
        let identity: Vec<u32> = (0..data.len() as u32).collect();
        let targets = match data.targets() {
            // Labels as the plans hold them: below the model's output width (checked above),
            // whatever count of classes the set was built with.
            Targets::Labels { labels, .. } => {
                GpuTargets::Labels(gpu.upload_labels(labels, self.graph.classes())?, labels.clone())
            }
            Targets::Values { values, outputs } => {
                GpuTargets::Values(upload_in_parts(gpu, values, *outputs)?)
            }
        };
        let set = GpuData {
            inputs: upload_in_parts(gpu, data.inputs(), data.width())?,
            targets,
            order: gpu.upload_labels(&identity, data.len())?,
            identity: gpu.upload_labels(&identity, data.len())?,
            gathers: HashMap::new(),
        };
        Ok(self.datasets.insert(set, data))
    }

    fn owns(&self, data: &Resident) -> bool {
        self.datasets.owns(data)
    }

    fn unload(&mut self, data: Resident) -> Result<()> {
        self.datasets.unload(data)
    }

    fn resident_sets(&mut self) -> usize {
        self.datasets.held()
    }

    fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        self.settle_steps();
        let rows = self.graph.rows("train_step", x)?;
        self.graph.check_training("train_step", target, rows)?;
        self.plan(rows, true)?;
        let plan = &self.plans[&(rows, true)];
        self.write_batch(plan, x, target)?;
        self.gpu.run(&self.step(plan, &[]).collect::<Vec<_>>())?;
        self.loss_steps += 1;
        self.steps += 1;
        Ok(())
    }

    fn write(&mut self, p: usize, values: &[f32]) -> Result<()> {
        check_new_values(&self.graph, p, values)?;
        self.gpu.write(&self.shared.params[p].value, values)
    }

    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        // Only lr changes; the rest of the row (the step's β powers) lives on the GPU.
        self.settings.lr = lr;
        self.gpu.write_at(&self.shared.settings_row, 0, &[lr])
    }

    fn counters(&self) -> Counters {
        self.gpu.counters()
    }
}

impl Checkpointed for GpuModel {
    fn read_entry(&self, p: usize, which: Which) -> Pending<'_, Vec<f32>> {
        Box::pin(self.gpu.read_async(self.entry(p, which)))
    }

    fn write_entry(&mut self, p: usize, which: Which, values: &[f32]) -> Result<()> {
        self.gpu.write(self.entry(p, which), values)
    }

    fn tracked_before(&self) -> &[i64] {
        &self.tracked_before
    }

    fn set_tracked_before(&mut self, before: Vec<i64>) {
        self.tracked_before = before;
    }

    /// The steps applied: those before the last loss read (less what a divergence report
    /// found was not applied), and of the steps since, those the GPU's watch saw run up to
    /// the first whose loss was not finite (the optimizer skipped it and those after it).
    fn steps(&self) -> Pending<'_, u32> {
        Box::pin(async move {
            let before = self
                .steps
                .saturating_sub(self.loss_steps)
                .saturating_sub(self.unapplied.load(Ordering::Relaxed));
            if self.loss_steps == 0 {
                return Ok(before);
            }
            let watch = self.read_watch().await?;
            let applied = match watch.first_bad {
                Some(bad) => bad.saturating_sub(1),
                None => watch.steps,
            };
            Ok(before.saturating_add(applied))
        })
    }

    fn set_steps(&mut self, steps: u32) -> Result<()> {
        self.settle_steps();
        self.steps = steps;
        self.settings.step = steps;
        // The settings and β powers only: the loss watch keeps the steps since the last read.
        self.gpu.write_at(&self.shared.settings_row, 0, &self.settings.to_row()[..WATCH])?;
        // The dropout counter holds the step as u32 bits.
        self.gpu.write(&self.shared.dropout_counter, &[f32::from_bits(steps)])
    }
}

impl GpuModel {
    /// The tensor a checkpoint entry reads or writes.
    fn entry(&self, p: usize, which: Which) -> &GpuTensor {
        match which {
            Which::Value => &self.shared.params[p].value,
            Which::State(k) => &self.shared.params[p].state[k],
            Which::Buffer => &self.shared.buffers[p],
            Which::Tracked => unreachable!("counts are not tensors of the model (checkpoint.rs)"),
        }
    }
}

/// Uploads a data set's rows (samples or target values) in as few parts as the adapter's
/// storage binding and buffer limits allow (lavapipe binds at most 128 MiB: full MNIST's
/// 188 MB training set takes two).
fn upload_in_parts(gpu: &Gpu, values: &[f32], width: usize) -> Result<Vec<(usize, GpuTensor)>> {
    let limits = gpu.limits();
    let most_bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    // Whole rows per part; a row bigger than the limit fails in upload, naming it.
    let rows_per_part = ((most_bytes / (width as u64 * 4)) as usize).max(1);
    let len = values.len() / width;
    (0..len)
        .step_by(rows_per_part)
        .map(|first| {
            let rows = rows_per_part.min(len - first);
            Ok((first, gpu.upload(&values[first * width..(first + rows) * width], rows, width)?))
        })
        .collect()
}
