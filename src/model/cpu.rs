//! The model on the CPU: the layers of `ops.rs` computed eagerly with the reference ops of
//! [`crate::cpu`], and fast paths beside them where the textbook loops were slow, each tested
//! against them: `gemm.rs` (products), `conv_gemm.rs` (convolutions unrolled into products),
//! `planes.rs` (batch norm and pooling), `parallel.rs` (dropout and the optimizers, on
//! every core). Generic over the float type so tests can check a whole network's gradients
//! in f64.

use std::collections::HashMap;
use std::sync::Arc;

use num_traits::Float;

use super::batch::{
    DataEvaluation, EVAL_ROWS, EpochProgress, Evaluation, Resident, ResidentSets, accuracy, arg_max, batches,
    next_model_id,
};
use super::checkpoint::{Checkpointed, Which};
use super::config::{Backend, Loss, ModelConfig, Optimizer};
use super::conv_gemm;
use super::engine::{Engine, Epoch, LocalPending, Part, Running, check_new_values, run_epoch};
use super::gemm::Scalar;
use super::graph::{Graph, Slot, check_dataset};
use super::ops::{self, Ops};
use super::parallel;
use super::planes;
use crate::blocking::{Pending, ready};
use crate::data::{Dataset, Targets};
use crate::shape::{BatchNorm, Conv2dShape, MatmulForm, Pool2dShape};
use crate::target::Target;
use crate::{Activation, Error, OptimizerSettings, Result, cpu};

/// One parameter's values, gradient and optimizer state (momentum's velocity, or Adam's
/// first and second moments).
#[derive(Clone, Debug)]
struct Tensors<T> {
    value: Vec<T>,
    grad: Vec<T>,
    state: Vec<Vec<T>>,
}

/// The buffers of one batch size: every slot `graph.batch_slots` names, and the labels.
#[derive(Clone, Debug)]
struct Batch<T> {
    rows: usize,
    training: bool,
    slots: HashMap<Slot, Vec<T>>,
    labels: Vec<u32>,
}

/// A model on the CPU, generic over f32 (the backend) and f64 (the tests' whole-network
/// finite differences, through the `internals` feature).
#[derive(Clone, Debug)]
pub struct CpuModel<T> {
    graph: Graph,
    params: Vec<Tensors<T>>,
    /// The graph's buffers (a batch norm's running statistics).
    buffers: Vec<Vec<T>>,
    /// See [`Checkpointed::tracked_before`].
    tracked_before: Vec<i64>,
    settings: OptimizerSettings,
    dropout_step: u32,
    loss_total: f64,
    loss_steps: u32,
    /// The first step since the last loss read that diverged (1-based among them), its loss,
    /// and whether its update was what diverged: from then until the report, steps change
    /// nothing.
    diverged: Option<(u32, f32, bool)>,
    datasets: ResidentSets<Arc<Dataset>>,
    /// The last batch size's buffers, reused while it repeats (no allocation per step).
    batch: Batch<T>,
}

// The f64 hooks are used only with the `internals` feature.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
impl<T: Scalar> CpuModel<T> {
    /// Builds the model from a description, with the same initial weights as on the GPU.
    pub fn from_config(config: &ModelConfig) -> Result<Self> {
        let graph = Graph::new(config)?;
        let values = graph.initial_values()?;
        Ok(Self::new(graph, values))
    }

    pub(crate) fn new(graph: Graph, values: Vec<Vec<f32>>) -> Self {
        let states = graph.state_names().len();
        let params = values
            .iter()
            .map(|v| Tensors {
                value: from_f32(v),
                // A model that does not train keeps no gradients (and no state: `states` is 0).
                grad: if graph.trains { vec![T::zero(); v.len()] } else { Vec::new() },
                state: vec![vec![T::zero(); v.len()]; states],
            })
            .collect();
        CpuModel {
            settings: graph.config.optimizer.settings(),
            buffers: graph.initial_buffers().iter().map(|b| from_f32(b)).collect(),
            tracked_before: vec![0; graph.batch_norms()],
            graph,
            params,
            dropout_step: 0,
            loss_total: 0.0,
            loss_steps: 0,
            diverged: None,
            datasets: ResidentSets::new(next_model_id()),
            batch: Batch { rows: 0, training: false, slots: HashMap::new(), labels: Vec::new() },
        }
    }

