//! PyTorch round trips: state dicts exported by a real PyTorch script
//! (`tests/fixtures/pytorch/export.py`, kept beside its files with the command that made
//! them) load here and predict what PyTorch predicted; a model saved here rebuilds from its
//! file alone (`Model::from_checkpoint`); and bad files are errors naming file and tensor.

use std::path::{Path, PathBuf};

use crate::common::{assert_close, backends, gpu, random};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use wgpu_nn::Error;
use wgpu_nn::model::{Backend, Init, Layer, Loss, Model, ModelConfig, Optimizer, Target};
use wgpu_nn::{BatchNorm, Conv2dShape, Pool2dShape};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch").join(name)
}

/// `export.py`'s network, as a config: the layer indices are PyTorch's module numbers.
fn network() -> ModelConfig {
    ModelConfig::new(4)
        .dense(16)
        .relu()
        .dense(16)
        .gelu()
        .layer_norm()
        .dense(8)
        .leaky_relu(0.1)
        .dense(3)
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
}

/// `export.py`'s CNN, as a config (see its notes): PyTorch's module numbers again.
fn cnn() -> ModelConfig {
    let conv1 = Conv2dShape::new(3, (8, 8), 6, (3, 3)).padding((1, 1));
    let pool1 = Pool2dShape::new(6, (8, 8), (2, 2));
    let conv2 = Conv2dShape::new(6, (4, 4), 5, (3, 2)).stride((2, 2)).padding((1, 0));
    let pool2 = Pool2dShape::new(5, conv2.out_size(), (2, 1)).stride((1, 1));
    ModelConfig::new(3 * 8 * 8)
        .conv2d(conv1)
        .batch_norm2d(6)
        .relu()
        .max_pool2d(pool1)
        .conv2d_with(conv2, false, Init::PyTorch)
        .layer(Layer::BatchNorm2d(BatchNorm::new(5).eps(1e-3).momentum(0.2)))
        .tanh()
        .avg_pool2d(pool2)
        .flatten()
        .dense(4)
        .log_softmax()
        .loss(Loss::Nll)
}

fn expected(name: &str) -> Vec<f32> {
    expected_in("expected.safetensors", name)
}

