//! The GPU backend: a [`Gpu`] context that owns the device, queue and every compiled kernel,
//! [`GpuTensor`]s that live in GPU buffers, and [`Dispatch`]es: kernels bound to their
//! buffers once, recorded into command encoders as often as needed.
//!
//! Each op family's module builds its pipelines and binds them (`matmul` ↔
//! `shaders/matmul.wgsl`, …); op names match the CPU reference, and the WGSL entry points but
//! for the activations and element-wise losses, whose ops share one entry point each way.
//!
//! # Shapes and errors
//! Tensors are row-major f32 matrices; each binding call names the shapes it takes, as its
//! CPU twin in [`crate::cpu`] does. Binding checks everything before the GPU sees it:
//! operands whose shapes do not fit, or an output that is also an input, are
//! [`crate::Error::Shape`]; a tensor of another `Gpu` is [`crate::Error::Gpu`] (wgpu itself
//! would panic); a size past the adapter's limits is [`crate::Error::BufferTooLarge`]. Running
//! and reading return [`crate::Error::Gpu`] or [`crate::Error::Readback`] when the device fails.
//!
//! ```no_run
//! use wgpu_nn::{Gpu, MatmulForm};
//! # fn main() -> wgpu_nn::Result<()> {
//! let gpu = Gpu::new()?;
//! let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], 2, 2)?;
//! let b = gpu.upload(&[1.0, 0.0, 0.0, 1.0], 2, 2)?;
//! let c = gpu.zeros(2, 2)?;
//! let product = gpu.kernels().matmul_forward(&c, &a, &b, None, MatmulForm::AB)?;
//! gpu.run(&[&product])?;
//! assert_eq!(gpu.read(&c)?, vec![1.0, 2.0, 3.0, 4.0]);
//! # Ok(())
//! # }
//! ```

mod activation;
mod batch_norm;
mod context;
mod conv;
mod counters;
mod dispatch;
mod dropout;
mod gather;
mod kernels;
mod loss;
mod matmul;
mod mlp;
mod norm;
mod optimizer;
mod pool;
mod readback;
mod reduce;
mod shaders;
mod softmax;
mod tensor;
mod upload;

pub use context::Gpu;
pub(crate) use conv::{ITERATIONS as CONV_TERMS, loop_turns as conv_loop_turns};
pub use counters::Counters;
pub(crate) use dispatch::Deferred;
pub use dispatch::Dispatch;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use dispatch::with_pipelines_made_at_once;
pub use dropout::DropoutCounter;
pub use kernels::Kernels;
pub use loss::StepTarget;
pub use matmul::{Epilogue, EpilogueDropout, Keep, MatmulKernel, Tiling};
pub(crate) use mlp::{
    MAX_PARAMS as MLP_MAX_PARAMS, MAX_WIDTH as MLP_MAX_WIDTH, MlpLayer, MlpOptimizer, MlpShape, MlpTarget,
    UNIFORM_FLOATS as MLP_UNIFORM_FLOATS, software as mlp_software,
};
pub use norm::MAX_LAYER_NORM_COLS;
pub use optimizer::SettingsRow;
pub(crate) use readback::Staging;
pub use softmax::MAX_SOFTMAX_COLS;
pub use tensor::{GpuLabels, GpuTensor};
pub(crate) use upload::Uploads;
