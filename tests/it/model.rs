//! The layer graph: the same model on the GPU and the CPU, whole-network gradients, the GPU
//! contract (counters), determinism and bad input.

use crate::common::{assert_close, gpu, random, random_labels};
use crate::training::{self, OPTIMIZERS, PARITY_ATOL, PARITY_RTOL, classifier, parameters, train_both};
use wgpu_nn::model::cpu::CpuModel;
use wgpu_nn::model::{Backend, Init, Layer, Loss, ModelConfig, Optimizer, Target};
use wgpu_nn::{Error, Gpu};

/// Central differences on the whole network's mean loss, in f64 (see tests/gradients.rs for
/// the tolerance's reasoning).
#[test]
fn whole_network_gradients_match_finite_differences() {
    let h = 1e-6;
    // Every loss over the head it needs (Huber also at a δ its differences straddle), and the
    // classifier; a softmax that is not fused with cross-entropy back-propagates on its own.
    let losses = Loss::ALL.into_iter().chain([Loss::Huber { delta: 0.25 }]);
    let configs =
        losses.map(|loss| crate::common::network_for(ModelConfig::new(6).dense(5).tanh(), loss)).chain([
            classifier(Optimizer::Sgd { lr: 0.1 }),
            ModelConfig::new(6).dense(5).sigmoid().dense(2).loss(Loss::Mse),
            ModelConfig::new(6).dense(5).relu().dense(3).softmax().loss(Loss::Mse),
        ]);
    for config in configs {
        let mut model = CpuModel::<f64>::from_config(&config.clone().seed(4)).unwrap();
        let rows = 5;
        let x = random(rows * 6, 40);
        let labels = random_labels(rows, config.width(), 41);
        let values: Vec<f32> =
            random(rows * config.width(), 42).iter().map(|v| (v + 1.0) / 2.0 + 0.3).collect();
        let target =
            if config.loss_kind().takes_labels() { Target::Labels(&labels) } else { Target::Values(&values) };
        model.compute_gradients(&x, &target).unwrap();
        let analytic = model.gradients();
        let numeric = numeric_gradients(&mut model, &x, &target, h);
        assert_close(&format!("{:?} network", config.loss_kind()), &analytic, &numeric, 1e-5, 1e-8);
    }
}

/// The same for small CNNs (two convolutions, one strided, one without a bias, dropout, a
/// dense head; pools; batch norms in training mode), whose gradients reach both
/// convolutions' weights and the input of the second.
#[test]
fn a_convolutional_network_s_gradients_match_finite_differences() {
    let sgd = Optimizer::Sgd { lr: 0.1 };
    let configs = [training::convolutional(sgd), training::pooled(sgd), training::normalised(sgd)];
    for config in configs {
        let mut model = CpuModel::<f64>::from_config(&config).unwrap();
        let rows = 3;
        let x = random(rows * config.width_at(0), 50);
        let labels = random_labels(rows, config.width(), 51);
        let target = Target::Labels(&labels);
        model.compute_gradients(&x, &target).unwrap();
        let analytic = model.gradients();
        let numeric = numeric_gradients(&mut model, &x, &target, 1e-6);
        assert_close(&format!("CNN of {} layers", config.layers().len()), &analytic, &numeric, 1e-5, 1e-8);
    }
}

