//! The training loop users would otherwise write: epochs over a resident data set with a
//! learning-rate schedule, a validation set, early stopping and the best checkpoint kept.
//! It is written against [`Model`]'s public calls only, so it runs the same on both backends
//! and shows, line by line, what a loop of one's own would do.

use std::ops::ControlFlow;
use std::path::PathBuf;
use web_time::Instant;

use super::Model;
use super::batch::{DataEvaluation, EpochProgress, Resident};
use crate::{Error, Result};

/// How the learning rate moves over a fit's epochs, from the optimizer's starting rate (the
/// config's) in epoch 1. It is set once per epoch, before the epoch's first step, as
/// PyTorch's schedulers are when stepped once per epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Schedule {
    /// The starting rate throughout.
    Constant,
    /// Multiplied by `factor` every `every` epochs (PyTorch's `StepLR`).
    Step {
        /// Epochs between two cuts (at least 1).
        every: usize,
        /// The cut, in (0, 1] to shrink (0.1 is usual).
        factor: f32,
    },
    /// Multiplied by `factor` every epoch (PyTorch's `ExponentialLR`).
    Exponential {
        /// The factor per epoch (0.9, say).
        factor: f32,
    },
    /// Half a cosine from the starting rate down towards `min_lr` over the fit's epochs
    /// (PyTorch's `CosineAnnealingLR` with `T_max` = the epochs: epoch e of E, counted from
    /// 0, trains at `min_lr + (lr − min_lr)·(1 + cos(π·e/E))/2`).
    Cosine {
        /// Where the rate ends (0 is usual), at most the starting rate.
        min_lr: f32,
    },
}

impl Schedule {
    /// The learning rate of epoch `epoch` (counted from 0) of `epochs`, starting from `lr`.
    pub fn lr(self, lr: f32, epoch: usize, epochs: usize) -> f32 {
        match self {
            Schedule::Constant => lr,
            Schedule::Step { every, factor } => lr * factor.powi((epoch / every.max(1)) as i32),
            Schedule::Exponential { factor } => lr * factor.powi(epoch as i32),
            Schedule::Cosine { min_lr } => {
                let progress = epoch as f64 / epochs.max(1) as f64;
                let cosine = (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0;
                (f64::from(min_lr) + f64::from(lr - min_lr) * cosine) as f32
            }
        }
    }

    fn check(self, lr: f32) -> Result<()> {
        let problem = match self {
            Schedule::Step { every: 0, .. } => Some("a step schedule needs `every` ≥ 1".to_string()),
            Schedule::Step { factor, .. } | Schedule::Exponential { factor }
                if !(factor.is_finite() && factor > 0.0) =>
            {
                Some(format!("a schedule's factor must be finite and above 0, not {factor}"))
            }
            Schedule::Cosine { min_lr } if !(min_lr.is_finite() && (0.0..=lr).contains(&min_lr)) => Some(
                format!("a cosine schedule's min_lr must be in [0, {lr}] (the starting rate), not {min_lr}"),
            ),
            _ => None,
        };
        problem.map_or(Ok(()), |problem| Err(Error::InvalidTraining { problem }))
    }
}

/// What early stopping and the best checkpoint watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Monitor {
    /// The validation set's mean loss (lower is better): the default with a validation set.
    ValidationLoss,
    /// The validation set's accuracy (higher is better); labelled sets only.
    ValidationAccuracy,
    /// The epoch's mean training loss (lower is better): the default without one.
    TrainingLoss,
}

/// One epoch of a fit, as the per-epoch callback and [`FitReport`] see it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EpochReport {
    /// This epoch, counted from 1.
    pub epoch: usize,
    /// The epochs the fit was asked for.
    pub epochs: usize,
    /// The learning rate this epoch trained at.
    pub lr: f32,
    /// The mean loss of the epoch's steps (dropout on).
    pub train_loss: f32,
    /// The validation set after the epoch, when the fit has one.
    pub validation: Option<DataEvaluation>,
    /// The monitored value after this epoch.
    pub monitored: f32,
    /// Whether it is the best so far (by more than `min_delta`); with
    /// [`Trainer::keep_best`] the checkpoint was just saved.
    pub improved: bool,
    /// Seconds spent training this epoch (validation not counted).
    pub seconds: f64,
    /// Training samples per second this epoch.
    pub samples_per_second: f64,
}

