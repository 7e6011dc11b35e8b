//! Fitting a·x² + b·x + c to noisy samples of 3x² + 2x + 1 with the mean absolute error.
//!
//! 20 points on [−2, 2], with multiplicative and additive noise (seeded). The model is one
//! dense neuron with bias over the features [x², x], so its weights are a, b and its bias c,
//! starting at 1.1 each. Gradient descent with learning rate 0.01 on all 20 points: MAE's
//! gradient is a sign, so each step moves a parameter by at most 0.01 × its feature, and the
//! fit takes thousands of steps to come close to 3, 2, 1 (the noise keeps it from landing).
//!
//! `cargo run --release --example quadratic -- [--backend gpu|cpu] [--json]`

mod lesson;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::json;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

fn main() {
    lesson::run("quadratic", |lesson| {
        let mut rng = StdRng::seed_from_u64(42);
        let xs: Vec<f32> = (0..20).map(|i| -2.0 + 4.0 * i as f32 / 19.0).collect();
        let ys: Vec<f32> = xs
            .iter()
            .map(|x| (3.0 * x * x + 2.0 * x + 1.0) * rng.random_range(0.9..1.1) + rng.random_range(-0.1..0.1))
            .collect();
        let features: Vec<f32> = xs.iter().flat_map(|x| [x * x, *x]).collect();

        let start = Init::Given { weights: vec![1.1, 1.1], bias: Some(vec![1.1]) };
        let config = ModelConfig::new(2)
            .dense_with(1, true, start)
            .loss(Loss::Mae)
            .optimizer(Optimizer::Sgd { lr: 0.01 });
        let mut model = lesson.build(&config)?;
        // The loss is read back only when printed: each step's for the first ten, then the
        // mean over each stretch of 500 steps.
        for step in 1..=3000 {
            model.train_step(&features, &Target::Values(&ys))?;
            if step <= 10 {
                lesson.loss(format!("step {step:4} MAE"), model.take_loss()?);
            } else if step % 500 == 0 {
                let first = if step == 500 { 11 } else { step - 499 };
                lesson.loss(format!("steps {first:4}-{step:4} mean MAE"), model.take_loss()?);
            }
        }
        let (w, c) = (model.weights(0)?, model.bias(0)?[0]);
        let params = [w[0], w[1], c];
        lesson.say(format!("a, b, c = {params:?} (true 3, 2, 1)"));
        Ok(json!({ "params": params }))
    });
}
