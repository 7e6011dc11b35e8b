//! Any bytes as a checkpoint, two ways:
//! - for a small model with biases, a bias-free layer and Adam state (`load_checkpoint`):
//!   Ok or an Error, and an Error leaves the model unchanged. The seeds cover our own files
//!   and PyTorch's names (plain `nn.Sequential`, a prefix) in F32, F16, BF16 and F64.
//! - as a model of its own (`from_checkpoint`: the config in its metadata): Ok or an Error,
//!   and a model it builds predicts without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpu_nn::model::{Backend, Init, Loss, Model, ModelConfig, Optimizer};

fn model() -> Model {
    ModelConfig::new(3)
        .dense(4)
        .relu()
        .dense_with(2, false, Init::Xavier)
        .loss(Loss::Mse)
        .optimizer(Optimizer::Adam { lr: 0.01 })
        .seed(1)
        .build_cpu()
        .expect("a valid config")
}

/// Widths past this are not predicted with: the harness would allocate the inputs itself.
const MOST_VALUES: usize = 1 << 12;

fuzz_target!(|bytes: &[u8]| {
    let mut model = model();
    let before = (model.weights(0).unwrap(), model.bias(0).unwrap(), model.weights(2).unwrap());
    if model.load_checkpoint_bytes(bytes, "fuzz.safetensors").is_err() {
        let after = (model.weights(0).unwrap(), model.bias(0).unwrap(), model.weights(2).unwrap());
        assert_eq!(before, after, "a rejected checkpoint changed the model");
    }

    if let Ok(mut rebuilt) = Model::from_checkpoint_bytes(bytes, "fuzz.safetensors", Backend::Cpu, None) {
        let config = rebuilt.config().clone();
        let widths = (0..=config.layers().len()).map(|i| config.width_at(i));
        if widths.clone().all(|w| w <= MOST_VALUES) && config.width_at(0) * 2 <= MOST_VALUES {
            let x = vec![0.5; 2 * config.width_at(0)];
            let y = rebuilt.predict(&x).expect("a rebuilt model predicts");
            assert_eq!(y.len(), 2 * config.width());
        }
    }
});
