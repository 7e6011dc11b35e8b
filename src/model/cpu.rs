//! The model on the CPU: the reference ops of [`crate::cpu`], layer by layer. Generic over
//! the float type so tests can check a whole network's gradients in f64.

use num_traits::Float;

use super::gemm::Scalar;

use super::checkpoint::{Checkpointed, Which};
use super::config::DenseValues;
use super::{
    DataEvaluation, EVAL_ROWS, EpochProgress, Evaluation, Graph, Layer, Loss, ModelConfig, Optimizer, Part,
    Resident, Target, accuracy, arg_max, batches, check_dataset, check_resident, epoch_order, next_model_id,
};
use crate::data::Dataset;
use crate::shape::MatmulForm;
use crate::{Error, OptimizerSettings, Result, cpu};

/// One dense layer's parameters, gradients and optimizer state.
#[derive(Clone, Debug)]
struct Dense<T> {
    inputs: usize,
    outputs: usize,
    w: Vec<T>,
    b: Option<Vec<T>>,
    gw: Vec<T>,
    gb: Option<Vec<T>>,
    /// Momentum's velocity or Adam's first moment, then Adam's second moment.
    w_state: [Vec<T>; 2],
    b_state: [Vec<T>; 2],
}

/// A model on the CPU.
#[derive(Clone, Debug)]
pub struct CpuModel<T> {
    graph: Graph,
    dense: Vec<Dense<T>>,
    settings: OptimizerSettings,
    dropout_step: u32,
    loss_total: f64,
    loss_steps: u32,
    /// The first step since the last loss read whose loss was not finite (1-based among
    /// them) and that loss: from then until the report, steps change nothing.
    diverged: Option<(u32, f32)>,
    id: u64,
    datasets: Vec<Dataset>,
}

/// Activations of one forward pass (index 0 is the input), and the dropout masks.
struct Pass<T> {
    rows: usize,
    acts: Vec<Vec<T>>,
    masks: Vec<Vec<T>>,
}

impl<T: Scalar> CpuModel<T> {
    /// Builds the model from a description, with the same initial weights as on the GPU.
    pub fn from_config(config: &ModelConfig) -> Result<Self> {
        Ok(Self::new(config, config.initial_parameters()?))
    }

    pub(crate) fn new(config: &ModelConfig, parameters: Vec<DenseValues>) -> Self {
        let graph = Graph::new(config);
        let cast = |v: &[f32]| v.iter().map(|&x| T::from(x).unwrap_or_else(T::nan)).collect::<Vec<T>>();
        let dims = config.layers.iter().filter_map(|l| match l {
            Layer::Dense { inputs, outputs, .. } => Some((*inputs, *outputs)),
            _ => None,
        });
        let dense = dims
            .zip(parameters)
            .map(|((inputs, outputs), (w, b))| Dense {
                inputs,
                outputs,
                gw: vec![T::zero(); w.len()],
                gb: b.as_ref().map(|b| vec![T::zero(); b.len()]),
                w_state: [vec![T::zero(); w.len()], vec![T::zero(); w.len()]],
                b_state: [vec![T::zero(); outputs], vec![T::zero(); outputs]],
                w: cast(&w),
                b: b.as_deref().map(cast),
            })
            .collect();
        CpuModel {
            graph,
            dense,
            settings: config.optimizer.settings(),
            dropout_step: 0,
            loss_total: 0.0,
            loss_steps: 0,
            diverged: None,
            id: next_model_id(),
            datasets: Vec::new(),
        }
    }

    pub fn train_step(&mut self, x: &[f32], target: &Target) -> Result<()> {
        let rows = self.graph.rows("train_step", x)?;
        self.graph.check_target("train_step", target, rows)?;
        // Each step draws new dropout masks, as the GPU's dropout_advance does.
        self.dropout_step += 1;
        self.loss_steps += 1;
        if self.diverged.is_some() {
            return Ok(()); // halted until take_loss reports it, as on the GPU
        }
        let loss = self.checked_gradients(x, rows, target)?.to_f64().unwrap_or(f64::NAN);
        if !loss.is_finite() {
            self.diverged = Some((self.loss_steps, loss as f32));
            return Ok(());
        }
        self.loss_total += loss;
        self.update()
    }

