//! Whole models on the GPU and the CPU, through the `async` calls: the same training on both
//! backends for every optimizer and loss, the loss watch, and checkpoints through bytes.
//! Portable: these are also the browser suite's model tests.

use crate::common::{assert_close, backends_with, random, random_labels, shared_gpu};
use wgpu_nn::model::{Backend, Init, Layer, Loss, Model, ModelConfig, Optimizer, Target};
use wgpu_nn::{BatchNorm, Conv2dShape, Error, Gpu, Pool2dShape};

pub const OPTIMIZERS: [Optimizer; 4] = [
    Optimizer::Sgd { lr: 0.1 },
    Optimizer::Momentum { lr: 0.05, momentum: 0.9 },
    Optimizer::Adam { lr: 0.01 },
    Optimizer::AdamW { lr: 0.01, weight_decay: 0.1 },
];

/// A classifier using every layer type: 6 → 8 ReLU → dropout → 8 tanh → 8 sigmoid → 3 softmax.
pub fn classifier(optimizer: Optimizer) -> ModelConfig {
    ModelConfig::new(6)
        .dense(8)
        .relu()
        .dropout(0.25)
        .dense_with(8, true, Init::Xavier)
        .tanh()
        .dense_with(8, false, Init::Uniform(-0.5, 0.5))
        .sigmoid()
        .dense(3)
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(optimizer)
        .seed(3)
}

/// Trains `config` on both backends, `steps` times on one batch (so the loss must fall);
/// returns the per-step losses and the final parameters of each.
pub async fn train_both(
    gpu: &Gpu,
    config: &ModelConfig,
    steps: usize,
    rows: usize,
) -> [(Vec<f32>, Vec<f32>); 2] {
    let inputs = config.width_at(0);
    let outputs = config.width();
    let mut both = Vec::new();
    for backend in [Backend::Gpu, Backend::Cpu] {
        let mut model = config.build(backend, Some(gpu)).unwrap();
        let mut losses = Vec::new();
        for _ in 0..steps {
            let x = random(rows * inputs, 100);
            if config.loss_kind().takes_labels() {
                let labels = random_labels(rows, outputs, 200);
                model.train_step(&x, &Target::Labels(&labels)).unwrap();
            } else {
                let t: Vec<f32> = random(rows * outputs, 300).iter().map(|v| (v + 1.0) / 2.0).collect();
                model.train_step(&x, &Target::Values(&t)).unwrap();
            }
            losses.push(model.take_loss_async().await.unwrap());
        }
        // The weights, then predictions in evaluation mode (which read a batch norm's
        // running statistics, the state no weight shows).
        let mut state = parameters(&model, config).await;
        state.extend(model.predict_async(&random(rows * inputs, 400)).await.unwrap());
        both.push((losses, state));
    }
    both.try_into().expect("two backends")
}

pub async fn parameters(model: &Model, config: &ModelConfig) -> Vec<f32> {
    let mut all = Vec::new();
    for (i, layer) in config.layers().iter().enumerate() {
        if let Layer::Dense { bias, .. } | Layer::Conv2d { bias, .. } = layer {
            all.extend(model.weights_async(i).await.unwrap());
            if *bias {
                all.extend(model.bias_async(i).await.unwrap());
            }
        }
    }
    all
}

/// 20 steps of f32 arithmetic in a different order (GPU kernels block and fuse, exp/log are a
/// few ULP): losses and weights drift apart by a few 1e-6 relative; 1e-4 leaves room and
/// would still catch any wrong gradient, which moves weights by ~lr per step.
pub const PARITY_RTOL: f64 = 1e-4;
pub const PARITY_ATOL: f64 = 1e-5;

