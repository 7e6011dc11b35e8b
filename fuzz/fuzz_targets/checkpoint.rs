//! Any bytes, as a checkpoint for a small model with biases, a bias-free layer and Adam state:
//! loading must return Ok or an Error, and an Error must leave the model unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpu_nn::model::{Init, Loss, Model, ModelConfig, Optimizer};

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

fuzz_target!(|bytes: &[u8]| {
    let mut model = model();
    let before = (model.weights(0).unwrap(), model.bias(0).unwrap(), model.weights(2).unwrap());
    if model.load_checkpoint_bytes(bytes, "fuzz.safetensors").is_err() {
        let after = (model.weights(0).unwrap(), model.bias(0).unwrap(), model.weights(2).unwrap());
        assert_eq!(before, after, "a rejected checkpoint changed the model");
    }
});
