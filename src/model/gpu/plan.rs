//! A model's plan for one batch size: every buffer `graph.batch_slots` names, and the layers
//! of `ops.rs` bound to them as dispatches, once, on first use. [`Binder`] is the GPU's
//! [`Ops`]: each op it is given becomes a `Dispatch` in the plan.

use super::flat::{Flat, ParamTensors};
use super::fused::FusedBuffers;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::gpu::{Deferred, MlpShape, StepTarget};
use crate::model::config::{Loss, Optimizer};
use crate::model::graph::{Graph, Slot};
use crate::model::ops::{self, DenseForward, Ops, Tail};
use crate::shape::{BatchNorm, Conv2dShape, MatmulForm, Pool2dShape};
use crate::{
    Activation, Dispatch, Epilogue, EpilogueDropout, Gpu, GpuLabels, GpuTensor, Keep, MatmulKernel, Result,
};

/// What every plan binds besides its own buffers.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Views into `flat`.
    pub(crate) params: Vec<ParamTensors>,
    pub(crate) flat: Vec<Flat>,
    /// The graph's buffers (a batch norm's running statistics), one tensor each.
    pub(crate) buffers: Vec<GpuTensor>,
    /// The optimizer's settings, and the loss watch's slots (see `settings::WATCH`).
    pub(crate) settings_row: crate::gpu::SettingsRow,
    /// Dropout's step counter, advanced on the GPU once per step.
    pub(crate) dropout_counter: crate::gpu::DropoutCounter,
}

/// Buffers and bound kernels for one batch size, in training or in evaluation.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) training: bool,
    /// Every batch slot's buffer (the input too, unless it is an app's tensor).
    pub(crate) slots: HashMap<Slot, GpuTensor>,
    /// An app's input tensor (`bind_forward`), bound as [`Slot::Act`]`(0)`.
    pub(crate) input: Option<GpuTensor>,
    pub(crate) labels: Option<GpuLabels>,
    /// Training: forward, loss, its watch and backward (not the updates). Evaluation: the
    /// forward pass.
    pub(crate) dispatches: Vec<Dispatch>,
    /// The loss and its mean, for evaluation (not part of `dispatches`, which predicts); none
    /// in a forward pass over an app's input.
    pub(crate) loss_dispatches: Vec<Dispatch>,
    /// A fused training step's buffers: its `dispatches` are then the whole step, the
    /// optimizer's update included (see `fused.rs`).
    pub(crate) fused: Option<FusedBuffers>,
}

