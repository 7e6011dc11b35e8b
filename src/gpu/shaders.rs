//! What several WGSL files share, prepended by the host (WGSL has no includes). Each op
//! family's module includes its own file (`softmax.rs` ↔ `shaders/softmax.wgsl`, …) and
//! passes it through the prelude it needs here.

use crate::settings::ROW_WGSL;

/// `source` after `elementwise.wgsl` (activations, their derivatives, dropout's hash) and the
/// activations' constants it switches on (from `activation.rs`'s table).
pub(crate) fn elementwise(source: &str) -> String {
    let constants = crate::Activation::wgsl_constants();
    [constants.as_str(), include_str!("../../shaders/elementwise.wgsl"), source].concat()
}

/// A matmul kernel's `source` after `matmul_common.wgsl` (the bindings and epilogue the three
/// share) and the element-wise functions.
pub(crate) fn matmul(source: &str) -> String {
    elementwise(&[include_str!("../../shaders/matmul_common.wgsl"), source].concat())
}

/// `source` after the settings row's struct `Row` (from `settings.rs`), for the kernels that
/// bind the row.
pub(crate) fn settings_row(source: &str) -> String {
    [ROW_WGSL, source].concat()
}

/// `source` after `optimizer_math.wgsl` (each optimizer's step on one parameter).
pub(crate) fn optimizer_math(source: &str) -> String {
    [include_str!("../../shaders/optimizer_math.wgsl"), source].concat()
}

/// `source` after the losses' constants (from `loss.rs`'s table) and `loss_math.wgsl` (each
/// element-wise loss's term and gradient on one value).
pub(crate) fn loss_math(source: &str) -> String {
    [crate::loss::Loss::wgsl_constants().as_str(), include_str!("../../shaders/loss_math.wgsl"), source]
        .concat()
}