    fn step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        let rows = self.graph.rows("train_step", x)?;
        self.graph.check_training("train_step", target, rows)?;
        self.checked_step(x, rows, target)
    }

    /// A training step on a batch already checked to hold `rows` samples.
    fn checked_step(&mut self, x: &[f32], rows: usize, target: &Target) -> Result<()> {
        self.write_batch(x, rows, Some(target), true);
        self.step_written(rows)
    }

    /// A training step on the batch of `rows` samples in the batch buffers: on rayon's pool
    /// when it is big enough to use it (see [`CpuModel::on_pool`]).
    fn step_written(&mut self, rows: usize) -> Result<()> {
        self.on_pool(rows, |model| model.step_on_pool(rows))
    }

    /// Runs `f` on rayon's pool when a pass over `rows` samples has work for more than one
    /// thread (batch × parameters, about its forward's multiply-adds, of at least
    /// [`super::gemm::PARALLEL_MACS`]): its products' bands and chunked ops then keep to the
    /// pool's threads. From a thread outside the pool the caller took a band itself while the
    /// pool's idle thread spun beside the two at work: three threads on two cores made the
    /// MNIST MLP's steps 1.3–2× slower, and erratic. Smaller passes stay on the calling
    /// thread: handing a 3-4-1 net's step to the pool cost 7× the step.
    fn on_pool<R: Send>(&mut self, rows: usize, f: impl FnOnce(&mut Self) -> R + Send) -> R {
        let parameters: usize = self.params.iter().map(|p| p.value.len()).sum();
        if rows.saturating_mul(parameters) >= super::gemm::PARALLEL_MACS {
            rayon::scope(|_| f(self))
        } else {
            f(self)
        }
    }

    fn step_on_pool(&mut self, rows: usize) -> Result<()> {
        // Each step draws new dropout masks, as the GPU's dropout_advance does.
        self.dropout_step += 1;
        self.loss_steps += 1;
        if self.diverged.is_some() {
            return Ok(()); // halted until take_loss reports it, as on the GPU
        }
        let loss = self.gradients_written(rows)?.to_f64().unwrap_or(f64::NAN);
        if !loss.is_finite() {
            self.diverged = Some((self.loss_steps, loss as f32, false));
            return Ok(());
        }
        self.settings.step += 1;
        if !self.updates_are_finite()? {
            self.settings.step -= 1;
            self.diverged = Some((self.loss_steps, loss as f32, true));
            return Ok(());
        }
        self.loss_total += loss;
        let mut exec = self.exec(rows, true);
        let graph = exec.graph;
        ops::updates(&mut exec, graph)
    }

    /// Whether this step's updates would leave every weight and optimizer state finite, as the
    /// GPU's optimizer checks find before its updates.
    fn updates_are_finite(&self) -> Result<bool> {
        let optimizer = self.graph.config.optimizer;
        for tensors in &self.params {
            if !parallel::check(optimizer, &tensors.value, &tensors.state, &tensors.grad, &self.settings)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Forward, loss and backward in training mode without updating: leaves the gradients in
    /// place and returns the batch's mean loss. Dropout uses the current step's masks.
    /// (The finite-difference tests call this in f64.)
    pub fn compute_gradients(&mut self, x: &[f32], target: &Target) -> Result<T> {
        let rows = self.graph.rows("train_step", x)?;
        self.graph.check_training("train_step", target, rows)?;
        self.checked_gradients(x, rows, target)
    }

    fn checked_gradients(&mut self, x: &[f32], rows: usize, target: &Target) -> Result<T> {
        self.write_batch(x, rows, Some(target), true);
        self.gradients_written(rows)
    }

    fn gradients_written(&mut self, rows: usize) -> Result<T> {
        let mut exec = self.exec(rows, true);
        let graph = exec.graph;
        ops::training_step(&mut exec, graph)?;
        Ok(self.batch.slots[&Slot::Loss][0])
    }

    /// The training-mode mean loss (the current step's dropout masks), changing no
    /// parameter or gradient (a batch norm's running statistics do move, as in any
    /// training-mode forward).
    pub fn training_loss(&mut self, x: &[f32], target: &Target) -> Result<T> {
        let rows = self.graph.rows("training_loss", x)?;
        self.graph.check_training("training_loss", target, rows)?;
        self.write_batch(x, rows, Some(target), true);
        let mut exec = self.exec(rows, true);
        let graph = exec.graph;
        ops::training_forward(&mut exec, graph)?;
        ops::loss(&mut exec, graph)?;
        Ok(self.batch.slots[&Slot::Loss][0])
    }

    /// Runs the whole net outside training (and the loss, given a target); returns the output.
    /// On rayon's pool when big enough, as [`CpuModel::step_written`].
    fn infer(&mut self, x: &[f32], rows: usize, target: Option<&Target>) -> Result<Vec<f32>> {
        self.on_pool(rows, |model| model.infer_on_pool(x, rows, target))
    }

    fn infer_on_pool(&mut self, x: &[f32], rows: usize, target: Option<&Target>) -> Result<Vec<f32>> {
        self.write_batch(x, rows, target, false);
        let mut exec = self.exec(rows, false);
        let graph = exec.graph;
        ops::inference(&mut exec, graph)?;
        if target.is_some() {
            ops::loss(&mut exec, graph)?;
        }
        let last = graph.storage(Slot::Act(graph.layers().len()), false);
        Ok(to_f32(&self.batch.slots[&last]))
    }

    fn batch_loss(&self) -> f32 {
        self.batch.slots[&Slot::Loss][0].to_f32().unwrap_or(f32::NAN)
    }

    /// Makes `self.batch` the buffers of (rows, training), keeping them while that repeats.
    fn batch_buffers(&mut self, rows: usize, training: bool) {
        if (self.batch.rows, self.batch.training) != (rows, training) {
            let slots = self.graph.batch_slots(rows, training);
            let mut slots: HashMap<Slot, Vec<T>> =
                slots.into_iter().map(|(slot, (r, c))| (slot, vec![T::zero(); r * c])).collect();
            slots.insert(Slot::Act(0), vec![T::zero(); rows * self.graph.inputs()]);
            self.batch = Batch { rows, training, slots, labels: vec![0; rows] };
        }
    }

    /// Writes the samples `picked` of a resident set into a training batch's buffers, straight
    /// from the set (no minibatch is gathered on the way).
    fn write_gathered(&mut self, set: &Dataset, picked: &[u32]) {
        self.batch_buffers(picked.len(), true);
        let rows_of = |values: &[f32], width: usize, out: &mut [T]| {
            for (row, &i) in out.chunks_exact_mut(width).zip(picked) {
                copy_into(row, &values[i as usize * width..][..width]);
            }
        };
        let slots = &mut self.batch.slots;
        rows_of(set.inputs(), set.width(), slots.get_mut(&Slot::Act(0)).expect("the input slot"));
        match set.targets() {
            Targets::Labels { labels, .. } => {
                for (l, &i) in self.batch.labels.iter_mut().zip(picked) {
                    *l = labels[i as usize];
                }
            }
            Targets::Values { values, outputs } => {
                rows_of(values, *outputs, slots.get_mut(&Slot::Targets).expect("a value loss"))
            }
        }
    }

    /// Makes `self.batch` the buffers of (rows, training), then writes the batch into them.
    fn write_batch(&mut self, x: &[f32], rows: usize, target: Option<&Target>, training: bool) {
        self.batch_buffers(rows, training);
        copy_into(self.batch.slots.get_mut(&Slot::Act(0)).expect("the input slot"), x);
        match target {
            Some(Target::Values(values)) => {
                copy_into(self.batch.slots.get_mut(&Slot::Targets).expect("a value loss"), values)
            }
            Some(Target::Labels(labels)) => self.batch.labels.copy_from_slice(labels),
            None => {}
        }
    }

    fn exec(&mut self, rows: usize, training: bool) -> Exec<'_, T> {
        Exec {
            graph: &self.graph,
            params: &mut self.params,
            buffers: &mut self.buffers,
            batch: &mut self.batch,
            settings: &self.settings,
            dropout_step: self.dropout_step,
            rows,
            training,
        }
    }

    /// Every parameter value, in the graph's order.
    pub fn parameters(&self) -> Vec<T> {
        self.params.iter().flat_map(|p| p.value.iter().copied()).collect()
    }

    /// The gradients, in the order of [`CpuModel::parameters`].
    pub fn gradients(&self) -> Vec<T> {
        self.params.iter().flat_map(|p| p.grad.iter().copied()).collect()
    }

    /// Replaces every parameter value, in the order of [`CpuModel::parameters`].
    pub fn set_parameters(&mut self, values: &[T]) {
        let mut values = values.iter().copied();
        for v in self.params.iter_mut().flat_map(|p| p.value.iter_mut()) {
            *v = values.next().unwrap_or_else(T::nan);
        }
    }
}

