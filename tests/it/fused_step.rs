//! The fused training step (`shaders/mlp.wgsl`) held against the layer-by-layer path it
//! replaces, on the same adapter: every optimizer and loss, dropout, widths and batches that
//! do not fill its vec4s and tiles, the loss watch, and when a model runs it at all.
//! Portable: the browser suite runs these too (Tint's compile of the kernels).

use crate::common::{assert_close, random, random_labels, shared_gpu};
use crate::training::{OPTIMIZERS, PARITY_ATOL, PARITY_RTOL, parameters};
use wgpu_nn::model::{Loss, Model, ModelConfig, Optimizer, Target};
use wgpu_nn::{Error, Gpu};

/// `live_boundary`'s network and optimizer: 2 → 64 tanh → 64 tanh → 3, softmax
/// cross-entropy, Adam.
fn boundary() -> ModelConfig {
    crate::common::boundary_network().optimizer(Optimizer::Adam { lr: 0.01 }).seed(1)
}

/// Widths that fill no vec4 (5, 7, 3) beside ones that do (8), every activation kind's
/// derivative source (ReLU from x, tanh from y, GELU from x), dropout in two places, and a
/// layer without a bias.
fn ragged(optimizer: Optimizer, loss: Loss) -> ModelConfig {
    let trunk = ModelConfig::new(5)
        .dense(7)
        .relu()
        .dropout(0.25)
        .dense(8)
        .tanh()
        .dense_with(5, false, wgpu_nn::model::Init::Xavier)
        .gelu()
        .dropout(0.1);
    crate::common::network_for(trunk, loss).optimizer(optimizer).seed(7)
}

/// One batch of `rows` for `config`: inputs and its targets (labels or values in (0, 1)).
fn batch(config: &ModelConfig, rows: usize, seed: u64) -> (Vec<f32>, Result<Vec<u32>, Vec<f32>>) {
    let x = random(rows * config.width_at(0), seed);
    let outputs = config.width();
    let target = if config.loss_kind().takes_labels() {
        Ok(random_labels(rows, outputs, seed + 1))
    } else {
        Err(random(rows * outputs, seed + 2).iter().map(|v| (v + 1.0) / 2.0).collect())
    };
    (x, target)
}

/// `steps` steps of `config` on the GPU, fused or not: the losses, then every weight and bias
/// and the last step's weight gradients.
async fn train(
    gpu: &Gpu,
    config: &ModelConfig,
    fused: bool,
    rows: usize,
    steps: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut model = config.build_gpu(gpu).unwrap();
    model.set_fused(fused).unwrap();
    assert_eq!(model.fused(rows).unwrap().is_ok(), fused, "{:?}", model.fused(rows).unwrap());
    let mut losses = Vec::new();
    for step in 0..steps {
        let (x, target) = batch(config, rows, 10 * step as u64);
        match &target {
            Ok(labels) => model.train_step(&x, &Target::Labels(labels)).unwrap(),
            Err(values) => model.train_step(&x, &Target::Values(values)).unwrap(),
        }
        losses.push(model.take_loss_async().await.unwrap());
    }
    let mut state = parameters(&model, config).await;
    for l in dense_layers(config) {
        state.extend(model.weight_gradients_async(l).await.unwrap());
    }
    (losses, state)
}

fn dense_layers(config: &ModelConfig) -> Vec<usize> {
    let dense = |(i, l): (usize, &wgpu_nn::model::Layer)| {
        matches!(l, wgpu_nn::model::Layer::Dense { .. }).then_some(i)
    };
    config.layers().iter().enumerate().filter_map(dense).collect()
}

async fn assert_same_training(gpu: &Gpu, what: &str, config: &ModelConfig, rows: usize) {
    let (fused_losses, fused) = train(gpu, config, true, rows, 6).await;
    let (losses, layered) = train(gpu, config, false, rows, 6).await;
    assert_close(&format!("{what}: losses"), &fused_losses, &losses, PARITY_RTOL, PARITY_ATOL);
    assert_close(&format!("{what}: weights and gradients"), &fused, &layered, PARITY_RTOL, PARITY_ATOL);
}

/// Launches recorded by one training step of `model` on `rows` samples (after a first one
/// has built its plan).
async fn launches(gpu: &Gpu, model: &mut Model, rows: usize) -> u64 {
    let config = model.config().clone();
    let (x, target) = batch(&config, rows, 1);
    let labels = target.unwrap();
    model.train_step(&x, &Target::Labels(&labels)).unwrap();
    let before = gpu.counters().dispatches;
    model.train_step(&x, &Target::Labels(&labels)).unwrap();
    let launched = gpu.counters().dispatches - before;
    model.take_loss_async().await.unwrap();
    launched
}

