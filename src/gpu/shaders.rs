//! The one place that includes the WGSL sources, so a shader file maps to exactly one constant.

pub(crate) const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
pub(crate) const MATMUL_SUBGROUP: &str = include_str!("../../shaders/matmul_subgroup.wgsl");
pub(crate) const ACTIVATION: &str = include_str!("../../shaders/activation.wgsl");
pub(crate) const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
pub(crate) const DROPOUT: &str = include_str!("../../shaders/dropout.wgsl");
pub(crate) const GATHER: &str = include_str!("../../shaders/gather.wgsl");
pub(crate) const LOSS: &str = include_str!("../../shaders/loss.wgsl");
pub(crate) const OPTIMIZER: &str = include_str!("../../shaders/optimizer.wgsl");
pub(crate) const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
pub(crate) const NORM: &str = include_str!("../../shaders/norm.wgsl");
