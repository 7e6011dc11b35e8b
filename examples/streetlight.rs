//! The streetlight: which of three lights' patterns mean "walk"? A 3 → 4 ReLU → 1 network,
//! trained one sample at a time, as in the lesson.
//!
//! Weights start uniform in [−1, 1) with no biases. The lesson's `alpha = 0.2` on
//! `delta = prediction − goal` is SGD with learning rate 0.1 under MSE (whose gradient is
//! 2 · delta). The summed error of the four patterns, printed every 10 iterations, falls
//! below 1e-6. Like the lesson's `np.random.seed(1)`, the seed matters: from some starting
//! weights every ReLU is dead for some pattern and the net gets stuck (seeds 2, 3, 4 here).
//!
//! `cargo run --release --example streetlight -- [--backend gpu|cpu] [--json]`

mod lesson;

use serde_json::json;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

fn main() {
    lesson::run("streetlight", |lesson| {
        let lights = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]];
        let walk = [1.0, 1.0, 0.0, 0.0];
        let config = ModelConfig::new(3)
            .dense_with(4, false, Init::Uniform(-1.0, 1.0))
            .relu()
            .dense_with(1, false, Init::Uniform(-1.0, 1.0))
            .loss(Loss::Mse)
            .optimizer(Optimizer::Sgd { lr: 0.1 })
            .seed(6);
        let mut model = lesson.build(&config)?;
        let mut error = f32::NAN;
        for iteration in 1..=150 {
            for (light, goal) in lights.iter().zip(&walk) {
                model.train_step(light, &Target::Values(&[*goal]))?;
            }
            // The mean per-sample error of this iteration's four steps, summed as in the lesson.
            error = 4.0 * model.take_loss()?;
            if iteration % 10 == 0 {
                lesson.loss(format!("iteration {iteration:3} error"), error);
            }
        }
        let predictions = model.predict(&lights.concat())?;
        lesson.say(format!("predictions {predictions:?} for goals {walk:?}"));
        Ok(json!({ "final_error": error, "predictions": predictions }))
    });
}