/// Why a fit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// Every epoch asked for was trained.
    Finished,
    /// The monitored value did not improve for `patience` epochs.
    EarlyStopping,
    /// The per-epoch callback returned `ControlFlow::Break`.
    Callback,
}

/// What a fit did: every epoch's report, the best one, and why it ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FitReport {
    /// One report per epoch trained.
    pub epochs: Vec<EpochReport>,
    /// The epoch (counted from 1) with the best monitored value; `None` when no epoch ran or
    /// none gave a finite value.
    pub best_epoch: Option<usize>,
    /// Why the fit ended.
    pub stop: Stop,
}

impl FitReport {
    /// The best epoch's report.
    pub fn best(&self) -> Option<&EpochReport> {
        self.epochs.iter().find(|e| Some(e.epoch) == self.best_epoch)
    }
}

/// A training loop over resident data: epochs of minibatches in a seeded order, a learning
/// rate schedule, evaluation on a validation set after each epoch, early stopping, the best
/// checkpoint kept (and restored), and a callback per epoch for metrics, progress, or
/// stopping. Labelled sets and regression sets (target values) train alike.
///
/// ```
/// use std::ops::ControlFlow;
/// use wgpu_nn::data::Dataset;
/// use wgpu_nn::model::{Loss, ModelConfig, Optimizer, Schedule, Trainer};
/// # fn main() -> wgpu_nn::Result<()> {
/// // y = x², sampled on [-1, 1]; every fourth sample held out for validation.
/// let xs: Vec<f32> = (0..200).map(|i| i as f32 / 100.0 - 1.0).collect();
/// let (train_x, val_x): (Vec<f32>, Vec<f32>) = xs.iter().enumerate().fold(
///     (vec![], vec![]),
///     |(mut t, mut v), (i, &x)| { if i % 4 == 0 { v.push(x) } else { t.push(x) }; (t, v) },
/// );
/// let square = |xs: &[f32]| xs.iter().map(|x| x * x).collect::<Vec<f32>>();
/// let train = Dataset::regression(train_x.clone(), 1, square(&train_x), 1)?;
/// let validation = Dataset::regression(val_x.clone(), 1, square(&val_x), 1)?;
///
/// let mut model = ModelConfig::new(1).dense(16).tanh().dense(1).loss(Loss::Mse)
///     .optimizer(Optimizer::Adam { lr: 0.02 }).seed(3).build_cpu()?; // or .build_gpu(&gpu)?
/// let (train, validation) = (model.load(&train)?, model.load(&validation)?);
/// let report = Trainer::new()
///     .epochs(40)
///     .batch_size(16)
///     .schedule(Schedule::Cosine { min_lr: 0.0 })
///     .early_stopping(5)
///     .fit(&mut model, &train, Some(&validation), |epoch| {
///         if epoch.epoch % 10 == 0 {
///             println!("epoch {}: validation loss {:.5}", epoch.epoch, epoch.monitored);
///         }
///         ControlFlow::Continue(())
///     })?;
/// assert!(report.best().unwrap().monitored < 0.01);
/// # Ok(())
/// # }
/// ```
pub struct Trainer<'a> {
    epochs: usize,
    batch_size: usize,
    seed: u64,
    schedule: Schedule,
    monitor: Option<Monitor>,
    patience: Option<usize>,
    min_delta: f32,
    best_path: Option<PathBuf>,
    restore_best: bool,
    on_progress: Option<Box<dyn FnMut(usize, EpochProgress) + 'a>>,
}

impl Default for Trainer<'_> {
    fn default() -> Self {
        Trainer::new()
    }
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("seed", &self.seed)
            .field("schedule", &self.schedule)
            .field("monitor", &self.monitor)
            .field("patience", &self.patience)
            .field("min_delta", &self.min_delta)
            .field("best_path", &self.best_path)
            .field("restore_best", &self.restore_best)
            .finish_non_exhaustive()
    }
}

