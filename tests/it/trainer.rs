//! The `Trainer`: schedules, validation, early stopping, the best checkpoint and the callback,
//! on labelled and on regression data sets, the same on both backends and the same as the
//! hand-written loop it replaces.

use std::ops::ControlFlow;

use crate::common::{assert_close, backends, gpu, random, random_labels};
use wgpu_nn::Error;
use wgpu_nn::data::{Dataset, Targets};
use wgpu_nn::model::{Loss, Model, ModelConfig, Monitor, Optimizer, Schedule, Stop, Trainer};

/// As the model parity tests: f32 sums in other orders over a few epochs.
const PARITY_RTOL: f64 = 1e-4;
const PARITY_ATOL: f64 = 1e-5;

/// y = (sin 3x₀ + x₁², x₀·x₁) on [-1, 1]²: a regression set with two outputs.
fn curve(len: usize, seed: u64) -> Dataset {
    let x = random(len * 2, seed);
    let y: Vec<f32> = x.chunks(2).flat_map(|p| [(3.0 * p[0]).sin() + p[1] * p[1], p[0] * p[1]]).collect();
    Dataset::regression(x, 2, y, 2).unwrap()
}

fn regressor() -> ModelConfig {
    ModelConfig::new(2)
        .dense(24)
        .tanh()
        .dense(2)
        .loss(Loss::Mse)
        .optimizer(Optimizer::Adam { lr: 0.02 })
        .seed(5)
}

fn classifier() -> ModelConfig {
    ModelConfig::new(6)
        .dense(16)
        .relu()
        .dropout(0.1)
        .dense(3)
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(Optimizer::Momentum { lr: 0.05, momentum: 0.9 })
        .seed(9)
}

fn labelled(len: usize, seed: u64) -> Dataset {
    // The class is which third of the line the first two inputs' sum falls in: learnable.
    let x = random(len * 6, seed);
    let labels = x.chunks(6).map(|r| ((r[0] + r[1] + 2.0) / 4.0 * 3.0).clamp(0.0, 2.0) as u32).collect();
    Dataset::labelled(x, 6, labels, 3).unwrap()
}

fn all_weights(model: &Model) -> Vec<f32> {
    let layers = model.config().layers().len();
    (0..layers).filter_map(|l| model.weights(l).ok()).flatten().collect()
}

#[test]
fn a_regression_set_trains_through_the_trainer_alike_on_gpu_and_cpu() {
    let (train, validation) = (curve(400, 1), curve(100, 2));
    // A GPU of its own, so that its upload counter sees this test alone.
    let own = gpu().map(|_| wgpu_nn::Gpu::new().unwrap());
    let runs: Vec<_> = backends()
        .into_iter()
        .map(|backend| {
            let mut model = regressor().build(backend, own.as_ref()).unwrap();
            let (t, v) = (model.load(&train).unwrap(), model.load(&validation).unwrap());
            assert!(!t.is_labelled());
            let mut uploads = vec![model.counters().bytes_uploaded];
            let report = Trainer::new()
                .epochs(12)
                .batch_size(25)
                .seed(4)
                .schedule(Schedule::Cosine { min_lr: 0.001 })
                .fit(&mut model, &t, Some(&v), |_| {
                    uploads.push(own.as_ref().map_or(0, |g| g.counters().bytes_uploaded));
                    ControlFlow::Continue(())
                })
                .unwrap();
            let per_epoch: Vec<u64> = uploads.windows(2).map(|w| w[1] - w[0]).collect();
            // The resident set's evaluation matches evaluating the same values as one batch.
            let resident = model.evaluate_resident(&v).unwrap();
            let batch = model.evaluate(validation.inputs(), &validation.target()).unwrap();
            (backend, report, resident, batch, per_epoch, all_weights(&model))
        })
        .collect();
    for (backend, report, resident, batch, _, _) in &runs {
        assert_eq!(report.stop, Stop::Finished);
        let losses: Vec<f32> = report.epochs.iter().map(|e| e.monitored).collect();
        // Measured on lavapipe and the CPU: the validation loss falls from 0.140 to 0.041
        // (predicting the mean would score ~0.35).
        assert!(losses[11] < losses[0] / 2.0, "{backend:?}: validation losses {losses:?}");
        assert_eq!((resident.accuracy, resident.predictions.len()), (None, 0), "{backend:?}");
        assert_close("resident vs batch evaluation", &[resident.loss], &[batch.loss], 1e-5, 1e-7);
        assert_eq!(report.epochs[11].validation.as_ref().unwrap().loss, losses[11]);
    }
    if let [(_, gpu_report, _, _, uploaded, gpu_weights), (_, cpu_report, _, _, _, cpu_weights)] = &runs[..] {
        let epochs = |r: &wgpu_nn::model::FitReport| -> Vec<f32> {
            r.epochs.iter().flat_map(|e| [e.train_loss, e.monitored]).collect()
        };
        assert_close(
            "epoch losses, GPU vs CPU",
            &epochs(gpu_report),
            &epochs(cpu_report),
            PARITY_RTOL,
            PARITY_ATOL,
        );
        assert_close("weights, GPU vs CPU", gpu_weights, cpu_weights, PARITY_RTOL, PARITY_ATOL);
        // After the first epoch (which builds its plans), an epoch uploads its order (400 u32),
        // the learning rate and the loss watch's reset: no samples, no targets (6400 bytes).
        assert!(
            uploaded[1..].iter().all(|&bytes| bytes <= 1600 + 64),
            "bytes uploaded per epoch: {uploaded:?}"
        );
    }
}

