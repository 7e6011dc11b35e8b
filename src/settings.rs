//! Optimizer settings, shared by the CPU reference and the GPU kernels (which read them from
//! a GPU row, so they can change between steps without rebinding anything).

use std::cell::Cell;

use bytemuck::{Pod, Zeroable};

use crate::{Error, Result};

/// Refuses a learning rate no step could use: NaN, infinite or negative.
pub(crate) fn check_lr(op: &'static str, lr: f32) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        return Ok(());
    }
    Err(Error::InvalidOptimizer {
        op,
        problem: format!("a learning rate must be finite and not negative, not {lr}"),
    })
}

/// Hyperparameters of every optimizer, and the step counter Adam's bias correction uses.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct OptimizerSettings {
    /// Learning rate.
    pub lr: f32,
    /// Momentum μ (SGD with momentum).
    pub momentum: f32,
    /// Adam's decay rate β1 of the first moment (the mean of the gradients).
    pub beta1: f32,
    /// Adam's decay rate β2 of the second moment (the mean of their squares).
    pub beta2: f32,
    /// Adam's ε, added to the second moment's root so a step never divides by zero.
    pub eps: f32,
    /// AdamW's decoupled weight decay λ.
    pub weight_decay: f32,
    /// Steps taken so far; advanced once per step before the updates (so the first is 1).
    pub step: u32,
}

impl OptimizerSettings {
    /// PyTorch's defaults for Adam and AdamW (β1 0.9, β2 0.999, ε 1e-8, λ 0.01), with `lr`.
    pub fn new(lr: f32) -> Self {
        OptimizerSettings {
            lr,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            step: 0,
        }
    }

    /// `(β1^t, β2^t)` for Adam's bias corrections, multiplied out one step at a time in f32
    /// exactly as the GPU's optimizer checks (and `optimizer_advance`) do, so both backends agree to the bit.
    /// (`1 − pow(β2, t)` with a GPU's few-ULP `pow` loses most of its digits to cancellation.)
    ///
    /// Each thread remembers its last answer and goes on from there, so a training loop that
    /// asks once per parameter per step pays one multiplication per step, not `t` (asked
    /// afresh each time, it took most of a CPU training step after a few thousand steps).
    pub fn beta_powers(&self) -> (f32, f32) {
        thread_local! {
            /// (β1, β2, t, β1^t, β2^t) as last computed on this thread.
            static LAST: Cell<(f32, f32, u32, f32, f32)> = const { Cell::new((0.0, 0.0, 0, 1.0, 1.0)) };
        }
        let (b1, b2, t, p1, p2) = LAST.get();
        let (from, p1, p2) =
            if (b1, b2) == (self.beta1, self.beta2) && t <= self.step { (t, p1, p2) } else { (0, 1.0, 1.0) };
        let (mut p1, mut p2) = (p1, p2);
        for _ in from..self.step {
            let next = (p1 * self.beta1, p2 * self.beta2);
            // Both powers reach a fixed point (0 after underflow, within ~10^5 steps for
            // Adam's β2): stop there, so a step count of billions (from a file) costs nothing.
            if next == (p1, p2) || next.0.is_nan() || next.1.is_nan() {
                break;
            }
            (p1, p2) = next;
        }
        LAST.set((self.beta1, self.beta2, self.step, p1, p2));
        (p1, p2)
    }

    /// Refuses settings no step could use, naming the setting (`op` is the refusing call): a
    /// NaN, infinite or negative learning rate or weight decay, a momentum or β outside
    /// [0, 1), an ε that is not finite and positive.
    pub fn check(&self, op: &'static str) -> Result<()> {
        check_lr(op, self.lr)?;
        let bad = |problem: String| Err(Error::InvalidOptimizer { op, problem });
        let unit = |x: f32| (0.0..1.0).contains(&x);
        if !unit(self.momentum) {
            return bad(format!("a momentum must be in [0, 1), not {}", self.momentum));
        }
        if !(unit(self.beta1) && unit(self.beta2)) {
            return bad(format!("Adam's β1 and β2 must be in [0, 1), not {} and {}", self.beta1, self.beta2));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("Adam's ε must be finite and positive, not {}", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("a weight decay must be finite and not negative, not {}", self.weight_decay));
        }
        Ok(())
    }

    /// The GPU row that `shaders/optimizer.wgsl` reads (the fields of `settings::Row` in order): `[lr, μ,
    /// β1, β2, ε, λ, β1^t, β2^t]`, then the loss watch's four slots (steps, first bad step,
    /// loss total, last loss), zero: no steps watched yet, then the next step's `β1^t, β2^t`
    /// (its check or advance writes them; here the same as the last step's).
    pub fn to_row(&self) -> [f32; SETTINGS_LEN] {
        bytemuck::cast(self.row())
    }

