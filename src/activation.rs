//! The element-wise activations, named once for the CPU reference, the GPU kernels and the
//! layer graph: adding one here (with its two functions in `cpu/activation.rs` and its two
//! entry points in `shaders/activation.wgsl`) makes it a layer on both backends.

/// An element-wise activation function.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Activation {
    /// `max(x, 0)`
    Relu,
    /// `x` for `x > 0`, `slope · x` otherwise (PyTorch's `LeakyReLU(negative_slope)`).
    LeakyRelu(f32),
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `tanh(x)`
    Tanh,
    /// GELU, tanh approximation (PyTorch's `GELU(approximate="tanh")`):
    /// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    Gelu,
}

impl Activation {
    /// The WGSL entry points (and CPU reference functions) of its forward and backward.
    pub fn entry_points(self) -> (&'static str, &'static str) {
        match self {
            Activation::Relu => ("relu_forward", "relu_backward"),
            Activation::LeakyRelu(_) => ("leaky_relu_forward", "leaky_relu_backward"),
            Activation::Sigmoid => ("sigmoid_forward", "sigmoid_backward"),
            Activation::Tanh => ("tanh_forward", "tanh_backward"),
            Activation::Gelu => ("gelu_forward", "gelu_backward"),
        }
    }

    /// Whether the backward reads the forward's output (sigmoid, tanh: their derivatives are
    /// cheapest from y) rather than its input.
    pub fn backward_reads_output(self) -> bool {
        matches!(self, Activation::Sigmoid | Activation::Tanh)
    }

    /// Its code in `shaders/elementwise.wgsl` (0 there means no activation).
    pub(crate) fn code(self) -> u32 {
        match self {
            Activation::Relu => 1,
            Activation::LeakyRelu(_) => 2,
            Activation::Sigmoid => 3,
            Activation::Tanh => 4,
            Activation::Gelu => 5,
        }
    }

    /// The one number the function takes (LeakyReLU's slope; 0 for the others).
    pub(crate) fn parameter(self) -> f32 {
        match self {
            Activation::LeakyRelu(slope) => slope,
            _ => 0.0,
        }
    }
}