fn expected_in(file: &str, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensor = file.tensor(name).unwrap();
    assert_eq!(tensor.dtype(), Dtype::F32);
    tensor.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

#[test]
fn pytorch_state_dicts_load_under_any_prefix_in_any_float_type_and_predict_as_pytorch() {
    let x = expected("x");
    for backend in backends() {
        for (file, want) in [
            ("sequential.safetensors", "y_f32"), // `0.weight`, …: a plain nn.Sequential
            ("model_f16.safetensors", "y_f16"),  // `model.0.weight`, … in f16
            ("net_bf16.safetensors", "y_bf16"),  // `net.0.weight`, … in bf16
            ("sequential_f64.safetensors", "y_f64"), // f64
        ] {
            let mut model = network().build(backend, gpu()).unwrap();
            model.load_checkpoint(fixture(file)).unwrap();
            let got = model.predict(&x).unwrap();
            // PyTorch computed in f64 from the stored weights: what is left is f32 rounding.
            assert_close(&format!("{backend:?} {file}"), &got, &expected(want), 0.0, 1e-5);
        }
    }
}

/// A PyTorch CNN with batch norms (their running statistics and counts trained-looking)
/// loads as saved and predicts as PyTorch does in evaluation mode.
#[test]
fn a_pytorch_cnn_with_batch_norms_predicts_as_pytorch() {
    let x = expected_in("cnn_expected.safetensors", "x");
    for backend in backends() {
        let mut model = cnn().build(backend, gpu()).unwrap();
        model.load_checkpoint(fixture("cnn.safetensors")).unwrap();
        let want = expected_in("cnn_expected.safetensors", "y_eval");
        assert_close(&format!("{backend:?}"), &model.predict(&x).unwrap(), &want, 0.0, 1e-5);
    }
}

/// One training step of that CNN (learning rate 0, so the weights stay) against PyTorch's
/// training-mode forward and backward: the loss, every parameter's gradient, and the batch
/// norms' running statistics and counts after it.
#[test]
fn a_pytorch_cnn_trains_a_step_as_pytorch() {
    let get = |name: &str| expected_in("cnn_expected.safetensors", name);
    let x = get("x");
    let labels: Vec<u32> = get("labels").iter().map(|&l| l as u32).collect();
    for backend in backends() {
        let mut model = cnn().optimizer(Optimizer::Sgd { lr: 0.0 }).build(backend, gpu()).unwrap();
        model.load_checkpoint(fixture("cnn.safetensors")).unwrap();
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        let what = |name: &str| format!("{backend:?} {name}");
        assert_close(&what("loss"), &[model.take_loss().unwrap()], &get("train_loss"), 1e-5, 1e-6);
        for layer in [0, 1, 4, 5, 9] {
            let want = get(&format!("grad.{layer}.weight"));
            assert_close(
                &what(&format!("{layer}.weight")),
                &model.weight_gradients(layer).unwrap(),
                &want,
                1e-4,
                1e-6,
            );
            if layer != 4 {
                let want = get(&format!("grad.{layer}.bias"));
                assert_close(
                    &what(&format!("{layer}.bias")),
                    &model.bias_gradients(layer).unwrap(),
                    &want,
                    1e-4,
                    1e-6,
                );
            }
        }
        let saved = model.save_bytes().unwrap();
        let file = SafeTensors::deserialize(&saved).unwrap();
        for layer in [1, 5] {
            for stat in ["running_mean", "running_var"] {
                let tensor = file.tensor(&format!("layers.{layer}.{stat}")).unwrap();
                let got: Vec<f32> = tensor
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                assert_close(
                    &what(&format!("{layer}.{stat}")),
                    &got,
                    &get(&format!("after.{layer}.{stat}")),
                    1e-5,
                    1e-6,
                );
            }
            let tracked = file.tensor(&format!("layers.{layer}.num_batches_tracked")).unwrap();
            assert_eq!((tracked.dtype(), tracked.shape()), (Dtype::I64, &[][..]));
            let count = get(&format!("after.{layer}.num_batches_tracked"))[0] as i64;
            assert_eq!(i64::from_le_bytes(tracked.data().try_into().unwrap()), count, "{}", what("count"));
        }
    }
}

#[test]
fn a_pytorch_file_has_no_config_to_rebuild_from() {
    for backend in backends() {
        let err = Model::from_checkpoint(fixture("sequential.safetensors"), backend, gpu()).unwrap_err();
        assert!(err.to_string().contains("holds no model config"), "{err}");
    }
}

/// Saved here, rebuilt from the file alone on either backend: the same predictions, no
/// gradients or optimizer state kept, and training refused with a clear error.
#[test]
fn a_saved_model_rebuilds_from_its_file_alone_for_inference() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("trained.safetensors");
    let config = network().dropout(0.0).optimizer(Optimizer::Adam { lr: 0.01 }).seed(3);
    let (x, labels) = (random(6 * 4, 1), [0, 1, 2, 0, 1, 2]);
    for backend in backends() {
        let mut trained = config.build(backend, gpu()).unwrap();
        for _ in 0..5 {
            trained.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
        trained.save(&path).unwrap();
        let want = trained.predict(&x).unwrap();
        for target in backends() {
            let mut rebuilt = Model::from_checkpoint(&path, target, gpu()).unwrap();
            assert_eq!(rebuilt.config(), &config, "the config came back whole");
            assert_close(
                &format!("{backend:?} → {target:?}"),
                &rebuilt.predict(&x).unwrap(),
                &want,
                1e-5,
                1e-6,
            );
            let refused =
                [rebuilt.train_step(&x, &Target::Labels(&labels)), rebuilt.weight_gradients(0).map(drop)];
            for err in refused {
                assert!(matches!(err, Err(Error::InferenceOnly { .. })), "{err:?}");
            }
            // And a model of its config, given the file, trains on from it.
            let mut resumed = rebuilt.config().build(target, gpu()).unwrap();
            resumed.load_checkpoint(&path).unwrap();
            resumed.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
    }
    // On the GPU, inference holds a quarter of what Adam's training holds per parameter.
    if let Some(gpu) = gpu() {
        let fresh = wgpu_nn::Gpu::from_device(gpu.device().clone(), gpu.queue().clone()).unwrap();
        let before = fresh.counters().bytes_held;
        let training = config.build_gpu(&fresh).unwrap();
        let trains = fresh.counters().bytes_held - before;
        drop(training);
        let _inference = Model::from_checkpoint(&path, Backend::Gpu, Some(&fresh)).unwrap();
        let infers = fresh.counters().bytes_held - before;
        assert!(infers * 3 < trains, "inference holds {infers} bytes, training {trains}");
    }
}

/// A file without optimizer state (PyTorch's) starts training afresh from its weights: after
/// it, a model that had trained for a while steps exactly as a new model given the same file.
#[test]
fn loading_a_pytorch_file_starts_the_optimizer_afresh() {
    let config = network().optimizer(Optimizer::Adam { lr: 0.01 }).seed(4);
    let (x, labels) = (random(6 * 4, 7), [0, 1, 2, 2, 1, 0]);
    for backend in backends() {
        let mut seasoned = config.build(backend, gpu()).unwrap();
        for _ in 0..10 {
            seasoned.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
        let mut fresh = config.build(backend, gpu()).unwrap();
        for model in [&mut seasoned, &mut fresh] {
            model.load_checkpoint(fixture("sequential.safetensors")).unwrap();
            for _ in 0..3 {
                model.train_step(&x, &Target::Labels(&labels)).unwrap();
            }
        }
        for layer in [0, 2, 4, 5, 7] {
            let (a, b) = (seasoned.weights(layer).unwrap(), fresh.weights(layer).unwrap());
            assert_eq!(a, b, "{backend:?} layer {layer}: zero moments and step 0, as a new model's");
        }
    }
}

/// Writes a safetensors file of f32 tensors (and optional metadata) for the error cases.
fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], metadata: Option<(&str, &str)>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (name.to_string(), TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    let metadata = metadata.map(|(k, v)| [(k.to_string(), v.to_string())].into_iter().collect());
    std::fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn bad_pytorch_files_and_configs_are_errors_naming_file_and_tensor() {
    let folder = tempfile::tempdir().unwrap();
    let small = ModelConfig::new(2).dense(3).relu().dense(1);
    let dense = |prefix: &str| {
        vec![
            (format!("{prefix}0.weight"), Dtype::F32, vec![3, 2], f32s(&[0.1; 6])),
            (format!("{prefix}0.bias"), Dtype::F32, vec![3], f32s(&[0.0; 3])),
            (format!("{prefix}2.weight"), Dtype::F32, vec![1, 3], f32s(&[0.2; 3])),
            (format!("{prefix}2.bias"), Dtype::F32, vec![1], f32s(&[0.0])),
        ]
    };
    let case =
        |name: &str, tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, metadata: Option<(&str, &str)>| {
            let path = folder.path().join(name);
            let tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> =
                tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
            write(&path, &tensors, metadata);
            path
        };
    let two_prefixes = case("two.safetensors", [dense("model."), dense("net.")].concat(), None);
    let mut extra = dense("");
    extra.push(("4.weight".into(), Dtype::F32, vec![1, 1], f32s(&[1.0])));
    let extra = case("extra.safetensors", extra, None);
    let mut huge = dense("");
    huge[0] = (
        "0.weight".into(),
        Dtype::F64,
        vec![3, 2],
        [1e300f64; 6].iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let huge = case("huge.safetensors", huge, None);
    let mixed = case("mixed.safetensors", [dense("layers."), dense("model.")].concat(), None);
    let mut partial = dense("layers.");
    partial.push(("optimizer.layers.0.weight.m".into(), Dtype::F32, vec![3, 2], f32s(&[0.0; 6])));
    let partial = case("partial.safetensors", partial, None);
    let mut nan = dense("model.");
    nan[1] = ("model.0.bias".into(), Dtype::F32, vec![3], f32s(&[0.0, f32::NAN, 0.0]));
    let nan = case("nan.safetensors", nan, None);
    for backend in backends() {
        let mut model = small.clone().optimizer(Optimizer::Adam { lr: 0.1 }).build(backend, gpu()).unwrap();
        let before = model.weights(0).unwrap();
        for (path, problem) in [
            (&two_prefixes, r#"0.weight is under several prefixes (["model.", "net."])"#),
            (&extra, "tensor 4.weight has no place in this model's config"),
            (&huge, "tensor 0.weight value inf at index 0 is not finite as f32"),
            (&nan, "tensor model.0.bias value NaN at index 1 is not finite as f32"),
            (&mixed, r#"0.weight is under several prefixes (["layers.", "model."])"#),
            (&partial, "has 1 of the 8 optimizer state tensors this model needs: all or none"),
        ] {
            match model.load_checkpoint(path) {
                Err(Error::Data { file, problem: got }) => {
                    assert_eq!(file, path.display().to_string());
                    assert!(got.contains(problem), "{backend:?}: {got}");
                }
                other => panic!("{backend:?} {}: {other:?}", path.display()),
            }
            assert_eq!(model.weights(0).unwrap(), before, "a failed load changes nothing");
        }
        // The good tensors under one prefix load.
        model.load_checkpoint(case("good.safetensors", dense("module."), None)).unwrap();
        assert_eq!(model.weights(0).unwrap(), [0.1; 6]);
    }
    // Configs in the metadata that cannot be rebuilt.
    for (json, problem) in [
        ("{not json", "metadata config is not a model config"),
        (
            r#"{"inputs":2,"layers":[],"loss":"mse","optimizer":{"sgd":{"lr":0.1}},"seed":0}"#,
            "its model config: ",
        ),
        (
            r#"{"inputs":2,"layers":[{"dense":{"inputs":2,"outputs":3,"bias":true,"init":"he"}}],"loss":"mse","optimizer":{"sgd":{"lr":0.1}},"seed":0,"extra":1}"#,
            "unknown field `extra`",
        ),
    ] {
        let path = case("config.safetensors", dense("layers."), Some(("config", json)));
        let err = Model::from_checkpoint(&path, Backend::Cpu, None).unwrap_err();
        assert!(matches!(&err, Error::Data { .. }), "{err:?}");
        assert!(err.to_string().contains(problem), "{json}: {err}");
    }
}

/// Leaves a trained model and its predictions where `load_in_pytorch.py` checks that PyTorch
/// loads the file and predicts the same (run by hand: CI has no PyTorch):
/// `python3 tests/fixtures/pytorch/load_in_pytorch.py target/tmp/pytorch-check` (and
/// `…/pytorch-check-cnn`, `…/pytorch-check-rows` for the next tests').
#[test]
fn a_trained_model_is_left_for_the_pytorch_check() {
    let config = network().optimizer(Optimizer::Adam { lr: 0.01 }).seed(11);
    leave_for_pytorch("pytorch-check", &config, &[2, 1, 0, 2, 1, 0, 1], 2);
}

/// The same for a CNN with batch norms, in `target/tmp/pytorch-check-cnn`: its convolutions,
/// pools, flatten and batch norms (running statistics and counts) rebuild in PyTorch from
/// the config alone.
#[test]
fn a_trained_cnn_is_left_for_the_pytorch_check() {
    let config = cnn().optimizer(Optimizer::Adam { lr: 0.01 }).seed(12);
    leave_for_pytorch("pytorch-check-cnn", &config, &[2, 1, 0, 3, 1, 0, 1], 3);
}

/// And a batch norm over plain rows (PyTorch's `BatchNorm1d`), in `…/pytorch-check-rows`.
#[test]
fn a_batch_norm_over_rows_is_left_for_the_pytorch_check() {
    let config = ModelConfig::new(6).batch_norm2d(6).dense(5).relu().dense(3).loss(Loss::SoftmaxCrossEntropy);
    leave_for_pytorch("pytorch-check-rows", &config.seed(13), &[2, 1, 0, 2, 1, 0, 1], 4);
}

/// Trains `config` 20 steps on random samples with `labels`, saves it into `folder` (under
/// the test target's tmp) with its inputs and predictions, and checks that it rebuilds from
/// the file alone with the same predictions (running statistics included).
fn leave_for_pytorch(folder: &str, config: &ModelConfig, labels: &[u32], seed: u64) {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    std::fs::create_dir_all(&folder).unwrap();
    let (rows, inputs, outputs) = (labels.len(), config.inputs(), config.width());
    let x = random(rows * inputs, seed);
    let mut model = config.build_cpu().unwrap();
    for _ in 0..20 {
        model.train_step(&x, &Target::Labels(labels)).unwrap();
    }
    let y = model.predict(&x).unwrap();
    model.save(folder.join("model.safetensors")).unwrap();
    let (xb, yb) = (f32s(&x), f32s(&y));
    write(
        &folder.join("expected.safetensors"),
        &[("x", Dtype::F32, vec![rows, inputs], xb), ("y", Dtype::F32, vec![rows, outputs], yb)],
        None,
    );
    let mut rebuilt = Model::from_checkpoint(folder.join("model.safetensors"), Backend::Cpu, None).unwrap();
    assert_eq!(rebuilt.predict(&x).unwrap(), y, "{folder:?}: the file alone predicts the same");
}