/// A small CNN: a padded 3×3 convolution of one 7×6 channel to 4, ReLU, a strided 3×2
/// convolution to 3 channels without a bias, tanh, dropout, then dense to 3 classes and softmax.
pub fn convolutional(optimizer: Optimizer) -> ModelConfig {
    let first = Conv2dShape::new(1, (7, 6), 4, (3, 3)).padding((1, 1));
    let second = Conv2dShape::new(4, first.out_size(), 3, (3, 2)).stride((2, 2));
    ModelConfig::new(first.input_len())
        .conv2d(first)
        .relu()
        .conv2d_with(second, false, Init::PyTorch)
        .tanh()
        .dropout(0.2)
        .dense(3)
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(optimizer)
        .seed(5)
}

/// A CNN with pooling, as PyTorch's `nn.Sequential` would list it: a padded 3×3 convolution
/// of one 8×8 channel to 4, ReLU, 2×2 max pooling, a 3×3 convolution to 3 channels, average
/// pooling over overlapping 2×2 windows, flatten, dense to 3 classes.
pub fn pooled(optimizer: Optimizer) -> ModelConfig {
    let first = Conv2dShape::new(1, (8, 8), 4, (3, 3)).padding((1, 1));
    let pool = Pool2dShape::new(4, first.out_size(), (2, 2));
    let second = Conv2dShape::new(4, pool.out_size(), 3, (3, 3));
    let average = Pool2dShape::new(3, second.out_size(), (2, 2)).stride((1, 1));
    ModelConfig::new(first.input_len())
        .conv2d(first)
        .relu()
        .max_pool2d(pool)
        .conv2d(second)
        .avg_pool2d(average)
        .flatten()
        .dense(3)
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(optimizer)
        .seed(6)
}

/// A CNN with batch norms: a padded 3×3 convolution of one 7×6 channel to 4 (without a
/// bias: a batch norm after it takes any bias's gradient to rounding noise, which Adam
/// would scale up to full steps that no two backends take alike), batch norm, ReLU, a strided convolution without a bias to 3 channels, a batch norm of its own ε and
/// momentum, tanh, dropout, dense to 3 classes.
pub fn normalised(optimizer: Optimizer) -> ModelConfig {
    let first = Conv2dShape::new(1, (7, 6), 4, (3, 3)).padding((1, 1));
    let second = Conv2dShape::new(4, first.out_size(), 3, (3, 2)).stride((2, 2));
    ModelConfig::new(first.input_len())
        .conv2d_with(first, false, Init::PyTorch)
        .batch_norm2d(4)
        .relu()
        .conv2d_with(second, false, Init::PyTorch)
        .layer(Layer::BatchNorm2d(BatchNorm::new(3).eps(1e-3).momentum(0.3)))
        .tanh()
        .dropout(0.2)
        .dense(3)
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(optimizer)
        .seed(7)
}

portable! {
async fn a_convolutional_network_trains_the_same_on_gpu_and_cpu() {
    let Some(gpu) = shared_gpu().await else { return };
    let configs = |optimizer| [convolutional(optimizer), pooled(optimizer), normalised(optimizer)];
    for config in OPTIMIZERS.into_iter().flat_map(configs) {
        let optimizer = config.optimizer_kind();
        let [(gpu_losses, gpu_weights), (cpu_losses, cpu_weights)] = train_both(gpu, &config, 20, 9).await;
        let what = format!("CNN {optimizer:?} of {} layers", config.layers().len());
        assert_close(&format!("{what} losses"), &gpu_losses, &cpu_losses, PARITY_RTOL, PARITY_ATOL);
        assert_close(&format!("{what} weights"), &gpu_weights, &cpu_weights, PARITY_RTOL, PARITY_ATOL);
        assert!(gpu_losses.last() < gpu_losses.first(), "{what}: the loss should fall: {gpu_losses:?}");
    }
}
}

