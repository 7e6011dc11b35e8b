//! Shared by the integration tests: one GPU per test binary, seeded random data, the one
//! comparison helper, and [`portable!`], which makes one test body a native test and a
//! browser test.
#![allow(dead_code)]

#[cfg(not(target_arch = "wasm32"))]
pub mod boundary;

/// Test bodies written once, as `async` blocks on the crate's `async` calls: natively each is
/// a `#[test]` that blocks on its body (`pollster`; the crate's futures need no particular
/// executor), and for `wasm32-unknown-unknown` a `#[wasm_bindgen_test]` awaited on the page's
/// event loop, where nothing may block.
macro_rules! portable {
    // Attributes as raw tokens: the browser harness looks for `ignore` among them, and a
    // `meta` fragment would hide it from that.
    ($($(#[$($meta:tt)*])* async fn $name:ident() $body:block)*) => {$(
        $(#[$($meta)*])*
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on(async $body)
        }

        // After the harness's attribute, which reads `#[ignore]` only there.
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        $(#[$($meta)*])*
        async fn $name() $body
    )*};
}

use std::sync::OnceLock;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use wgpu_nn::Gpu;
use wgpu_nn::model::{Loss, ModelConfig};
#[cfg(not(target_arch = "wasm32"))]
use wgpu_nn::wgpu;

/// Set by CI: a missing adapter fails the GPU tests instead of skipping them.
pub const REQUIRE_GPU: &str = "WGPU_NN_REQUIRE_GPU";

static GPU: OnceLock<Option<Gpu>> = OnceLock::new();

/// The GPU shared by every test in this binary, or `None` (with a loud notice) when there is
/// no adapter and [`REQUIRE_GPU`] is not set. Native tests only: see [`shared_gpu`].
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> Option<&'static Gpu> {
    GPU.get_or_init(|| found(Gpu::new())).as_ref()
}

/// [`gpu`] for the portable tests. In the browser there is no environment to set: a page
/// without WebGPU fails the suite, never skips it.
pub async fn shared_gpu() -> Option<&'static Gpu> {
    #[cfg(not(target_arch = "wasm32"))]
    return gpu();
    #[cfg(target_arch = "wasm32")]
    {
        if GPU.get().is_none() {
            let gpu =
                Gpu::new_async().await.unwrap_or_else(|e| panic!("the browser suite needs WebGPU: {e}"));
            let _ = GPU.set(found(Ok(gpu)));
        }
        GPU.get().and_then(Option::as_ref)
    }
}

fn found(gpu: wgpu_nn::Result<Gpu>) -> Option<Gpu> {
    match gpu {
        Ok(gpu) => {
            log(&format!("GPU tests run on: {}", gpu.adapter_name()));
            Some(gpu)
        }
        Err(e) if std::env::var_os(REQUIRE_GPU).is_some() => {
            panic!("{REQUIRE_GPU} is set but no GPU is usable: {e}")
        }
        Err(e) => {
            log(&format!("SKIPPING GPU TESTS: {e}"));
            None
        }
    }
}

/// A line on stderr, or on the browser's console (which the test runner prints).
pub fn log(line: &str) {
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
}

/// A length-k f32 dot product of values in [-1, 1) may differ from the reference's by about
/// k·ε·max|partial sum| when the summation order differs (the kernels block and fuse their
/// multiply-adds); 8ε per term leaves a margin without hiding a wrong index.
pub fn matmul_atol(k: usize) -> f64 {
    8.0 * f64::from(f32::EPSILON) * k as f64
}

/// exp, log and division on GPUs are allowed a few ULP (WGSL: exp 3 + 2|x| ULP).
pub const TRANSCENDENTAL_RTOL: f64 = 1e-5;
pub const TRANSCENDENTAL_ATOL: f64 = 1e-6;

/// GELU's derivative in its left tail cancels two terms that each carry tanh's few-ULP error
/// near −1 times |x| · du (see `kernels::every_activation_matches_reference`): 1e-5 absolute.
pub const GELU_BACKWARD_ATOL: f64 = 1e-5;

/// Runs `dispatches` in one submit and reads `out` back.
pub async fn run(gpu: &Gpu, dispatches: &[&wgpu_nn::Dispatch], out: &wgpu_nn::GpuTensor) -> Vec<f32> {
    gpu.run(dispatches).unwrap();
    gpu.read_async(out).await.unwrap()
}