impl<'a> Trainer<'a> {
    /// 10 epochs of batch 32 at a constant rate, seed 0, no early stopping, nothing saved.
    pub fn new() -> Self {
        Trainer {
            epochs: 10,
            batch_size: 32,
            seed: 0,
            schedule: Schedule::Constant,
            monitor: None,
            patience: None,
            min_delta: 0.0,
            best_path: None,
            restore_best: true,
            on_progress: None,
        }
    }

    /// The most epochs to train (early stopping or the callback may end sooner).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Samples per training step.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Seeds the epochs' orders: epoch e (from 1) is shuffled by `seed · 1000 + e`, so a fit
    /// and a hand-written loop of [`Model::train_epoch`] calls visit the same batches (fits of
    /// more than 1000 epochs share orders with the next seed's). The weights and dropout
    /// masks are seeded by the model's config.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The learning rate's course over the epochs.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// What early stopping and [`Trainer::keep_best`] watch (by default the validation loss
    /// when there is a validation set, else the training loss).
    pub fn monitor(mut self, monitor: Monitor) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Stops after `patience` epochs in a row without improvement (0: at the first).
    pub fn early_stopping(mut self, patience: usize) -> Self {
        self.patience = Some(patience);
        self
    }

    /// How much the monitored value must improve to count (0 by default).
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// Saves the model to `path` (atomically, as [`Model::save`]) whenever the monitored
    /// value improves, and loads that best checkpoint back when the fit ends, however it ends
    /// (an error such as [`Error::Diverged`] included, which is still returned), unless
    /// [`Trainer::restore_best`] says not to: the model left is the best one seen.
    pub fn keep_best(mut self, path: impl Into<PathBuf>) -> Self {
        self.best_path = Some(path.into());
        self
    }

    /// Whether the fit ends by loading the best checkpoint back (true by default; without
    /// [`Trainer::keep_best`] there is none to load). With false the model is left as the
    /// last epoch made it.
    pub fn restore_best(mut self, restore: bool) -> Self {
        self.restore_best = restore;
        self
    }

    /// Called as an epoch goes, with the epoch (from 1) and its progress (for a progress bar:
    /// see [`EpochProgress`] for how often).
    pub fn on_progress(mut self, on_progress: impl FnMut(usize, EpochProgress) + 'a) -> Self {
        self.on_progress = Some(Box::new(on_progress));
        self
    }

    /// Trains `model` on `train`, evaluating `validation` after every epoch when given, and
    /// calls `on_epoch` after each epoch (return `ControlFlow::Break(())` to stop). Both sets
    /// must have been loaded into this model ([`Model::load`]). The learning rate is left at
    /// the last epoch's.
    ///
    /// # Errors
    /// [`Error::InvalidTraining`] for settings that cannot run or sets loaded into another
    /// model (checked before anything changes); [`Error::WouldBlock`] for a GPU model in the
    /// browser (its loop blocks: write it with `train_epoch_async` there); what [`Model::train_epoch`],
    /// [`Model::evaluate_resident`] and [`Model::save`] return, such as [`Error::Diverged`]
    /// when a step's loss was not finite.
    pub fn fit(
        &mut self,
        model: &mut Model,
        train: &Resident,
        validation: Option<&Resident>,
        on_epoch: impl FnMut(&EpochReport) -> ControlFlow<()>,
    ) -> Result<FitReport> {
        // Its epochs block: in the browser a GPU model is refused before anything changes.
        if model.backend() == super::Backend::Gpu {
            crate::blocking::refuse_on_web("Trainer::fit")?;
        }
        let monitor = self.check(model, train, validation)?;
        let mut best = Best::new(monitor, self.min_delta, self.patience);
        let outcome = self.train(model, train, validation, monitor, &mut best, on_epoch);
        // The best checkpoint comes back however the fit ended, a divergence included (the
        // error is still returned).
        if let (Some(path), true, Some(_)) = (&self.best_path, self.restore_best, best.epoch) {
            let restored = model.load_checkpoint(path);
            if outcome.is_ok() {
                restored?; // else the fit's own error is the one to report
            }
        }
        outcome
    }