impl Plan {
    /// Builds the buffers and binds the kernels for `rows` samples. `input`: an app's tensor
    /// to read the batch from (a forward pass only), instead of a buffer of the plan's own.
    /// `fuse`: the fused step's shape, when the model may run one (a training plan then runs
    /// it when the batch fits it).
    pub(crate) fn new(
        gpu: &Gpu,
        graph: &Graph,
        shared: &Shared,
        rows: usize,
        training: bool,
        input: Option<GpuTensor>,
        fuse: Option<&MlpShape>,
    ) -> Result<Plan> {
        if training
            && input.is_none()
            && let Some(shape) = fuse.filter(|s| s.fits(gpu, rows, shared.flat[0].values.len()).is_ok())
        {
            return Plan::fused(gpu, graph, shared, shape, rows);
        }
        // A forward pass over an app's input computes no loss: no loss buffers, no labels.
        let with_loss = input.is_none();
        let mut slots = HashMap::new();
        for (slot, (r, c)) in graph.batch_slots(rows, training) {
            if with_loss || !matches!(slot, Slot::Terms | Slot::Loss | Slot::Targets) {
                slots.insert(slot, gpu.zeros(r, c)?);
            }
        }
        if with_loss {
            slots.insert(Slot::Act(0), gpu.zeros(rows, graph.inputs())?);
        }
        let labels = (with_loss && graph.config.loss.takes_labels())
            .then(|| gpu.upload_labels(&vec![0; rows], graph.classes()))
            .transpose()?;
        let mut plan = Plan {
            training,
            slots,
            input,
            labels,
            dispatches: Vec::new(),
            loss_dispatches: Vec::new(),
            fused: None,
        };
        let (dispatches, loss_dispatches, bound) = {
            // New pipelines are made on rayon's pool while the binding goes on (see Deferred).
            let _deferred = Deferred::begin(gpu);
            let mut binder = Binder::new(gpu, graph, shared, Some(&plan));
            if training {
                ops::training_step(&mut binder, graph)?;
                (binder.out, Vec::new(), binder.bound.into_inner())
            } else {
                ops::inference(&mut binder, graph)?;
                let forward = std::mem::take(&mut binder.out);
                if with_loss {
                    ops::loss(&mut binder, graph)?;
                }
                (forward, binder.out, binder.bound.into_inner())
            }
        };
        (plan.dispatches, plan.loss_dispatches) = (dispatches, loss_dispatches);
        for dispatch in plan.dispatches.iter_mut().chain(&mut plan.loss_dispatches) {
            dispatch.resolve(gpu)?;
        }
        // The fused kernels leave most intermediates of a block (its activation's output
        // before dropout, the gradients inside its tail, a fused loss's terms) unbound: free
        // them. The slots the model writes or reads itself stay.
        let own = [Slot::Act(0), Slot::Targets, Slot::Loss, Slot::Act(graph.layers().len())]
            .map(|slot| graph.storage(slot, training));
        plan.slots.retain(|slot, _| bound.contains(slot) || own.contains(slot));
        Ok(plan)
    }

    /// A fused training step for `rows` samples: the batch and its targets, and the step's
    /// two launches over them.
    fn fused(gpu: &Gpu, graph: &Graph, shared: &Shared, shape: &MlpShape, rows: usize) -> Result<Plan> {
        let mut slots = HashMap::new();
        slots.insert(Slot::Act(0), gpu.zeros(rows, graph.inputs())?);
        let labels = if graph.config.loss.takes_labels() {
            Some(gpu.upload_labels(&vec![0; rows], graph.classes())?)
        } else {
            slots.insert(Slot::Targets, gpu.zeros(rows, graph.classes())?);
            None
        };
        let buffers = FusedBuffers::new(gpu, shape, rows, shared.flat[0].values.len())?;
        let target = (labels.as_ref(), slots.get(&Slot::Targets));
        let mut dispatches = {
            let _deferred = Deferred::begin(gpu);
            buffers.bind(gpu, graph, shared, shape, &slots[&Slot::Act(0)], target)?
        };
        for dispatch in &mut dispatches {
            dispatch.resolve(gpu)?;
        }
        Ok(Plan {
            training: true,
            slots,
            input: None,
            labels,
            dispatches,
            loss_dispatches: Vec::new(),
            fused: Some(buffers),
        })
    }

    /// The buffer of a batch slot.
    pub(crate) fn get(&self, graph: &Graph, slot: Slot) -> &GpuTensor {
        match graph.storage(slot, self.training) {
            Slot::Act(0) if self.input.is_some() => self.input.as_ref().expect("checked"),
            slot => &self.slots[&slot],
        }
    }

    /// The network's output (after every layer; predictions).
    pub(crate) fn output(&self, graph: &Graph) -> &GpuTensor {
        self.get(graph, Slot::Act(graph.layers().len()))
    }
}

/// The GPU's [`Ops`]: binds each op over the plan's buffers and the model's parameters
/// (only those when there is no plan: the optimizer's updates, bound once per model).
pub(crate) struct Binder<'a> {
    pub(crate) gpu: &'a Gpu,
    pub(crate) graph: &'a Graph,
    pub(crate) shared: &'a Shared,
    pub(crate) plan: Option<&'a Plan>,
    pub(crate) out: Vec<Dispatch>,
    /// The batch slots bound so far (as stored).
    bound: RefCell<HashSet<Slot>>,
}

