//! Bad input through the public calls, a table per entry point: each case a specific `Error`
//! variant that names the problem, never a panic, an abort or garbage accepted, on both
//! backends. (Shapes and files have tables of their own in `errors`, `model`, `checkpoint`
//! and `pytorch`.)

use wgpu_nn::data::Dataset;
use wgpu_nn::model::{Backend, Init, Loss, Model, ModelConfig, Optimizer, Target};
use wgpu_nn::{Error, wgpu};

use crate::common::{backends, gpu, random, random_labels};

fn small(optimizer: Optimizer) -> ModelConfig {
    ModelConfig::new(3).dense(4).relu().dense(2).loss(Loss::Mse).optimizer(optimizer).seed(2)
}

fn build(config: &ModelConfig, backend: Backend) -> wgpu_nn::Result<Model> {
    config.build(backend, gpu())
}

#[test]
fn optimizer_settings_no_step_could_use_are_refused_at_build() {
    let cases = [
        (Optimizer::Sgd { lr: f32::NAN }, "learning rate"),
        (Optimizer::Sgd { lr: -0.1 }, "learning rate"),
        (Optimizer::Adam { lr: f32::INFINITY }, "learning rate"),
        (Optimizer::Momentum { lr: 0.1, momentum: f32::NAN }, "momentum"),
        (Optimizer::Momentum { lr: 0.1, momentum: 1.0 }, "momentum"),
        (Optimizer::Momentum { lr: 0.1, momentum: -0.5 }, "momentum"),
        (Optimizer::AdamW { lr: 0.1, weight_decay: f32::NAN }, "weight decay"),
        (Optimizer::AdamW { lr: 0.1, weight_decay: -1.0 }, "weight decay"),
    ];
    for backend in backends() {
        for (optimizer, names) in cases {
            match build(&small(optimizer), backend) {
                Err(e @ Error::InvalidOptimizer { op: "build", .. }) => {
                    assert!(e.to_string().contains(names), "{optimizer:?}: {e}")
                }
                other => panic!("{backend:?} {optimizer:?}: expected InvalidOptimizer, got {other:?}"),
            }
        }
        // Limits of the valid ranges build.
        for optimizer in [Optimizer::Sgd { lr: 0.0 }, Optimizer::Momentum { lr: 0.1, momentum: 0.0 }] {
            build(&small(optimizer), backend).unwrap();
        }
    }
}

#[test]
fn a_learning_rate_no_step_could_use_is_refused_and_changes_nothing() {
    let (x, t) = (random(2 * 3, 1), random(2 * 2, 2));
    for backend in backends() {
        let mut model = build(&small(Optimizer::Sgd { lr: 0.1 }), backend).unwrap();
        for lr in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0] {
            let err = model.set_learning_rate(lr).unwrap_err();
            assert!(matches!(err, Error::InvalidOptimizer { op: "set_learning_rate", .. }), "{lr}: {err}");
        }
        // Training goes on at the old rate, with finite weights.
        model.train_step(&x, &Target::Values(&t)).unwrap();
        assert!(model.take_loss().unwrap().is_finite());
        assert!(model.weights(0).unwrap().iter().all(|w| w.is_finite()), "{backend:?}");
    }
}

#[test]
fn weights_that_are_not_finite_are_refused_by_every_door() {
    for backend in backends() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut weights = vec![0.5; 4 * 3];
            weights[5] = bad;
            let config =
                ModelConfig::new(3).dense_with(4, true, Init::Given { weights, bias: None }).dense(2);
            let err = build(&config, backend).unwrap_err();
            assert!(matches!(err, Error::InvalidLayer { layer: 0, .. }), "{backend:?} {bad}: {err}");
            let config = ModelConfig::new(3).dense_with(
                4,
                true,
                Init::Given { weights: vec![0.5; 12], bias: Some(vec![bad; 4]) },
            );
            let err = build(&config, backend).unwrap_err();
            assert!(matches!(err, Error::InvalidLayer { layer: 0, .. }), "{backend:?} {bad}: {err}");

            let mut model = build(&small(Optimizer::Sgd { lr: 0.1 }), backend).unwrap();
            let before = model.weights(0).unwrap();
            let mut weights = before.clone();
            weights[7] = bad;
            let err = model.set_weights(0, &weights, None).unwrap_err();
            assert!(
                matches!(err, Error::NotFinite { op: "set_weights", what: "weights", row: 2, col: 1, .. }),
                "{backend:?} {bad}: {err}"
            );
            let err = model.set_weights(0, &before, Some(&[0.0, bad, 0.0, 0.0])).unwrap_err();
            assert!(matches!(err, Error::NotFinite { what: "bias", col: 1, .. }), "{backend:?} {bad}: {err}");
            assert_eq!(model.weights(0).unwrap(), before, "{backend:?}: nothing changed");
            // What the model saves, it loads back.
            let bytes = model.save_bytes().unwrap();
            model.load_checkpoint_bytes(&bytes, "saved").unwrap();
        }
    }
}

