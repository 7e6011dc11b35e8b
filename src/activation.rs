//! The element-wise activations, registered once: a variant here and its row in [`SPECS`]
//! make it a layer on both backends, given its math in two places (`shaders/elementwise.wgsl`'s
//! `activate` and `derive`, which switch on the constant named here, and its two functions in
//! `cpu/activation.rs`). The GPU's codes, entry-point names and WGSL constants all come from
//! the row; the tests loop over [`Activation::ALL`].

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
    /// SiLU (swish): `x · sigmoid(x)`, PyTorch's `SiLU`.
    Silu,
}

/// What the backends need to know of an activation besides its math.
struct Spec {
    /// Its WGSL constant in `shaders/elementwise.wgsl` (whose value is the code).
    wgsl: &'static str,
    /// The forward's and backward's names: the CPU reference's functions, and the op named
    /// in errors and dispatch labels.
    forward: &'static str,
    backward: &'static str,
    /// Whether the backward reads the forward's output rather than its input.
    reads_output: bool,
}

/// One row per activation, in code order (code = index + 1; 0 means none).
const SPECS: [Spec; 6] = [
    Spec { wgsl: "RELU", forward: "relu_forward", backward: "relu_backward", reads_output: false },
    Spec {
        wgsl: "LEAKY_RELU",
        forward: "leaky_relu_forward",
        backward: "leaky_relu_backward",
        reads_output: false,
    },
    Spec { wgsl: "SIGMOID", forward: "sigmoid_forward", backward: "sigmoid_backward", reads_output: true },
    Spec { wgsl: "TANH", forward: "tanh_forward", backward: "tanh_backward", reads_output: true },
    Spec { wgsl: "GELU", forward: "gelu_forward", backward: "gelu_backward", reads_output: false },
    Spec { wgsl: "SILU", forward: "silu_forward", backward: "silu_backward", reads_output: false },
];

impl Activation {
    /// One of each, LeakyReLU with PyTorch's default slope 0.01: what the tests loop over.
    pub const ALL: [Activation; SPECS.len()] = [
        Activation::Relu,
        Activation::LeakyRelu(0.01),
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Silu,
    ];

    fn index(self) -> usize {
        match self {
            Activation::Relu => 0,
            Activation::LeakyRelu(_) => 1,
            Activation::Sigmoid => 2,
            Activation::Tanh => 3,
            Activation::Gelu => 4,
            Activation::Silu => 5,
        }
    }

    fn spec(self) -> &'static Spec {
        &SPECS[self.index()]
    }

    /// The names of its forward and backward: the CPU reference's functions (`relu_forward`,
    /// …), and the op that errors and dispatch labels name.
    pub fn entry_points(self) -> (&'static str, &'static str) {
        (self.spec().forward, self.spec().backward)
    }

    /// Whether the backward reads the forward's output (sigmoid, tanh: their derivatives are
    /// cheapest from y) rather than its input.
    pub fn backward_reads_output(self) -> bool {
        self.spec().reads_output
    }

    /// Its code in `shaders/elementwise.wgsl` (0 there means no activation).
    pub(crate) fn code(self) -> u32 {
        self.index() as u32 + 1
    }

    /// The one number the function takes (LeakyReLU's slope; 0 for the others).
    pub(crate) fn parameter(self) -> f32 {
        match self {
            Activation::LeakyRelu(slope) => slope,
            _ => 0.0,
        }
    }

    /// The WGSL constants `elementwise.wgsl` switches on (`const RELU: u32 = 1u;`, …),
    /// prepended to it by the host.
    pub(crate) fn wgsl_constants() -> String {
        let all = Activation::ALL.iter();
        all.map(|f| format!("const {}: u32 = {}u;\n", f.spec().wgsl, f.code())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Activation;

    #[test]
    fn all_holds_each_activation_once_in_code_order() {
        let codes: Vec<u32> = Activation::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes, (1..=Activation::ALL.len() as u32).collect::<Vec<_>>());
        assert!(Activation::wgsl_constants().contains("const SILU: u32 = 6u;"));
    }
}