    /// Forward, loss and backward in training mode without updating: leaves the gradients in
    /// place and returns the batch's mean loss. Dropout uses the current step's masks.
    /// (The finite-difference tests call this in f64.)
    pub fn compute_gradients(&mut self, x: &[f32], target: &Target) -> Result<T> {
        let rows = self.graph.rows("train_step", x)?;
        self.graph.check_target("train_step", target, rows)?;
        self.checked_gradients(x, rows, target)
    }

    /// [`CpuModel::compute_gradients`] on a batch already checked to hold `rows` samples.
    fn checked_gradients(&mut self, x: &[f32], rows: usize, target: &Target) -> Result<T> {
        let pass = self.forward(x, rows, true, self.graph.trunk)?;
        let (loss, d_out) = self.loss(&pass, target, true)?;
        self.backward(&pass, d_out)?;
        Ok(loss)
    }

    /// The training-mode mean loss (the current step's dropout masks), changing nothing.
    pub fn training_loss(&self, x: &[f32], target: &Target) -> Result<T> {
        let rows = self.graph.rows("training_loss", x)?;
        self.graph.check_target("training_loss", target, rows)?;
        let pass = self.forward(x, rows, true, self.graph.trunk)?;
        Ok(self.loss(&pass, target, false)?.0)
    }

