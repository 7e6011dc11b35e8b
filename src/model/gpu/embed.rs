//! The model inside someone else's frame: training steps, loss reads and forward passes
//! recorded into the app's own `wgpu::CommandEncoder`, so that training and rendering share
//! one submit. Nothing here blocks, polls or maps on the app's behalf: batches travel as
//! copies in the app's encoder from upload buffers the model reuses (`gpu/upload.rs`), and
//! the loss comes back through a [`LossReading`] the app polls when it likes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::model::GpuModel;
use super::plan::Plan;
use crate::gpu::Staging;
use crate::model::graph::Slot;
use crate::settings::{SETTINGS_LEN, WATCH, WATCH_LEN, Watch};
use crate::target::Target;
use crate::{Dispatch, Error, Gpu, GpuTensor, Result};

impl GpuModel {
    pub(crate) fn record_train_step(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &[f32],
        target: &Target,
    ) -> Result<()> {
        let op = "record_train_step";
        self.gpu.check_device(op)?;
        self.settle_steps();
        let rows = self.graph.rows(op, x)?;
        self.graph.check_training(op, target, rows)?;
        self.plan(rows, true)?;
        let plan = &self.plans[&(rows, true)];
        let (gpu, graph, uploads) = (&self.gpu, &self.graph, &mut self.uploads);
        // Copies in the encoder, not queue writes: those would all land before the submit,
        // so two steps recorded in one frame would both see the second batch.
        uploads.write(gpu, encoder, plan.get(graph, Slot::Act(0)).buffer(), bytemuck::cast_slice(x))?;
        match (target, &plan.labels) {
            (Target::Values(values), _) => {
                let t = plan.get(graph, Slot::Targets).buffer();
                uploads.write(gpu, encoder, t, bytemuck::cast_slice(values))?
            }
            (Target::Labels(labels), Some(l)) => {
                uploads.write(gpu, encoder, l.buffer(), bytemuck::cast_slice(labels))?
            }
            _ => unreachable!("check_target matched the target to the loss"),
        }
        self.gpu.record(encoder, &self.step(plan, &[]).collect::<Vec<_>>())?;
        self.loss_steps += 1;
        self.steps += 1;
        Ok(())
    }

    pub(crate) fn record_loss(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<LossReading> {
        self.gpu.check_device("record_loss")?;
        let bytes = (SETTINGS_LEN * 4) as u64;
        let mut staging = self.gpu.staging(bytes)?;
        let row = self.shared.settings_row.buffer();
        let mapped = Arc::new(Mutex::new(None));
        let sink = mapped.clone();
        staging.record(encoder, row, move |result| {
            if let Ok(mut slot) = sink.lock() {
                *slot = Some(result.map_err(|e| e.to_string()));
            }
        });
        // The watch starts afresh for the next read, as with take_loss.
        encoder.clear_buffer(row, (WATCH * 4) as u64, Some((WATCH_LEN * 4) as u64));
        self.settle_steps();
        let first_step = u64::from(self.steps.saturating_sub(self.loss_steps));
        self.loss_steps = 0;
        let unapplied = self.unapplied.clone();
        Ok(LossReading { gpu: self.gpu.clone(), staging, mapped, first_step, unapplied, done: false })
    }

    pub(crate) fn bind_forward(&self, input: GpuTensor) -> Result<Forward> {
        let op = "bind_forward";
        self.gpu.check_device(op)?;
        if input.cols() != self.graph.inputs() {
            return Err(Error::shape(
                op,
                format!("rows of {} inputs", self.graph.inputs()),
                format!("{} columns", input.cols()),
            ));
        }
        let (graph, rows) = (&self.graph, input.rows());
        let plan = Plan::new(&self.gpu, graph, &self.shared, rows, false, Some(input), None)?;
        let acts = (0..=graph.layers().len()).map(|i| graph.storage(Slot::Act(i), false)).collect();
        Ok(Forward { gpu: self.gpu.clone(), plan, acts })
    }
}

/// A forward pass (dropout off) bound to an input tensor — an app's buffer, say, wrapped by
/// [`Gpu::tensor_from_buffer`] — and to activation buffers of its own. Bound once; record it
/// every frame. The weights are bound by reference, so it sees every training step.
#[derive(Debug)]
pub struct Forward {
    gpu: Gpu,
    /// An evaluation plan over the app's input, without loss buffers.
    plan: Plan,
    /// Where activation i is stored (a dropout layer's output is its input).
    acts: Vec<Slot>,
}

impl Forward {
    /// The network's output, `(rows, outputs)` row-major f32, for an app to bind read-only
    /// (its usage is `STORAGE | COPY_SRC | COPY_DST`).
    pub fn output(&self) -> &GpuTensor {
        self.get(self.acts.len() - 1)
    }

