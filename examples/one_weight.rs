//! One weight learns to turn 5 into 42: the smallest gradient descent there is.
//!
//! `prediction = w · 5`, error `(prediction − 42)²`, and the lesson's update
//! `w −= 0.01 · delta · input`, which is SGD with learning rate 0.005 under MSE (whose
//! gradient carries a factor 2). The errors printed are the lesson's: 1369, 770.0625, …
//!
//! `cargo run --release --example one_weight -- [--backend gpu|cpu] [--json]`

mod lesson;

use serde_json::json;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

fn main() {
    lesson::run("one_weight", |lesson| {
        let start = Init::Given { weights: vec![1.0], bias: None };
        let config = ModelConfig::new(1)
            .dense_with(1, false, start)
            .loss(Loss::Mse)
            .optimizer(Optimizer::Sgd { lr: 0.005 });
        let mut model = lesson.build(&config)?;
        let (input, goal) = ([5.0], [42.0]);
        for epoch in 1..=20 {
            model.train_step(&input, &Target::Values(&goal))?;
            lesson.loss(format!("epoch {epoch:2} error"), model.take_loss()?);
        }
        let prediction = model.predict(&input)?[0];
        lesson.say(format!("prediction {prediction} (goal 42), weight {}", model.weights(0)?[0]));
        Ok(json!({ "prediction": prediction }))
    });
}