portable! {
    async fn a_narrow_network_trains_in_two_launches_a_step_and_three_with_dropout() {
        let Some(shared) = shared_gpu().await else { return };
        // The launch counter is the context's: natively, where other tests run beside this one
        // on the shared context, a context of its own (the browser runs one test at a time).
        #[cfg(not(target_arch = "wasm32"))]
        let own = Gpu::new_async().await.unwrap();
        #[cfg(not(target_arch = "wasm32"))]
        let gpu = &own;
        #[cfg(target_arch = "wasm32")]
        let gpu = shared;
        let _ = shared;
        let mut model = boundary().build_gpu(gpu).unwrap();
        assert_eq!(model.fused(256).unwrap(), Ok(()));
        assert_eq!(launches(gpu, &mut model, 256).await, 2);
        model.set_fused(false).unwrap();
        let layered = launches(gpu, &mut model, 256).await;
        assert!(layered >= 8, "the layer-by-layer step: {layered} launches");
        let mut dropping = ragged(Optimizer::Sgd { lr: 0.1 }, Loss::SoftmaxCrossEntropy).build_gpu(gpu).unwrap();
        assert_eq!(launches(gpu, &mut dropping, 37).await, 3, "dropout's counter, then the step");
    }

    async fn the_fused_step_trains_as_the_layer_by_layer_path_with_every_optimizer() {
        let Some(gpu) = shared_gpu().await else { return };
        for optimizer in OPTIMIZERS {
            // 37 rows: a full tile and a part of one (tiles of 16, or of 24 on 2 cores).
            let config = ragged(optimizer, Loss::SoftmaxCrossEntropy);
            assert_same_training(gpu, &format!("{optimizer:?}"), &config, 37).await;
        }
        assert_same_training(gpu, "the boundary network", &boundary(), 256).await;
    }

    async fn the_fused_step_trains_as_the_layer_by_layer_path_with_every_loss() {
        let Some(gpu) = shared_gpu().await else { return };
        let losses = [Loss::Mse, Loss::Mae, Loss::BinaryCrossEntropy, Loss::Huber { delta: 0.5 }, Loss::Nll];
        for loss in losses {
            let config = ragged(Optimizer::Momentum { lr: 0.05, momentum: 0.9 }, loss);
            assert_same_training(gpu, &format!("{loss:?}"), &config, 21).await;
        }
    }

    async fn a_diverging_fused_step_halts_as_the_layer_by_layer_one() {
        let Some(gpu) = shared_gpu().await else { return };
        // A learning rate that overflows within a few steps: both paths must stop at the same
        // step with the same last finite weights.
        let config = ModelConfig::new(4).dense(16).relu().dense(2).loss(Loss::Mse).optimizer(Optimizer::Sgd { lr: 1e18 });
        let mut outcomes = Vec::new();
        for fused in [true, false] {
            let mut model = config.build_gpu(gpu).unwrap();
            model.set_fused(fused).unwrap();
            for step in 0..4 {
                let (x, target) = batch(&config, 20, step);
                model.train_step(&x, &Target::Values(&target.unwrap_err())).unwrap();
            }
            let error = model.take_loss_async().await.unwrap_err();
            let Error::Diverged { step, in_update, skipped, .. } = error else { panic!("{error}") };
            outcomes.push(((step, in_update, skipped), parameters(&model, &config).await));
        }
        assert_eq!(outcomes[0].0, outcomes[1].0, "the divergence's step, kind and skipped steps");
        assert!(outcomes[0].1.iter().all(|w| w.is_finite()));
        assert_close("the last finite weights", &outcomes[0].1, &outcomes[1].1, PARITY_RTOL, PARITY_ATOL);
    }

    async fn a_model_says_why_it_does_not_run_fused() {
        let Some(gpu) = shared_gpu().await else { return };
        let why = |config: ModelConfig| config.build_gpu(gpu).unwrap().fused(64).unwrap().unwrap_err();
        assert!(why(ModelConfig::new(784).dense(128).relu().dense(10)).contains("widths up to 64"));
        assert!(why(ModelConfig::new(8).dense(8).layer_norm().dense(2)).contains("layer 1"));
        let deep = (0..9).fold(ModelConfig::new(4), |c, _| c.dense(4).relu());
        assert!(why(deep).contains("9 dense layers"));
        // 5 × 4160 weights and biases: more than one uniform binding holds.
        let heavy = (0..5).fold(ModelConfig::new(64), |c, _| c.dense(64).relu());
        let heavy = why(heavy);
        assert!(heavy.contains("20800 parameter values"), "{heavy}");
        let mut off = boundary().build_gpu(gpu).unwrap();
        off.set_fused(false).unwrap();
        assert!(off.fused(64).unwrap().unwrap_err().contains("set_fused"));
        let cpu = boundary().build_cpu().unwrap();
        assert!(matches!(cpu.fused(64), Err(Error::NeedsGpu { .. })));
    }
}

/// Natively the shared context asks for subgroups, so on lavapipe (8 lanes) the parity tests
/// above run `mlp_subgroup.wgsl`; a context on a device without them runs `mlp_lanes.wgsl`,
/// the variant every other adapter gets, against the same layer-by-layer reference.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_products_without_subgroups_train_as_the_layer_by_layer_path_too() {
    let Some((device, queue)) = crate::common::app_devices(1, wgpu_nn::wgpu::Limits::default()).pop() else {
        assert!(std::env::var_os(crate::common::REQUIRE_GPU).is_none(), "no adapter for an app's device");
        return;
    };
    let gpu = Gpu::from_device(device, queue).unwrap();
    pollster::block_on(async {
        let config = ragged(Optimizer::Adam { lr: 0.01 }, Loss::SoftmaxCrossEntropy);
        assert_same_training(&gpu, "Adam, without subgroups", &config, 37).await;
        assert_same_training(&gpu, "the boundary network, without subgroups", &boundary(), 256).await;
    });
}
