//! A linear neuron learns that a 2×2 "rectangle"'s target is the average of its four values.
//!
//! 1000 rectangles of values in 0..1 rounded to 0.1; one neuron without bias starting at
//! [0.98, 0.4, 0.86, −0.08]; full-batch gradient descent on MSE. The weights go to 0.25 each.
//!
//! `cargo run --release --example rectangles -- [--backend gpu|cpu] [--json]`

mod lesson;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::json;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

fn main() {
    lesson::run("rectangles", |lesson| {
        let mut rng = StdRng::seed_from_u64(7);
        let x: Vec<f32> = (0..1000 * 4).map(|_| rng.random_range(0..=10) as f32 / 10.0).collect();
        let averages: Vec<f32> = x.chunks(4).map(|r| r.iter().sum::<f32>() / 4.0).collect();
        let target = Target::Values(&averages);

        let start = Init::Given { weights: vec![0.98, 0.4, 0.86, -0.08], bias: None };
        let config = ModelConfig::new(4)
            .dense_with(1, false, start)
            .loss(Loss::Mse)
            .optimizer(Optimizer::Sgd { lr: 0.5 });
        let mut model = lesson.build(&config)?;
        let mse_before = model.evaluate(&x, &target)?.loss;
        lesson.say(format!("MSE before training: {mse_before}"));
        for epoch in 1..=100 {
            model.train_step(&x, &target)?;
            if epoch % 10 == 0 {
                lesson.loss(format!("epoch {epoch:3} MSE"), model.take_loss()?);
            }
        }
        let mse_after = model.evaluate(&x, &target)?.loss;
        let weights = model.weights(0)?;
        lesson.say(format!("MSE after training: {mse_after:e}; weights {weights:?}"));
        Ok(json!({ "mse_before": mse_before, "mse_after": mse_after, "weights": weights }))
    });
}