#[test]
fn a_fit_is_the_loop_it_replaces_with_each_schedule() {
    let data = labelled(200, 3);
    let base = 0.05;
    let schedules = [
        (Schedule::Constant, vec![base; 5]),
        (Schedule::Step { every: 2, factor: 0.5 }, vec![base, base, base / 2.0, base / 2.0, base / 4.0]),
        (Schedule::Exponential { factor: 0.8 }, (0..5).map(|e| base * 0.8f32.powi(e)).collect()),
        // CosineAnnealingLR, T_max 5, eta_min 0.01: 0.01 + 0.04·(1 + cos(πe/5))/2.
        (Schedule::Cosine { min_lr: 0.01 }, vec![0.05, 0.0461803, 0.0361803, 0.0238197, 0.0138197]),
    ];
    for backend in backends() {
        for (schedule, rates) in &schedules {
            let mut fitted = classifier().build(backend, gpu()).unwrap();
            let set = fitted.load(&data).unwrap();
            let report = Trainer::new()
                .epochs(5)
                .batch_size(16)
                .seed(7)
                .schedule(*schedule)
                .fit(&mut fitted, &set, None, |_| ControlFlow::Continue(()))
                .unwrap();
            let lrs: Vec<f32> = report.epochs.iter().map(|e| e.lr).collect();
            assert_close(&format!("{schedule:?} rates"), &lrs, rates, 1e-5, 0.0);

            // The same epochs by hand: set the rate, train an epoch seeded seed·1000 + e.
            let mut by_hand = classifier().build(backend, gpu()).unwrap();
            let hand_set = by_hand.load(&data).unwrap();
            let mut losses = Vec::new();
            for (e, &lr) in rates.iter().enumerate() {
                by_hand.set_learning_rate(lr).unwrap();
                losses.push(by_hand.train_epoch(&hand_set, 16, 7000 + e as u64 + 1, &mut |_| {}).unwrap());
            }
            let fit_losses: Vec<f32> = report.epochs.iter().map(|e| e.train_loss).collect();
            assert_close(&format!("{backend:?} {schedule:?} losses"), &fit_losses, &losses, 1e-6, 1e-7);
            assert_close(
                &format!("{backend:?} {schedule:?}"),
                &all_weights(&fitted),
                &all_weights(&by_hand),
                1e-6,
                1e-7,
            );
            // Without a validation set the training loss is what is watched.
            assert!(report.epochs.iter().all(|e| e.monitored == e.train_loss && e.validation.is_none()));
        }
    }
}