portable! {
async fn every_optimizer_trains_the_same_on_gpu_and_cpu() {
    let Some(gpu) = shared_gpu().await else { return };
    for optimizer in OPTIMIZERS {
        let config = classifier(optimizer);
        let [(gpu_losses, gpu_weights), (cpu_losses, cpu_weights)] = train_both(gpu, &config, 20, 16).await;
        let what = format!("{optimizer:?}");
        assert_close(&format!("{what} losses"), &gpu_losses, &cpu_losses, PARITY_RTOL, PARITY_ATOL);
        assert_close(&format!("{what} weights"), &gpu_weights, &cpu_weights, PARITY_RTOL, PARITY_ATOL);
        assert!(gpu_losses.last() < gpu_losses.first(), "{what}: the loss should fall: {gpu_losses:?}");
    }
}
}

portable! {
async fn every_loss_trains_the_same_on_gpu_and_cpu() {
    let Some(gpu) = shared_gpu().await else { return };
    // Every loss over the head it needs (Huber also at a δ its differences straddle), and MSE
    // through a softmax that is not fused with cross-entropy.
    let losses = Loss::ALL.into_iter().chain([Loss::Huber { delta: 0.25 }]);
    let configs = losses
        .map(|loss| crate::common::network_for(ModelConfig::new(4).dense(5).relu(), loss))
        .chain([ModelConfig::new(4).dense(5).sigmoid().dense(3).softmax().loss(Loss::Mse)]);
    for config in configs {
        let config = config.optimizer(Optimizer::Sgd { lr: 0.5 }).seed(9);
        let [(gpu_losses, gpu_weights), (cpu_losses, cpu_weights)] = train_both(gpu, &config, 20, 7).await;
        let what = format!("{:?}", config.loss_kind());
        assert_close(&format!("{what} losses"), &gpu_losses, &cpu_losses, PARITY_RTOL, PARITY_ATOL);
        assert_close(&format!("{what} weights"), &gpu_weights, &cpu_weights, PARITY_RTOL, PARITY_ATOL);
        assert!(gpu_losses.last() < gpu_losses.first(), "{what}: the loss should fall: {gpu_losses:?}");
    }
}
}

/// One weight w (starting at 1) fitting 0 from x = 1 under MSE with SGD at lr 10: each step
/// multiplies w by 1 − 2·10 = −19, so the loss of step n is w² = 361^(n−1), finite up to step
/// 16 (361^15 ≈ 2.3e38 < f32::MAX ≈ 3.4e38) and infinite at step 17.
pub fn exploding() -> ModelConfig {
    let weight = Init::Given { weights: vec![1.0], bias: None };
    ModelConfig::new(1).dense_with(1, false, weight).loss(Loss::Mse).optimizer(Optimizer::Sgd { lr: 10.0 })
}

portable! {
async fn a_diverging_loss_is_reported_with_its_step_and_the_last_finite_weights_survive() {
    let gpu = shared_gpu().await;
    for backend in backends_with(gpu) {
        let mut model = exploding().build(backend, gpu).unwrap();
        let (x, t) = ([1.0f32], [0.0f32]);
        for _ in 0..20 {
            model.train_step(&x, &Target::Values(&t)).unwrap();
        }
        match model.take_loss_async().await {
            Err(Error::Diverged { step, loss, skipped, in_update }) => {
                assert_eq!((step, skipped, in_update), (17, 3, false), "{backend:?}");
                assert!(loss.is_infinite(), "{backend:?}: {loss}");
            }
            other => panic!("{backend:?}: expected a divergence report, got {other:?}"),
        }
        // Steps 17 to 20 were not applied: w is (−19)^16, from step 16's update.
        let w = model.weights_async(0).await.unwrap()[0];
        let want = 19f64.powi(16);
        assert!(((f64::from(w) - want) / want).abs() < 1e-5, "{backend:?}: w = {w}, want {want}");

        // The report clears the watch: with a sane weight and rate, training goes on.
        model.set_weights(0, &[1.0], None).unwrap();
        model.set_learning_rate(0.1).unwrap();
        for _ in 0..5 {
            model.train_step(&x, &Target::Values(&t)).unwrap();
        }
        let loss = model.take_loss_async().await.unwrap();
        assert!(loss.is_finite() && loss < 1.0, "{backend:?}: {loss}");
    }
}
}

