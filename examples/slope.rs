//! The derivative of x² at x = 2 is 4, read off a model: one weight w = 2 on input 1 with
//! target 0 makes the MSE loss exactly w², so its gradient is 2w = 4.
//!
//! `cargo run --release --example slope -- [--backend gpu|cpu] [--json]`

mod lesson;

use serde_json::json;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

fn main() {
    lesson::run("slope", |lesson| {
        let start = Init::Given { weights: vec![2.0], bias: None };
        // Learning rate 0: the step computes the gradient and leaves w where it is.
        let config = ModelConfig::new(1)
            .dense_with(1, false, start)
            .loss(Loss::Mse)
            .optimizer(Optimizer::Sgd { lr: 0.0 });
        let mut model = lesson.build(&config)?;
        model.train_step(&[1.0], &Target::Values(&[0.0]))?;
        lesson.loss("loss w² at w = 2", model.take_loss()?);
        let gradient = model.weight_gradients(0)?[0];
        lesson.say(format!("d(x²)/dx at x = 2: {gradient}"));
        Ok(json!({ "gradient": gradient }))
    });
}