#[test]
fn early_stopping_ends_after_its_patience_and_the_best_checkpoint_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (train, validation) = (curve(200, 11), curve(50, 12));
    for backend in backends() {
        let best = dir.path().join(format!("{backend:?}-best.safetensors"));
        // A min_delta no loss can beat after the first epoch: epoch 1 is the best, and the
        // fit stops once `patience` epochs have passed without improvement.
        let fit = |restore: bool| {
            let mut model = regressor().build(backend, gpu()).unwrap();
            let (t, v) = (model.load(&train).unwrap(), model.load(&validation).unwrap());
            let mut seen = Vec::new();
            let report = Trainer::new()
                .epochs(10)
                .batch_size(20)
                .early_stopping(2)
                .min_delta(1e9)
                .keep_best(&best)
                .restore_best(restore)
                .fit(&mut model, &t, Some(&v), |e| {
                    seen.push((e.epoch, e.improved));
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(seen, [(1, true), (2, false), (3, false)], "{backend:?}");
            assert_eq!(
                (report.stop, report.best_epoch, report.epochs.len()),
                (Stop::EarlyStopping, Some(1), 3)
            );
            (model, v)
        };
        let by_hand = |epochs: usize| {
            let mut model = regressor().build(backend, gpu()).unwrap();
            let t = model.load(&train).unwrap();
            for e in 1..=epochs {
                model.train_epoch(&t, 20, e as u64, &mut |_| {}).unwrap();
            }
            all_weights(&model)
        };
        let (mut restored, v) = fit(true);
        assert_eq!(all_weights(&restored), by_hand(1), "{backend:?}: the model left is epoch 1's");
        let saved = Model::from_checkpoint(&best, backend, gpu()).unwrap();
        assert_eq!(all_weights(&saved), by_hand(1), "{backend:?}: the file holds epoch 1's");
        assert!(restored.evaluate_resident(&v).unwrap().loss.is_finite());
        let (kept_last, _) = fit(false);
        assert_eq!(all_weights(&kept_last), by_hand(3), "{backend:?}: restore_best(false) keeps epoch 3's");
    }
}

#[test]
fn the_callback_can_stop_a_fit_and_accuracy_can_be_monitored() {
    let (train, validation) = (labelled(300, 21), labelled(90, 22));
    for backend in backends() {
        let mut model = classifier().build(backend, gpu()).unwrap();
        let (t, v) = (model.load(&train).unwrap(), model.load(&validation).unwrap());
        let report = Trainer::new()
            .epochs(8)
            .monitor(Monitor::ValidationAccuracy)
            .fit(&mut model, &t, Some(&v), |e| {
                if e.epoch == 6 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .unwrap();
        assert_eq!((report.stop, report.epochs.len()), (Stop::Callback, 6), "{backend:?}");
        let accuracies: Vec<f32> =
            report.epochs.iter().map(|e| e.validation.as_ref().unwrap().accuracy.unwrap()).collect();
        assert_eq!(report.epochs.iter().map(|e| e.monitored).collect::<Vec<_>>(), accuracies);
        // The best is the first epoch of the highest accuracy: higher is better here.
        let top = accuracies.iter().cloned().fold(f32::MIN, f32::max);
        assert_eq!(report.best_epoch, Some(accuracies.iter().position(|&a| a == top).unwrap() + 1));
        assert!(top > 0.6, "{backend:?}: {accuracies:?}");
    }
}

#[test]
fn settings_that_cannot_run_are_errors_before_anything_trains() {
    let data = labelled(40, 31);
    let regression = curve(40, 32);
    let mut model = classifier().build_cpu().unwrap();
    let mut other = regressor().build_cpu().unwrap();
    let (set, values) = (model.load(&data).unwrap(), other.load(&regression).unwrap());
    let weights = all_weights(&model);
    let bad = [
        (Trainer::new().batch_size(0), "batch size"),
        (Trainer::new().schedule(Schedule::Step { every: 0, factor: 0.5 }), "every"),
        (Trainer::new().schedule(Schedule::Exponential { factor: f32::NAN }), "factor"),
        (Trainer::new().schedule(Schedule::Cosine { min_lr: 1.0 }), "min_lr"),
        (Trainer::new().min_delta(-1.0), "min_delta"),
        (Trainer::new().monitor(Monitor::ValidationLoss), "needs a validation set"),
    ];
    for (mut trainer, says) in bad {
        let err = trainer.fit(&mut model, &set, None, |_| ControlFlow::Continue(())).unwrap_err();
        assert!(matches!(err, Error::InvalidTraining { .. }) && err.to_string().contains(says), "{err}");
    }
    assert_eq!(all_weights(&model), weights, "nothing trained");
    let err = Trainer::new()
        .monitor(Monitor::ValidationAccuracy)
        .fit(&mut other, &values, Some(&values), |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(err.to_string().contains("labelled validation set"), "{err}");
    // Sets loaded into another model are refused before anything trains.
    let err = Trainer::new().fit(&mut model, &values, None, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(matches!(err, Error::InvalidTraining { .. }) && err.to_string().contains("Model::load"), "{err}");
    let err = Trainer::new().fit(&mut model, &set, Some(&values), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(matches!(err, Error::InvalidTraining { .. }), "{err}");
    assert_eq!(all_weights(&model), weights, "nothing trained");
}

#[test]
fn a_fit_that_diverges_leaves_the_best_epoch_behind() {
    let dir = tempfile::tempdir().unwrap();
    let train = curve(100, 51);
    for backend in backends() {
        let config = regressor().optimizer(Optimizer::Sgd { lr: 0.01 });
        let best = dir.path().join(format!("{backend:?}.safetensors"));
        let mut model = config.build(backend, gpu()).unwrap();
        let set = model.load(&train).unwrap();
        // Epoch 1 at lr 0.01, epoch 2 at 1e6: the loss overflows.
        let err = Trainer::new()
            .epochs(3)
            .batch_size(20)
            .schedule(Schedule::Step { every: 1, factor: 1e8 })
            .keep_best(&best)
            .fit(&mut model, &set, None, |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert!(matches!(err, Error::Diverged { .. }), "{backend:?}: {err}");
        let mut by_hand = config.build(backend, gpu()).unwrap();
        let hand_set = by_hand.load(&train).unwrap();
        by_hand.train_epoch(&hand_set, 20, 1, &mut |_| {}).unwrap();
        assert_eq!(all_weights(&model), all_weights(&by_hand), "{backend:?}: epoch 1's weights came back");
    }
}

#[test]
fn labels_of_fewer_classes_than_outputs_train_alike_and_empty_sets_do_not_load() {
    // Two classes on a three-output model: labels below the output width are all it needs.
    let data = labelled(60, 61);
    let two = Dataset::labelled(
        data.inputs().to_vec(),
        6,
        data.labels().unwrap().iter().map(|&l| l.min(1)).collect(),
        2,
    )
    .unwrap();
    let runs: Vec<Vec<f32>> = backends()
        .into_iter()
        .map(|backend| {
            let mut model = classifier().build(backend, gpu()).unwrap();
            let set = model.load(&two).unwrap();
            let err = model.load(&two.take(0)).unwrap_err();
            assert!(matches!(err, Error::Shape { .. }) && err.to_string().contains("non-empty"), "{err}");
            let report = Trainer::new()
                .epochs(3)
                .fit(&mut model, &set, Some(&set), |_| ControlFlow::Continue(()))
                .unwrap();
            report.epochs.iter().map(|e| e.monitored).collect()
        })
        .collect();
    if let [on_gpu, on_cpu] = &runs[..] {
        assert_close("validation losses, GPU vs CPU", on_gpu, on_cpu, PARITY_RTOL, PARITY_ATOL);
    }
}

#[test]
fn data_sets_are_whole_or_an_error_naming_the_mismatch() {
    let shape = |r: wgpu_nn::Result<Dataset>, says: &str| {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::Shape { .. }) && err.to_string().contains(says), "{err}");
    };
    shape(Dataset::labelled(vec![0.0; 5], 2, vec![0, 1], 2), "5 input values");
    shape(Dataset::labelled(vec![0.0; 4], 2, vec![0, 2], 2), "label 2 at row 1");
    shape(Dataset::labelled(vec![], 2, vec![], 2), "non-empty");
    shape(Dataset::regression(vec![0.0; 4], 2, vec![0.0; 3], 2), "3 values in rows of 2");
    shape(Dataset::regression(vec![0.0; 5], 2, vec![0.0; 6], 3), "5 input values");
    shape(Dataset::regression(vec![0.0; 4], 2, vec![0.0; 2], 0), "rows of 0");

    let set = curve(10, 41);
    let (head, tail) = set.split(7);
    assert_eq!((head.len(), tail.len()), (7, 3));
    assert_eq!(tail.inputs(), &set.inputs()[14..]);
    let Targets::Values { values, outputs: 2 } = tail.targets() else { panic!("values of 2") };
    let Targets::Values { values: all, .. } = set.targets() else { panic!("values") };
    assert_eq!(values[..], all[14..]);

    // Targets of the other kind than the loss, or of another width, do not load.
    for backend in backends() {
        let mut classify = classifier().build(backend, gpu()).unwrap();
        let err =
            classify.load(&Dataset::regression(random(12, 1), 6, random(6, 2), 3).unwrap()).unwrap_err();
        assert!(err.to_string().contains("label targets for SoftmaxCrossEntropy"), "{err}");
        let mut regress = regressor().build(backend, gpu()).unwrap();
        let err = regress.load(&Dataset::regression(random(4, 1), 2, random(6, 2), 3).unwrap()).unwrap_err();
        assert!(err.to_string().contains("2x2 target values"), "{err}");
        let err = regress.load(&Dataset::labelled(random(4, 1), 2, random_labels(2, 2, 3), 2).unwrap());
        assert!(err.unwrap_err().to_string().contains("value targets for Mse"));
        let nan = Dataset::regression(random(4, 1), 2, vec![0.0, f32::NAN, 0.0, 0.0], 2).unwrap_err();
        assert!(matches!(nan, Error::NotFinite { what: "target values", row: 0, col: 1, .. }), "{nan}");
    }
}
