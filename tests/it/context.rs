//! Building a `Gpu` from a device the caller already has, and errors wgpu raises inside the
//! crate's error scopes.

use crate::common::gpu;
use wgpu_nn::{Error, Gpu, MatmulForm, wgpu};

fn device_with(limits: wgpu::Limits) -> Option<(wgpu::Device, wgpu::Queue)> {
    crate::common::app_devices(1, limits).pop()
}

#[test]
fn a_gpu_built_on_an_apps_device_runs_kernels() {
    let Some(_) = gpu() else { return };
    let (device, queue) = device_with(wgpu::Limits::default()).expect("a device on the same adapter");
    let gpu = Gpu::from_device(device, queue).unwrap();
    let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], 2, 2).unwrap();
    let b = gpu.upload(&[0.0, 1.0, 1.0, 0.0], 2, 2).unwrap();
    let c = gpu.zeros(2, 2).unwrap();
    gpu.run(&[&gpu.kernels().matmul_forward(&c, &a, &b, None, MatmulForm::AB).unwrap()]).unwrap();
    assert_eq!(gpu.read(&c).unwrap(), [2.0, 1.0, 4.0, 3.0]);
    // The limits are the device's, not the adapter's.
    assert_eq!(
        gpu.limits().max_storage_buffer_binding_size,
        wgpu::Limits::default().max_storage_buffer_binding_size
    );
}

#[test]
fn kernels_a_device_cannot_hold_are_an_error_from_the_error_scope() {
    let Some(_) = gpu() else { return };
    // WebGL2-level limits allow no storage buffers, so no kernel's bind group layout is valid.
    let (device, queue) = device_with(wgpu::Limits::downlevel_webgl2_defaults()).expect("a device");
    match Gpu::from_device(device, queue) {
        Err(Error::Gpu { context, message }) => {
            assert_eq!(context, "building the kernels");
            assert!(!message.is_empty());
        }
        other => panic!("expected a GPU error, got {other:?}"),
    }
}

/// A model's first plan leaves its new pipelines to rayon's pool while it binds (natively,
/// off GL): they are the pipelines made one at a time, so training is the same to the bit.
/// Each run has a fresh context, whose pipelines are all new.
#[test]
fn pipelines_made_on_the_pool_train_as_those_made_at_once() {
    let Some(_) = gpu() else { return };
    use wgpu_nn::model::{ModelConfig, Optimizer, Target};
    let x: Vec<f32> = (0..16 * 784).map(|i| (i % 97) as f32 / 97.0).collect();
    let labels: Vec<u32> = (0..16).map(|i| i % 10).collect();
    let train = || {
        let (device, queue) = device_with(wgpu::Limits::default()).expect("a device on the same adapter");
        let gpu = Gpu::from_device(device, queue).unwrap();
        let mut model = ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.01 }).seed(5).build_gpu(&gpu).unwrap();
        for _ in 0..3 {
            model.train_step(&x, &Target::Labels(&labels)).unwrap();
        }
        let loss = model.take_loss().unwrap();
        let layers = model.config().layers().len();
        let params: Vec<Vec<f32>> = (0..layers)
            .filter_map(|layer| model.weights(layer).ok().map(|w| [w, model.bias(layer).unwrap()].concat()))
            .collect();
        assert_eq!(params.len(), 3, "the three dense layers");
        (loss, params)
    };
    let on_the_pool = train();
    let at_once = wgpu_nn::gpu::with_pipelines_made_at_once(train);
    assert!(on_the_pool.0.is_finite());
    assert!(on_the_pool == at_once, "losses {} and {}", on_the_pool.0, at_once.0);
}
