//! Multiplies two random matrices on the GPU and with the CPU reference, and compares them.
//!
//! `cargo run --release --example matmul -- [M K N]` (default 512 512 512)

use std::time::Instant;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use wgpu_nn::{Gpu, MatmulForm, cpu};

fn main() -> wgpu_nn::Result<()> {
    let dims: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [m, k, n] = <[usize; 3]>::try_from(dims).unwrap_or([512, 512, 512]);
    let mut rng = StdRng::seed_from_u64(42);
    let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();

    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.adapter_name());
    let (a_gpu, b_gpu, c_gpu) = (gpu.upload(&a, m, k)?, gpu.upload(&b, k, n)?, gpu.zeros(m, n)?);
    let product = gpu.matmul_forward(&c_gpu, &a_gpu, &b_gpu, None, MatmulForm::AB)?;
    gpu.run(&[&product])?; // the first run compiles the kernel; time the second
    gpu.wait()?;
    let start = Instant::now();
    gpu.run(&[&product])?;
    gpu.wait()?;
    let gpu_seconds = start.elapsed().as_secs_f64();
    let on_gpu = gpu.read(&c_gpu)?;

    let start = Instant::now();
    let mut on_cpu = vec![0.0f32; m * n];
    cpu::matmul_forward(&mut on_cpu, &a, &b, None, m, k, n, MatmulForm::AB)?;
    let cpu_seconds = start.elapsed().as_secs_f64();

    let max_diff = on_gpu.iter().zip(&on_cpu).map(|(g, c)| (g - c).abs()).fold(0.0, f32::max);
    let gflops = |s: f64| 2.0 * (m * k * n) as f64 / s / 1e9;
    println!("{m}x{k} · {k}x{n}: max |gpu − cpu| = {max_diff:.2e}");
    println!("gpu: {:8.2} ms ({:6.2} GFLOP/s)", gpu_seconds * 1e3, gflops(gpu_seconds));
    println!(
        "cpu reference (plain loops): {:8.2} ms ({:6.2} GFLOP/s)",
        cpu_seconds * 1e3,
        gflops(cpu_seconds)
    );
    Ok(())
}