/// The CPU's answers are there at once: each reading call of [`Engine`] is the inherent
/// method of the same name, ready.
impl Engine for CpuModel<f32> {
    fn take_loss(&mut self) -> Pending<'_, f32> {
        ready(CpuModel::take_loss(self))
    }

    fn predict<'a>(&'a mut self, x: &'a [f32]) -> Pending<'a, Vec<f32>> {
        ready(CpuModel::predict(self, x))
    }

    fn evaluate<'a>(&'a mut self, x: &'a [f32], target: &'a Target<'a>) -> Pending<'a, Evaluation> {
        ready(CpuModel::evaluate(self, x, target))
    }

    fn read(&self, p: usize, part: Part) -> Pending<'_, Vec<f32>> {
        ready(CpuModel::read(self, p, part))
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
        ready(CpuModel::evaluate_resident(self, data))
    }

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn backend(&self) -> Backend {
        Backend::Cpu
    }

    fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        self.step(x, target)
    }

    fn write(&mut self, p: usize, values: &[f32]) -> Result<()> {
        check_new_values(&self.graph, p, values)?;
        self.params[p].value = from_f32(values);
        Ok(())
    }

    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.settings.lr = lr;
        Ok(())
    }

    fn load(&mut self, data: &Dataset) -> Result<Resident> {
        check_dataset(&self.graph, data)?;
        Ok(self.datasets.insert(Arc::new(data.clone()), data))
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
}

