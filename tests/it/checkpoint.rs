//! Checkpoints: safetensors files that restore a model exactly, resume its training from the
//! same point, and fail cleanly.

use std::path::PathBuf;

use crate::common::{assert_close, backends, gpu, random, random_labels};
use wgpu_nn::Error;
use wgpu_nn::model::{Backend, Model, ModelConfig, Optimizer, Target};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-nn-checkpoint-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn config(seed: u64) -> ModelConfig {
    ModelConfig::new(5)
        .dense(7)
        .relu()
        .dropout(0.3)
        .dense(4)
        .log_softmax()
        .loss(wgpu_nn::model::Loss::Nll)
        .optimizer(Optimizer::Adam { lr: 0.01 })
        .seed(seed)
}

fn build(backend: Backend, seed: u64) -> Model {
    config(seed).build(backend, gpu()).unwrap()
}

fn step(model: &mut Model, i: u64) -> f32 {
    let (x, labels) = (random(8 * 5, 100 + i), random_labels(8, 4, 200 + i));
    model.train_step(&x, &Target::Labels(&labels)).unwrap();
    model.take_loss().unwrap()
}

#[test]
fn a_saved_model_loads_with_identical_predictions_on_either_backend() {
    let x = random(3 * 5, 1);
    for backend in backends() {
        let mut model = build(backend, 1);
        (0..3).for_each(|i| {
            step(&mut model, i);
        });
        let path = scratch(&format!("saved-{backend:?}.safetensors"));
        model.save(&path).unwrap();
        for target in backends() {
            let mut fresh = build(target, 99);
            fresh.load_checkpoint(&path).unwrap();
            let (want, got) = (model.predict(&x).unwrap(), fresh.predict(&x).unwrap());
            if target == backend {
                assert_eq!(got, want, "{backend:?} → {target:?}: the same weights predict the same");
            } else {
                assert_close(&format!("{backend:?} → {target:?}"), &got, &want, 1e-5, 1e-6);
            }
        }
    }
}

#[test]
fn training_resumes_from_the_same_point() {
    for backend in backends() {
        let mut model = build(backend, 2);
        (0..4).for_each(|i| {
            step(&mut model, i);
        });
        let path = scratch(&format!("resume-{backend:?}.safetensors"));
        model.save(&path).unwrap();
        let went_on: Vec<f32> = (4..8).map(|i| step(&mut model, i)).collect();

        // The same config (dropout masks depend on the seed as well as the step), but a model
        // that has since trained on other data: its weights, moments and counters all differ.
        let mut resumed = build(backend, 2);
        (50..53).for_each(|i| {
            step(&mut resumed, i);
        });
        resumed.load_checkpoint(&path).unwrap();
        let resumed_losses: Vec<f32> = (4..8).map(|i| step(&mut resumed, i)).collect();
        // Weights, Adam's moments and step count, and dropout's step all come back: the same
        // arithmetic follows, bit for bit.
        assert_eq!(resumed_losses, went_on, "{backend:?}");
    }
}

#[test]
fn the_file_is_plain_safetensors_with_pytorch_names() {
    let mut model = build(Backend::Cpu, 3);
    step(&mut model, 0);
    let path = scratch("names.safetensors");
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["layers.0.weight"]["dtype"], "F32");
    assert_eq!(header["layers.0.weight"]["shape"], serde_json::json!([7, 5]));
    assert_eq!(header["layers.3.bias"]["shape"], serde_json::json!([4]));
    assert_eq!(header["optimizer.layers.3.weight.m"]["shape"], serde_json::json!([4, 7]));
    assert_eq!(header["__metadata__"]["steps"], "1");
    assert_eq!(header["__metadata__"]["format"], "wgpu-nn 1");
}

