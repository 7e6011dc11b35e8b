//! The `bench` example's workloads where that example cannot go: one harness for the browser
//! (WebGPU, and the CPU backend compiled to wasm) and the native adapters, so their figures
//! sit side by side in BENCHMARKS.md. Portable, and `#[ignore]`d: timings are not tests.
//!
//! ```sh
//! cargo test --release --test it bench -- --ignored --nocapture        # native, one adapter
//! cargo test --target wasm32-unknown-unknown --release --test it bench -- --include-ignored
//! ```
//!
//! Each figure is the median of repeats, a GPU one submit plus the awaited wait. Training is
//! the peers' upload protocol of `examples/bench.rs` (8 batches cycled, each step uploading its
//! batch, a block ended by reading its loss), on its "lesson" workload (the MNIST MLP with
//! dropout 0.2 and Adam) at batch 64. One JSON line per figure, on stderr or the console.

use web_time::Instant;
use wgpu_nn::model::{Backend, ModelConfig, Optimizer, Scalar, Target};
use wgpu_nn::{Gpu, MatmulForm};

use crate::common::{log, random, shared_gpu};

/// Square products, small enough for a software GPU in a page (512³ is about a second).
const SQUARES: [usize; 3] = [64, 128, 256];
const BATCH: usize = 64;

/// The median seconds of `repeats` runs of `once` after one warm-up run.
async fn median(repeats: usize, mut once: impl AsyncFnMut()) -> f64 {
    once().await;
    let mut times = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        once().await;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn report(gpu: &Gpu, backend: Backend, workload: &str, value: f64, unit: &str) {
    let target = if cfg!(target_arch = "wasm32") { "wasm32" } else { "native" };
    let adapter = match backend {
        Backend::Gpu => gpu.adapter_name(),
        _ => "the CPU backend".into(),
    };
    log(&format!(
        r#"{{"bench":"{workload}","target":"{target}","backend":"{backend:?}","adapter":"{adapter}","value":{value:.3},"unit":"{unit}"}}"#
    ));
}

async fn matmul(gpu: &Gpu, n: usize) {
    let (a, b) = (random(n * n, 1), random(n * n, 2));
    let flops = 2.0 * (n * n * n) as f64;
    let (a_g, b_g, c_g) =
        (gpu.upload(&a, n, n).unwrap(), gpu.upload(&b, n, n).unwrap(), gpu.zeros(n, n).unwrap());
    let product = gpu.kernels().matmul_forward(&c_g, &a_g, &b_g, None, MatmulForm::AB).unwrap();
    let seconds = median(5, async || {
        gpu.run(&[&product]).unwrap();
        gpu.wait_async().await.unwrap();
    })
    .await;
    report(gpu, Backend::Gpu, &format!("matmul {n}^3"), flops / seconds / 1e9, "GFLOP/s");
    let mut c = vec![0.0; n * n];
    let seconds = median(5, async || {
        // The CPU backend's product (gemm for A·B), as `bench` times it.
        <f32 as Scalar>::matmul(&mut c, &a, &b, None, n, n, n, MatmulForm::AB).unwrap();
    })
    .await;
    report(gpu, Backend::Cpu, &format!("matmul {n}^3"), flops / seconds / 1e9, "GFLOP/s");
}

async fn lesson(gpu: &Gpu, backend: Backend) {
    let mut model = ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.001 }).build(backend, Some(gpu)).unwrap();
    let batches: Vec<(Vec<f32>, Vec<u32>)> = (0..8)
        .map(|i| {
            let x = random(BATCH * 784, 11 * i as u64).iter().map(|v| v.abs()).collect();
            (x, (0..BATCH).map(|j| ((i * 7 + j * 3) % 10) as u32).collect())
        })
        .collect();
    let steps = 10;
    let mut step = 0;
    let seconds = median(3, async || {
        for _ in 0..steps {
            let (x, labels) = &batches[step % batches.len()];
            step += 1;
            model.train_step(x, &Target::Labels(labels)).unwrap();
        }
        model.take_loss_async().await.unwrap();
    })
    .await;
    report(
        gpu,
        backend,
        &format!("lesson training, batch {BATCH}"),
        (steps * BATCH) as f64 / seconds,
        "samples/s",
    );
}

portable! {
    #[ignore = "timings, not a test: run with --ignored (see the top of tests/it/bench.rs)"]
    async fn bench() {
        let gpu = shared_gpu().await.expect("an adapter to time");
        for n in SQUARES {
            matmul(gpu, n).await;
        }
        for backend in [Backend::Gpu, Backend::Cpu] {
            lesson(gpu, backend).await;
        }
    }
}
