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
    NoAdapter { detail: String },

    /// The adapter refused to create a device.
    #[error("the GPU adapter refused to create a device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),

    /// Operand shapes do not fit the op.
    #[error("{op}: shape mismatch: expected {expected}, got {actual}")]
    Shape { op: &'static str, expected: String, actual: String },

    /// An input or target value is NaN or infinite (checked on the host before any upload).
    #[error("{op}: {what} value {value} at row {row}, column {col} is not finite")]
    NotFinite { op: &'static str, what: &'static str, row: usize, col: usize, value: f32 },

    /// A training step's loss was NaN or infinite: found on the GPU by the loss watch (or on
    /// the CPU), reported at the next loss read. That step's update and those of any later
    /// steps before the report were skipped, so the weights are the last finite ones.
    #[error(
        "training diverged: the loss of step {step} was {loss}; that step and the {skipped} after it \
         were not applied, so the weights are those from before it. Lower the learning rate (or \
         reload a checkpoint) and train on"
    )]
    Diverged { step: u64, loss: f32, skipped: u32 },

    /// A layer's setting is out of its range (a drop probability outside [0, 1), a
    /// LeakyReLU slope that is not finite); `layer` is its index in the config.
    #[error("layer {layer}: {problem}")]
    InvalidLayer { layer: usize, problem: String },

    /// The loss was asked for, but no training step was taken since it was last read.
    #[error("{op}: no training step was taken since the loss was last read")]
    NoSteps { op: &'static str },

    /// A training call on a model rebuilt for inference by
    /// [`crate::model::Model::from_checkpoint`], which keeps no gradients or optimizer state.
    #[error(
        "{op} needs a model that trains; this one was rebuilt for inference by from_checkpoint \
         (build it from its config and call load_checkpoint to train)"
    )]
    InferenceOnly { op: &'static str },

    /// A model was built for the GPU backend without a [`crate::Gpu`] to build it on.
    #[error("the GPU backend needs a Gpu: pass Some(&gpu), or build with Backend::Cpu")]
    MissingGpu,

    /// The op needs the other backend (recording into an encoder needs the GPU one).
    #[error("{op} needs a model on the GPU backend; this one runs on the CPU")]
    NeedsGpu { op: &'static str },

    /// A buffer would exceed what the adapter allows.
    #[error("{what} needs {size} bytes, over the adapter's {limit_name} of {limit} bytes")]
    BufferTooLarge { what: String, size: u64, limit: u64, limit_name: &'static str },

    /// wgpu reported a validation, out-of-memory or internal error inside an error scope.
    #[error("GPU error while {context}: {message}")]
    Gpu { context: String, message: String },

    /// A data or checkpoint file is missing, malformed or cannot be written.
    #[error("{file}: {problem}")]
    Data { file: String, problem: String },

    /// Waiting for the GPU or mapping a buffer failed (for example, the device was lost).
    #[error("GPU read-back failed: {0}")]
    Readback(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Error::Shape { op, expected: expected.into(), actual: actual.into() }
    }
}
