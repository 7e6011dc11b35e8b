//! Bad input through the public calls, a table per entry point: each case a specific `Error`
//! variant that names the problem, never a panic, an abort or garbage accepted, on both
//! backends. (Shapes and files have tables of their own in `errors`, `model`, `checkpoint`
//! and `pytorch`.)

use wgpu_nn::data::Dataset;
use wgpu_nn::model::{Backend, Init, Layer, Loss, Model, ModelConfig, Optimizer, Target};
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

/// The op a shape error names, or a description of what came instead.
fn shape_op<T: std::fmt::Debug>(result: wgpu_nn::Result<T>) -> String {
    match result {
        Err(Error::Shape { op, .. }) => op.to_string(),
        other => format!("not a shape error: {other:?}"),
    }
}

#[test]
fn every_kernel_refuses_mismatched_arguments_naming_itself() {
    use wgpu_nn::MatmulForm;
    use wgpu_nn::{Activation, BatchNorm, OptimizerSettings};
    let Some(gpu) = gpu() else { return };
    let k = gpu.kernels();
    let t = |rows, cols| gpu.zeros(rows, cols).unwrap();
    let (x, wrong) = (t(2, 3), t(5, 7));
    let (a32, a22, stats) = (t(3, 2), t(2, 2), t(2, 2));
    let gain = t(1, 3);
    let labels = gpu.upload_labels(&[0, 1], 3).unwrap();
    let three_labels = gpu.upload_labels(&[0, 1, 2], 3).unwrap();
    let settings = k.upload_settings(&OptimizerSettings::new(0.1)).unwrap();
    let counter = k.dropout_counter().unwrap();
    let conv = wgpu_nn::Conv2dShape::new(1, (2, 3), 1, (1, 1));
    let pool = wgpu_nn::Pool2dShape::new(1, (2, 3), (2, 2)).stride((1, 1));
    let norm = BatchNorm::new(3);
    let cases = [
        ("matmul_backward", shape_op(k.matmul_backward(&wrong, &a32, None, &a22, &x, &a32, MatmulForm::AB))),
        ("layer_norm_stats", shape_op(k.layer_norm_stats(&wrong, &x))),
        ("layer_norm_forward", shape_op(k.layer_norm_forward(&wrong, &x, &stats, &gain, &gain))),
        ("layer_norm_backward", shape_op(k.layer_norm_backward(&wrong, &x, &stats, &gain, &x))),
        ("layer_norm_gain_terms", shape_op(k.layer_norm_gain_terms(&wrong, &x, &stats, &x))),
        ("softmax_backward", shape_op(k.softmax_backward(&wrong, &x, &x))),
        ("log_softmax_backward", shape_op(k.log_softmax_backward(&wrong, &x, &x))),
        ("softmax_cross_entropy_forward", shape_op(k.softmax_cross_entropy_forward(&wrong, &x, &labels))),
        ("softmax_cross_entropy_backward", shape_op(k.softmax_cross_entropy_backward(&wrong, &x, &labels))),
        ("nll_forward", shape_op(k.nll_forward(&wrong, &x, &labels))),
        ("nll_forward", shape_op(k.nll_forward(&t(2, 1), &x, &three_labels))),
        ("nll_backward", shape_op(k.nll_backward(&wrong, &x, &labels))),
        ("mse_forward", shape_op(k.mse_forward(&wrong, &x, &x))),
        ("mse_backward", shape_op(k.mse_backward(&x, &x, &wrong))),
        ("mae_forward", shape_op(k.mae_forward(&wrong, &x, &x))),
        ("mae_backward", shape_op(k.mae_backward(&x, &wrong, &x))),
        ("bce_forward", shape_op(k.bce_forward(&wrong, &x, &x))),
        ("bce_backward", shape_op(k.bce_backward(&wrong, &x, &x))),
        ("huber_forward", shape_op(k.value_loss_forward(Loss::Huber { delta: 1.0 }, &wrong, &x, &x))),
        ("value_loss_forward", shape_op(k.value_loss_forward(Loss::Nll, &x, &x, &x))),
        // A 2×3 image of one channel (x holds 2 of them), 1×1 filters: `conv` unless changed.
        (
            "conv2d_forward",
            shape_op(k.conv2d_forward(
                &x,
                &x,
                &t(1, 1),
                None,
                &wgpu_nn::Conv2dShape::new(1, (2, 3), 1, (3, 3)),
            )),
        ),
        ("conv2d_forward", shape_op(k.conv2d_forward(&x, &x, &t(1, 1), Some(&x), &conv))),
        ("conv2d_input_grad", shape_op(k.conv2d_input_grad(&x, &x, &t(1, 1), &conv.stride((0, 1))))),
        ("conv2d_input_grad", shape_op(k.conv2d_input_grad(&x, &x, &wrong, &conv))),
        ("conv2d_weight_grad", shape_op(k.conv2d_weight_grad(&wrong, None, &x, &x, &conv))),
        ("conv2d_weight_grad", shape_op(k.conv2d_weight_grad(&t(1, 1), Some(&wrong), &x, &x, &conv))),
        (
            "conv2d_weight_grad",
            shape_op(k.conv2d_weight_grad(&t(1, 1), None, &x, &x, &conv.padding((usize::MAX, 0)))),
        ),
        // 2×3 images (x holds 2), 2×2 windows at stride 1: `pool` unless changed.
        ("maxpool2d_forward", shape_op(k.maxpool2d_forward(&t(2, 2), &t(2, 2), &x, &pool.stride((1, 0))))),
        ("maxpool2d_forward", shape_op(k.maxpool2d_forward(&t(2, 2), &wrong, &x, &pool))),
        ("maxpool2d_backward", shape_op(k.maxpool2d_backward(&x, &t(2, 2), &t(2, 3), &pool))),
        (
            "avgpool2d_forward",
            shape_op(k.avgpool2d_forward(&t(2, 2), &x, &wgpu_nn::Pool2dShape::new(1, (2, 3), (3, 1)))),
        ),
        ("avgpool2d_backward", shape_op(k.avgpool2d_backward(&wrong, &t(2, 2), &pool))),
        // x as 2 samples of 3 channels of 1 value: `norm` unless changed.
        ("batch_norm_stats", shape_op(k.batch_norm_stats(&wrong, &gain, &gain, &x, &settings, &norm))),
        (
            "batch_norm_stats",
            shape_op(k.batch_norm_stats(&t(2, 3), &gain, &gain, &t(1, 3), &settings, &norm)),
        ),
        (
            "batch_norm_stats",
            shape_op(k.batch_norm_stats(&t(2, 2), &gain, &gain, &x, &settings, &BatchNorm::new(2))),
        ),
        ("batch_norm_eval_stats", shape_op(k.batch_norm_eval_stats(&t(2, 3), &wrong, &gain, &norm))),
        ("batch_norm_forward", shape_op(k.batch_norm_forward(&x, &x, &t(2, 3), &wrong, &gain, &norm))),
        (
            "batch_norm_forward",
            shape_op(k.batch_norm_forward(&x, &x, &t(2, 3), &gain, &gain, &norm.momentum(2.0))),
        ),
        (
            "batch_norm_backward",
            shape_op(k.batch_norm_backward(Some(&wrong), &gain, &t(1, 3), &x, &t(2, 3), &gain, &x, &norm)),
        ),
        (
            "batch_norm_backward",
            shape_op(k.batch_norm_backward(None, &gain, &wrong, &x, &t(2, 3), &gain, &x, &norm)),
        ),
        ("watch_loss", shape_op(k.watch_loss(&settings, &x))),
        ("sum_columns", shape_op(k.sum_columns(&wrong, &x, 1.0))),
        ("sum_all", shape_op(k.sum_all(&wrong, &x, 1.0))),
        ("gather_rows", shape_op(k.gather_rows(&x, &t(4, 5), &labels, 0))),
        ("gather_rows", shape_op(k.gather_rows(&x, &t(4, 3), &labels, usize::MAX))),
        ("gather_labels", shape_op(k.gather_labels(&labels, &three_labels, &labels, usize::MAX))),
        ("dropout_forward", shape_op(k.dropout_forward(&x, &x, &x, 1.0, 0, &counter))),
        ("dropout_forward", shape_op(k.dropout_forward(&x, &x, &x, f32::NAN, 0, &counter))),
        ("dropout_backward", shape_op(k.dropout_backward(&wrong, &x, &x))),
        ("momentum_update", shape_op(k.momentum_update(&x, &wrong, &x, &settings))),
        ("momentum_check", shape_op(k.momentum_check(&x, &x, &wrong, &settings))),
        ("adamw_update", shape_op(k.adamw_update(&x, &x, &wrong, &x, &settings))),
        ("adam_check", shape_op(k.adam_check(&x, &wrong, &x, &x, &settings))),
        ("sgd_check", shape_op(k.sgd_check(&x, &wrong, &settings))),
        ("leaky_relu_forward", shape_op(k.activation_forward(Activation::LeakyRelu(f32::NAN), &x, &x))),
        (
            "leaky_relu_backward",
            shape_op(k.activation_backward(Activation::LeakyRelu(f32::INFINITY), &x, &x, &x)),
        ),
        ("write_at", shape_op(gpu.write_at(&x, usize::MAX, &[1.0]))),
        ("write_at", shape_op(gpu.write_at(&x, 5, &[1.0, 2.0]))),
        ("upload_labels", shape_op(gpu.upload_labels(&[], 3))),
        ("write_labels", shape_op(gpu.write_labels(&labels, &[0, 1, 2]))),
        ("write_labels", shape_op(gpu.write_labels(&labels, &[0, 3]))),
    ];
    let failures: Vec<String> =
        cases.iter().filter(|(want, got)| want != got).map(|(want, got)| format!("{want}: {got}")).collect();
    assert!(failures.is_empty(), "{failures:#?}");

    let mut bad = OptimizerSettings::new(0.1);
    bad.lr = f32::NAN;
    let err = k.upload_settings(&bad).unwrap_err();
    assert!(matches!(err, Error::InvalidOptimizer { op: "upload_settings", .. }), "{err}");
    let mut bad = OptimizerSettings::new(0.1);
    bad.beta2 = 1.0;
    let err = k.upload_settings(&bad).unwrap_err();
    assert!(err.to_string().contains("β1 and β2"), "{err}");
    // A loss's parameter out of its range, on both backends' kernels.
    let err = k.value_loss_forward(Loss::Huber { delta: 0.0 }, &x, &x, &x).unwrap_err();
    assert!(matches!(err, Error::InvalidLoss { op: "huber_forward", .. }), "{err}");
    let err = k.loss_step(
        Loss::Huber { delta: f32::NAN },
        &x,
        &x,
        wgpu_nn::StepTarget::Values(&x),
        &t(1, 1),
        &settings,
    );
    assert!(matches!(err, Err(Error::InvalidLoss { op: "huber_step", .. })), "{err:?}");
    let mut out = [0.0f32; 2];
    let err = wgpu_nn::cpu::huber_backward(&mut out, &[1.0, 2.0], &[0.0, 0.0], -1.0).unwrap_err();
    assert!(matches!(err, Error::InvalidLoss { op: "huber_backward", .. }), "{err}");
}

