//! The crate's one error type. Every fallible call returns [`Result`]; the library does not
//! panic on bad input.

/// What went wrong, in words a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// wgpu found no adapter for the requested backends.
    #[error(
        "no GPU adapter found ({detail}). Install a GPU driver, or Mesa's software Vulkan \
         driver (`apt-get install mesa-vulkan-drivers libvulkan1`), or try WGPU_BACKEND=gl; \
         or use the CPU backend"
    )]
    NoAdapter {
        /// What wgpu said when asked for one.
        detail: String,
    },

    /// The adapter refused to create a device.
    #[error("the GPU adapter refused to create a device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),

    /// Operand shapes do not fit the op.
    #[error("{op}: shape mismatch: expected {expected}, got {actual}")]
    Shape {
        /// The call that refused the operands (`train_step`, `matmul_forward`, `build`, …).
        op: &'static str,
        /// What it needed, in words.
        expected: String,
        /// What it was given.
        actual: String,
    },

    /// An input or target value is NaN or infinite (checked on the host before any upload).
    #[error("{op}: {what} value {value} at row {row}, column {col} is not finite")]
    NotFinite {
        /// The call that refused the values.
        op: &'static str,
        /// `input` or `target`.
        what: &'static str,
        /// The sample (row) of the first such value.
        row: usize,
        /// Its column within the sample.
        col: usize,
        /// The value itself: NaN or ±infinity.
        value: f32,
    },

    /// A training step diverged: its loss was NaN or infinite, or its update would have made a
    /// weight or optimizer state so (a finite but huge `lr · g` overflows). Found on the GPU by
    /// the loss watch and the optimizer's check (or on the CPU), reported at the next loss
    /// read. That step's update and those of any later steps before the report were skipped,
    /// so the weights are those from before it, all finite.
    #[error(
        "training diverged: {}; that step and the {skipped} after it were not applied, so the \
         weights are those from before it. Lower the learning rate (or reload a checkpoint) and \
         train on",
        diverged_cause(*step, *loss, *in_update)
    )]
    Diverged {
        /// The step, counted from 1 over the model's life, that diverged.
        step: u64,
        /// That step's loss: NaN or ±infinity, or finite when its update diverged.
        loss: f32,
        /// Whether the update diverged (its loss was finite).
        in_update: bool,
        /// Later steps before the report that were not applied either.
        skipped: u32,
    },

    /// A layer's setting is out of its range (a drop probability outside [0, 1), a
    /// LeakyReLU slope that is not finite); `layer` is its index in the config.
    #[error("layer {layer}: {problem}")]
    InvalidLayer {
        /// The layer's index in the config.
        layer: usize,
        /// What is wrong with it, in words.
        problem: String,
    },

    /// A [`crate::model::Trainer`] setting that cannot run (a schedule out of range, a
    /// monitor the data cannot give), or data sets it cannot train on.
    #[error("Trainer: {problem}")]
    InvalidTraining {
        /// What is wrong, in words.
        problem: String,
    },

    /// The loss was asked for, but no training step was taken since it was last read.
    #[error("{op}: no training step was taken since the loss was last read")]
    NoSteps {
        /// The loss read that found no steps (`take_loss`, `record_loss`).
        op: &'static str,
    },

    /// A training call on a model rebuilt for inference by
    /// [`crate::model::Model::from_checkpoint`], which keeps no gradients or optimizer state.
    #[error(
        "{op} needs a model that trains; this one was rebuilt for inference by from_checkpoint \
         (build it from its config and call load_checkpoint to train)"
    )]
    InferenceOnly {
        /// The training call that was refused.
        op: &'static str,
    },

    /// A model was built for the GPU backend without a [`crate::Gpu`] to build it on.
    #[error("the GPU backend needs a Gpu: pass Some(&gpu), or build with Backend::Cpu")]
    MissingGpu,

    /// The op needs the other backend (recording into an encoder needs the GPU one).
    #[error("{op} needs a model on the GPU backend; this one runs on the CPU")]
    NeedsGpu {
        /// The GPU-only call.
        op: &'static str,
    },

    /// A buffer would exceed what the adapter allows.
    #[error("{what} needs {size} bytes, over the adapter's {limit_name} of {limit} bytes")]
    BufferTooLarge {
        /// The buffer, in words (`layer 0 (dense 784 -> 128) weights`, a batch's activations).
        what: String,
        /// The bytes it would need.
        size: u64,
        /// The adapter's limit, in bytes.
        limit: u64,
        /// Which limit of `wgpu::Limits` that is.
        limit_name: &'static str,
    },

    /// wgpu reported a validation, out-of-memory or internal error inside an error scope.
    #[error("GPU error while {context}: {message}")]
    Gpu {
        /// What the crate was doing (`binding matmul_any`, `reading a buffer back`, …).
        context: String,
        /// What wgpu said.
        message: String,
    },

    /// A data or checkpoint file is missing, malformed or cannot be written.
    #[error("{file}: {problem}")]
    Data {
        /// The file, or the name given to a call that reads from memory.
        file: String,
        /// What is wrong with it, in words (naming the tensor or header field).
        problem: String,
    },

    /// Waiting for the GPU or mapping a buffer failed (for example, the device was lost).
    #[error("GPU read-back failed: {0}")]
    Readback(String),

    /// An optimizer setting no step could use: a NaN, infinite or negative learning rate, a
    /// momentum outside [0, 1), a weight decay that is not a finite, non-negative number.
    #[error("{op}: {problem}")]
    InvalidOptimizer {
        /// The call that refused it (`build`, `set_learning_rate`).
        op: &'static str,
        /// Which setting, its value and what it must be.
        problem: String,
    },

    /// A loss's parameter no step could use: a Huber δ that is not finite and positive.
    #[error("{op}: {problem}")]
    InvalidLoss {
        /// The call that refused it (`build`, `huber_forward`, …).
        op: &'static str,
        /// Which parameter, its value and what it must be.
        problem: String,
    },

    /// The host cannot hold what a call would allocate (the CPU backend's parameters, say):
    /// refused before anything is allocated, where the allocator would abort the process.
    #[error("{what} needs {bytes} bytes, more than this machine can allocate")]
    OutOfMemory {
        /// What would be allocated, in words.
        what: String,
        /// The bytes it would need.
        bytes: u64,
    },

    /// A blocking call was made in the browser, where waiting for the GPU would hang the
    /// page: its `async` form works there (`take_loss_async` for `take_loss`, …).
    #[error(
        "{op} would block the browser's thread waiting for the GPU: in a page, await the call's \
         async form (take_loss_async for take_loss, train_epoch_async for an epoch, \
         LossReading::poll for a recorded loss); the blocking forms are for native programs"
    )]
    WouldBlock {
        /// The blocking call.
        op: &'static str,
    },

    /// The adapter cannot run what the crate needs (a WebGL2 or GL ES 3.0 adapter without
    /// compute shaders, say).
    #[error("the adapter {adapter} cannot run wgpu-nn: it lacks {missing}")]
    Unsupported {
        /// The adapter, as [`crate::Gpu::adapter_name`] words it.
        adapter: String,
        /// What it lacks, in words.
        missing: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Error::Shape { op, expected: expected.into(), actual: actual.into() }
    }
}

/// An [`Error::Data`] naming the file (or the name a call reading from memory was given).
pub(crate) fn data_error(path: &std::path::Path, problem: impl Into<String>) -> Error {
    Error::Data { file: path.display().to_string(), problem: problem.into() }
}

fn diverged_cause(step: u64, loss: f32, in_update: bool) -> String {
    if in_update {
        format!(
            "the update of step {step} (loss {loss}) would have made a weight or its optimizer state NaN or infinite"
        )
    } else {
        format!("the loss of step {step} was {loss}")
    }
}