/// [`run`], blocking: for the native-only tests.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_now(gpu: &Gpu, dispatches: &[&wgpu_nn::Dispatch], out: &wgpu_nn::GpuTensor) -> Vec<f32> {
    pollster::block_on(run(gpu, dispatches, out))
}

/// Values uniform in `[-1, 1)`, the same for the same seed.
pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

pub fn random_f64(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

#[cfg(not(target_arch = "wasm32"))]
/// Both backends when there is a GPU, else the CPU alone.
pub fn backends() -> Vec<wgpu_nn::model::Backend> {
    backends_with(gpu())
}

/// Both backends when `gpu` is there, else the CPU alone.
pub fn backends_with(gpu: Option<&Gpu>) -> Vec<wgpu_nn::model::Backend> {
    use wgpu_nn::model::Backend;
    if gpu.is_some() { vec![Backend::Gpu, Backend::Cpu] } else { vec![Backend::Cpu] }
}

pub fn random_labels(len: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(0..classes as u32)).collect()
}

/// Fails unless `|got − want| ≤ atol + rtol · |want|` everywhere, printing the first
/// mismatches and the largest difference. NaN matches nothing.
#[track_caller]
pub fn assert_close<T: Into<f64> + Copy>(what: &str, got: &[T], want: &[T], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut bad = Vec::new();
    let mut max_diff = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.into(), w.into());
        let diff = (g - w).abs();
        max_diff = max_diff.max(if diff.is_nan() { f64::INFINITY } else { diff });
        // Written so that a NaN difference fails.
        let within = diff <= atol + rtol * w.abs();
        if !within {
            bad.push((i, g, w));
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> =
            bad.iter().take(8).map(|(i, g, w)| format!("[{i}] got {g:e}, want {w:e}")).collect();
        panic!(
            "{what}: {} of {} values differ (rtol {rtol:e}, atol {atol:e}); max |diff| {max_diff:e}; first: {}",
            bad.len(),
            got.len(),
            first.join("; ")
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Runs an example binary (plain `cargo test` builds them before it runs any test) and
/// returns its last stdout line as JSON.
pub fn run_example(name: &str, args: &[&str]) -> serde_json::Value {
    run_command(name, std::process::Command::new(example_binary(name)).args(args))
}

#[cfg(not(target_arch = "wasm32"))]
/// Where `cargo test` put example `name`'s binary.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().expect("the test binary's path");
    deps.parent().and_then(|d| d.parent()).expect("target/<profile>/deps").join("examples").join(name)
}

#[cfg(not(target_arch = "wasm32"))]
/// Runs `command` (an example's, perhaps wrapped), fails with its output unless it succeeds,
/// and returns its last stdout line as JSON.
pub fn run_command(name: &str, command: &mut std::process::Command) -> serde_json::Value {
    let output = command.output().unwrap_or_else(|e| {
        panic!("running {command:?}: {e} (run plain `cargo test`, or `cargo build --examples` first)")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} {command:?} failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{name}: last line is not JSON ({e}): {last}"))
}

#[cfg(not(target_arch = "wasm32"))]
/// `count` devices of an app's own, made as a graphics app would (one instance and adapter,
/// `limits`), for the tests that hand the crate a device; empty when there is no adapter.
pub fn app_devices(count: usize, limits: wgpu::Limits) -> Vec<(wgpu::Device, wgpu::Queue)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let Ok(adapter) = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None))
    else {
        return Vec::new();
    };
    let descriptor = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
    (0..count).map_while(|_| pollster::block_on(adapter.request_device(&descriptor)).ok()).collect()
}

/// The examples' network (`examples/live_boundary/scene.rs`, the 2-64-64-3 tanh net): what
/// `boundary.rs` checks their pictures against (a mismatch in shapes fails the checkpoint load
/// with the tensor's name), and the fused step's widest test.
pub fn boundary_network() -> ModelConfig {
    ModelConfig::new(2).dense(64).tanh().dense(64).tanh().dense(3).softmax().loss(Loss::SoftmaxCrossEntropy)
}

/// `trunk` with the head `loss` needs (3 classes for the label losses, a log-softmax for NLL,
/// probabilities for binary cross-entropy, 2 values for the rest), and that loss.
pub fn network_for(trunk: ModelConfig, loss: Loss) -> ModelConfig {
    let head = match loss {
        Loss::Nll => trunk.dense(3).log_softmax(),
        Loss::SoftmaxCrossEntropy => trunk.dense(3),
        Loss::BinaryCrossEntropy => trunk.dense(2).sigmoid(),
        _ => trunk.dense(2),
    };
    head.loss(loss)
}