#[test]
fn sizes_that_wrap_are_errors_not_overflows() {
    let huge = usize::MAX / 2 + 1;
    let err = Dataset::labelled(vec![0.0; 4], huge, vec![0, 1], 2).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "Dataset::labelled", .. }), "{err}");
    let err = Dataset::regression(vec![0.0; 4], huge, vec![0.0; 2], 1).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "Dataset::regression", .. }), "{err}");
    let Some(gpu) = gpu() else { return };
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    for (rows, cols) in [(usize::MAX, 2), (1 << 62, 1 << 3), (usize::MAX, usize::MAX)] {
        let err = gpu.tensor_from_buffer(&buffer, rows, cols).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "tensor_from_buffer", .. }), "{rows}x{cols}: {err}");
    }
}

#[test]
fn a_model_too_big_for_memory_is_an_error_before_anything_is_allocated() {
    // 2^40 weights are 4 TiB, 16 TiB with gradients and Adam's moments: the GPU refuses them by
    // its limits, the CPU by what the host can allocate (the allocator used to abort).
    let config = ModelConfig::new(1).dense(1 << 40).optimizer(Optimizer::Adam { lr: 0.1 });
    let err = config.build_cpu().unwrap_err();
    // Weights and bias (2^40 + 2^40 values), each with its gradient and two moments.
    assert!(matches!(err, Error::OutOfMemory { bytes: 35_184_372_088_832, .. }), "{err}");
    if let Some(gpu) = gpu() {
        let err = config.build_gpu(gpu).unwrap_err();
        assert!(matches!(err, Error::BufferTooLarge { .. }), "{err}");
    }
}

#[test]
fn a_softmax_wider_than_the_gpu_kernels_walk_is_refused_at_build() {
    let Some(gpu) = gpu() else { return };
    let wide = wgpu_nn::gpu::MAX_SOFTMAX_COLS + 1;
    let configs = [
        ModelConfig::new(2).dense(wide).softmax().loss(Loss::SoftmaxCrossEntropy),
        ModelConfig::new(2).dense(wide).loss(Loss::SoftmaxCrossEntropy),
        ModelConfig::new(2).dense(wide).log_softmax().loss(Loss::Nll),
        ModelConfig::new(2).dense(wide).softmax().loss(Loss::Mse),
    ];
    for config in configs {
        let err = config.build_gpu(gpu).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "build", .. }), "{:?}: {err}", config.loss_kind());
        assert!(err.to_string().contains("softmax over at most 16383"), "{err}");
        // The CPU has no such limit.
        config.build_cpu().unwrap();
    }
}

#[test]
fn a_checkpoints_step_count_past_the_counters_is_refused_and_a_big_one_loads_at_once() {
    for backend in backends() {
        let config = small(Optimizer::Adam { lr: 0.01 });
        let mut model = build(&config, backend).unwrap();
        model.train_step(&random(3, 3), &Target::Values(&random(2, 4))).unwrap();
        let bytes = model.save_bytes().unwrap();
        let header = |steps: &str| patch_steps(&bytes, steps);
        let err = model.load_checkpoint_bytes(&header("4294967295"), "big").unwrap_err();
        assert!(matches!(err, Error::Data { .. }) && err.to_string().contains("more than"), "{err}");
        // A step count of two billion loads at once (the β powers stop at their fixed point),
        // and training goes on with finite weights.
        model.load_checkpoint_bytes(&header("2000000000"), "big").unwrap();
        model.train_step(&random(3, 3), &Target::Values(&random(2, 4))).unwrap();
        assert!(model.take_loss().unwrap().is_finite());
        assert!(model.weights(0).unwrap().iter().all(|w| w.is_finite()), "{backend:?}");
    }
}

