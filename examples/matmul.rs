//! Multiplies two random matrices on the GPU and with the CPU reference, and compares them.
//!
//! `cargo run --release --example matmul -- [M K N] [--backend gpu|cpu] [--json]`
//! (default 512 512 512; `--backend cpu` times the reference alone).

mod cli;

use std::time::Instant;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::json;
use wgpu_nn::{Gpu, MatmulForm, cpu};

/// One matrix product, M×K · K×N, on the GPU and with the CPU reference, compared and timed.
#[derive(clap::Parser)]
#[command(name = "matmul")]
struct Options {
    /// The product's sizes: M K N
    #[arg(num_args = 3, value_names = ["M", "K", "N"], default_values_t = [512, 512, 512])]
    dims: Vec<usize>,
    #[command(flatten)]
    common: cli::Common,
}

fn main() {
    if let Err(e) = run(clap::Parser::parse()) {
        eprintln!("matmul: {e}");
        std::process::exit(1);
    }
}

fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let [m, k, n] = <[usize; 3]>::try_from(o.dims).map_err(|_| "three sizes: M K N")?;
    if m == 0 || k == 0 || n == 0 {
        return Err(format!("sizes must be at least 1, not {m} {k} {n}").into());
    }
    let mut rng = StdRng::seed_from_u64(42);
    let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let gflops = |s: f64| 2.0 * (m * k * n) as f64 / s / 1e9;

    let start = Instant::now();
    let mut on_cpu = vec![0.0f32; m * n];
    cpu::matmul_forward(&mut on_cpu, &a, &b, None, m, k, n, MatmulForm::AB)?;
    let cpu_seconds = start.elapsed().as_secs_f64();

    let gpu = o.common.gpu()?;
    let adapter = gpu.as_ref().map_or_else(|| "cpu".to_string(), Gpu::adapter_name);
    println!("adapter: {adapter}");
    let mut report = json!({ "example": "matmul", "m": m, "k": k, "n": n, "adapter": adapter,
        "cpu_seconds": cpu_seconds, "cpu_gflops": gflops(cpu_seconds) });
    if let Some(gpu) = &gpu {
        let (a_gpu, b_gpu, c_gpu) = (gpu.upload(&a, m, k)?, gpu.upload(&b, k, n)?, gpu.zeros(m, n)?);
        let product = gpu.kernels().matmul_forward(&c_gpu, &a_gpu, &b_gpu, None, MatmulForm::AB)?;
        gpu.run(&[&product])?; // the first run compiles the kernel; time the second
        gpu.wait()?;
        let start = Instant::now();
        gpu.run(&[&product])?;
        gpu.wait()?;
        let gpu_seconds = start.elapsed().as_secs_f64();
        let on_gpu = gpu.read(&c_gpu)?;
        let max_diff = on_gpu.iter().zip(&on_cpu).map(|(g, c)| (g - c).abs()).fold(0.0, f32::max);
        println!("{m}x{k} · {k}x{n}: max |gpu − cpu| = {max_diff:.2e}");
        println!("gpu: {:8.2} ms ({:6.2} GFLOP/s)", gpu_seconds * 1e3, gflops(gpu_seconds));
        report["gpu_seconds"] = json!(gpu_seconds);
        report["gpu_gflops"] = json!(gflops(gpu_seconds));
        report["max_diff"] = json!(max_diff);
    }
    println!(
        "cpu reference (plain loops): {:8.2} ms ({:6.2} GFLOP/s)",
        cpu_seconds * 1e3,
        gflops(cpu_seconds)
    );
    if o.common.json {
        println!("{report}");
    }
    Ok(())
}
