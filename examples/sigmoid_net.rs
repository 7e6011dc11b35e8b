//! A two-layer sigmoid network learns XOR by back-propagation: the problem a single neuron
//! cannot solve.
//!
//! 2 → 8 sigmoid → 1 sigmoid, binary cross-entropy, plain SGD on all four patterns at once.
//!
//! `cargo run --release --example sigmoid_net -- [--backend gpu|cpu] [--json]`

mod lesson;

use serde_json::json;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

fn main() {
    lesson::run("sigmoid_net", |lesson| {
        let x = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        let xor = [0.0, 1.0, 1.0, 0.0];
        let config = ModelConfig::new(2)
            .dense_with(8, true, Init::Uniform(-1.0, 1.0))
            .sigmoid()
            .dense_with(1, true, Init::Uniform(-1.0, 1.0))
            .sigmoid()
            .loss(Loss::BinaryCrossEntropy)
            .optimizer(Optimizer::Sgd { lr: 2.0 })
            .seed(5);
        let mut model = lesson.build(&config)?;
        for step in 1..=1000 {
            model.train_step(&x, &Target::Values(&xor))?;
            if step % 100 == 0 {
                lesson.loss(format!("step {step:4} loss"), model.take_loss()?);
            }
        }
        let p = model.predict(&x)?;
        let correct = p.iter().zip(&xor).filter(|(p, t)| (**p > 0.5) == (**t > 0.5)).count();
        let accuracy = correct as f32 / xor.len() as f32;
        lesson.say(format!("outputs {p:?} for XOR {xor:?}: accuracy {accuracy}"));
        Ok(json!({ "accuracy": accuracy, "outputs": p }))
    });
}
