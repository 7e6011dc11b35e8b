//! The model on the GPU. Everything a step touches is allocated when the model is built (per
//! batch size, on first use), and every kernel is bound then; a training step writes the batch,
//! records forward, loss, backward and update into one encoder and submits it once. The loss
//! watch adds each step's loss to a total on the GPU, and halts the optimizer at the first
//! non-finite one; only `take_loss` reads it back (the settings row, 56 bytes).
//!
//! `model.rs` holds the model and its [`crate::model::engine::Engine`] calls, `plan.rs` the
//! per-batch plans that bind `ops.rs`'s layers, `embed.rs` the calls that record into an
//! app's encoder.

mod embed;
mod flat;
mod fused;
mod model;
mod plan;

pub use embed::{Forward, LossReading};
pub(crate) use model::GpuModel;