    /// Activation `i`: 0 is the input, `i` the output of layer `i − 1` of the config.
    pub fn activation(&self, i: usize) -> Result<&GpuTensor> {
        if i >= self.acts.len() {
            return Err(Error::shape(
                "activation",
                format!("an index below {}", self.acts.len()),
                i.to_string(),
            ));
        }
        Ok(self.get(i))
    }

    /// Records the pass into `encoder`, in one compute pass (a few, with copies between them,
    /// where a large product reads through textures: see [`Dispatch::copies_to_textures`]).
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        self.gpu.record_checked(encoder, &self.plan.dispatches.iter().collect::<Vec<_>>());
    }

    /// The dispatches, to record into a compute pass of the app's own.
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.plan.dispatches.iter()
    }

    fn get(&self, i: usize) -> &GpuTensor {
        match self.acts[i] {
            Slot::Act(0) => self.plan.input.as_ref().expect("a forward pass over an app's input"),
            slot => &self.plan.slots[&slot],
        }
    }
}

/// The loss of the steps recorded before [`crate::model::Model::record_loss`], on its way
/// back: the copy runs in the app's submit and the map is requested by that submit, so
/// nothing waits. Poll it once a frame.
#[derive(Debug)]
pub struct LossReading {
    gpu: Gpu,
    staging: Staging,
    mapped: Arc<Mutex<Option<Result<(), String>>>>,
    /// Training steps before the first one this reading covers.
    first_step: u64,
    /// Where a divergence report leaves the count of steps that were not applied.
    unapplied: Arc<AtomicU32>,
    done: bool,
}

impl LossReading {
    /// The mean loss once the GPU has got there, `None` before (and after it was returned).
    /// Does not block: it only lets wgpu make progress (`PollType::Poll`). A divergence
    /// among the steps is `Err(Error::Diverged)`.
    pub fn poll(&mut self) -> Option<Result<f32>> {
        if self.done {
            return None;
        }
        // On GL another thread may hold the crate's lock for a long submit: then this frame
        // does not wait for it (the map may still have been delivered by that thread).
        let _ = self.gpu.serial.try_run(|| self.gpu.device().poll(wgpu::PollType::Poll));
        let outcome = self.mapped.lock().ok()?.take()?;
        self.done = true;
        Some(outcome.map_err(Error::Readback).and_then(|()| self.finish()))
    }

    /// Blocks until the loss is there: for tools and tests, not for a frame loop. An error if
    /// it was already taken, or if the encoder it was recorded in has not been submitted
    /// (then nothing would ever arrive).
    /// Native only: in the browser it is [`Error::WouldBlock`], and the reading is used up
    /// (poll it from the frame loop there instead).
    pub fn wait(mut self) -> Result<f32> {
        crate::blocking::refuse_on_web("LossReading::wait")?;
        if self.done {
            return Err(Error::Readback("the loss was already taken".into()));
        }
        if let Some(result) = self.poll() {
            return result;
        }
        // Everything submitted has finished after this, and its map callbacks have run.
        self.gpu.poll_until(None)?;
        self.poll().unwrap_or_else(|| {
            Err(Error::Readback("the encoder holding this loss read was never submitted".into()))
        })
    }

    fn finish(&mut self) -> Result<f32> {
        let row: Vec<f32> = bytemuck::pod_collect_to_vec(&self.staging.take_mapped()?);
        let watch = Watch::from_row(&row);
        match watch.first_bad {
            _ if watch.steps == 0 => Err(Error::NoSteps { op: "record_loss" }),
            Some(bad) => {
                let skipped = watch.steps.saturating_sub(bad);
                self.unapplied.fetch_add(skipped + 1, Ordering::Relaxed);
                Err(Error::Diverged {
                    step: self.first_step + u64::from(bad),
                    loss: watch.bad_loss,
                    in_update: watch.bad_loss.is_finite(),
                    skipped,
                })
            }
            None => Ok(watch.total / watch.steps as f32),
        }
    }
}

impl GpuModel {
    /// Parameter p's values on the GPU.
    pub(crate) fn param_tensor(&self, p: usize) -> &GpuTensor {
        &self.shared.params[p].value
    }
}
