//! The clean, readable reference: every kernel in `shaders/` written again as plain loops.
//!
//! Each function has the same name as its op on the GPU (the WGSL entry point, or for an
//! activation or element-wise loss the op its shared entry point is specialized to:
//! `relu_forward`, `mse_backward`), takes its output first, and opens
//! with a comment giving the shapes (all matrices are row-major). The functions are generic
//! over the float type so that tests can check every derivative against finite differences
//! in `f64`; the crate calls them with `f32`. They are the oracle the GPU tests compare against,
//! so clarity wins over speed here.

mod activation;
pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod dropout;
mod loss;
mod matmul;
mod norm;
pub(crate) mod optimizer;
pub(crate) mod pool;
mod reduce;
mod softmax;

pub use activation::*;
pub use batch_norm::*;
pub use conv::*;
pub use dropout::*;
pub use loss::*;
pub use matmul::*;
pub use norm::*;
pub use optimizer::*;
pub use pool::*;
pub use reduce::*;
pub use softmax::*;