#[test]
fn bad_checkpoints_are_errors_that_leave_the_model_unchanged() {
    let x = random(2 * 5, 4);
    let mut source = build(Backend::Cpu, 4);
    let want = source.predict(&x).unwrap();
    let good = scratch("good.safetensors");
    source.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = scratch("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = scratch("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let other_shape = scratch("other-shape.safetensors");
    ModelConfig::new(5)
        .dense(6)
        .relu()
        .dropout(0.3)
        .dense(4)
        .log_softmax()
        .loss(wgpu_nn::model::Loss::Nll)
        .build_cpu()
        .unwrap()
        .save(&other_shape)
        .unwrap();
    let missing = scratch("missing.safetensors");
    // Right names and shapes, a dtype that is not a float: layers.0.weight as i64.
    let wrong_dtype = scratch("wrong-dtype.safetensors");
    let integers = vec![0u8; 7 * 5 * 8];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![7, 5], &integers).unwrap();
    std::fs::write(&wrong_dtype, safetensors::serialize([("layers.0.weight", view)], None).unwrap()).unwrap();
    // A header that claims 2^64 − 1 bytes: refused before anything is allocated for it.
    let absurd = scratch("absurd-header.safetensors");
    std::fs::write(&absurd, [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat()).unwrap();

    for backend in backends() {
        let mut model = build(backend, 5);
        let before = model.predict(&x).unwrap();
        for (path, problem) in [
            (&truncated, "not a safetensors file"),
            (&garbage, "not a safetensors file"),
            (&other_shape, "tensor layers.0.weight is F32 [6, 5], expected [7, 5]"),
            (&missing, "cannot read"),
            (&wrong_dtype, "tensor layers.0.weight is I64 [7, 5], expected F32, F16, BF16 or F64"),
            (&absurd, "not a safetensors file"),
        ] {
            match model.load_checkpoint(path) {
                Err(Error::Data { file, problem: got }) => {
                    assert_eq!(file, path.display().to_string());
                    assert!(got.contains(problem), "{backend:?} {}: {got}", path.display());
                }
                other => panic!("{backend:?} {}: expected a data error, got {other:?}", path.display()),
            }
            assert_eq!(model.predict(&x).unwrap(), before, "{backend:?}: a failed load changes nothing");
        }
        // The same checks from memory, and a good checkpoint from memory loads.
        let err = model.load_checkpoint_bytes(&bytes[..bytes.len() / 2], "embedded").unwrap_err();
        assert!(err.to_string().starts_with("embedded: not a safetensors file"), "{err}");
        model.load_checkpoint_bytes(&bytes, "embedded").unwrap();
        assert_close("loaded from memory", &model.predict(&x).unwrap(), &want, 1e-5, 1e-6);
    }
}

/// A save that fails changes nothing: not the thing at the path, and no temporary file is
/// left beside it. (Old checkpoints cannot be torn by a failure midway because the only
/// change to them is the final rename; the threads test below races that rename.)
#[test]
fn a_failed_save_changes_nothing_and_says_where() {
    let mut model = build(Backend::Cpu, 6);
    let folder = tempfile::tempdir().unwrap();
    // The rename fails: the path is a folder with a file in it.
    let path = folder.path().join("taken.safetensors");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), b"keep me").unwrap();
    step(&mut model, 0);
    let err = model.save(&path).unwrap_err();
    assert!(
        err.to_string().contains("cannot write") && err.to_string().contains("taken.safetensors"),
        "{err}"
    );
    assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"keep me");
    let names: Vec<_> = std::fs::read_dir(folder.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["taken.safetensors"], "no temporary file is left");
    // The temporary file cannot be made: the folder is a file.
    let err = model.save(path.join("inside").join("x.safetensors")).unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
    // And a later save to a free path works.
    std::fs::remove_dir_all(&path).unwrap();
    model.save(&path).unwrap();
    build(Backend::Cpu, 7).load_checkpoint(&path).unwrap();
}

