//! Element-wise activations and softmax, GPU against the CPU, in bytes moved per second
//! (each value read once and written once: 8 bytes an element). A GPU iteration is one
//! submit and the wait for it.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu_nn::{Dispatch, Gpu, GpuTensor, cpu};

/// Rows × columns: 1M values, and a batch of MNIST-sized rows for softmax.
const SHAPES: [(usize, usize); 2] = [(4096, 256), (1024, 10)];

type CpuOp = fn(&mut [f32], &[f32], usize, usize);

fn ops(c: &mut Criterion) {
    let gpu = Gpu::new().map_err(|e| eprintln!("no GPU, timing the CPU only: {e}")).ok();
    let mut group = c.benchmark_group("ops");
    group.sample_size(20);
    let cpu_ops: [(&str, CpuOp); 4] = [
        ("relu", |out, x, _, _| cpu::relu_forward(out, x).unwrap()),
        ("sigmoid", |out, x, _, _| cpu::sigmoid_forward(out, x).unwrap()),
        ("tanh", |out, x, _, _| cpu::tanh_forward(out, x).unwrap()),
        ("softmax", |out, x, rows, cols| cpu::softmax_forward(out, x, rows, cols).unwrap()),
    ];
    for (rows, cols) in SHAPES {
        let len = rows * cols;
        group.throughput(Throughput::Bytes(8 * len as u64));
        let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
        for (name, cpu_op) in cpu_ops {
            let id = format!("{name}/{rows}x{cols}");
            if let Some(gpu) = &gpu {
                let (x_g, out_g) = (gpu.upload(&x, rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
                let op = bind(gpu, name, &out_g, &x_g);
                group.bench_function(BenchmarkId::new("gpu", &id), |bench| {
                    bench.iter(|| {
                        gpu.run(&[&op]).unwrap();
                        gpu.wait().unwrap();
                    })
                });
            }
            let mut out = vec![0.0; len];
            group.bench_function(BenchmarkId::new("cpu", &id), |bench| {
                bench.iter(|| cpu_op(&mut out, &x, rows, cols))
            });
        }
    }
    group.finish();
}

fn bind(gpu: &Gpu, name: &str, out: &GpuTensor, x: &GpuTensor) -> Dispatch {
    match name {
        "relu" => gpu.kernels().relu_forward(out, x),
        "sigmoid" => gpu.kernels().sigmoid_forward(out, x),
        "tanh" => gpu.kernels().tanh_forward(out, x),
        _ => gpu.kernels().softmax_forward(out, x),
    }
    .unwrap()
}

criterion_group!(benches, ops);
criterion_main!(benches);