/// An epoch on the CPU: a step at a time, each minibatch copied from the resident set into the
/// batch buffers, the running loss known after every step.
impl Epoch for CpuModel<f32> {
    const STEPS_PER_CHUNK: usize = 1;

    fn pending_steps(&self) -> u32 {
        self.loss_steps
    }

    async fn take_loss(&mut self) -> Result<f32> {
        CpuModel::take_loss(self)
    }

    fn prepare(&mut self, data: &Resident, _: &[(usize, usize)], _: &[u32]) -> Result<()> {
        self.datasets.sweep();
        self.datasets.get("train_epoch", data).map(|_| ())
    }

    fn run_chunk(&mut self, data: &Resident, chunk: &[(usize, usize)], order: &[u32]) -> Result<()> {
        let set = Arc::clone(self.datasets.get("train_epoch", data)?);
        for &(offset, rows) in chunk {
            // Checked when the set was loaded.
            self.write_gathered(&set, &order[offset..offset + rows]);
            self.step_written(rows)?;
        }
        Ok(())
    }

    async fn running_loss(&mut self, _: usize, _: usize) -> Result<Running> {
        Ok(match self.diverged {
            Some(_) => Running::Diverged,
            None => Running::Loss(Some((self.loss_total / f64::from(self.loss_steps)) as f32)),
        })
    }
}

/// The reading calls, computed at once.
impl CpuModel<f32> {
    fn take_loss(&mut self) -> Result<f32> {
        if self.loss_steps == 0 {
            return Err(Error::NoSteps { op: "take_loss" });
        }
        let mean = self.loss_total / f64::from(self.loss_steps);
        let steps = std::mem::take(&mut self.loss_steps);
        self.loss_total = 0.0;
        match self.diverged.take() {
            // No update ran since the bad step, so the optimizer's count is just before it.
            Some((bad, loss, in_update)) => Err(Error::Diverged {
                step: u64::from(self.settings.step) + 1,
                loss,
                in_update,
                skipped: steps - bad,
            }),
            None => Ok(mean as f32),
        }
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let rows = self.graph.rows("predict", x)?;
        self.infer(x, rows, None)
    }

    fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation> {
        let rows = self.graph.rows("evaluate", x)?;
        self.graph.check_target("evaluate", target, rows)?;
        let outputs = self.infer(x, rows, Some(target))?;
        let accuracy = match target {
            Target::Labels(labels) => Some(accuracy(&outputs, labels, self.graph.outputs())),
            Target::Values(_) => None,
        };
        Ok(Evaluation { loss: self.batch_loss(), accuracy })
    }

    fn read(&self, p: usize, part: Part) -> Result<Vec<f32>> {
        let tensors = &self.params[p];
        Ok(to_f32(match part {
            Part::Value => &tensors.value,
            Part::Gradient => {
                self.graph.check_trains("gradients")?;
                &tensors.grad
            }
        }))
    }

    fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation> {
        self.datasets.sweep();
        let set = Arc::clone(self.datasets.get("evaluate_resident", data)?);
        self.evaluate_set(&set)
    }
}

impl CpuModel<f32> {
    fn evaluate_set(&mut self, set: &Dataset) -> Result<DataEvaluation> {
        let (mut loss, mut predictions) = (0.0, Vec::new());
        for (offset, rows) in batches(set.len(), EVAL_ROWS) {
            let batch = set.slice(offset..offset + rows);
            let outputs = self.infer(batch.inputs(), rows, Some(&batch.target()))?;
            loss += f64::from(self.batch_loss()) * rows as f64;
            if set.labels().is_some() {
                predictions.extend(arg_max(&outputs, self.graph.outputs()));
            }
        }
        Ok(DataEvaluation::new(loss / set.len() as f64, predictions, set.labels()))
    }
}

impl<T: Scalar> Checkpointed for CpuModel<T> {
    fn read_entry(&self, p: usize, which: Which) -> Pending<'_, Vec<f32>> {
        ready(Ok(to_f32(match which {
            Which::Value => &self.params[p].value,
            Which::State(k) => &self.params[p].state[k],
            Which::Buffer => &self.buffers[p],
            Which::Tracked => unreachable!("counts are not tensors of the model (checkpoint::to_bytes)"),
        })))
    }

    fn write_entry(&mut self, p: usize, which: Which, values: &[f32]) -> Result<()> {
        let tensor = match which {
            Which::Value => &mut self.params[p].value,
            Which::State(k) => &mut self.params[p].state[k],
            Which::Buffer => &mut self.buffers[p],
            Which::Tracked => unreachable!("counts are not tensors of the model (checkpoint::read)"),
        };
        if tensor.len() != values.len() {
            return Err(Error::shape(
                "load_checkpoint",
                format!("{} values", tensor.len()),
                format!("{}", values.len()),
            ));
        }
        *tensor = from_f32(values);
        Ok(())
    }

    fn steps(&self) -> Pending<'_, u32> {
        ready(Ok(self.settings.step))
    }

    fn set_steps(&mut self, steps: u32) -> Result<()> {
        (self.settings.step, self.dropout_step) = (steps, steps);
        Ok(())
    }

    fn tracked_before(&self) -> &[i64] {
        &self.tracked_before
    }

    fn set_tracked_before(&mut self, before: Vec<i64>) {
        self.tracked_before = before;
    }
}

/// The CPU's [`Ops`]: each op computed when it is called, on the model's parameters and the
/// batch's buffers.
struct Exec<'a, T> {
    graph: &'a Graph,
    params: &'a mut [Tensors<T>],
    buffers: &'a mut [Vec<T>],
    batch: &'a mut Batch<T>,
    settings: &'a OptimizerSettings,
    dropout_step: u32,
    rows: usize,
    training: bool,
}