/// A layer norm's gain and bias are checkpointed as PyTorch's `LayerNorm` names them, with
/// their optimizer state, and training resumes from them exactly.
#[test]
fn layer_norm_parameters_are_checkpointed_with_pytorch_names() {
    let config = ModelConfig::new(5)
        .dense(6)
        .layer_norm()
        .gelu()
        .dense(4)
        .loss(wgpu_nn::model::Loss::SoftmaxCrossEntropy)
        .optimizer(Optimizer::Adam { lr: 0.05 })
        .seed(8);
    for backend in backends() {
        let mut model = config.build(backend, gpu()).unwrap();
        (0..3).for_each(|i| {
            step(&mut model, i);
        });
        let path = scratch(&format!("layer-norm-{backend:?}.safetensors"));
        model.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, shape) in [
            ("layers.1.weight", vec![6]),
            ("layers.1.bias", vec![6]),
            ("optimizer.layers.1.weight.m", vec![6]),
            ("optimizer.layers.1.bias.v", vec![6]),
            ("layers.3.weight", vec![4, 6]),
        ] {
            assert_eq!(file.tensor(name).unwrap().shape(), shape.as_slice(), "{name}");
        }
        // Three Adam steps moved the gain off its start at 1.
        let gain = model.weights(1).unwrap();
        assert!(gain.iter().any(|&g| (g - 1.0).abs() > 1e-3), "{gain:?}");
        let went_on: Vec<f32> = (3..6).map(|i| step(&mut model, i)).collect();
        let mut resumed = config.build(backend, gpu()).unwrap();
        resumed.load_checkpoint(&path).unwrap();
        let resumed_losses: Vec<f32> = (3..6).map(|i| step(&mut resumed, i)).collect();
        assert_eq!(resumed_losses, went_on, "{backend:?}");
    }
}

/// Saves race: eight threads save eight different models to one path, over and over, while
/// each loads whatever is there. Every load sees one whole model (never a torn mix), the
/// last save wins, and no temporary file is left behind.
#[test]
fn saves_from_many_threads_at_once_never_tear_a_file() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("shared.safetensors");
    let models: Vec<Model> = (0..8).map(|seed| build(Backend::Cpu, 300 + seed)).collect();
    let weights: Vec<Vec<f32>> = models.iter().map(|m| m.weights(0).unwrap()).collect();
    std::thread::scope(|s| {
        for model in models {
            let (path, weights) = (&path, &weights);
            s.spawn(move || {
                let mut reader = build(Backend::Cpu, 0);
                for _ in 0..25 {
                    model.save(path).unwrap();
                    reader.load_checkpoint(path).unwrap();
                    let seen = reader.weights(0).unwrap();
                    assert!(weights.contains(&seen), "a load saw weights no model has");
                }
            });
        }
    });
    let mut last = build(Backend::Cpu, 0);
    last.load_checkpoint(&path).unwrap();
    assert!(weights.contains(&last.weights(0).unwrap()));
    let names: Vec<_> = std::fs::read_dir(folder.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["shared.safetensors"], "no temporary file is left");
}

#[cfg(unix)]
#[test]
fn a_save_keeps_the_files_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let folder = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // What fs::write gives a new file under this process's umask.
    let probe = folder.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let path = folder.path().join("kept.safetensors");
    let model = build(Backend::Cpu, 5);
    model.save(&path).unwrap();
    assert_eq!(mode(&path), mode(&probe), "a new checkpoint gets what fs::write would give it");
    for kept in [0o600, 0o664, 0o640] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(kept)).unwrap();
        model.save(&path).unwrap();
        assert_eq!(mode(&path), kept, "an overwritten one keeps the owner's choice");
    }
}

/// A convolution's weights are saved as PyTorch's `(out, in, kh, kw)` and load back into a
/// model that predicts the same, on either backend.
#[test]
fn convolution_weights_are_checkpointed_as_pytorch_shapes_them() {
    let config = crate::training::convolutional(Optimizer::Adam { lr: 0.01 });
    let x = random(2 * config.width_at(0), 6);
    let labels = random_labels(2, config.width(), 7);
    for backend in backends() {
        let mut source = config.build(backend, gpu()).unwrap();
        source.train_step(&x, &Target::Labels(&labels)).unwrap();
        let want = source.predict(&x).unwrap();
        let path = scratch(&format!("conv-{backend:?}.safetensors"));
        source.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        assert_eq!(header["layers.0.weight"]["shape"], serde_json::json!([4, 1, 3, 3]));
        assert_eq!(header["layers.0.bias"]["shape"], serde_json::json!([4]));
        assert_eq!(header["layers.2.weight"]["shape"], serde_json::json!([3, 4, 3, 2]));
        assert!(header.get("layers.2.bias").is_none(), "the second convolution has no bias");
        assert_eq!(header["optimizer.layers.2.weight.m"]["shape"], serde_json::json!([3, 4, 3, 2]));
        let mut loaded = config.clone().seed(99).build(backend, gpu()).unwrap();
        loaded.load_checkpoint(&path).unwrap();
        assert_close(&format!("{backend:?} predictions"), &loaded.predict(&x).unwrap(), &want, 0.0, 0.0);
    }
}