#[test]
fn work_bound_on_another_gpu_is_an_error_not_a_wgpu_panic() {
    let Some(gpu) = gpu() else { return };
    let (device, queue) = crate::common::app_devices(1, wgpu::Limits::default()).remove(0);
    let other = wgpu_nn::Gpu::from_device(device, queue).unwrap();
    let x = gpu.zeros(2, 3).unwrap();
    let y = gpu.zeros(2, 3).unwrap();
    let relu = gpu.kernels().relu_forward(&y, &x).unwrap();
    let err = other.run(&[&relu]).unwrap_err();
    assert!(matches!(&err, Error::Gpu { context, .. } if context == "run"), "{err}");
    assert!(err.to_string().contains("relu_forward"), "{err}");
    let mut encoder = other.device().create_command_encoder(&Default::default());
    let err = other.record(&mut encoder, &[&relu]).unwrap_err();
    assert!(matches!(&err, Error::Gpu { context, .. } if context == "record"), "{err}");
    // Its own Gpu still runs it.
    gpu.run(&[&relu]).unwrap();
    let labels = gpu.upload_labels(&[0, 1], 2).unwrap();
    let err = other.write_labels(&labels, &[1, 0]).unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
}

#[test]
fn the_cpu_reference_refuses_settings_its_gpu_twin_refuses() {
    use wgpu_nn::cpu;
    let x = [1.0f32, -2.0, 0.0];
    let (mut out, mut mask) = ([0.0f32; 3], [0.0f32; 3]);
    for p in [1.0, -0.1, f32::NAN] {
        let err = cpu::dropout_forward(&mut out, &mut mask, &x, p, 0, 0).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "dropout_forward", .. }), "{p}: {err}");
    }
    for slope in [f32::NAN, f32::INFINITY] {
        let err = cpu::leaky_relu_forward(&mut out, &x, slope).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "leaky_relu_forward", .. }), "{slope}: {err}");
        let err = cpu::leaky_relu_backward(&mut out, &x, &x, slope).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "leaky_relu_backward", .. }), "{slope}: {err}");
    }
    let s = wgpu_nn::OptimizerSettings::new(0.1);
    let err = cpu::adam_check(&x, &x, &x[..2], &x, &s).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "adam_check", .. }), "{err}");
    // Convolutions no image could go through, and buffers of the wrong length.
    let one = |kernel, stride, padding| {
        wgpu_nn::Conv2dShape::new(1, (1, 3), 1, kernel).stride(stride).padding(padding)
    };
    for g in [one((2, 1), (1, 1), (0, 0)), one((1, 1), (1, 0), (0, 0)), one((1, 1), (1, 1), (usize::MAX, 0))]
    {
        let err = cpu::conv2d_forward(&mut out, &x, &[1.0], None, 1, &g).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "conv2d_forward", .. }), "{g:?}: {err}");
    }
    let g = one((1, 1), (1, 1), (0, 0));
    let err = cpu::conv2d_input_grad(&mut out[..2], &x, &[1.0], 1, &g).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d_input_grad", .. }), "{err}");
    let err = cpu::conv2d_weight_grad(&mut out, &x, &x, 1, &g).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d_weight_grad", .. }), "{err}");
    let err = cpu::conv2d_bias_grad(&mut out, &x, 1, &g).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d_bias_grad", .. }), "{err}");
}