impl<'a> Binder<'a> {
    pub(crate) fn new(gpu: &'a Gpu, graph: &'a Graph, shared: &'a Shared, plan: Option<&'a Plan>) -> Self {
        Binder { gpu, graph, shared, plan, out: Vec::new(), bound: RefCell::default() }
    }

    fn get(&self, slot: Slot) -> &GpuTensor {
        let param = |p: usize| -> &ParamTensors { &self.shared.params[p] };
        match slot {
            Slot::Param(p) => &param(p).value,
            Slot::ParamGrad(p) => param(p).grad.as_ref().expect("training binds only in models that train"),
            Slot::Buffer(b) => &self.shared.buffers[b],
            slot => {
                let plan = self.plan.expect("batch slots are bound in a plan");
                self.bound.borrow_mut().insert(self.graph.storage(slot, plan.training));
                plan.get(self.graph, slot)
            }
        }
    }

    fn push(&mut self, dispatch: Result<Dispatch>) -> Result<()> {
        self.out.push(dispatch?);
        Ok(())
    }

    fn labels(&self) -> &GpuLabels {
        self.plan.and_then(|plan| plan.labels.as_ref()).expect("label losses get labels")
    }
}

impl Binder<'_> {
    /// A block's forward stages as a product's epilogue: its activation (keeping what the
    /// activation's backward reads) and dropout.
    fn forward_epilogue(&self, d: &DenseForward) -> Epilogue<'_> {
        let keep = match d.activation {
            Some((f, a)) if d.training && f.backward_reads_output() => d.dropout.map(|_| (Keep::Output, a)),
            Some(_) => Some((Keep::Input, d.z)),
            None => None,
        };
        Epilogue {
            activation: d.activation.map(|(f, _)| f),
            keep: keep.map(|(which, slot)| (which, self.get(slot))),
            dropout: d.dropout.map(|drop| EpilogueDropout {
                p: drop.p,
                seed: drop.seed,
                mask: self.get(drop.mask),
                counter: &self.shared.dropout_counter,
            }),
            ..Epilogue::default()
        }
    }
}