    /// The epochs of a fit, until the last, early stopping or the callback.
    fn train(
        &mut self,
        model: &mut Model,
        train: &Resident,
        validation: Option<&Resident>,
        monitor: Monitor,
        best: &mut Best,
        mut on_epoch: impl FnMut(&EpochReport) -> ControlFlow<()>,
    ) -> Result<FitReport> {
        let base_lr = model.config().optimizer_kind().lr();
        let mut report = FitReport { epochs: Vec::new(), best_epoch: None, stop: Stop::Finished };
        for epoch in 1..=self.epochs {
            let lr = self.schedule.lr(base_lr, epoch - 1, self.epochs);
            model.set_learning_rate(lr)?;
            let start = Instant::now();
            let seed = self.seed.wrapping_mul(1000).wrapping_add(epoch as u64);
            let on_progress = &mut self.on_progress;
            let train_loss = model.train_epoch(train, self.batch_size, seed, &mut |p| {
                if let Some(on_progress) = on_progress {
                    on_progress(epoch, p);
                }
            })?;
            let seconds = start.elapsed().as_secs_f64();
            let validation = validation.map(|v| model.evaluate_resident(v)).transpose()?;
            let monitored = match (monitor, &validation) {
                (Monitor::TrainingLoss, _) => train_loss,
                (Monitor::ValidationLoss, Some(v)) => v.loss,
                (Monitor::ValidationLoss | Monitor::ValidationAccuracy, None) => {
                    unreachable!("check asked for a validation set")
                }
                (Monitor::ValidationAccuracy, Some(v)) => v.accuracy.expect("check asked for labels"),
            };
            let (improved, patience_spent) = best.update(epoch, monitored);
            if improved && let Some(path) = &self.best_path {
                model.save(path)?;
            }
            report.best_epoch = best.epoch;
            let samples_per_second = train.len() as f64 / seconds.max(1e-9);
            let epoch_report = EpochReport {
                epoch,
                epochs: self.epochs,
                lr,
                train_loss,
                validation,
                monitored,
                improved,
                seconds,
                samples_per_second,
            };
            let flow = on_epoch(&epoch_report);
            report.epochs.push(epoch_report);
            if flow.is_break() {
                report.stop = Stop::Callback;
                break;
            }
            if patience_spent {
                report.stop = Stop::EarlyStopping;
                break;
            }
        }
        Ok(report)
    }

    /// Checks the settings against the model and the data before anything trains, and
    /// returns what to monitor.
    fn check(&self, model: &Model, train: &Resident, validation: Option<&Resident>) -> Result<Monitor> {
        let invalid = |problem: String| Err(Error::InvalidTraining { problem });
        if !model.owns(train) || validation.is_some_and(|v| !model.owns(v)) {
            return invalid(
                "the training and validation sets must be loaded into this model (Model::load)".into(),
            );
        }
        if self.batch_size == 0 {
            return invalid("a batch size of at least 1 is needed".into());
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return invalid(format!("min_delta must be finite and at least 0, not {}", self.min_delta));
        }
        self.schedule.check(model.config().optimizer_kind().lr())?;
        let monitor = self.monitor.unwrap_or(match validation {
            Some(_) => Monitor::ValidationLoss,
            None => Monitor::TrainingLoss,
        });
        if monitor != Monitor::TrainingLoss && validation.is_none() {
            return invalid(format!("monitoring {monitor:?} needs a validation set"));
        }
        if monitor == Monitor::ValidationAccuracy && validation.is_some_and(|v| !v.is_labelled()) {
            return invalid(
                "ValidationAccuracy needs a labelled validation set; this one has target values".into(),
            );
        }
        Ok(monitor)
    }
}

/// Early stopping's bookkeeping: the best monitored value so far, and when it was.
#[derive(Debug)]
struct Best {
    /// −1 when higher is better, so that lower signed values are always better.
    sign: f32,
    min_delta: f32,
    patience: Option<usize>,
    /// The best signed value so far (infinite before the first).
    value: f32,
    /// Its epoch.
    epoch: Option<usize>,
}