/// A batch norm's `num_batches_tracked` counts training steps across saves and loads (a
/// file's count plus the steps since), is refused when it is no count, and is 0 when a file
/// has none (PyTorch's before 0.4.1).
#[test]
fn batch_norm_counts_go_on_from_the_file_and_are_checked() {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let config = ModelConfig::image(2, 3, 3)
        .batch_norm()
        .flatten()
        .dense(2)
        .loss(wgpu_nn::model::Loss::SoftmaxCrossEntropy);
    let (x, labels) = (random(4 * 18, 1), [0, 1, 1, 0]);
    let count = |bytes: &[u8]| {
        let file = SafeTensors::deserialize(bytes).unwrap();
        let t = file.tensor("layers.0.num_batches_tracked").unwrap();
        (t.dtype() == Dtype::I64).then(|| i64::from_le_bytes(t.data().try_into().unwrap()))
    };
    // The file with its count replaced (None: without one).
    let with_count = |bytes: &[u8], value: Option<(Dtype, Vec<usize>, Vec<u8>)>| {
        let file = SafeTensors::deserialize(bytes).unwrap();
        let (_, metadata) = SafeTensors::read_metadata(bytes).unwrap();
        let mut tensors: Vec<(String, TensorView)> =
            file.tensors().into_iter().filter(|(name, _)| name != "layers.0.num_batches_tracked").collect();
        if let Some((dtype, shape, data)) = &value {
            let view = TensorView::new(*dtype, shape.clone(), data).unwrap();
            tensors.push(("layers.0.num_batches_tracked".into(), view));
        }
        safetensors::serialize(tensors, metadata.metadata().clone()).unwrap()
    };
    for backend in backends() {
        let mut model = config.build(backend, gpu()).unwrap();
        for _ in 0..3 {
            model.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
        let saved = model.save_bytes().unwrap();
        assert_eq!(count(&saved), Some(3), "{backend:?}: three training steps");
        // A file that says 40 batches, 3 of them this run's steps: two more steps make 42.
        let forty = with_count(&saved, Some((Dtype::I64, vec![], 40i64.to_le_bytes().to_vec())));
        let mut resumed = config.build(backend, gpu()).unwrap();
        resumed.load_checkpoint_bytes(&forty, "forty").unwrap();
        for _ in 0..2 {
            resumed.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
        assert_eq!(count(&resumed.save_bytes().unwrap()), Some(42), "{backend:?}");
        let missing = with_count(&saved, None);
        let mut fresh = config.build(backend, gpu()).unwrap();
        fresh.load_checkpoint_bytes(&missing, "missing").unwrap();
        assert_eq!(count(&fresh.save_bytes().unwrap()), Some(0), "{backend:?}: 3 steps less the file's 3");
        for (what, bad) in [
            ("negative", (Dtype::I64, vec![], (-1i64).to_le_bytes().to_vec())),
            ("fractional", (Dtype::F32, vec![], 2.5f32.to_le_bytes().to_vec())),
            ("not a scalar", (Dtype::I64, vec![2], [1i64.to_le_bytes(), 2i64.to_le_bytes()].concat())),
            ("a string of bytes", (Dtype::U8, vec![], vec![7])),
        ] {
            let err = fresh.load_checkpoint_bytes(&with_count(&saved, Some(bad)), "bad").unwrap_err();
            assert!(matches!(err, Error::Data { .. }), "{backend:?} {what}: {err}");
            assert!(err.to_string().contains("num_batches_tracked"), "{what}: {err}");
        }
    }
}