#[test]
fn an_idx_file_is_written_only_when_its_header_can_say_what_it_holds() {
    use wgpu_nn::data::idx;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.idx");
    // Images::new checks its sizes; the struct's public fields can still disagree.
    let mut images = idx::Images::new(2, 2, 2, vec![7; 8]).unwrap();
    images.pixels.pop();
    let err = idx::write_images(&path, &images).unwrap_err();
    assert!(matches!(&err, Error::Data { problem, .. } if problem.contains("7 pixels given")), "{err}");
    images.count = usize::MAX;
    assert!(matches!(idx::write_images(&path, &images), Err(Error::Data { .. })));
    assert!(!path.exists(), "nothing written");
    images.pixels = vec![7; 8];
    images.count = 2;
    idx::write_images(&path, &images).unwrap();
    assert_eq!(idx::read_images(&path).unwrap().pixels, vec![7; 8]);
}

/// An error's variant name (`Shape`, `Data`, …), or what came instead of an error.
fn variant<T>(result: wgpu_nn::Result<T>) -> String {
    match result {
        Ok(_) => "Ok".into(),
        Err(e) => {
            let debug = format!("{e:?}");
            debug.split([' ', '{', '(']).next().unwrap_or_default().to_string()
        }
    }
}

fn check_table(what: &str, cases: Vec<(&str, &str, String)>) {
    let failures: Vec<String> = cases
        .iter()
        .filter(|(_, want, got)| want != got)
        .map(|(call, want, got)| format!("{what} {call}: want {want}, got {got}"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_model_call_refuses_misuse_with_its_own_error() {
    let data = Dataset::labelled(random(8 * 3, 3), 3, random_labels(8, 2, 4), 2).unwrap();
    let other_data = Dataset::labelled(random(8 * 5, 3), 5, random_labels(8, 2, 4), 2).unwrap();
    let config = ModelConfig::new(3)
        .dense_with(4, false, Init::Xavier)
        .relu()
        .dense(2)
        .loss(Loss::SoftmaxCrossEntropy)
        .seed(2);
    for backend in backends() {
        let mut model = build(&config, backend).unwrap();
        let mut stranger = build(&config, backend).unwrap();
        let theirs = stranger.load(&data).unwrap();
        let ours = model.load(&data).unwrap();
        let saved = model.save_bytes().unwrap();
        let mut inference = Model::from_checkpoint_bytes(&saved, "saved", backend, gpu()).unwrap();
        let (x, labels) = (random(2 * 3, 5), [0u32, 1]);
        let cases = vec![
            ("take_loss before any step", "NoSteps", variant(model.take_loss())),
            ("predict, 4 values for 3 inputs", "Shape", variant(model.predict(&random(4, 1)))),
            ("predict, no rows", "Shape", variant(model.predict(&[]))),
            ("predict, a NaN input", "NotFinite", variant(model.predict(&[f32::NAN, 0.0, 0.0]))),
            (
                "evaluate, 3 labels for 2 rows",
                "Shape",
                variant(model.evaluate(&x, &Target::Labels(&[0, 1, 0]))),
            ),
            (
                "evaluate, label 2 of 2 classes",
                "Shape",
                variant(model.evaluate(&x, &Target::Labels(&[0, 2]))),
            ),
            ("evaluate, values for labels", "Shape", variant(model.evaluate(&x, &Target::Values(&[0.0; 4])))),
            (
                "train_step, a label past the classes",
                "Shape",
                variant(model.train_step(&x, &Target::Labels(&[5, 0]))),
            ),
            ("weights of layer 9", "Shape", variant(model.weights(9))),
            ("weights of an activation", "Shape", variant(model.weights(1))),
            ("bias of a layer without one", "Shape", variant(model.bias(0))),
            ("set_weights, too few", "Shape", variant(model.set_weights(2, &[0.5; 3], None))),
            (
                "set_weights, bias of 3 for 2",
                "Shape",
                variant(model.set_weights(2, &[0.5; 8], Some(&[0.0; 3]))),
            ),
            (
                "set_weights, a bias where none",
                "Shape",
                variant(model.set_weights(0, &[0.5; 12], Some(&[0.0; 4]))),
            ),
            ("train_epoch, batch 0", "Shape", variant(model.train_epoch(&ours, 0, 1, &mut |_| {}))),
            (
                "train_epoch, another model's set",
                "Shape",
                variant(model.train_epoch(&theirs, 4, 1, &mut |_| {})),
            ),
            ("evaluate_resident, another model's set", "Shape", variant(model.evaluate_resident(&theirs))),
            ("load, 5 inputs for 3", "Shape", variant(model.load(&other_data))),
            ("unload, another model's set", "Shape", variant(model.unload(theirs.clone()))),
            (
                "load_checkpoint_bytes, junk",
                "Data",
                variant(model.load_checkpoint_bytes(b"not a checkpoint", "junk")),
            ),
            (
                "from_checkpoint_bytes, junk",
                "Data",
                variant(Model::from_checkpoint_bytes(b"\x08\0\0\0\0\0\0\0{}", "junk", backend, gpu())),
            ),
            (
                "train_step on a rebuilt checkpoint",
                "InferenceOnly",
                variant(inference.train_step(&x, &Target::Labels(&labels))),
            ),
            (
                "train_epoch on a rebuilt checkpoint",
                "InferenceOnly",
                variant(inference.train_epoch(&ours, 4, 1, &mut |_| {})),
            ),
        ];
        check_table(&format!("{backend:?}"), cases);
        assert_eq!(model.resident_sets(), 1, "{backend:?}: the refused calls loaded nothing");
        // The model is as it was: it trains.
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        assert!(model.take_loss().unwrap().is_finite());
    }

    // The embedding calls need a GPU model.
    let mut cpu = config.build_cpu().unwrap();
    if let Some(gpu) = gpu() {
        let input = gpu.zeros(2, 3).unwrap();
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        check_table(
            "Cpu",
            vec![
                ("record_loss", "NeedsGpu", variant(cpu.record_loss(&mut encoder))),
                ("bind_forward", "NeedsGpu", variant(cpu.bind_forward(gpu.zeros(2, 3).unwrap()))),
                ("weights_tensor", "NeedsGpu", variant(cpu.weights_tensor(0))),
            ],
        );
        let mut model = config.build_gpu(gpu).unwrap();
        let forward = model.bind_forward(input).unwrap();
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        let x = random(2 * 3, 5);
        check_table(
            "Gpu",
            vec![
                ("activation 99", "Shape", variant(forward.activation(99))),
                (
                    "bind_forward, 4 columns for 3",
                    "Shape",
                    variant(model.bind_forward(gpu.zeros(2, 4).unwrap())),
                ),
                (
                    "record_train_step, 4 values for 3 inputs",
                    "Shape",
                    variant(model.record_train_step(&mut encoder, &random(4, 1), &Target::Labels(&[0]))),
                ),
                (
                    "record_train_step, a label past the classes",
                    "Shape",
                    variant(model.record_train_step(&mut encoder, &x, &Target::Labels(&[0, 7]))),
                ),
                ("weights_tensor of layer 9", "Shape", variant(model.weights_tensor(9))),
                ("bias_tensor of a layer without one", "Shape", variant(model.bias_tensor(0))),
            ],
        );
        // A reading polled to its end, then waited on, is an error, not a hang.
        model.record_train_step(&mut encoder, &x, &Target::Labels(&[0, 1])).unwrap();
        let mut reading = model.record_loss(&mut encoder).unwrap();
        gpu.queue().submit([encoder.finish()]);
        gpu.wait().unwrap();
        assert!(reading.poll().expect("the loss has arrived").unwrap().is_finite());
        assert!(reading.poll().is_none(), "taken once");
        assert!(matches!(reading.wait(), Err(Error::Readback(_))));
    }
}

#[test]
fn descriptions_and_data_no_model_could_use_are_refused() {
    use wgpu_nn::{BatchNorm, ImageShape};
    let bn = Layer::BatchNorm2d;
    let given = |weights: usize, bias: Option<usize>| Init::Given {
        weights: vec![0.1; weights],
        bias: bias.map(|b| vec![0.0; b]),
    };
    let configs = vec![
        ("no inputs", "Shape", ModelConfig::new(0).dense(2)),
        ("no layers", "Shape", ModelConfig::new(3)),
        ("a dense layer of 0", "Shape", ModelConfig::new(3).dense(0)),
        ("drop probability -0.1", "InvalidLayer", ModelConfig::new(3).dense(2).dropout(-0.1)),
        ("drop probability NaN", "InvalidLayer", ModelConfig::new(3).dense(2).dropout(f32::NAN)),
        ("drop probability 1", "InvalidLayer", ModelConfig::new(3).dense(2).dropout(1.0)),
        ("a LeakyReLU slope NaN", "InvalidLayer", ModelConfig::new(3).dense(2).leaky_relu(f32::NAN)),
        ("given weights of 5 for 3x2", "Shape", ModelConfig::new(3).dense_with(2, true, given(5, Some(2)))),
        ("given bias of 3 for 2", "Shape", ModelConfig::new(3).dense_with(2, true, given(6, Some(3)))),
        ("given bias without one", "Shape", ModelConfig::new(3).dense_with(2, false, given(6, Some(2)))),
        ("cross-entropy over 1 class", "Shape", ModelConfig::new(3).dense(1).loss(Loss::SoftmaxCrossEntropy)),
        (
            "a conv2d over images of another width",
            "Shape",
            ModelConfig::new(3).conv2d(wgpu_nn::Conv2dShape::new(1, (2, 2), 1, (1, 1))),
        ),
        (
            "a conv2d kernel past the image",
            "Shape",
            ModelConfig::new(4).conv2d(wgpu_nn::Conv2dShape::new(1, (2, 2), 1, (3, 3))),
        ),
        (
            "a pooling over images of another width",
            "Shape",
            ModelConfig::new(5).max_pool2d(wgpu_nn::Pool2dShape::new(1, (2, 2), (1, 1))),
        ),
        (
            "a pooling with stride 0",
            "Shape",
            ModelConfig::new(4).avg_pool2d(wgpu_nn::Pool2dShape::new(1, (2, 2), (1, 1)).stride((0, 1))),
        ),
        ("a batch norm of 0 channels", "InvalidLayer", ModelConfig::new(4).batch_norm2d(0)),
        ("conv after layers that give no image", "Shape", ModelConfig::new(4).conv(2, 1, 1, 0)),
        (
            "batch_norm after layers that give no image (0 channels)",
            "InvalidLayer",
            ModelConfig::new(4).dense(4).batch_norm(),
        ),
        ("max_pool after a flatten", "Shape", ModelConfig::image(1, 4, 4).flatten().max_pool(2)),
        (
            "a conv2d over another image of as many values",
            "Shape",
            ModelConfig::image(1, 4, 6).conv2d(wgpu_nn::Conv2dShape::new(1, (6, 4), 2, (3, 3))),
        ),
        (
            "a conv2d over 2 channels of images of 1",
            "Shape",
            ModelConfig::image(1, 4, 4).conv2d(wgpu_nn::Conv2dShape::new(2, (2, 4), 2, (1, 1))),
        ),
        ("a batch norm of 3 channels over images of 2", "Shape", ModelConfig::image(2, 3, 3).batch_norm2d(3)),
        ("an image of no values", "Shape", ModelConfig::image(0, 28, 28).dense(2)),
        ("a batch norm of 3 channels over 4 values", "InvalidLayer", ModelConfig::new(4).batch_norm2d(3)),
        (
            "a batch norm momentum of 1.5",
            "InvalidLayer",
            ModelConfig::new(4).layer(bn(BatchNorm::new(2).momentum(1.5))),
        ),
        (
            "a batch norm momentum NaN",
            "InvalidLayer",
            ModelConfig::new(4).layer(bn(BatchNorm::new(2).momentum(f32::NAN))),
        ),
        ("a batch norm ε of -1", "InvalidLayer", ModelConfig::new(4).layer(bn(BatchNorm::new(2).eps(-1.0)))),
        (
            "a batch norm ε of ∞",
            "InvalidLayer",
            ModelConfig::new(4).layer(bn(BatchNorm::new(2).eps(f32::INFINITY))),
        ),
        ("a Huber δ of 0", "InvalidLoss", ModelConfig::new(3).dense(1).loss(Loss::Huber { delta: 0.0 })),
        (
            "a Huber δ of ∞",
            "InvalidLoss",
            ModelConfig::new(3).dense(1).loss(Loss::Huber { delta: f32::INFINITY }),
        ),
    ];
    for backend in backends() {
        let cases = configs
            .iter()
            .map(|(what, want, config)| (*what, *want, variant(build(config, backend))))
            .collect();
        check_table(&format!("{backend:?}"), cases);
    }

    use wgpu_nn::data::{idx, spirals};
    check_table(
        "data",
        vec![
            ("labelled, 0 classes", "Shape", variant(Dataset::labelled(vec![0.0; 4], 2, vec![0, 0], 0))),
            ("labelled, width 0", "Shape", variant(Dataset::labelled(vec![], 0, vec![0, 0], 2))),
            (
                "labelled, a label past the classes",
                "Shape",
                variant(Dataset::labelled(vec![0.0; 4], 2, vec![0, 2], 2)),
            ),
            (
                "labelled, a NaN input",
                "NotFinite",
                variant(Dataset::labelled(vec![0.0, f32::NAN], 2, vec![0], 2)),
            ),
            (
                "regression, an infinite target",
                "NotFinite",
                variant(Dataset::regression(vec![0.0; 2], 2, vec![f32::INFINITY], 1)),
            ),
            (
                "with_image, 2×2 images for rows of 3",
                "Shape",
                variant(
                    Dataset::labelled(vec![0.0; 6], 3, vec![0, 0], 2)
                        .and_then(|d| d.with_image(ImageShape::new(1, 2, 2))),
                ),
            ),
            (
                "labelled, inputs not whole rows",
                "Shape",
                variant(Dataset::labelled(vec![0.0; 5], 2, vec![0, 1], 2)),
            ),
            ("regression, 0 outputs", "Shape", variant(Dataset::regression(vec![0.0; 4], 2, vec![], 0))),
            ("decode_images, junk", "Data", variant(idx::decode_images(b"junk", "junk"))),
            (
                "decode_images, a header past the bytes",
                "Data",
                variant(idx::decode_images(
                    &[0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2],
                    "short",
                )),
            ),
            ("decode_labels, junk", "Data", variant(idx::decode_labels(&[1, 2, 3], "junk"))),
            ("spirals, NaN noise", "Shape", variant(spirals(10, 2, f32::NAN, 1))),
            ("spirals, 0 classes", "Shape", variant(spirals(10, 0, 0.1, 1))),
        ],
    );
}

#[test]
fn trainer_settings_no_fit_could_use_are_refused_before_it_starts() {
    use wgpu_nn::model::{Schedule, Trainer};
    let data = Dataset::labelled(random(16 * 3, 3), 3, random_labels(16, 2, 4), 2).unwrap();
    let blocker = tempfile::NamedTempFile::new().unwrap(); // a file where a directory should be
    let unwritable = blocker.path().join("best.safetensors");
    for backend in backends() {
        let mut model =
            build(&small(Optimizer::Sgd { lr: 0.1 }).loss(Loss::SoftmaxCrossEntropy), backend).unwrap();
        let train = model.load(&data).unwrap();
        let before = model.weights(0).unwrap();
        let fit = |mut trainer: Trainer, model: &mut Model| {
            variant(trainer.fit(model, &train, None, |_| std::ops::ControlFlow::Continue(())))
        };
        let trainer = || Trainer::new().epochs(2).batch_size(4);
        let cases = vec![
            ("batch 0", "InvalidTraining", fit(trainer().batch_size(0), &mut model)),
            (
                "step every 0",
                "InvalidTraining",
                fit(trainer().schedule(Schedule::Step { every: 0, factor: 0.5 }), &mut model),
            ),
            (
                "step factor 0",
                "InvalidTraining",
                fit(trainer().schedule(Schedule::Step { every: 1, factor: 0.0 }), &mut model),
            ),
            (
                "exponential factor NaN",
                "InvalidTraining",
                fit(trainer().schedule(Schedule::Exponential { factor: f32::NAN }), &mut model),
            ),
            (
                "cosine min_lr NaN",
                "InvalidTraining",
                fit(trainer().schedule(Schedule::Cosine { min_lr: f32::NAN }), &mut model),
            ),
            (
                "cosine min_lr above the rate",
                "InvalidTraining",
                fit(trainer().schedule(Schedule::Cosine { min_lr: 1.0 }), &mut model),
            ),
            ("min_delta NaN", "InvalidTraining", fit(trainer().min_delta(f32::NAN), &mut model)),
            (
                "a validation monitor without a set",
                "InvalidTraining",
                fit(trainer().monitor(wgpu_nn::model::Monitor::ValidationLoss), &mut model),
            ),
        ];
        check_table(&format!("{backend:?}"), cases);
        assert_eq!(model.weights(0).unwrap(), before, "{backend:?}: a refused fit trained");
        // A best checkpoint that cannot be written is the save's error, from the first epoch.
        let err = Trainer::new()
            .epochs(2)
            .batch_size(4)
            .keep_best(&unwritable)
            .fit(&mut model, &train, None, |_| std::ops::ControlFlow::Continue(()))
            .unwrap_err();
        assert!(matches!(err, Error::Data { .. }), "{backend:?}: {err}");
    }
}

/// A batch norm trains only on more than one value per channel (PyTorch's rule too): over
/// planes of one value, a batch of one sample is refused before the step changes anything,
/// and so is an epoch whose last batch would be one sample; predicting one sample is fine.
#[test]
fn a_batch_norm_refuses_to_train_on_one_value_per_channel() {
    let config = ModelConfig::new(3).batch_norm2d(3).dense(2).loss(Loss::SoftmaxCrossEntropy);
    let data = Dataset::labelled(random(5 * 3, 1), 3, vec![0, 1, 0, 1, 0], 2).unwrap();
    for backend in backends() {
        let mut model = build(&config, backend).unwrap();
        let resident = model.load(&data).unwrap();
        let one = random(3, 2);
        let err = model.train_step(&one, &Target::Labels(&[1])).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "train_step", .. }), "{backend:?}: {err}");
        assert!(err.to_string().contains("more than 1 value per channel"), "{err}");
        let err = model.train_epoch(&resident, 2, 0, &mut |_| {}).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "train_epoch", .. }), "{backend:?}: {err}");
        assert!(matches!(model.take_loss(), Err(Error::NoSteps { .. })), "{backend:?}: nothing ran");
        assert_eq!(model.predict(&one).unwrap().len(), 2);
        model.train_epoch(&resident, 5, 0, &mut |_| {}).unwrap();
    }
}

/// A diverged step changes no batch norm's running statistics, nor do the steps after it
/// until the divergence is read (as it changes no weight): they are those of the last good
/// step, on both backends.
#[test]
fn a_diverged_step_leaves_the_running_statistics_as_they_were() {
    let config = ModelConfig::new(6).batch_norm2d(2).dense(2).loss(Loss::SoftmaxCrossEntropy);
    let (x, labels) = (random(4 * 6, 3), [0, 1, 1, 0]);
    let huge: Vec<f32> = x.iter().map(|v| v * 3e38).collect();
    let running = |model: &Model| {
        let bytes = model.save_bytes().unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        ["running_mean", "running_var"]
            .map(|name| file.tensor(&format!("layers.0.{name}")).unwrap().data().to_vec())
    };
    for backend in backends() {
        let mut model = build(&config, backend).unwrap();
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        model.take_loss().unwrap();
        let good = running(&model);
        model.train_step(&huge, &Target::Labels(&labels)).unwrap();
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        assert!(matches!(model.take_loss(), Err(Error::Diverged { .. })), "{backend:?}");
        assert_eq!(running(&model), good, "{backend:?}: the last good step's statistics");
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        assert_ne!(running(&model), good, "{backend:?}: training goes on after the report");
    }
}