/// `bytes` (a checkpoint) with its metadata's step count set to `steps`: the header is JSON
/// after an 8-byte length, rewritten and its length updated.
fn patch_steps(bytes: &[u8], steps: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"]["steps"] = steps.into();
    let mut text = serde_json::to_string(&header).unwrap();
    // safetensors pads the header to 8 bytes with spaces, and data offsets are relative.
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn a_set_loaded_per_request_is_let_go_when_its_handle_is() {
    let data = Dataset::labelled(random(600 * 6, 5), 6, random_labels(600, 3, 6), 3).unwrap();
    let config = ModelConfig::new(6).dense(3).loss(Loss::SoftmaxCrossEntropy);
    // A `Gpu` of the test's own, so other tests' buffers do not move its counters.
    let own = gpu().map(|_| wgpu_nn::Gpu::new().unwrap());
    for backend in backends() {
        let mut model = config.build(backend, own.as_ref()).unwrap();
        let kept = model.load(&data).unwrap();
        let base = model.counters().bytes_held;
        for i in 0..200 {
            let resident = model.load(&data).unwrap();
            model.evaluate_resident(&resident).unwrap();
            if i % 2 == 0 {
                model.unload(resident).unwrap(); // at once
            } // else dropped: let go at the next call
        }
        assert_eq!(model.resident_sets(), 1, "{backend:?}: only the kept set is held");
        if backend == Backend::Gpu {
            let grown = model.counters().bytes_held - base;
            // One set (~14 KB of samples and labels) and the evaluation plans, not 200 sets.
            assert!(grown < 200_000, "{backend:?}: {grown} bytes more");
        }
        model.evaluate_resident(&kept).unwrap();
        // A handle of another model is refused, as before.
        let mut other = build(&config, backend).unwrap();
        assert!(matches!(other.unload(kept.clone()), Err(Error::Shape { op: "unload", .. })));
        assert!(!other.owns(&kept) && model.owns(&kept));
    }
}

#[test]
fn a_step_recorded_into_an_encoder_never_submitted_is_not_counted() {
    let Some(gpu) = gpu() else { return };
    let config = small(Optimizer::Sgd { lr: 0.1 });
    let (x, t) = (random(3, 7), random(2, 8));
    let mut model = config.build_gpu(gpu).unwrap();
    let before = model.weights(0).unwrap();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    model.record_train_step(&mut encoder, &x, &Target::Values(&t)).unwrap();
    drop(encoder);
    // Saved while the step is outstanding: it never ran, so it is not in the file.
    let bytes = model.save_bytes().unwrap();
    let rebuilt = Model::from_checkpoint_bytes(&bytes, "saved", Backend::Cpu, None).unwrap();
    assert_eq!(rebuilt.weights(0).unwrap(), before);
    assert!(String::from_utf8_lossy(&bytes).contains("\"steps\":\"0\""), "the file counts no step");
    let err = model.take_loss().unwrap_err();
    assert!(matches!(err, Error::NoSteps { op: "take_loss" }), "{err}");
    assert_eq!(model.weights(0).unwrap(), before, "nothing was trained");

    // A step that ran counts as before.
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    model.record_train_step(&mut encoder, &x, &Target::Values(&t)).unwrap();
    gpu.queue().submit([encoder.finish()]);
    assert!(model.take_loss().unwrap().is_finite());
    let bytes = model.save_bytes().unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("\"steps\":\"1\""));

    // A step submitted only after a loss read that missed it is counted by the next read.
    let mut late = gpu.device().create_command_encoder(&Default::default());
    model.record_train_step(&mut late, &x, &Target::Values(&t)).unwrap();
    assert!(matches!(model.take_loss(), Err(Error::NoSteps { .. })));
    gpu.queue().submit([late.finish()]);
    model.train_step(&x, &Target::Values(&t)).unwrap();
    assert!(model.take_loss().unwrap().is_finite());
    let bytes = model.save_bytes().unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("\"steps\":\"3\""), "the late step and the last");
}
