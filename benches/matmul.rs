//! Matrix-product throughput in GFLOP/s: the GPU kernels, the CPU backend's product
//! (`gemm` for this form, big products in bands across the cores), and the plain-loop CPU
//! reference the tests trust.
//!
//! Each GPU iteration is what a user waits for: record, submit, and wait for completion.
//! `cargo bench --bench matmul`; BENCHMARKS.md records the figures.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu_nn::model::Scalar;
use wgpu_nn::{Gpu, MatmulForm, cpu};

/// Square sizes, and the MNIST MLP's layer shapes (batch × in · in × out).
const SHAPES: [(usize, usize, usize); 7] = [
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (64, 784, 128),
    (256, 784, 128),
    (256, 128, 64),
];

/// The plain-loop reference needs ~35 s for 2048³: it is timed up to this many FLOPs.
const CPU_REFERENCE_MAX_FLOP: usize = 2 * 1024 * 1024 * 1024;

fn values(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

fn matmul(c: &mut Criterion) {
    let gpu = match Gpu::new() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("no GPU, timing the CPU only: {e}");
            None
        }
    };
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for (m, k, n) in SHAPES {
        let flop = 2 * m * k * n;
        group.throughput(Throughput::Elements(flop as u64));
        let id = format!("{m}x{k}x{n}");
        let (a, b) = (values(m * k), values(k * n));
        if let Some(gpu) = &gpu {
            let (a_g, b_g, c_g) =
                (gpu.upload(&a, m, k).unwrap(), gpu.upload(&b, k, n).unwrap(), gpu.zeros(m, n).unwrap());
            let product = gpu.kernels().matmul_forward(&c_g, &a_g, &b_g, None, MatmulForm::AB).unwrap();
            group.bench_function(BenchmarkId::new("gpu", &id), |bench| {
                bench.iter(|| {
                    gpu.run(&[&product]).unwrap();
                    gpu.wait().unwrap();
                })
            });
        }
        let mut out = vec![0.0; m * n];
        group.bench_function(BenchmarkId::new("cpu_backend", &id), |bench| {
            bench.iter(|| f32::matmul(&mut out, &a, &b, None, m, k, n, MatmulForm::AB).unwrap())
        });
        if flop <= CPU_REFERENCE_MAX_FLOP {
            group.bench_function(BenchmarkId::new("cpu_reference", &id), |bench| {
                bench.iter(|| cpu::matmul_forward(&mut out, &a, &b, None, m, k, n, MatmulForm::AB).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
