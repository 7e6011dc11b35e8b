//! The one place that includes the WGSL sources, so a shader file maps to exactly one constant.
//! WGSL has no includes: the files that share `elementwise.wgsl` (activations, their
//! derivatives, dropout's hash) or `matmul_common.wgsl` (the matmul bindings and epilogue)
//! get them prepended here.

const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
const MATMUL_COMMON: &str = include_str!("../../shaders/matmul_common.wgsl");

pub(crate) fn matmul() -> String {
    [ELEMENTWISE, MATMUL_COMMON, include_str!("../../shaders/matmul.wgsl")].concat()
}

pub(crate) fn matmul_subgroup() -> String {
    [ELEMENTWISE, MATMUL_COMMON, include_str!("../../shaders/matmul_subgroup.wgsl")].concat()
}

pub(crate) fn matmul_tiled() -> String {
    [ELEMENTWISE, MATMUL_COMMON, include_str!("../../shaders/matmul_tiled.wgsl")].concat()
}

pub(crate) fn activation() -> String {
    [ELEMENTWISE, include_str!("../../shaders/activation.wgsl")].concat()
}

pub(crate) fn dropout() -> String {
    [ELEMENTWISE, include_str!("../../shaders/dropout.wgsl")].concat()
}

pub(crate) const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
pub(crate) const GATHER: &str = include_str!("../../shaders/gather.wgsl");
pub(crate) const LOSS: &str = include_str!("../../shaders/loss.wgsl");
pub(crate) const OPTIMIZER: &str = include_str!("../../shaders/optimizer.wgsl");
pub(crate) const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
pub(crate) const NORM: &str = include_str!("../../shaders/norm.wgsl");