/// Central differences of the training loss with respect to every parameter, in f64.
fn numeric_gradients(model: &mut CpuModel<f64>, x: &[f32], target: &Target, h: f64) -> Vec<f64> {
    let mut params = model.parameters();
    (0..params.len())
        .map(|i| {
            let orig = params[i];
            params[i] = orig + h;
            model.set_parameters(&params);
            let plus = model.training_loss(x, target).unwrap();
            params[i] = orig - h;
            model.set_parameters(&params);
            let minus = model.training_loss(x, target).unwrap();
            params[i] = orig;
            model.set_parameters(&params);
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

#[test]
fn the_same_seed_gives_bit_identical_losses() {
    let Some(gpu) = gpu() else { return };
    let run = || {
        let mut model = classifier(Optimizer::Adam { lr: 0.01 }).build_gpu(gpu).unwrap();
        (0..10)
            .map(|step| {
                let x = random(32 * 6, step);
                let labels = random_labels(32, 3, step + 50);
                model.train_step(&x, &Target::Labels(&labels)).unwrap();
                model.take_loss().unwrap().to_bits()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn training_reads_nothing_back_until_the_loss_is_asked_for() {
    let Some(gpu) = gpu() else { return };
    let gpu = Gpu::new().unwrap_or_else(|_| gpu.clone()); // counters of its own
    let mut model = classifier(Optimizer::Adam { lr: 0.01 }).build_gpu(&gpu).unwrap();
    let (x, labels) = (random(64 * 6, 1), random_labels(64, 3, 2));
    model.train_step(&x, &Target::Labels(&labels)).unwrap(); // builds the batch's plan
    let before = model.counters();
    let steps = 25;
    for _ in 1..steps {
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
    }
    let after = model.counters();
    assert_eq!(after.maps, before.maps, "no maps while training");
    assert_eq!(after.bytes_read_back, before.bytes_read_back, "no read-back while training");
    assert_eq!(after.submits - before.submits, steps - 1, "one submit per step");
    assert_eq!(after.bytes_held, before.bytes_held, "no allocation per step");
    assert_eq!(after.buffers_held, before.buffers_held, "no allocation per step");
    // Per step, only the batch goes up: 64 × 6 inputs and 64 labels.
    assert_eq!(after.bytes_uploaded - before.bytes_uploaded, (steps - 1) * (64 * 6 + 64) * 4);
    // Every step records the same kernel launches (`bench` reports how many).
    let launches = after.dispatches - before.dispatches;
    assert!(launches > 0 && launches.is_multiple_of(steps - 1), "{launches} launches in {} steps", steps - 1);

    let loss = model.take_loss().unwrap();
    let read = model.counters();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    assert_eq!(read.maps - after.maps, 1, "one map for the loss");
    assert_eq!(read.dispatches, after.dispatches, "reading the loss launches no kernel");
    // The loss comes with the optimizer's settings row, whose last 4 slots are the loss watch.
    assert_eq!(read.bytes_read_back - after.bytes_read_back, 14 * 4, "the settings row: 56 bytes");
}

#[test]
fn every_kernel_launch_is_counted_in_the_crates_passes_and_in_an_apps() {
    let Some(shared) = gpu() else { return };
    let gpu = Gpu::new().unwrap_or_else(|_| shared.clone()); // counters of its own
    let (x, w, y) = (
        gpu.upload(&random(12, 1), 4, 3).unwrap(),
        gpu.upload(&random(6, 2), 3, 2).unwrap(),
        gpu.zeros(4, 2).unwrap(),
    );
    let product = gpu.kernels().matmul_forward(&y, &x, &w, None, wgpu_nn::MatmulForm::AB).unwrap();
    let before = gpu.counters().dispatches;
    gpu.run(&[&product, &product]).unwrap();
    assert_eq!(gpu.counters().dispatches - before, 2 * product.launches() as u64);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    product.record(&mut encoder.begin_compute_pass(&Default::default()));
    gpu.queue().submit([encoder.finish()]);
    assert_eq!(gpu.counters().dispatches - before, 3 * product.launches() as u64, "an app's pass too");
}

#[test]
fn bad_input_is_a_clear_error() {
    let Some(gpu) = gpu() else { return };
    let wrong_width =
        ModelConfig::new(3).layer(Layer::Dense { inputs: 4, outputs: 2, bias: true, init: Init::He });
    let err = wrong_width.build_cpu().unwrap_err();
    assert!(err.to_string().contains("layer 0 (dense) to take 3 inputs"), "{err}");
    let nll = ModelConfig::new(3).dense(2).loss(Loss::Nll).build_cpu();
    assert!(matches!(nll, Err(Error::Shape { op: "build", .. })), "NLL without LogSoftmax: {nll:?}");
    let empty = ModelConfig::new(3).build_cpu();
    assert!(matches!(empty, Err(Error::Shape { op: "build", .. })), "no layers: {empty:?}");
    let err = ModelConfig::new(3).dense(2).dropout(1.0).build_cpu().unwrap_err();
    assert!(
        matches!(err, Error::InvalidLayer { layer: 1, .. }) && err.to_string().contains("[0, 1)"),
        "{err}"
    );
    let err = ModelConfig::new(3).dense(2).leaky_relu(f32::NAN).build_cpu().unwrap_err();
    assert!(matches!(err, Error::InvalidLayer { layer: 1, .. }), "{err}");
    let err = ModelConfig::new(3).dense(2).build(Backend::Gpu, None).unwrap_err();
    assert!(matches!(err, Error::MissingGpu), "{err}");
    let err = ModelConfig::new(3).dense_with(2, true, Init::Uniform(1.0, -1.0)).build_cpu().unwrap_err();
    assert!(matches!(err, Error::InvalidLayer { layer: 0, .. }), "{err}");
    // A range whose width overflows f32 would draw infinities.
    let err = ModelConfig::new(3).dense_with(2, true, Init::Uniform(-3e38, 3e38)).build_cpu().unwrap_err();
    assert!(matches!(err, Error::InvalidLayer { layer: 0, .. }), "{err}");
    // Sizes whose product overflows are refused before anything is multiplied.
    let err = ModelConfig::new(1 << 33).dense(1 << 33).build_cpu().unwrap_err();
    assert!(
        matches!(err, Error::InvalidLayer { layer: 0, .. })
            && err.to_string().contains("more than any memory"),
        "{err}"
    );
    let wide = ModelConfig::new(3).dense(wgpu_nn::gpu::MAX_LAYER_NORM_COLS + 1).layer_norm();
    assert!(
        matches!(wide.build_gpu(gpu), Err(Error::Shape { op: "build", .. })),
        "a layer norm too wide for the GPU"
    );
    let given = Init::Given { weights: vec![0.0; 5], bias: None };
    let given = ModelConfig::new(3).dense_with(2, false, given).build_cpu();
    assert!(matches!(given, Err(Error::Shape { op: "build", .. })), "{given:?}");

    for backend in [Backend::Gpu, Backend::Cpu] {
        let mut model = classifier(Optimizer::Sgd { lr: 0.1 }).build(backend, Some(gpu)).unwrap();
        let labels = [0u32, 1];
        let err = model.train_step(&[0.0; 11], &Target::Labels(&labels)).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }) && err.to_string().contains("rows of 6 inputs"), "{err}");
        let err = model.train_step(&[], &Target::Labels(&[])).unwrap_err();
        assert!(err.to_string().contains("non-empty batch"), "{err}");
        let err = model.train_step(&[0.0; 12], &Target::Labels(&[0, 3])).unwrap_err();
        assert!(err.to_string().contains("label 3 at row 1"), "{err}");
        let err = model.train_step(&[0.0; 12], &Target::Labels(&[0])).unwrap_err();
        assert!(err.to_string().contains("2 labels"), "{err}");
        let err = model.train_step(&[0.0; 12], &Target::Values(&[0.0; 6])).unwrap_err();
        assert!(err.to_string().contains("label targets"), "{err}");
        let err = model.weights(1).unwrap_err();
        assert!(err.to_string().contains("dense layer"), "{err}");
        let err = model.set_weights(0, &[0.0; 3], None).unwrap_err();
        assert!(err.to_string().contains("8x6 weights"), "{err}");
        let err = model.set_weights(5, &[0.0; 64], Some(&[0.0; 8])).unwrap_err();
        assert!(err.to_string().contains("layer 5: no bias"), "{err}");
        assert!(matches!(model.take_loss(), Err(Error::NoSteps { op: "take_loss" })), "no step taken yet");
    }
}

#[test]
fn a_learning_rate_change_and_evaluation_agree_across_backends() {
    let Some(gpu) = gpu() else { return };
    let config = classifier(Optimizer::Momentum { lr: 0.1, momentum: 0.5 });
    let (x, labels) = (random(12 * 6, 60), random_labels(12, 3, 61));
    let [gpu_run, cpu_run] = [Backend::Gpu, Backend::Cpu].map(|backend| {
        let mut model = config.build(backend, Some(gpu)).unwrap();
        for step in 0..6 {
            if step == 3 {
                model.set_learning_rate(0.01).unwrap();
            }
            model.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
        let evaluation = model.evaluate(&x, &Target::Labels(&labels)).unwrap();
        // Dropout is off in evaluation: predicting twice gives the same outputs.
        let (first, second) = (model.predict(&x).unwrap(), model.predict(&x).unwrap());
        assert_eq!(first, second, "{backend:?}: evaluation must not drop");
        (evaluation, first, pollster::block_on(parameters(&model, &config)))
    });
    assert_close("weights after an lr change", &gpu_run.2, &cpu_run.2, PARITY_RTOL, PARITY_ATOL);
    assert_close("predictions", &gpu_run.1, &cpu_run.1, PARITY_RTOL, PARITY_ATOL);
    assert_close("evaluation loss", &[gpu_run.0.loss], &[cpu_run.0.loss], PARITY_RTOL, PARITY_ATOL);
    assert_eq!(gpu_run.0.accuracy, cpu_run.0.accuracy);
    let probabilities: f32 = gpu_run.1[..3].iter().sum();
    assert!((probabilities - 1.0).abs() < 1e-5, "a softmax row sums to 1: {probabilities}");
}

#[test]
fn epochs_on_resident_data_train_the_same_on_gpu_and_cpu_and_upload_no_pixels() {
    let Some(gpu) = gpu() else { return };
    let gpu = Gpu::new().unwrap_or_else(|_| gpu.clone()); // counters of its own
    let (train, test) = wgpu_nn::data::bundled_digits8x8().unwrap();
    let train = train.take(300);
    let config = ModelConfig::new(64)
        .dense(32)
        .relu()
        .dropout(0.2)
        .dense(10)
        .log_softmax()
        .loss(Loss::Nll)
        .optimizer(Optimizer::Adam { lr: 0.01 })
        .seed(8);
    let [gpu_run, cpu_run] = [Backend::Gpu, Backend::Cpu].map(|backend| {
        let mut model = config.build(backend, Some(&gpu)).unwrap();
        let (train, test) = (model.load(&train).unwrap(), model.load(&test).unwrap());
        let mut losses = Vec::new();
        let mut epoch_counters = Vec::new();
        for epoch in 0..3 {
            let before = model.counters();
            let mut reports = 0;
            // 300 samples in batches of 32: nine full batches and one of 12.
            losses.push(model.train_epoch(&train, 32, epoch, &mut |_| reports += 1).unwrap());
            epoch_counters.push((before, model.counters(), reports));
        }
        (losses, model.evaluate_resident(&test).unwrap(), epoch_counters)
    });
    assert_close("epoch losses", &gpu_run.0, &cpu_run.0, PARITY_RTOL, PARITY_ATOL);
    assert!(gpu_run.0[2] < gpu_run.0[0], "the loss falls: {:?}", gpu_run.0);
    let (gpu_eval, cpu_eval) = (&gpu_run.1, &cpu_run.1);
    assert_close("test loss", &[gpu_eval.loss], &[cpu_eval.loss], PARITY_RTOL, PARITY_ATOL);
    assert_eq!(gpu_eval.predictions, cpu_eval.predictions);
    // Three short epochs reach about 0.7 here; chance is 0.1.
    assert!(gpu_eval.accuracy > Some(0.5), "three epochs on 300 digits: {:?}", gpu_eval.accuracy);

    // After the first epoch (which binds the gathers), an epoch uploads the order (300 u32)
    // and the loss watch's 4 slots zeroed after its read, submits once per 16 steps, and reads
    // back only its loss (with the settings row that holds it: 56 bytes).
    let (before, after, reports) = gpu_run.2[1];
    assert_eq!(after.bytes_uploaded - before.bytes_uploaded, 300 * 4 + 4 * 4, "no pixels uploaded");
    assert_eq!(after.maps - before.maps, 1);
    assert_eq!(after.bytes_read_back - before.bytes_read_back, 14 * 4);
    assert_eq!(after.submits - before.submits, 1 + 1, "10 steps in one submit, and the loss read");
    assert_eq!(after.buffers_held, before.buffers_held);
    assert_eq!(reports, 1);
    assert_eq!(cpu_run.2[1].2, 10, "the CPU reports every step");
}

/// The layers added through the graph (LayerNorm, GELU, LeakyReLU) with every optimizer:
/// the GPU trains as the CPU does, layer norm's gain and bias included.
#[test]
fn layer_norm_gelu_and_leaky_relu_train_the_same_on_gpu_and_cpu() {
    let Some(gpu) = gpu() else { return };
    for optimizer in OPTIMIZERS {
        let config = ModelConfig::new(6)
            .dense(8)
            .layer_norm()
            .gelu()
            .dropout(0.25)
            .dense(8)
            .leaky_relu(0.1)
            .layer_norm()
            .dense(3)
            .loss(Loss::SoftmaxCrossEntropy)
            .optimizer(optimizer)
            .seed(5);
        let [(gpu_losses, _), (cpu_losses, _)] = pollster::block_on(train_both(gpu, &config, 20, 16));
        let what = format!("{optimizer:?}");
        assert_close(&format!("{what} losses"), &gpu_losses, &cpu_losses, PARITY_RTOL, PARITY_ATOL);
        assert!(gpu_losses.last() < gpu_losses.first(), "{what}: the loss should fall: {gpu_losses:?}");
        let [on_gpu, on_cpu] = [Backend::Gpu, Backend::Cpu].map(|backend| {
            let mut model = config.build(backend, Some(gpu)).unwrap();
            let (x, labels) = (random(16 * 6, 100), random_labels(16, 3, 200));
            for _ in 0..5 {
                model.train_step(&x, &Target::Labels(&labels)).unwrap();
            }
            // Every parameter (layer norms' gains and biases too), then predictions and the
            // evaluation loss outside training (the norms' statistics computed there too).
            let mut values: Vec<f32> = [0, 1, 4, 6, 7]
                .iter()
                .flat_map(|&l| [model.weights(l).unwrap(), model.bias(l).unwrap()])
                .flatten()
                .collect();
            values.extend(model.predict(&x).unwrap());
            values.push(model.evaluate(&x, &Target::Labels(&labels)).unwrap().loss);
            values
        });
        assert_close(&format!("{what} parameters, predictions"), &on_gpu, &on_cpu, PARITY_RTOL, PARITY_ATOL);
    }
}

#[test]
fn gradients_through_layer_norm_gelu_and_leaky_relu_match_finite_differences() {
    let h = 1e-6;
    let config = ModelConfig::new(6)
        .dense(5)
        .layer_norm()
        .gelu()
        .dense(4)
        .leaky_relu(0.2)
        .dense(3)
        .loss(Loss::SoftmaxCrossEntropy)
        .seed(6);
    let mut model = CpuModel::<f64>::from_config(&config).unwrap();
    // A layer norm starts at gain 1, bias 0: move them so their gradients are general.
    let mut params = model.parameters();
    for (i, p) in params.iter_mut().enumerate() {
        *p += 0.1 * ((i * 7 % 11) as f64 - 5.0) / 5.0;
    }
    model.set_parameters(&params);
    let (x, labels) = (random(5 * 6, 43), random_labels(5, 3, 44));
    let target = Target::Labels(&labels);
    model.compute_gradients(&x, &target).unwrap();
    let analytic = model.gradients();
    let numeric = numeric_gradients(&mut model, &x, &target, h);
    assert_eq!(analytic.len(), 6 * 5 + 5 + 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
    // The tolerance of whole_network_gradients_match_finite_differences, with its reasons.
    assert_close("layer norm, GELU, LeakyReLU network", &analytic, &numeric, 1e-5, 1e-8);
}

/// A model with no parameters at all (only a softmax, fused with its cross-entropy): a
/// training step has nothing to update, but its loss is still computed and read.
#[test]
fn a_model_of_only_a_fused_softmax_trains_without_parameters() {
    let Some(gpu) = gpu() else { return };
    let config = ModelConfig::new(3).softmax().loss(Loss::SoftmaxCrossEntropy);
    let (x, labels) = ([1.0, 2.0, 3.0, 0.0, 0.0, 0.0], [2u32, 0]);
    let losses = [Backend::Gpu, Backend::Cpu].map(|backend| {
        let mut model = config.build(backend, Some(gpu)).unwrap();
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        model.take_loss().unwrap()
    });
    // Row 1: ln(e + e² + e³) − 3; row 2: ln 3.
    let want = (((1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0) + 3f64.ln()) / 2.0;
    assert_close("loss", &losses, &[want as f32; 2], 1e-6, 1e-6);
}

/// A training plan holds only the buffers its kernels bind: the fused blocks leave each
/// hidden layer's activation output before dropout and the gradients inside its tail
/// unbound, and the plan frees them.
#[test]
fn a_training_plan_holds_only_what_its_fused_kernels_bind() {
    if gpu().is_none() {
        return;
    }
    // A context (and device) of its own, so that its memory counters see no other test's
    // buffers.
    let gpu = &Gpu::new().unwrap();
    let (rows, widths) = (256usize, [784usize, 128, 64, 10]);
    let config = ModelConfig::new(widths[0])
        .dense(widths[1])
        .relu()
        .dropout(0.2)
        .dense(widths[2])
        .relu()
        .dropout(0.2)
        .dense(widths[3])
        .log_softmax()
        .loss(Loss::Nll)
        .optimizer(Optimizer::Adam { lr: 0.001 });
    let mut model = config.build(Backend::Gpu, Some(gpu)).unwrap();
    let before = model.counters().bytes_held;
    let x = random(rows * widths[0], 1);
    model.train_step(&x, &Target::Labels(&random_labels(rows, widths[3], 2))).unwrap();
    let plan = model.counters().bytes_held - before;
    // Layer by layer a step would hold the input, 8 activations, 2 masks, 7 gradients.
    let floats = |w: usize| (rows * w * 4) as u64;
    let [i, h1, h2, o] = widths;
    let layer_by_layer = floats(i) + 3 * floats(h1) + 3 * floats(h2) + 2 * floats(o) // activations
        + floats(h1) + floats(h2) // masks
        + 3 * floats(h1) + 3 * floats(h2) + floats(o); // gradients
    // Fused: the input; per hidden block z, its output and mask, and its product's gradient;
    // the logits and their gradient.
    let fused = floats(i) + 4 * floats(h1) + 4 * floats(h2) + 2 * floats(o);
    assert!(
        plan < layer_by_layer,
        "{plan} bytes held for the plan, as much as layer by layer ({layer_by_layer})"
    );
    // Labels, the loss, parameter blocks: a few KiB beyond the fused buffers.
    assert!(plan <= fused + 64 * 1024, "{plan} bytes held for the plan; its fused buffers are {fused}");
}
