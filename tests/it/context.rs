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