impl<T: Scalar> Exec<'_, T> {
    fn get(&self, slot: Slot) -> &[T] {
        match slot {
            Slot::Param(p) => &self.params[p].value,
            Slot::ParamGrad(p) => &self.params[p].grad,
            Slot::Buffer(b) => &self.buffers[b],
            slot => &self.batch.slots[&self.graph.storage(slot, self.training)],
        }
    }

    /// Takes `slot`'s buffer out to write it while others are read; [`Exec::put`] returns it.
    fn take(&mut self, slot: Slot) -> Vec<T> {
        match slot {
            Slot::Param(p) => std::mem::take(&mut self.params[p].value),
            Slot::ParamGrad(p) => std::mem::take(&mut self.params[p].grad),
            Slot::Buffer(b) => std::mem::take(&mut self.buffers[b]),
            slot => {
                let slot = self.graph.storage(slot, self.training);
                std::mem::take(self.batch.slots.get_mut(&slot).expect("a slot of the batch"))
            }
        }
    }

    fn put(&mut self, slot: Slot, values: Vec<T>) {
        match slot {
            Slot::Param(p) => self.params[p].value = values,
            Slot::ParamGrad(p) => self.params[p].grad = values,
            Slot::Buffer(b) => self.buffers[b] = values,
            slot => {
                let slot = self.graph.storage(slot, self.training);
                *self.batch.slots.get_mut(&slot).expect("a slot of the batch") = values;
            }
        }
    }

    /// Computes `op` into `out`, reading any other slots.
    fn write(&mut self, out: Slot, op: impl FnOnce(&Self, &mut [T]) -> Result<()>) -> Result<()> {
        let mut values = self.take(out);
        let result = op(self, &mut values);
        self.put(out, values);
        result
    }

    /// The width of a batch slot (values per row).
    fn cols(&self, slot: Slot) -> usize {
        self.get(slot).len() / self.rows
    }

    /// A slot's `(rows, cols)`: parameters from the graph, batch slots from the batch.
    fn shape(&self, slot: Slot) -> (usize, usize) {
        match slot {
            Slot::Param(p) | Slot::ParamGrad(p) => {
                let param = &self.graph.params[p];
                (param.rows, param.cols)
            }
            slot => (self.rows, self.cols(slot)),
        }
    }
}