    pub fn take_loss(&mut self) -> Result<f32> {
        if self.loss_steps == 0 {
            return Err(Error::shape("take_loss", "at least one training step since the last call", "none"));
        }
        let mean = self.loss_total / f64::from(self.loss_steps);
        let steps = std::mem::take(&mut self.loss_steps);
        self.loss_total = 0.0;
        match self.diverged.take() {
            // No update ran since the bad step, so the optimizer's count is just before it.
            Some((bad, loss)) => {
                Err(Error::Diverged { step: u64::from(self.settings.step) + 1, loss, skipped: steps - bad })
            }
            None => Ok(mean as f32),
        }
    }

    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let rows = self.graph.rows("predict", x)?;
        let pass = self.forward(x, rows, false, self.graph.config.layers.len())?;
        Ok(pass.acts.last().map(|a| to_f32(a)).unwrap_or_default())
    }

    pub fn evaluate(&mut self, x: &[f32], target: &Target) -> Result<Evaluation> {
        let rows = self.graph.rows("evaluate", x)?;
        self.graph.check_target("evaluate", target, rows)?;
        let pass = self.forward(x, rows, false, self.graph.config.layers.len())?;
        let (loss, _) = self.loss(&pass, target, false)?;
        let outputs = to_f32(pass.acts.last().expect("the input is always there"));
        let accuracy = match target {
            Target::Labels(labels) => Some(accuracy(&outputs, labels, self.graph.outputs())),
            Target::Values(_) => None,
        };
        Ok(Evaluation { loss: loss.to_f32().unwrap_or(f32::NAN), accuracy })
    }

    pub(crate) fn parameter(&self, layer: usize, part: Part) -> Result<Vec<f32>> {
        let d = &self.dense[self.graph.dense(part_op(part), layer)?];
        let values = match part {
            Part::Weights => Some(&d.w),
            Part::Bias => d.b.as_ref(),
            Part::WeightGradients => Some(&d.gw),
            Part::BiasGradients => d.gb.as_ref(),
        };
        values.map(|v| to_f32(v)).ok_or_else(|| no_bias(layer))
    }

    pub(crate) fn set_weights(&mut self, layer: usize, weights: &[f32], bias: Option<&[f32]>) -> Result<()> {
        let index = self.graph.dense("set_weights", layer)?;
        let d = &mut self.dense[index];
        check_new_weights(layer, d.inputs, d.outputs, d.b.is_some(), weights, bias)?;
        d.w = from_f32(weights);
        if let Some(bias) = bias {
            d.b = Some(from_f32(bias));
        }
        Ok(())
    }

    pub fn load(&mut self, data: &Dataset) -> Result<Resident> {
        check_dataset(&self.graph, data)?;
        self.datasets.push(data.clone());
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
        let order = epoch_order(data.len, seed);
        let batches = batches(data.len, batch_size);
        let width = self.graph.inputs();
        if self.loss_steps > 0 {
            self.take_loss()?; // the epoch's mean starts afresh, but a divergence is reported
        }
        for (step, &(offset, rows)) in batches.iter().enumerate() {
            let set = &self.datasets[data.index];
            let picked = &order[offset..offset + rows];
            let x: Vec<f32> =
                picked.iter().flat_map(|&i| &set.inputs[i as usize * width..][..width]).copied().collect();
            let labels: Vec<u32> = picked.iter().map(|&i| set.labels[i as usize]).collect();
            self.train_step(&x, &Target::Labels(&labels))?;
            if self.diverged.is_some() {
                return self.take_loss();
            }
            let running_loss = Some((self.loss_total / f64::from(self.loss_steps)) as f32);
            progress(EpochProgress {
                steps_done: step + 1,
                steps: batches.len(),
                samples_done: offset + rows,
                running_loss,
            });
        }
        self.take_loss()
    }

    pub fn evaluate_resident(&mut self, data: &Resident) -> Result<DataEvaluation> {
        check_resident("evaluate_resident", data, self.id, self.datasets.len())?;
        let set = &self.datasets[data.index];
        let (mut loss, mut predictions) = (0.0, Vec::new());
        for (offset, rows) in batches(set.len(), EVAL_ROWS) {
            let x = &set.inputs[offset * set.width..(offset + rows) * set.width];
            let labels = &set.labels[offset..offset + rows];
            let pass = self.forward(x, rows, false, self.graph.config.layers.len())?;
            loss += self.loss(&pass, &Target::Labels(labels), false)?.0.to_f64().unwrap_or(f64::NAN)
                * rows as f64;
            let outputs = to_f32(pass.acts.last().expect("the input is always there"));
            predictions.extend(arg_max(&outputs, self.graph.outputs()));
        }
        let correct = predictions.iter().zip(&set.labels).filter(|(p, l)| p == l).count();
        let (loss, accuracy) = ((loss / set.len() as f64) as f32, correct as f32 / set.len() as f32);
        Ok(DataEvaluation { loss, accuracy, predictions })
    }

    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.settings.lr = lr;
        Ok(())
    }

    /// Runs layers `0..end`; in evaluation, dropout is the identity.
    fn forward(&self, x: &[f32], rows: usize, training: bool, end: usize) -> Result<Pass<T>> {
        let mut pass = Pass { rows, acts: vec![from_f32(x)], masks: Vec::new() };
        for (l, layer) in self.graph.config.layers[..end].iter().enumerate() {
            let input = &pass.acts[l];
            let cols = self.graph.width(l + 1);
            let mut out = vec![T::zero(); rows * cols];
            let mut mask = Vec::new();
            match layer {
                Layer::Dense { inputs, outputs, .. } => {
                    let d = &self.dense[self.graph.dense_index[l].expect("a dense layer")];
                    T::matmul(
                        &mut out,
                        input,
                        &d.w,
                        d.b.as_deref(),
                        rows,
                        *inputs,
                        *outputs,
                        MatmulForm::ABt,
                    )?
                }
                Layer::Relu => cpu::relu_forward(&mut out, input)?,
                Layer::Sigmoid => cpu::sigmoid_forward(&mut out, input)?,
                Layer::Tanh => cpu::tanh_forward(&mut out, input)?,
                Layer::Softmax => cpu::softmax_forward(&mut out, input, rows, cols)?,
                Layer::LogSoftmax => cpu::log_softmax_forward(&mut out, input, rows, cols)?,
                Layer::Dropout(p) if training => {
                    mask = vec![T::zero(); out.len()];
                    cpu::dropout_forward(
                        &mut out,
                        &mut mask,
                        input,
                        *p,
                        dropout_seed(self.graph.config.seed, l),
                        self.dropout_step,
                    )?
                }
                Layer::Dropout(_) => out.copy_from_slice(input),
            }
            pass.acts.push(out);
            pass.masks.push(mask);
        }
        Ok(pass)
    }

    /// The mean loss of the pass's last activation, and (when asked) its gradient.
    fn loss(&self, pass: &Pass<T>, target: &Target, with_gradient: bool) -> Result<(T, Vec<T>)> {
        let rows = pass.rows;
        let cols = self.graph.width(self.graph.trunk);
        // In evaluation the whole net ran; a fused softmax's input is one activation back.
        let y = &pass.acts[self.graph.trunk];
        let mut d = vec![T::zero(); if with_gradient { y.len() } else { 0 }];
        let loss = match (self.graph.config.loss, target) {
            (Loss::SoftmaxCrossEntropy, Target::Labels(labels)) => {
                let mut terms = vec![T::zero(); rows];
                cpu::softmax_cross_entropy_forward(&mut terms, y, labels, rows, cols)?;
                if with_gradient {
                    cpu::softmax_cross_entropy_backward(&mut d, y, labels, rows, cols)?;
                }
                cpu::sum_all(&terms, inverse(rows))
            }
            (Loss::Nll, Target::Labels(labels)) => {
                let mut terms = vec![T::zero(); rows];
                cpu::nll_forward(&mut terms, y, labels, rows, cols)?;
                if with_gradient {
                    cpu::nll_backward(&mut d, labels, rows, cols)?;
                }
                cpu::sum_all(&terms, inverse(rows))
            }
            (loss, Target::Values(values)) => {
                let t = from_f32(values);
                let mut terms = vec![T::zero(); y.len()];
                let (forward, backward): (PairLoss<T>, PairLoss<T>) = match loss {
                    Loss::Mse => (cpu::mse_forward, cpu::mse_backward),
                    Loss::Mae => (cpu::mae_forward, cpu::mae_backward),
                    _ => (cpu::bce_forward, cpu::bce_backward),
                };
                forward(&mut terms, y, &t)?;
                if with_gradient {
                    backward(&mut d, y, &t)?;
                }
                cpu::sum_all(&terms, inverse(y.len()))
            }
            _ => unreachable!("check_target matched the target to the loss"),
        };
        Ok((loss, d))
    }

    /// Back-propagates `d` (the gradient of the trunk's output) through layers `trunk − 1..0`.
    fn backward(&mut self, pass: &Pass<T>, mut d: Vec<T>) -> Result<()> {
        let rows = pass.rows;
        for l in (0..self.graph.trunk).rev() {
            let (input, output) = (&pass.acts[l], &pass.acts[l + 1]);
            let mut dx = vec![T::zero(); input.len()];
            let cols = self.graph.width(l + 1);
            match &self.graph.config.layers[l] {
                Layer::Dense { inputs, outputs, .. } => {
                    let dense = &mut self.dense[self.graph.dense_index[l].expect("a dense layer")];
                    let (m, k, n) = (rows, *inputs, *outputs);
                    // out = X·Wᵀ: dW = dOutᵀ·X, dX = dOut·W, dBias = column sums of dOut.
                    T::matmul(&mut dense.gw, &d, input, None, n, m, k, MatmulForm::AtB)?;
                    if let Some(gb) = dense.gb.as_mut() {
                        cpu::sum_columns(gb, &d, m, n, T::one())?;
                    }
                    if l > 0 {
                        T::matmul(&mut dx, &d, &dense.w, None, m, n, k, MatmulForm::AB)?;
                    }
                }
                Layer::Relu => cpu::relu_backward(&mut dx, input, &d)?,
                Layer::Sigmoid => cpu::sigmoid_backward(&mut dx, output, &d)?,
                Layer::Tanh => cpu::tanh_backward(&mut dx, output, &d)?,
                Layer::Softmax => cpu::softmax_backward(&mut dx, output, &d, rows, cols)?,
                Layer::LogSoftmax => cpu::log_softmax_backward(&mut dx, output, &d, rows, cols)?,
                Layer::Dropout(_) => cpu::dropout_backward(&mut dx, &pass.masks[l], &d)?,
            }
            d = dx;
        }
        Ok(())
    }

    fn update(&mut self) -> Result<()> {
        self.settings.step += 1;
        let (s, optimizer) = (&self.settings, self.graph.config.optimizer);
        for d in &mut self.dense {
            apply(optimizer, &mut d.w, &mut d.w_state, &d.gw, s)?;
            if let (Some(b), Some(gb)) = (d.b.as_mut(), d.gb.as_ref()) {
                apply(optimizer, b, &mut d.b_state, gb, s)?;
            }
        }
        Ok(())
    }

    /// Every parameter value, dense layer by dense layer (weights, then bias).
    pub fn parameters(&self) -> Vec<T> {
        self.dense.iter().flat_map(|d| d.w.iter().chain(d.b.iter().flatten()).copied()).collect()
    }

    /// The gradients, in the order of [`CpuModel::parameters`].
    pub fn gradients(&self) -> Vec<T> {
        self.dense.iter().flat_map(|d| d.gw.iter().chain(d.gb.iter().flatten()).copied()).collect()
    }

    /// Replaces every parameter value, in the order of [`CpuModel::parameters`].
    pub fn set_parameters(&mut self, values: &[T]) {
        let mut values = values.iter().copied();
        for d in &mut self.dense {
            for v in d.w.iter_mut().chain(d.b.iter_mut().flatten()) {
                *v = values.next().unwrap_or_else(T::nan);
            }
        }
    }
}