impl Best {
    fn new(monitor: Monitor, min_delta: f32, patience: Option<usize>) -> Best {
        let sign = if monitor == Monitor::ValidationAccuracy { -1.0 } else { 1.0 };
        Best { sign, min_delta, patience, value: f32::INFINITY, epoch: None }
    }

    /// Takes epoch `epoch`'s monitored value: whether it is the best so far, and whether
    /// `patience` epochs have now passed without one (a NaN is never an improvement).
    fn update(&mut self, epoch: usize, monitored: f32) -> (bool, bool) {
        let improved = self.sign * monitored < self.value - self.min_delta;
        if improved {
            (self.value, self.epoch) = (self.sign * monitored, Some(epoch));
        }
        let since_best = epoch - self.epoch.unwrap_or(0);
        (improved, !improved && self.patience.is_some_and(|patience| since_best >= patience))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `values` to a fresh `Best`, one epoch each, until it says stop: the epochs that
    /// improved, and the epoch it stopped at.
    fn run(
        monitor: Monitor,
        min_delta: f32,
        patience: Option<usize>,
        values: &[f32],
    ) -> (Vec<usize>, Option<usize>) {
        let mut best = Best::new(monitor, min_delta, patience);
        let mut improved = Vec::new();
        for (i, &value) in values.iter().enumerate() {
            let (better, stop) = best.update(i + 1, value);
            if better {
                improved.push(i + 1);
            }
            if stop {
                return (improved, Some(i + 1));
            }
        }
        (improved, None)
    }

    #[test]
    fn patience_counts_from_the_last_improvement() {
        let losses = [1.0, 0.9, 0.95, 0.8, 0.85, 0.86, 0.7];
        // Epoch 4 improves after one bad epoch: the count starts again, and ends at 6.
        assert_eq!(run(Monitor::ValidationLoss, 0.0, Some(2), &losses), (vec![1, 2, 4], Some(6)));
        assert_eq!(run(Monitor::ValidationLoss, 0.0, Some(3), &losses), (vec![1, 2, 4, 7], None));
        assert_eq!(run(Monitor::ValidationLoss, 0.0, None, &losses), (vec![1, 2, 4, 7], None));
    }

    #[test]
    fn patience_zero_stops_at_the_first_epoch_without_improvement() {
        assert_eq!(run(Monitor::TrainingLoss, 0.0, Some(0), &[1.0, 0.5, 0.6, 0.1]), (vec![1, 2], Some(3)));
    }

    #[test]
    fn accuracy_improves_upwards_and_min_delta_must_be_beaten() {
        assert_eq!(
            run(Monitor::ValidationAccuracy, 0.0, None, &[0.5, 0.6, 0.55, 0.61]),
            (vec![1, 2, 4], None)
        );
        assert_eq!(run(Monitor::ValidationLoss, 0.1, None, &[1.0, 0.95, 0.85, 0.8]), (vec![1, 3], None));
    }

    #[test]
    fn a_nan_is_never_the_best() {
        assert_eq!(run(Monitor::ValidationLoss, 0.0, Some(2), &[f32::NAN, f32::NAN]), (vec![], Some(2)));
        assert_eq!(run(Monitor::ValidationLoss, 0.0, None, &[1.0, f32::NAN, 0.9]), (vec![1, 3], None));
    }

    #[test]
    fn schedules_follow_pytorchs_formulas() {
        let step = Schedule::Step { every: 3, factor: 0.1 };
        let rates: Vec<f32> = (0..7).map(|e| step.lr(1.0, e, 7)).collect();
        assert_eq!(rates, [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.010000001]);
        // Half-way through, the cosine is half-way between the rate and min_lr.
        assert!((Schedule::Cosine { min_lr: 0.2 }.lr(1.0, 5, 10) - 0.6).abs() < 1e-6);
        assert_eq!(Schedule::Cosine { min_lr: 0.2 }.lr(1.0, 0, 10), 1.0);
    }
}