/// Two weights, [1, 0.5], under MSE from x = [1, 1e-37] to 0, with a rate of 3e38 (finite,
/// so accepted): the first step's loss is 1.0, but its update would take the first weight
/// past f32::MAX (3e38 · 2 for SGD, momentum and Adam's m̂ of 2) while the second (gradient
/// 2e-37) would move by ~60 and stay finite.
fn overflowing(optimizer: Optimizer) -> ModelConfig {
    let weights = Init::Given { weights: vec![1.0, 0.5], bias: None };
    ModelConfig::new(2).dense_with(1, false, weights).loss(Loss::Mse).optimizer(optimizer)
}

portable! {
/// A step whose loss is finite but whose update is not is a divergence too: no weight or
/// optimizer state of that step is written (not the finite one either), and with a sane rate
/// the model trains on exactly as one that never took the step.
async fn an_update_that_overflows_is_a_divergence_and_changes_nothing() {
    let gpu = shared_gpu().await;
    let (x, t) = ([1.0f32, 1e-37], [0.0f32]);
    for backend in backends_with(gpu) {
        for optimizer in [
            Optimizer::Sgd { lr: 3e38 },
            Optimizer::Momentum { lr: 3e38, momentum: 0.9 },
            Optimizer::Adam { lr: 3e38 },
            Optimizer::AdamW { lr: 3e38, weight_decay: 0.01 },
        ] {
            let what = format!("{backend:?} {optimizer:?}");
            let mut model = overflowing(optimizer).build(backend, gpu).unwrap();
            model.train_step(&x, &Target::Values(&t)).unwrap();
            model.train_step(&x, &Target::Values(&t)).unwrap();
            match model.take_loss_async().await {
                Err(Error::Diverged { step, loss, skipped, in_update }) => {
                    assert_eq!((step, loss, skipped, in_update), (1, 1.0, 1, true), "{what}");
                }
                other => panic!("{what}: expected a divergence report, got {other:?}"),
            }
            let w = model.weights_async(0).await.unwrap();
            assert_eq!(w, [1.0, 0.5], "{what}: the step changed a weight");

            // Trained on at a sane rate, it matches a model that never took the step: the
            // moments, the β powers and the step count were left as they were too.
            let mut fresh = overflowing(optimizer).build(backend, gpu).unwrap();
            for m in [&mut model, &mut fresh] {
                m.set_learning_rate(0.1).unwrap();
                for _ in 0..3 {
                    m.train_step(&x, &Target::Values(&t)).unwrap();
                }
            }
            let (loss, fresh_loss) = (model.take_loss_async().await.unwrap(), fresh.take_loss_async().await.unwrap());
            assert_eq!(loss, fresh_loss, "{what}");
            let (w, fresh_w) = (model.weights_async(0).await.unwrap(), fresh.weights_async(0).await.unwrap());
            assert_eq!(w, fresh_w, "{what}");
        }
    }
}
}

/// A checkpoint config for the byte round trips: dropout and Adam, so the optimizer's state
/// and the step count (which seeds the masks) must both come back.
fn resumable() -> ModelConfig {
    ModelConfig::new(5)
        .dense(7)
        .relu()
        .dropout(0.2)
        .dense(3)
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(Optimizer::Adam { lr: 0.02 })
        .seed(11)
}

