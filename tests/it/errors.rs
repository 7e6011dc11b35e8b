//! Bad input comes back as an `Error` naming the problem, never a panic.

use crate::common::gpu;
use wgpu_nn::{Error, MatmulForm, cpu};

#[test]
fn cpu_reference_rejects_wrong_lengths_and_labels() {
    let mut out = vec![0.0f32; 6];
    let err = cpu::matmul_forward(&mut out, &[0.0; 6], &[0.0; 5], None, 2, 3, 3, MatmulForm::AB).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "matmul A·B", .. }), "{err}");
    assert!(err.to_string().contains("B of 3x3"), "{err}");

    let mut losses = vec![0.0f32; 2];
    let err = cpu::softmax_cross_entropy_forward(&mut losses, &[0.0; 6], &[0, 3], 2, 3).unwrap_err();
    assert!(err.to_string().contains("label 3 at row 1"), "{err}");

    let err = cpu::relu_forward(&mut [0.0f32; 2], &[1.0; 3]).unwrap_err();
    assert!(err.to_string().contains("relu_forward"), "{err}");
}

#[test]
fn gpu_ops_reject_mismatched_shapes() {
    let Some(gpu) = gpu() else { return };
    let (a, b, c) = (gpu.zeros(2, 3).unwrap(), gpu.zeros(4, 5).unwrap(), gpu.zeros(2, 5).unwrap());
    let err = gpu.kernels().matmul_forward(&c, &a, &b, None, MatmulForm::AB).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("matmul A·B") && message.contains("A 2x3, B 4x5"), "{message}");

    let b = gpu.zeros(3, 5).unwrap();
    let wrong_out = gpu.zeros(5, 2).unwrap();
    let err = gpu.kernels().matmul_forward(&wrong_out, &a, &b, None, MatmulForm::AB).unwrap_err();
    assert!(err.to_string().contains("output of 2x5"), "{err}");

    let wrong_bias = gpu.zeros(1, 4).unwrap();
    let err = gpu.kernels().matmul_forward(&c, &a, &b, Some(&wrong_bias), MatmulForm::AB).unwrap_err();
    assert!(err.to_string().contains("bias of 1x5"), "{err}");

    let err = gpu.kernels().relu_backward(&a, &a, &c).unwrap_err();
    assert!(err.to_string().contains("relu_backward"), "{err}");

    let err = gpu.kernels().relu_forward(&a, &a).unwrap_err();
    assert!(err.to_string().contains("in-place"), "{err}");
    // Named as the call made, not the entry point every activation shares.
    assert!(matches!(err, wgpu_nn::Error::Shape { op: "relu_forward", .. }), "{err}");
    let err =
        gpu.kernels().value_loss_forward(wgpu_nn::model::Loss::Huber { delta: 1.0 }, &a, &a, &a).unwrap_err();
    assert!(matches!(err, wgpu_nn::Error::Shape { op: "huber_forward", .. }), "{err}");
    let (square, other) = (gpu.zeros(3, 3).unwrap(), gpu.zeros(3, 3).unwrap());
    let err = gpu.kernels().matmul_forward(&square, &square, &other, None, MatmulForm::AB).unwrap_err();
    assert!(err.to_string().contains("in-place"), "{err}");

    let labels = gpu.upload_labels(&[0, 1, 2], 3).unwrap();
    let losses = gpu.zeros(2, 1).unwrap();
    let err = gpu.kernels().softmax_cross_entropy_forward(&losses, &a, &labels).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
}

#[test]
fn gpu_rejects_empty_too_large_and_out_of_range_input() {
    let Some(gpu) = gpu() else { return };
    assert!(matches!(gpu.zeros(0, 3), Err(Error::Shape { .. })));
    assert!(matches!(gpu.upload(&[1.0; 5], 2, 3), Err(Error::Shape { .. })));

    let err = gpu.zeros(1 << 20, 1 << 14).unwrap_err(); // 64 GiB
    match &err {
        Error::BufferTooLarge { size, limit, limit_name, .. } => {
            assert_eq!(*size, 1 << 36);
            assert!(*limit < *size);
            assert!(limit_name.starts_with("max_"), "{limit_name}");
        }
        other => panic!("expected BufferTooLarge, got {other}"),
    }
    assert!(err.to_string().contains("68719476736 bytes"), "{err}");

    let err = gpu.upload_labels(&[0, 9, 10], 10).unwrap_err();
    assert!(err.to_string().contains("label 10 at row 2"), "{err}");

    let wide = gpu.zeros(1, wgpu_nn::gpu::MAX_SOFTMAX_COLS + 1).unwrap();
    let err = gpu.kernels().softmax_forward(&wide, &wide).unwrap_err();
    assert!(err.to_string().contains("rows of at most"), "{err}");
}

#[test]
fn a_tensor_from_another_device_is_an_error_not_a_panic() {
    let Some(gpu) = gpu() else { return };
    let Ok(other) = wgpu_nn::Gpu::new() else { return };
    let (a, b, c) = (other.zeros(4, 4).unwrap(), gpu.zeros(4, 4).unwrap(), gpu.zeros(4, 4).unwrap());
    let err = gpu.kernels().matmul_forward(&c, &a, &b, None, MatmulForm::AB).unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert!(err.to_string().contains("another Gpu"), "{err}");
    assert!(matches!(gpu.read(&a), Err(Error::Gpu { .. })));
}
