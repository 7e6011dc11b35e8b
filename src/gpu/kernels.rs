//! [`Kernels`]: the crate's kernels bound one [`Dispatch`](super::Dispatch) at a time, for
//! the programs that build their own passes from them (the model builds its plans from the
//! same calls). Each op family's module adds its own (`matmul.rs`, `softmax.rs`, …), beside
//! the pipelines it builds.
//!
//! ```no_run
//! use wgpu_nn::{Gpu, MatmulForm};
//! # fn main() -> wgpu_nn::Result<()> {
//! let gpu = Gpu::new()?;
//! let (x, y) = (gpu.upload(&[-1.0, 2.0], 1, 2)?, gpu.zeros(1, 2)?);
//! let relu = gpu.kernels().relu_forward(&y, &x)?;
//! gpu.run(&[&relu])?;
//! assert_eq!(gpu.read(&y)?, [0.0, 2.0]);
//! # Ok(())
//! # }
//! ```

use super::Gpu;

/// The kernels of a [`Gpu`] ([`Gpu::kernels`]): each call checks its operands and binds one
/// kernel to them, returning a [`Dispatch`](super::Dispatch) to record as often as needed.
/// Names, argument order and shapes are those of the CPU reference in [`crate::cpu`].
#[derive(Clone, Copy, Debug)]
pub struct Kernels<'a> {
    gpu: &'a Gpu,
}

impl Gpu {
    /// The kernels compiled for this context, to bind one at a time.
    pub fn kernels(&self) -> Kernels<'_> {
        Kernels { gpu: self }
    }
}

/// The context the kernels bind on: its buffers, limits and compiled pipelines.
impl std::ops::Deref for Kernels<'_> {
    type Target = Gpu;

    fn deref(&self) -> &Gpu {
        self.gpu
    }
}