/// A value loss's forward or backward: (out, y, t).
type PairLoss<T> = fn(&mut [T], &[T], &[T]) -> Result<()>;

impl<T: Scalar> CpuModel<T> {
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    fn tensor_mut(&mut self, dense: usize, which: Which) -> Option<&mut Vec<T>> {
        let d = &mut self.dense[dense];
        match which {
            Which::Weight => Some(&mut d.w),
            Which::Bias => d.b.as_mut(),
            Which::WeightState(k) => d.w_state.get_mut(k),
            Which::BiasState(k) => d.b_state.get_mut(k),
        }
    }
}

impl<T: Scalar> Checkpointed for CpuModel<T> {
    fn read_entry(&self, dense: usize, which: Which) -> Result<Vec<f32>> {
        let d = &self.dense[dense];
        let values = match which {
            Which::Weight => Some(&d.w),
            Which::Bias => d.b.as_ref(),
            Which::WeightState(k) => d.w_state.get(k),
            Which::BiasState(k) => d.b_state.get(k),
        };
        values.map(|v| to_f32(v)).ok_or_else(|| no_bias(dense))
    }

    fn write_entry(&mut self, dense: usize, which: Which, values: &[f32]) -> Result<()> {
        let tensor = self.tensor_mut(dense, which).ok_or_else(|| no_bias(dense))?;
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

    fn steps(&self) -> u32 {
        self.settings.step
    }

    fn set_steps(&mut self, steps: u32) -> Result<()> {
        (self.settings.step, self.dropout_step) = (steps, steps);
        Ok(())
    }
}

fn apply<T: Float>(
    optimizer: Optimizer,
    w: &mut [T],
    [m, v]: &mut [Vec<T>; 2],
    g: &[T],
    s: &OptimizerSettings,
) -> Result<()> {
    match optimizer {
        Optimizer::Sgd { .. } => cpu::sgd_update(w, g, s),
        Optimizer::Momentum { .. } => cpu::momentum_update(w, m, g, s),
        Optimizer::Adam { .. } => cpu::adam_update(w, m, v, g, s),
        Optimizer::AdamW { .. } => cpu::adamw_update(w, m, v, g, s),
    }
}

/// Each dropout layer draws its own mask: its seed mixes the model's seed with its index.
pub(crate) fn dropout_seed(seed: u64, layer: usize) -> u32 {
    (seed as u32) ^ ((seed >> 32) as u32) ^ (layer as u32).wrapping_mul(0x9e37_79b9)
}

pub(crate) fn check_new_weights(
    layer: usize,
    inputs: usize,
    outputs: usize,
    has_bias: bool,
    weights: &[f32],
    bias: Option<&[f32]>,
) -> Result<()> {
    if weights.len() != inputs * outputs {
        return Err(Error::shape(
            "set_weights",
            format!("layer {layer}: {outputs}x{inputs} weights"),
            format!("{} values", weights.len()),
        ));
    }
    match bias {
        Some(b) if !has_bias || b.len() != outputs => Err(Error::shape(
            "set_weights",
            format!(
                "layer {layer}: {}",
                if has_bias { format!("a bias of {outputs} values") } else { "no bias".into() }
            ),
            format!("{} bias values", b.len()),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn part_op(part: Part) -> &'static str {
    match part {
        Part::Weights => "weights",
        Part::Bias => "bias",
        Part::WeightGradients => "weight_gradients",
        Part::BiasGradients => "bias_gradients",
    }
}

pub(crate) fn no_bias(layer: usize) -> Error {
    Error::shape("bias", format!("layer {layer} with a bias"), "a layer without one")
}

fn inverse<T: Float>(n: usize) -> T {
    T::one() / T::from(n).unwrap_or_else(T::one)
}

fn from_f32<T: Float>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from(x).unwrap_or_else(T::nan)).collect()
}

fn to_f32<T: Float>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32().unwrap_or(f32::NAN)).collect()
}