    pub(crate) fn row(&self) -> Row {
        let (p1, p2) = self.beta_powers();
        Row {
            lr: self.lr,
            momentum: self.momentum,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            beta1_power: p1,
            beta2_power: p2,
            step_beta1_power: p1,
            step_beta2_power: p2,
            ..Row::zeroed()
        }
    }
}

/// The settings row's fields, once: the Rust struct and its WGSL mirror (prepended to the
/// shaders that bind the row) both come from this list, so a slot has one name everywhere.
macro_rules! settings_row {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// The settings row as the GPU holds it: `shaders/optimizer.wgsl` reads the settings
        /// and keeps the β powers, `shaders/loss.wgsl` keeps the loss watch. All `f32`.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
        pub(crate) struct Row {
            $($(#[doc = $doc])* pub(crate) $field: f32,)*
        }

        /// [`Row`] in WGSL, as `struct Row { lr: f32, … }`.
        pub(crate) const ROW_WGSL: &str =
            concat!("struct Row {\n", $("    ", stringify!($field), ": f32,\n",)* "}\n");
    };
}

settings_row! {
    /// Learning rate.
    lr,
    /// Momentum μ.
    momentum,
    /// Adam's β1.
    beta1,
    /// Adam's β2.
    beta2,
    /// Adam's ε.
    eps,
    /// AdamW's λ.
    weight_decay,
    /// β1^t of the last step taken (an update keeps its step's here).
    beta1_power,
    /// β2^t of the last step taken.
    beta2_power,
    /// The loss watch (`shaders/loss.wgsl`'s `watch_step`): steps since the last read.
    steps,
    /// The first of those that diverged (1-based; 0: none). While it is set, every optimizer
    /// kernel leaves everything as it is, so the weights stay those from before it.
    first_bad,
    /// The sum of their losses.
    total,
    /// The last counted step's loss.
    bad_loss,
    /// The step's own β1^t: written by its check (or advance), read by its updates (no launch
    /// reads the slots it writes: see `shaders/optimizer.wgsl`).
    step_beta1_power,
    /// The step's own β2^t.
    step_beta2_power,
}

/// Length of the settings row, in floats.
pub(crate) const SETTINGS_LEN: usize = size_of::<Row>() / 4;

/// Where the loss watch's slots start in the settings row: `steps`, `first_bad`, `total` and
/// `bad_loss` of [`Row`]. `shaders/loss.wgsl`'s `watch_loss` keeps them, once per training
/// step, and `take_loss` reads them with the row. A step diverges when its loss is not
/// finite, or (marked by the optimizer's check) its update would not be.
pub(crate) const WATCH: usize = std::mem::offset_of!(Row, steps) / 4;

/// How many slots the loss watch has, from `steps` to the step's powers after it.
pub(crate) const WATCH_LEN: usize = std::mem::offset_of!(Row, step_beta1_power) / 4 - WATCH;

/// What the loss watch saw since it was last reset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Watch {
    pub(crate) steps: u32,
    /// 1-based among `steps`.
    pub(crate) first_bad: Option<u32>,
    pub(crate) total: f32,
    /// The first diverged step's loss: finite when its update was what diverged.
    pub(crate) bad_loss: f32,
}

impl Watch {
    pub(crate) fn from_row(row: &[f32]) -> Watch {
        let row: Row = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&row[..SETTINGS_LEN]));
        Watch {
            steps: row.steps as u32,
            first_bad: (row.first_bad != 0.0).then_some(row.first_bad as u32),
            total: row.total,
            bad_loss: row.bad_loss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OptimizerSettings;

    /// β^t multiplied out from 1, as the GPU does.
    fn from_scratch(s: &OptimizerSettings) -> (u32, u32) {
        let (p1, p2) = (0..s.step).fold((1.0f32, 1.0f32), |(p1, p2), _| (p1 * s.beta1, p2 * s.beta2));
        (p1.to_bits(), p2.to_bits())
    }

    #[test]
    fn beta_powers_are_the_step_by_step_products_whatever_was_asked_before() {
        let s = OptimizerSettings::new(0.001);
        let other = OptimizerSettings { beta1: 0.8, beta2: 0.99, ..s };
        // Forward one at a time, a jump, backwards, another model's betas between, step 0.
        for (step, settings) in
            [(1, s), (2, s), (3, s), (500, s), (7, s), (9, other), (8, s), (0, s), (4000, s)]
        {
            let asked = OptimizerSettings { step, ..settings };
            let (p1, p2) = asked.beta_powers();
            assert_eq!((p1.to_bits(), p2.to_bits()), from_scratch(&asked), "step {step}");
        }
    }
}