impl Ops for Binder<'_> {
    fn matmul(&mut self, out: Slot, a: Slot, b: Slot, bias: Option<Slot>, form: MatmulForm) -> Result<()> {
        let d = self.gpu.kernels().matmul_forward(
            self.get(out),
            self.get(a),
            self.get(b),
            bias.map(|b| self.get(b)),
            form,
        );
        self.push(d)
    }

    fn sum_columns(&mut self, out: Slot, x: Slot) -> Result<()> {
        let d = self.gpu.kernels().sum_columns(self.get(out), self.get(x), 1.0);
        self.push(d)
    }

    fn activation(&mut self, f: Activation, out: Slot, x: Slot) -> Result<()> {
        let d = self.gpu.kernels().activation_forward(f, self.get(out), self.get(x));
        self.push(d)
    }

    fn activation_backward(&mut self, f: Activation, dx: Slot, saved: Slot, dy: Slot) -> Result<()> {
        let d = self.gpu.kernels().activation_backward(f, self.get(dx), self.get(saved), self.get(dy));
        self.push(d)
    }

    fn softmax(&mut self, log: bool, out: Slot, x: Slot) -> Result<()> {
        let (out, x) = (self.get(out), self.get(x));
        let d = if log {
            self.gpu.kernels().log_softmax_forward(out, x)
        } else {
            self.gpu.kernels().softmax_forward(out, x)
        };
        self.push(d)
    }

    fn softmax_backward(&mut self, log: bool, dx: Slot, y: Slot, dy: Slot) -> Result<()> {
        let (dx, y, dy) = (self.get(dx), self.get(y), self.get(dy));
        let d = if log {
            self.gpu.kernels().log_softmax_backward(dx, y, dy)
        } else {
            self.gpu.kernels().softmax_backward(dx, y, dy)
        };
        self.push(d)
    }

    fn dropout(&mut self, out: Slot, mask: Slot, x: Slot, p: f32, seed: u32) -> Result<()> {
        let counter = &self.shared.dropout_counter;
        let d =
            self.gpu.kernels().dropout_forward(self.get(out), self.get(mask), self.get(x), p, seed, counter);
        self.push(d)
    }

    fn dropout_backward(&mut self, dx: Slot, mask: Slot, dy: Slot) -> Result<()> {
        let d = self.gpu.kernels().dropout_backward(self.get(dx), self.get(mask), self.get(dy));
        self.push(d)
    }

    fn conv2d(&mut self, y: Slot, x: Slot, w: Slot, bias: Option<Slot>, shape: &Conv2dShape) -> Result<()> {
        let bias = bias.map(|b| self.get(b));
        let d = self.gpu.kernels().conv2d_forward(self.get(y), self.get(x), self.get(w), bias, shape);
        self.push(d)
    }

    fn conv2d_input_grad(&mut self, dx: Slot, dy: Slot, w: Slot, shape: &Conv2dShape) -> Result<()> {
        let d = self.gpu.kernels().conv2d_input_grad(self.get(dx), self.get(dy), self.get(w), shape);
        self.push(d)
    }

    fn conv2d_weight_grad(
        &mut self,
        dw: Slot,
        db: Option<Slot>,
        dy: Slot,
        x: Slot,
        shape: &Conv2dShape,
    ) -> Result<()> {
        let db = db.map(|db| self.get(db));
        let d = self.gpu.kernels().conv2d_weight_grad(self.get(dw), db, self.get(dy), self.get(x), shape);
        self.push(d)
    }

    fn maxpool2d(&mut self, y: Slot, argmax: Slot, x: Slot, shape: &Pool2dShape) -> Result<()> {
        let d = self.gpu.kernels().maxpool2d_forward(self.get(y), self.get(argmax), self.get(x), shape);
        self.push(d)
    }

    fn maxpool2d_backward(&mut self, dx: Slot, dy: Slot, argmax: Slot, shape: &Pool2dShape) -> Result<()> {
        let d = self.gpu.kernels().maxpool2d_backward(self.get(dx), self.get(dy), self.get(argmax), shape);
        self.push(d)
    }

    fn avgpool2d(&mut self, y: Slot, x: Slot, shape: &Pool2dShape) -> Result<()> {
        let d = self.gpu.kernels().avgpool2d_forward(self.get(y), self.get(x), shape);
        self.push(d)
    }

    fn avgpool2d_backward(&mut self, dx: Slot, dy: Slot, shape: &Pool2dShape) -> Result<()> {
        let d = self.gpu.kernels().avgpool2d_backward(self.get(dx), self.get(dy), shape);
        self.push(d)
    }

    fn layer_norm_stats(&mut self, stats: Slot, x: Slot) -> Result<()> {
        let d = self.gpu.kernels().layer_norm_stats(self.get(stats), self.get(x));
        self.push(d)
    }

    fn layer_norm(&mut self, out: Slot, x: Slot, stats: Slot, gain: Slot, bias: Slot) -> Result<()> {
        let d = self.gpu.kernels().layer_norm_forward(
            self.get(out),
            self.get(x),
            self.get(stats),
            self.get(gain),
            self.get(bias),
        );
        self.push(d)
    }

    fn layer_norm_backward(&mut self, dx: Slot, x: Slot, stats: Slot, gain: Slot, dy: Slot) -> Result<()> {
        let d = self.gpu.kernels().layer_norm_backward(
            self.get(dx),
            self.get(x),
            self.get(stats),
            self.get(gain),
            self.get(dy),
        );
        self.push(d)
    }

    fn layer_norm_gain_terms(&mut self, terms: Slot, x: Slot, stats: Slot, dy: Slot) -> Result<()> {
        let d = self.gpu.kernels().layer_norm_gain_terms(
            self.get(terms),
            self.get(x),
            self.get(stats),
            self.get(dy),
        );
        self.push(d)
    }

    fn batch_norm_stats(
        &mut self,
        stats: Slot,
        [mean, var]: [Slot; 2],
        x: Slot,
        g: &BatchNorm,
        training: bool,
    ) -> Result<()> {
        let (kernels, stats, mean, var) =
            (self.gpu.kernels(), self.get(stats), self.get(mean), self.get(var));
        let d = match training {
            true => kernels.batch_norm_stats(stats, mean, var, self.get(x), &self.shared.settings_row, g),
            false => kernels.batch_norm_eval_stats(stats, mean, var, g),
        };
        self.push(d)
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
        let (y, x, stats, gain, bias) =
            (self.get(y), self.get(x), self.get(stats), self.get(gain), self.get(bias));
        let d = self.gpu.kernels().batch_norm_forward(y, x, stats, gain, bias, g);
        self.push(d)
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
        let dx = dx.map(|dx| self.get(dx));
        let (dgain, dbias, x, stats) = (self.get(dgain), self.get(dbias), self.get(x), self.get(stats));
        let d = self.gpu.kernels().batch_norm_backward(
            dx,
            dgain,
            dbias,
            x,
            stats,
            self.get(gain),
            self.get(dy),
            g,
        );
        self.push(d)
    }

    fn loss(&mut self, loss: Loss, terms: Slot, y: Slot) -> Result<()> {
        let (gpu, terms, y) = (self.gpu, self.get(terms), self.get(y));
        let d = match loss {
            Loss::SoftmaxCrossEntropy => gpu.kernels().softmax_cross_entropy_forward(terms, y, self.labels()),
            Loss::Nll => gpu.kernels().nll_forward(terms, y, self.labels()),
            value => gpu.kernels().value_loss_forward(value, terms, y, self.get(Slot::Targets)),
        };
        self.push(d)
    }

    fn loss_backward(&mut self, loss: Loss, dy: Slot, y: Slot) -> Result<()> {
        let (gpu, dy, y) = (self.gpu, self.get(dy), self.get(y));
        let d = match loss {
            Loss::SoftmaxCrossEntropy => gpu.kernels().softmax_cross_entropy_backward(dy, y, self.labels()),
            Loss::Nll => gpu.kernels().nll_backward(dy, y, self.labels()),
            value => gpu.kernels().value_loss_backward(value, dy, y, self.get(Slot::Targets)),
        };
        self.push(d)
    }

    fn mean(&mut self, out: Slot, terms: Slot) -> Result<()> {
        let terms = self.get(terms);
        let d = self.gpu.kernels().sum_all(self.get(out), terms, 1.0 / terms.len() as f32);
        self.push(d)
    }

    fn watch_loss(&mut self, loss: Slot) -> Result<()> {
        let d = self.gpu.kernels().watch_loss(&self.shared.settings_row, self.get(loss));
        self.push(d)
    }

    /// One launch: the product with the bias, activation and dropout in its epilogue, keeping
    /// what the activation's backward reads where [`Tail`] looks for it (the product `z`, or
    /// the activation's output when dropout follows and the output is what it reads). Outside
    /// training it keeps `z`, so every activation an app can ask for (`Forward::activation`)
    /// is written.
    fn dense(&mut self, d: &DenseForward) -> Result<()> {
        let epilogue = self.forward_epilogue(d);
        let (out, x, w) = (self.get(d.out()), self.get(d.x), self.get(d.w));
        let bias = d.bias.map(|b| self.get(b));
        let dispatch =
            self.gpu.kernels().matmul_fused(MatmulKernel::Auto, out, x, w, bias, MatmulForm::ABt, &epilogue);
        self.push(dispatch)
    }

    /// One launch: the convolution with its activation and dropout in the epilogue.
    fn conv_block(&mut self, d: &DenseForward, shape: &Conv2dShape) -> Result<()> {
        let epilogue = self.forward_epilogue(d);
        let (out, x, w) = (self.get(d.out()), self.get(d.x), self.get(d.w));
        let bias = d.bias.map(|b| self.get(b));
        let dispatch = self.gpu.kernels().conv2d_fused(out, x, w, bias, shape, &epilogue);
        self.push(dispatch)
    }

    /// One launch: `dW = dzᵀ·x` with the bias gradient summed in its epilogue.
    fn dense_weight_grads(&mut self, dw: Slot, db: Option<Slot>, dz: Slot, x: Slot) -> Result<()> {
        let epilogue = Epilogue { row_sums: db.map(|db| self.get(db)), ..Epilogue::default() };
        let (dw, dz, x) = (self.get(dw), self.get(dz), self.get(x));
        let dispatch =
            self.gpu.kernels().matmul_fused(MatmulKernel::Auto, dw, dz, x, None, MatmulForm::AtB, &epilogue);
        self.push(dispatch)
    }

    /// One launch: `dx = dz·W` through the tail below in its epilogue, written straight to
    /// the gradient of that block's product.
    fn dense_input_grad(&mut self, dx: Slot, dz: Slot, w: Slot, below: Option<&Tail>) -> Result<()> {
        let epilogue = Epilogue {
            mask: below.and_then(|t| t.dropout).map(|(mask, _, _)| self.get(mask)),
            derivative: below.and_then(|t| t.activation).map(|(f, saved, _, _)| (f, self.get(saved))),
            ..Epilogue::default()
        };
        let out = self.get(below.map_or(dx, |t| t.dz));
        let (dz, w) = (self.get(dz), self.get(w));
        let dispatch =
            self.gpu.kernels().matmul_fused(MatmulKernel::Auto, out, dz, w, None, MatmulForm::AB, &epilogue);
        self.push(dispatch)
    }

    /// One launch when the batch fits one workgroup's sum (see [`Kernels::loss_step`]).
    fn loss_step(&mut self, loss: Loss, dy: Slot, y: Slot) -> Result<()> {
        // (NLL is never unfused in training, and has no step of its own.)
        let target = if loss.takes_labels() {
            StepTarget::Labels(self.labels())
        } else {
            StepTarget::Values(self.get(Slot::Targets))
        };
        let (dy_t, y_t, mean) = (self.get(dy), self.get(y), self.get(Slot::Loss));
        match self.gpu.kernels().loss_step(loss, dy_t, y_t, target, mean, &self.shared.settings_row)? {
            Some(step) => self.push(Ok(step)),
            None => ops::separate_loss_step(self, loss, dy, y),
        }
    }

    /// One launch per flat group (one for most models) instead of one per parameter, for the
    /// checks (with the step's advance) and then for the updates.
    fn updates(&mut self, optimizer: Optimizer) -> Result<()> {
        let (kernels, settings) = (self.gpu.kernels(), &self.shared.settings_row);
        for check in [true, false] {
            for flat in &self.shared.flat {
                let w = &flat.values;
                let g = flat.grads.as_ref().expect("updates are bound in models that train");
                let d = match (optimizer, check) {
                    (Optimizer::Sgd { .. }, true) => kernels.sgd_check(w, g, settings),
                    (Optimizer::Sgd { .. }, false) => kernels.sgd_update(w, g, settings),
                    (Optimizer::Momentum { .. }, true) => {
                        kernels.momentum_check(w, &flat.states[0], g, settings)
                    }
                    (Optimizer::Momentum { .. }, false) => {
                        kernels.momentum_update(w, &flat.states[0], g, settings)
                    }
                    (Optimizer::Adam { .. }, true) => {
                        kernels.adam_check(w, &flat.states[0], &flat.states[1], g, settings)
                    }
                    (Optimizer::Adam { .. }, false) => {
                        kernels.adam_update(w, &flat.states[0], &flat.states[1], g, settings)
                    }
                    (Optimizer::AdamW { .. }, true) => {
                        kernels.adamw_check(w, &flat.states[0], &flat.states[1], g, settings)
                    }
                    (Optimizer::AdamW { .. }, false) => {
                        kernels.adamw_update(w, &flat.states[0], &flat.states[1], g, settings)
                    }
                };
                self.push(d)?;
            }
        }
        Ok(())
    }
}
