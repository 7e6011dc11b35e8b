#![doc = include_str!("../README.md")]
//!
//! ## The crate's map
//!
//! - [`model`]: the layer graph: describe a network once ([`model::ModelConfig`]), train it on
//!   the GPU or the CPU ([`model::Model`]), save it and load PyTorch's.
//! - [`gpu`]: the [`Gpu`] context, tensors in GPU buffers, and kernels bound once as
//!   [`Dispatch`]es that record into any command encoder.
//! - [`cpu`]: the readable reference, one function per GPU op, with the same names.
//! - [`data`]: IDX files (MNIST), the bundled digits, and the spirals toy set.
//! - [`MatmulForm`]: the three matrix products a dense layer needs.
//! - [`OptimizerSettings`]: the hyperparameters of SGD, momentum, Adam and AdamW.
//!
//! `wgpu` is re-exported so an app that shares its device uses the same version.
#![warn(missing_docs)]

mod activation;
mod atomic_file;
mod blocking;
pub mod cpu;
pub mod data;
mod error;
pub mod gpu;
mod loss;
pub mod model;
mod random;
mod settings;
mod shape;
mod target;
#[cfg(test)]
mod test_util;

pub use activation::Activation;
pub use error::{Error, Result};
// The GPU types most programs name, also at the root; their pages are in `gpu`.
#[doc(no_inline)]
pub use gpu::{
    Counters, Dispatch, Epilogue, EpilogueDropout, Gpu, GpuLabels, GpuTensor, Keep, MatmulKernel, StepTarget,
    Tiling,
};
pub use settings::OptimizerSettings;
pub use shape::{BatchNorm, Conv2dShape, ImageShape, MatmulForm, Pool2dShape};
pub use wgpu;
