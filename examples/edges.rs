//! Grokking Deep Learning's chapter 10, "neural learning about edges and corners": the
//! chapter 9 network with its first layer swapped for a convolution, so the same 3×3
//! feature detectors look at every place in the image.
//!
//! As the chapter has it: the first 1000 training digits, 16 kernels of 3×3 (no bias, drawn
//! from ±0.01), tanh, dropout 0.5, a dense layer to 10 (no bias, ±0.1), softmax; batches of
//! 128 in order (the last partial one left out), 300 iterations of plain gradient descent with
//! the chapter's α = 2. The chapter scales its output delta by 1/(128 · 128), which is
//! cross-entropy's mean gradient times α/128: here a learning rate of 2/128.
//!
//! Two differences from the chapter's numpy: a 3×3 kernel over 28×28 has 26×26 positions,
//! where its loops stop at 25×25, and tanh's derivative is taken of tanh's output, not of the
//! output doubled by the dropout mask. The chapter ends at a test accuracy of 0.8774 on
//! MNIST's 10,000 test digits; this tests on the 2000 bundled ones.
//!
//! `cargo run --release --example edges -- [--iterations N] [--backend gpu|cpu] [--json]`

mod cli;

use std::time::Instant;

use serde_json::json;
use wgpu_nn::Conv2dShape;
use wgpu_nn::data;
use wgpu_nn::model::{Init, Loss, ModelConfig, Optimizer, Target};

/// Grokking Deep Learning's chapter 10 CNN on the first 1000 bundled MNIST digits.
#[derive(clap::Parser)]
#[command(name = "edges")]
struct Options {
    /// Passes over the 1000 training digits (the chapter's 300)
    #[arg(long, default_value_t = 300)]
    iterations: usize,
    #[command(flatten)]
    common: cli::Common,
}

const BATCH: usize = 128;

fn main() {
    if let Err(e) = run(clap::Parser::parse()) {
        eprintln!("edges: {e}");
        std::process::exit(1);
    }
}

fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let gpu = o.common.gpu()?;
    let backend = cli::backend(gpu.as_ref());
    let adapter = gpu.as_ref().map_or_else(|| "cpu".to_string(), wgpu_nn::Gpu::adapter_name);
    let (train, test) = data::bundled_mnist()?;
    let train = train.take(1000);

    let kernels = Conv2dShape::new(1, (28, 28), 16, (3, 3));
    let config = ModelConfig::new(784)
        .conv2d_with(kernels, false, Init::Uniform(-0.01, 0.01))
        .tanh()
        .dropout(0.5)
        .flatten()
        .dense_with(10, false, Init::Uniform(-0.1, 0.1))
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(Optimizer::Sgd { lr: 2.0 / BATCH as f32 })
        .seed(1);
    let mut model = config.build(backend, gpu.as_ref())?;
    println!("{backend:?} backend on {adapter}: {} training digits, {} test digits", train.len(), test.len());

    let (x, labels) = (train.inputs(), train.labels().unwrap_or_default());
    let test_set = model.load(&test)?;
    let mut losses = Vec::new();
    let mut accuracies = Vec::new();
    for i in 0..o.iterations {
        for b in 0..train.len() / BATCH {
            let rows = b * BATCH..(b + 1) * BATCH;
            let batch = &x[rows.start * 784..rows.end * 784];
            model.train_step(batch, &Target::Labels(&labels[rows]))?;
        }
        losses.push(model.take_loss()?);
        if i % 10 == 9 || i + 1 == o.iterations {
            let accuracy = model.evaluate_resident(&test_set)?.accuracy.unwrap_or(0.0);
            accuracies.push(accuracy);
            println!("I:{i} test accuracy {accuracy:.4}, training loss {:.4}", losses[i]);
        }
    }
    let accuracy = accuracies.last().copied().unwrap_or(0.0);
    if o.common.json {
        let report = json!({
            "example": "edges",
            "backend": backend.name(),
            "adapter": adapter,
            "losses": losses,
            "test_accuracy": accuracy,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{report}");
    }
    Ok(())
}