impl<T: Scalar> Ops for Exec<'_, T> {
    fn matmul(&mut self, out: Slot, a: Slot, b: Slot, bias: Option<Slot>, form: MatmulForm) -> Result<()> {
        let (m, k, n) = form.dims(self.shape(a), self.shape(b))?;
        self.write(out, |s, o| T::matmul(o, s.get(a), s.get(b), bias.map(|b| s.get(b)), m, k, n, form))
    }

    fn sum_columns(&mut self, out: Slot, x: Slot) -> Result<()> {
        let (rows, cols) = self.shape(x);
        self.write(out, |s, o| cpu::sum_columns(o, s.get(x), rows, cols, T::one()))
    }

    fn activation(&mut self, f: Activation, out: Slot, x: Slot) -> Result<()> {
        self.write(out, |s, o| cpu::activation_forward(f, o, s.get(x)))
    }

    fn activation_backward(&mut self, f: Activation, dx: Slot, saved: Slot, dy: Slot) -> Result<()> {
        self.write(dx, |s, o| cpu::activation_backward(f, o, s.get(saved), s.get(dy)))
    }

    fn softmax(&mut self, log: bool, out: Slot, x: Slot) -> Result<()> {
        let (rows, cols) = self.shape(x);
        let forward = if log { cpu::log_softmax_forward } else { cpu::softmax_forward };
        self.write(out, |s, o| forward(o, s.get(x), rows, cols))
    }

    fn softmax_backward(&mut self, log: bool, dx: Slot, y: Slot, dy: Slot) -> Result<()> {
        let (rows, cols) = self.shape(y);
        let backward = if log { cpu::log_softmax_backward } else { cpu::softmax_backward };
        self.write(dx, |s, o| backward(o, s.get(y), s.get(dy), rows, cols))
    }

    fn dropout(&mut self, out: Slot, mask: Slot, x: Slot, p: f32, seed: u32) -> Result<()> {
        let mut mask_values = self.take(mask);
        let step = self.dropout_step;
        let result =
            self.write(out, |s, o| parallel::dropout_forward(o, &mut mask_values, s.get(x), p, seed, step));
        self.put(mask, mask_values);
        result
    }

    fn dropout_backward(&mut self, dx: Slot, mask: Slot, dy: Slot) -> Result<()> {
        self.write(dx, |s, o| cpu::dropout_backward(o, s.get(mask), s.get(dy)))
    }

    fn conv2d(&mut self, y: Slot, x: Slot, w: Slot, bias: Option<Slot>, shape: &Conv2dShape) -> Result<()> {
        let n = self.shape(x).0;
        self.write(y, |s, o| conv_gemm::forward(o, s.get(x), s.get(w), bias.map(|b| s.get(b)), n, shape))
    }

    fn conv2d_input_grad(&mut self, dx: Slot, dy: Slot, w: Slot, shape: &Conv2dShape) -> Result<()> {
        let n = self.shape(dy).0;
        self.write(dx, |s, o| conv_gemm::input_grad(o, s.get(dy), s.get(w), n, shape))
    }

    fn conv2d_weight_grad(
        &mut self,
        dw: Slot,
        db: Option<Slot>,
        dy: Slot,
        x: Slot,
        shape: &Conv2dShape,
    ) -> Result<()> {
        let n = self.shape(x).0;
        self.write(dw, |s, o| conv_gemm::weight_grad(o, s.get(dy), s.get(x), n, shape))?;
        match db {
            Some(db) => self.write(db, |s, o| cpu::conv2d_bias_grad(o, s.get(dy), n, shape)),
            None => Ok(()),
        }
    }

    fn maxpool2d(&mut self, y: Slot, argmax: Slot, x: Slot, shape: &Pool2dShape) -> Result<()> {
        let n = self.shape(x).0;
        let mut winners = self.take(argmax);
        let result = self.write(y, |s, o| planes::maxpool2d_forward(o, &mut winners, s.get(x), n, shape));
        self.put(argmax, winners);
        result
    }

    fn maxpool2d_backward(&mut self, dx: Slot, dy: Slot, argmax: Slot, shape: &Pool2dShape) -> Result<()> {
        let n = self.shape(dy).0;
        self.write(dx, |s, o| planes::maxpool2d_backward(o, s.get(dy), s.get(argmax), n, shape))
    }

    fn avgpool2d(&mut self, y: Slot, x: Slot, shape: &Pool2dShape) -> Result<()> {
        let n = self.shape(x).0;
        self.write(y, |s, o| planes::avgpool2d_forward(o, s.get(x), n, shape))
    }

    fn avgpool2d_backward(&mut self, dx: Slot, dy: Slot, shape: &Pool2dShape) -> Result<()> {
        let n = self.shape(dy).0;
        self.write(dx, |s, o| planes::avgpool2d_backward(o, s.get(dy), n, shape))
    }

    fn layer_norm_stats(&mut self, stats: Slot, x: Slot) -> Result<()> {
        let (rows, cols) = self.shape(x);
        self.write(stats, |s, o| cpu::layer_norm_stats(o, s.get(x), rows, cols))
    }

    fn layer_norm(&mut self, out: Slot, x: Slot, stats: Slot, gain: Slot, bias: Slot) -> Result<()> {
        let (rows, cols) = self.shape(x);
        self.write(out, |s, o| {
            cpu::layer_norm_forward(o, s.get(x), s.get(stats), s.get(gain), s.get(bias), rows, cols)
        })
    }

    fn layer_norm_backward(&mut self, dx: Slot, x: Slot, stats: Slot, gain: Slot, dy: Slot) -> Result<()> {
        let (rows, cols) = self.shape(x);
        self.write(dx, |s, o| {
            cpu::layer_norm_backward(o, s.get(x), s.get(stats), s.get(gain), s.get(dy), rows, cols)
        })
    }

    fn layer_norm_gain_terms(&mut self, terms: Slot, x: Slot, stats: Slot, dy: Slot) -> Result<()> {
        let (rows, cols) = self.shape(x);
        self.write(terms, |s, o| cpu::layer_norm_gain_terms(o, s.get(x), s.get(stats), s.get(dy), rows, cols))
    }

    fn batch_norm_stats(
        &mut self,
        stats: Slot,
        [mean, var]: [Slot; 2],
        x: Slot,
        g: &BatchNorm,
        training: bool,
    ) -> Result<()> {
        let (rows, cols) = self.shape(x);
        let (mut running_mean, mut running_var) = (self.take(mean), self.take(var));
        let result = self.write(stats, |s, o| match training {
            true => {
                let plane = g.plane("batch_norm_stats", cols)?;
                planes::batch_norm_stats(o, &mut running_mean, &mut running_var, s.get(x), rows, plane, g)
            }
            false => cpu::batch_norm_eval_stats(o, &running_mean, &running_var, g),
        });
        self.put(mean, running_mean);
        self.put(var, running_var);
        result
    }

    fn batch_norm(
        &mut self,
        y: Slot,
        x: Slot,
        stats: Slot,
        gain: Slot,
        bias: Slot,
        g: &BatchNorm,
    ) -> Result<()> {
        let (rows, cols) = self.shape(x);
        let plane = g.plane("batch_norm_forward", cols)?;
        self.write(y, |s, o| {
            planes::batch_norm_forward(o, s.get(x), s.get(stats), s.get(gain), s.get(bias), rows, plane, g)
        })
    }

    fn batch_norm_backward(
        &mut self,
        dx: Option<Slot>,
        [dgain, dbias]: [Slot; 2],
        x: Slot,
        stats: Slot,
        gain: Slot,
        dy: Slot,
        g: &BatchNorm,
    ) -> Result<()> {
        let (rows, cols) = self.shape(x);
        let plane = g.plane("batch_norm_backward", cols)?;
        let mut dx_values = dx.map(|dx| self.take(dx));
        let mut db = self.take(dbias);
        let result = self.write(dgain, |s, o| {
            let (x, stats, gain, dy) = (s.get(x), s.get(stats), s.get(gain), s.get(dy));
            planes::batch_norm_backward(
                dx_values.as_deref_mut(),
                o,
                &mut db,
                x,
                stats,
                gain,
                dy,
                rows,
                plane,
                g,
            )
        });
        self.put(dbias, db);
        if let (Some(dx), Some(values)) = (dx, dx_values) {
            self.put(dx, values);
        }
        result
    }

    fn loss(&mut self, loss: Loss, terms: Slot, y: Slot) -> Result<()> {
        let (rows, cols) = self.shape(y);
        self.write(terms, |s, o| {
            let (y, labels) = (s.get(y), &s.batch.labels);
            match loss {
                Loss::SoftmaxCrossEntropy => cpu::softmax_cross_entropy_forward(o, y, labels, rows, cols),
                Loss::Nll => cpu::nll_forward(o, y, labels, rows, cols),
                value => cpu::value_loss_forward(value, o, y, s.get(Slot::Targets)),
            }
        })
    }

    fn loss_backward(&mut self, loss: Loss, dy: Slot, y: Slot) -> Result<()> {
        let (rows, cols) = self.shape(y);
        self.write(dy, |s, o| {
            let (y, labels) = (s.get(y), &s.batch.labels);
            match loss {
                Loss::SoftmaxCrossEntropy => cpu::softmax_cross_entropy_backward(o, y, labels, rows, cols),
                Loss::Nll => cpu::nll_backward(o, labels, rows, cols),
                value => cpu::value_loss_backward(value, o, y, s.get(Slot::Targets)),
            }
        })
    }

    fn mean(&mut self, out: Slot, terms: Slot) -> Result<()> {
        let terms = self.get(terms);
        let mean = cpu::sum_all(terms, T::one() / T::from(terms.len()).unwrap_or_else(T::one));
        self.write(out, |_, o| {
            o[0] = mean;
            Ok(())
        })
    }

    fn watch_loss(&mut self, _loss: Slot) -> Result<()> {
        Ok(()) // the model checks the loss on the host after the step
    }

    fn updates(&mut self, optimizer: Optimizer) -> Result<()> {
        let s = self.settings;
        for tensors in self.params.iter_mut() {
            let (w, g) = (&mut tensors.value, &tensors.grad);
            parallel::update(optimizer, w, &mut tensors.state, g, s)?;
        }
        Ok(())
    }
}

fn copy_into<T: Float>(out: &mut [T], values: &[f32]) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = T::from(v).unwrap_or_else(T::nan);
    }
}

fn from_f32<T: Float>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from(x).unwrap_or_else(T::nan)).collect()
}

fn to_f32<T: Float>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32().unwrap_or(f32::NAN)).collect()
}