portable! {
    /// Saved to bytes mid-training and loaded into a fresh model, training goes on exactly as
    /// it would have (weights, Adam's moments, the step count); rebuilt from the bytes alone,
    /// it predicts as the saved model did. On both backends, with nothing but the `async` calls.
    async fn a_checkpoint_round_trips_through_bytes_and_training_resumes_exactly() {
        let gpu = shared_gpu().await;
        let (x, labels) = (random(8 * 5, 41), random_labels(8, 3, 42));
        let target = Target::Labels(&labels);
        for backend in backends_with(gpu) {
            let mut model = resumable().build(backend, gpu).unwrap();
            for _ in 0..3 {
                model.train_step(&x, &target).unwrap();
            }
            model.take_loss_async().await.unwrap();
            let bytes = model.save_bytes_async().await.unwrap();

            // Built from the same config (the dropout masks follow its seed), three steps behind.
            let mut resumed = resumable().build(backend, gpu).unwrap();
            resumed.load_checkpoint_bytes(&bytes, "round trip").unwrap();
            let mut rebuilt = Model::from_checkpoint_bytes(&bytes, "round trip", backend, gpu).unwrap();
            assert_eq!(
                rebuilt.predict_async(&x).await.unwrap(),
                model.predict_async(&x).await.unwrap(),
                "{backend:?}: predictions of the rebuilt model"
            );
            for m in [&mut model, &mut resumed] {
                m.train_step(&x, &target).unwrap();
            }
            assert_eq!(
                resumed.take_loss_async().await.unwrap().to_bits(),
                model.take_loss_async().await.unwrap().to_bits(),
                "{backend:?}: the next step's loss"
            );
            assert_eq!(
                resumed.weights_async(3).await.unwrap(),
                model.weights_async(3).await.unwrap(),
                "{backend:?}: weights after the next step"
            );
        }
    }

    /// What a program in a page does: a `Gpu` from `new_async`, training steps, and every
    /// read awaited (loss, predictions, an epoch over a resident set, its evaluation). In the
    /// browser the blocking forms are a clear error on the GPU backend, and work on the CPU's.
    async fn a_program_trains_and_reads_its_loss_without_blocking() {
        let Some(gpu) = shared_gpu().await else { return };
        let config = ModelConfig::new(2).dense(8).tanh().dense(1).sigmoid()
            .loss(Loss::BinaryCrossEntropy).optimizer(Optimizer::Adam { lr: 0.05 }).seed(1);
        let (x, t) = ([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]);
        for backend in [Backend::Gpu, Backend::Cpu] {
            let mut model = config.build(backend, Some(gpu)).unwrap();
            model.train_step(&x, &t[..].into()).unwrap();
            let first = model.take_loss_async().await.unwrap();
            for _ in 0..300 {
                model.train_step(&x, &t[..].into()).unwrap();
            }
            let last = model.take_loss_async().await.unwrap();
            assert!(last < first / 4.0, "{backend:?}: XOR's loss should fall: {first} -> {last}");
            let p = model.predict_async(&x).await.unwrap();
            assert!(p[0] < 0.5 && p[1] > 0.5 && p[2] > 0.5 && p[3] < 0.5, "{backend:?}: {p:?}");

            let data = wgpu_nn::data::Dataset::regression(x.to_vec(), 2, t.to_vec(), 1).unwrap();
            let resident = model.load(&data).unwrap();
            let mut reports = 0;
            let epoch = model.train_epoch_async(&resident, 2, 7, &mut |_| reports += 1).await.unwrap();
            assert!(epoch.is_finite() && reports > 0, "{backend:?}: {epoch}, {reports} reports");
            let evaluation = model.evaluate_resident_async(&resident).await.unwrap();
            assert!(evaluation.loss < first, "{backend:?}: {evaluation:?}");

            let blocking = model.take_loss();
            if cfg!(target_arch = "wasm32") && backend == Backend::Gpu {
                assert!(matches!(blocking, Err(Error::WouldBlock { op: "take_loss" })), "{blocking:?}");
                assert!(matches!(gpu.wait(), Err(Error::WouldBlock { op: "wait" })));
            } else {
                assert!(matches!(blocking, Err(Error::NoSteps { .. })), "{backend:?}: {blocking:?}");
                model.train_step(&x, &t[..].into()).unwrap();
                assert!(model.take_loss().unwrap().is_finite(), "{backend:?}");
            }
        }
        gpu.wait_async().await.unwrap();
    }
}
