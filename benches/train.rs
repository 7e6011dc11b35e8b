//! One training step of the MNIST MLP (784-128-64-10, ReLU, dropout 0.2, log-softmax + NLL,
//! Adam) at batch 1 to 1024, on the GPU and on the CPU backend, in samples/s.
//!
//! A GPU iteration is `train_step` (batch upload, one submit) plus the wait for completion,
//! so it is what a user's loop gets; `cargo run --release --example bench` also times the
//! resident-data path (`train_epoch`, 16 steps a submit). Figures in BENCHMARKS.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu_nn::Gpu;
use wgpu_nn::model::{Backend, ModelConfig, Optimizer, Target};

const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];

fn train(c: &mut Criterion) {
    let gpu = Gpu::new().map_err(|e| eprintln!("no GPU, timing the CPU only: {e}")).ok();
    let (train, _) = wgpu_nn::data::bundled_mnist().expect("the bundled digits");
    let mut group = c.benchmark_group("mnist_mlp_train_step");
    group.sample_size(10);
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        let x = &train.inputs()[..batch * 784];
        let labels = &train.labels().expect("labelled digits")[..batch];
        let backends = if gpu.is_some() { vec![Backend::Gpu, Backend::Cpu] } else { vec![Backend::Cpu] };
        for backend in backends {
            let config = ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.001 });
            let mut model = config.build(backend, gpu.as_ref()).unwrap();
            model.train_step(x, &Target::Labels(labels)).unwrap(); // builds the batch's buffers
            let name = if backend == Backend::Gpu { "gpu" } else { "cpu" };
            group.bench_function(BenchmarkId::new(name, batch), |bench| {
                bench.iter(|| {
                    model.train_step(x, &Target::Labels(labels)).unwrap();
                    if let Some(gpu) = &gpu {
                        gpu.wait().unwrap();
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, train);
criterion_main!(benches);
