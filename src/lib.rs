//! # wgpu-nn
//!
//! Neural-network kernels and training on any GPU that [wgpu] reaches (Vulkan, Metal, DX12,
//! GL), with a plain-Rust CPU reference that computes the same ops.
//!
//! - [`gpu`]: the [`Gpu`] context, tensors in GPU buffers, and kernels bound once as
//!   [`Dispatch`]es that record into any command encoder.
//! - [`model`]: the layer graph: describe a network once, train it on the GPU or the CPU.
//! - [`cpu`]: the readable reference, one function per WGSL entry point, with the same names.
//! - [`MatmulForm`]: the three matrix products a dense layer needs.
//! - [`OptimizerSettings`]: the hyperparameters of SGD, momentum, Adam and AdamW.
//!
//! `wgpu` is re-exported so an app that shares its device uses the same version.

mod activation;
mod atomic_file;
pub mod cpu;
pub mod data;
mod error;
pub mod gpu;
pub mod model;
mod random;
mod settings;
mod shape;

pub use activation::Activation;
pub use error::{Error, Result};
pub use gpu::{Counters, Dispatch, Gpu, GpuLabels, GpuTensor, MatmulKernel};
pub use settings::OptimizerSettings;
pub use shape::MatmulForm;
pub use wgpu;

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
