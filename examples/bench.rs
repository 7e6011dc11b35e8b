//! The GPU against the CPU, side by side in one run, in about two minutes: matrix products,
//! activations and softmax, and MNIST MLP training at batch 1 to 1024; where the GPU starts
//! to win (the crossover); and how long a fresh process takes to finish its first step.
//!
//! ```sh
//! cargo run --release --example bench -- [--json] [--plot bench.png] [--quick] [--backend gpu|cpu]
//!     [--peers burn.json --peers torch.json]
//! ```
//!
//! Every figure is the median of repeated runs; a GPU run is submit plus the wait for it.
//! The CPU side is the CPU backend (`gemm` and `matrixmultiply`, big products cut into bands
//! across the cores), not the test reference.
//!
//! Training is timed two ways. *Resident*: the data set lives on the device and each step
//! gathers its batch there (`Model::train_epoch`), as the library trains. *Upload*: the peers'
//! protocol, as a user's own PyTorch loop runs: 8 random batches cycled, each step uploads its
//! batch (`Model::train_step`), the median of 3 blocks of 50 steps, each block ended by reading
//! the loss back. Three workloads: "lesson" (the MNIST MLP 784-128-64-10 with ReLU, dropout 0.2
//! and Adam, lr 0.001), "sgd" (the same without dropout, softmax cross-entropy from the
//! logits, plain SGD, lr 0.01) and "cnn" (`ModelConfig::mnist_cnn`: two 3×3 convolutions
//! with batch norms, ReLU and 2×2 max pooling, dense 128 with dropout 0.5, Adam lr 0.001; at
//! batch 32 and 128). `--peers` reads what `scripts/peers/` print for burn-wgpu and
//! PyTorch on the same protocol (run on the same machine just before) and prints the ratios.
//! The narrow networks ("boundary": `live_boundary`'s 2-64-64-3 tanh net, Adam, batch 256;
//! "digits": 64-64-32-10 ReLU with dropout 0.2, Adam, batch 64, the lesson net's shape for 8×8
//! digits; "streetlight": 3-4-1 ReLU, MSE, SGD, batch 16) are timed on the GPU fused and layer
//! by layer ("… layered"); `--narrow` times only those, side by side, with each way's launches.
//! `--quick` times each workload briefly (for tests); the figures are then rougher.
//! `--backend cpu` times the CPU side alone; `--backend gpu` fails without an adapter instead
//! of timing the CPU alone with a notice.

mod cli;
mod plot_font;

use std::time::{Duration, Instant};

use serde_json::json;
use wgpu_nn::data::Dataset;
use wgpu_nn::model::{Backend, Loss, ModelConfig, Optimizer, Scalar, Target};
use wgpu_nn::{Gpu, MatmulForm, cpu};

/// The matmul shapes of the project's targets (m, k, n), then squares for the crossover.
const TARGET_SHAPES: [(usize, usize, usize); 3] = [(1024, 1024, 1024), (256, 784, 128), (256, 128, 64)];
const SQUARES: [usize; 6] = [32, 64, 128, 256, 512, 1024];
const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];
/// The batches of the upload protocol (the peers' loop).
const UPLOAD_BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];
/// The CNN's batches (each of its steps costs a hundred of the MLP's).
const CNN_BATCHES: [usize; 2] = [32, 128];
/// The narrow networks' workloads and batches: each on the GPU fused and layer by layer.
const NARROW: [(Workload, usize); 3] =
    [(Workload::Boundary, 256), (Workload::Digits, 64), (Workload::Streetlight, 16)];

/// The GPU against the CPU, side by side in one run: matrix products, activations and
/// softmax, MNIST MLP training at batch 1 to 1024, the crossover, and the first step.
#[derive(clap::Parser)]
#[command(name = "bench")]
struct Options {
    /// Draw GPU and CPU throughput into a PNG
    #[arg(long, value_name = "FILE.png")]
    plot: Option<String>,
    /// Time each workload briefly (for tests); the figures are rougher
    #[arg(long)]
    quick: bool,
    /// Be the child process that times a fresh process's first training step
    #[arg(long, hide = true)]
    first_step: bool,
    /// Time only the narrow networks, fused and layer by layer (issue 26's comparison)
    #[arg(long)]
    narrow: bool,
    /// A peer's figures on the same protocol (scripts/peers/), to print ratios against
    #[arg(long, value_name = "FILE.json")]
    peers: Vec<String>,
    #[command(flatten)]
    common: cli::Common,
}

impl Options {
    /// Seconds of repeats per measurement.
    fn budget(&self) -> Duration {
        Duration::from_millis(if self.quick { 30 } else { 600 })
    }
}

fn main() {
    let o: Options = clap::Parser::parse();
    if o.first_step {
        first_step(&o); // the child process of `first_step_seconds`
        return;
    }
    if let Err(e) = run(o) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

/// The median seconds of `f`, run once to warm up, then until `budget` is spent (3 at least).
fn median_seconds(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 3 || start.elapsed() < budget {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One workload's throughput on each side (GPU is None without an adapter).
#[derive(Clone)]
struct Row {
    name: String,
    unit: &'static str,
    /// The size it is plotted and compared by: n of a square matmul, or the batch.
    size: usize,
    gpu: Option<f64>,
    cpu: f64,
}

impl Row {
    /// `(backend, value)` for each side measured.
    fn sides(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [("gpu", self.gpu), ("cpu", Some(self.cpu))].into_iter().filter_map(|(b, v)| v.map(|v| (b, v)))
    }
}

fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = o.common.gpu()?;
    let adapter = gpu.as_ref().map_or("none".to_string(), Gpu::adapter_name);
    let cpu_name = cpu_name();
    println!("GPU: {adapter}\nCPU: {cpu_name}\n");
    if o.narrow {
        return narrow(gpu.as_ref(), &o);
    }

    let mut shapes: Vec<(usize, usize, usize)> = TARGET_SHAPES.to_vec();
    shapes.extend(SQUARES.iter().map(|&s| (s, s, s)).filter(|s| !TARGET_SHAPES.contains(s)));
    let matmul: Vec<((usize, usize, usize), Row)> = shapes
        .into_iter()
        .map(|s| Ok((s, time_matmul(gpu.as_ref(), s, o.budget())?)))
        .collect::<wgpu_nn::Result<_>>()?;
    let mut squares: Vec<Row> =
        matmul.iter().filter(|((m, k, n), _)| m == k && k == n).map(|(_, r)| r.clone()).collect();
    squares.sort_by_key(|r| r.size);
    let ops = time_ops(gpu.as_ref(), o.budget())?;
    let (digits, _) = wgpu_nn::data::bundled_mnist()?;
    let train = BATCHES
        .iter()
        .map(|&b| time_training(gpu.as_ref(), &digits, b, o.budget()))
        .collect::<wgpu_nn::Result<Vec<_>>>()?;
    let upload = [Workload::Lesson, Workload::Sgd]
        .into_iter()
        .flat_map(|w| UPLOAD_BATCHES.map(|b| (w, b)))
        .chain(CNN_BATCHES.map(|b| (Workload::Cnn, b)))
        .chain(NARROW)
        .map(|(w, b)| time_upload(gpu.as_ref(), w, b, o.quick, true))
        .chain(NARROW.into_iter().map(|(w, b)| time_upload(gpu.as_ref(), w, b, o.quick, false)))
        .collect::<wgpu_nn::Result<Vec<_>>>()?;
    let first_step = first_step_seconds(gpu.is_some())?;
    let dispatches = gpu.as_ref().map(|gpu| dispatches_per_step(gpu, &digits)).transpose()?;

    println!("{:<40} {:>12} {:>12} {:>8}", "workload", "GPU", "CPU", "GPU/CPU");
    for row in matmul.iter().map(|(_, r)| r).chain(&ops).chain(&train).chain(&upload) {
        let gpu_text = row.gpu.map_or("-".to_string(), |g| format!("{g:.2}"));
        let ratio = row.gpu.map_or("-".to_string(), |g| format!("{:.3}", g / row.cpu));
        let name = format!("{} ({})", row.name, row.unit);
        println!("{name:<40} {gpu_text:>12} {:>12.2} {ratio:>8}", row.cpu);
    }
    let crossover = |rows: &[Row]| rows.iter().find(|r| r.gpu.is_some_and(|g| g > r.cpu)).map(|r| r.size);
    let (matmul_crossover, train_crossover) = (crossover(&squares), crossover(&train));
    let say = |what: &str, at: Option<usize>| match at {
        Some(size) => format!("the GPU wins {what} from {size} on"),
        None => format!("the GPU wins at no {what} measured here"),
    };
    println!(
        "\ncrossover: {}; {}",
        say("square matmul size", matmul_crossover),
        say("training batch", train_crossover)
    );
    println!("process start -> first MNIST training step done: {first_step:.2} s (median of 3 runs)");
    if let Some(dispatches) = dispatches {
        println!("kernel launches per MNIST training step (batch 64): {dispatches}");
    }

    let peers = o.peers.iter().map(|path| read_peer(path)).collect::<Result<Vec<_>, _>>()?;
    if !peers.is_empty() {
        print_peers(&peers, &matmul, &upload);
    }
    if let Some(path) = &o.plot {
        plot(path, &squares, &train)?;
        println!("wrote {path}");
    }
    if o.common.json {
        let report = json!({
            "adapter": adapter,
            "cpu": cpu_name,
            "matmul": matmul.iter().flat_map(|&((m, k, n), ref r)| r.sides().map(move |(backend, gflops)|
                json!({"m": m, "k": k, "n": n, "backend": backend, "gflops": gflops}))).collect::<Vec<_>>(),
            "ops": ops.iter().flat_map(|r| r.sides().map(move |(backend, v)|
                json!({"op": r.name, "backend": backend, "gb_per_second": v}))).collect::<Vec<_>>(),
            "train": train.iter().flat_map(|r| r.sides().map(move |(backend, v)|
                json!({"batch": r.size, "backend": backend, "samples_per_second": v}))).collect::<Vec<_>>(),
            "train_upload": upload.iter().flat_map(|r| r.sides().map(move |(backend, v)|
                json!({"workload": r.name.split(' ').next(), "batch": r.size, "backend": backend,
                       "samples_per_second": v}))).collect::<Vec<_>>(),
            "matmul_kernel": gpu.as_ref().map(|g| format!("{:?}", g.matmul_kernel())),
            "crossover": { "matmul_n": matmul_crossover, "train_batch": train_crossover },
            "first_step_seconds": first_step,
            "dispatches_per_step": dispatches,
        });
        println!("{report}");
    }
    Ok(())
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| (((i + seed) * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

/// A·B on the GPU (the crate's kernel) and with the CPU backend's product, in GFLOP/s.
fn time_matmul(
    gpu: Option<&Gpu>,
    (m, k, n): (usize, usize, usize),
    budget: Duration,
) -> wgpu_nn::Result<Row> {
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let gflop = 2.0 * (m * k * n) as f64 / 1e9;
    let gpu = match gpu {
        Some(gpu) => {
            let (a_g, b_g, c_g) = (gpu.upload(&a, m, k)?, gpu.upload(&b, k, n)?, gpu.zeros(m, n)?);
            let product = gpu.kernels().matmul_forward(&c_g, &a_g, &b_g, None, MatmulForm::AB)?;
            Some(
                gflop
                    / median_seconds(budget, || {
                        gpu.run(&[&product]).unwrap();
                        gpu.wait().unwrap();
                    }),
            )
        }
        None => None,
    };
    let mut out = vec![0.0; m * n];
    let cpu = gflop
        / median_seconds(budget, || f32::matmul(&mut out, &a, &b, None, m, k, n, MatmulForm::AB).unwrap());
    Ok(Row { name: format!("matmul {m}x{k}x{n}"), unit: "GFLOP/s", size: m, gpu, cpu })
}

/// ReLU, sigmoid, tanh and softmax over 4096 × 256 values, in GB/s (a read and a write each).
fn time_ops(gpu: Option<&Gpu>, budget: Duration) -> wgpu_nn::Result<Vec<Row>> {
    let (rows, cols) = (4096, 256);
    let x: Vec<f32> = values(rows * cols, 3).iter().map(|v| 4.0 * v).collect();
    let gb = 8.0 * (rows * cols) as f64 / 1e9;
    let mut out = vec![0.0; rows * cols];
    let mut result = Vec::new();
    for name in ["relu", "sigmoid", "tanh", "softmax"] {
        let gpu_rate = match gpu {
            Some(gpu) => {
                let (x_g, out_g) = (gpu.upload(&x, rows, cols)?, gpu.zeros(rows, cols)?);
                let op = match name {
                    "relu" => gpu.kernels().relu_forward(&out_g, &x_g)?,
                    "sigmoid" => gpu.kernels().sigmoid_forward(&out_g, &x_g)?,
                    "tanh" => gpu.kernels().tanh_forward(&out_g, &x_g)?,
                    _ => gpu.kernels().softmax_forward(&out_g, &x_g)?,
                };
                Some(
                    gb / median_seconds(budget, || {
                        gpu.run(&[&op]).unwrap();
                        gpu.wait().unwrap();
                    }),
                )
            }
            None => None,
        };
        let cpu_rate = gb
            / median_seconds(budget, || match name {
                "relu" => cpu::relu_forward(&mut out, &x).unwrap(),
                "sigmoid" => cpu::sigmoid_forward(&mut out, &x).unwrap(),
                "tanh" => cpu::tanh_forward(&mut out, &x).unwrap(),
                _ => cpu::softmax_forward(&mut out, &x, rows, cols).unwrap(),
            });
        result.push(Row {
            name: format!("{name} {rows}x{cols}"),
            unit: "GB/s",
            size: rows * cols,
            gpu: gpu_rate,
            cpu: cpu_rate,
        });
    }
    Ok(result)
}

/// MNIST MLP epochs over resident data (the GPU gathers its batches and submits 16 steps at a
/// time; the CPU backend trains the same), in samples/s.
fn time_training(gpu: Option<&Gpu>, train: &Dataset, batch: usize, budget: Duration) -> wgpu_nn::Result<Row> {
    // Enough steps to amortise a submit, few enough for a two-minute run.
    let steps = (4096 / batch).clamp(4, 32).min(train.len() / batch);
    let data: Dataset = train.take(steps * batch);
    let config = ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.001 });
    let rate = |backend: Backend| -> wgpu_nn::Result<f64> {
        let mut model = config.build(backend, gpu)?;
        let resident = model.load(&data)?;
        let mut epoch = 0;
        let seconds = median_seconds(budget, || {
            epoch += 1;
            model.train_epoch(&resident, batch, epoch, &mut |_| {}).unwrap();
        });
        Ok(data.len() as f64 / seconds)
    };
    let gpu_rate = if gpu.is_some() { Some(rate(Backend::Gpu)?) } else { None };
    let cpu_rate = rate(Backend::Cpu)?;
    Ok(Row {
        name: format!("MNIST MLP training, batch {batch}"),
        unit: "samples/s",
        size: batch,
        gpu: gpu_rate,
        cpu: cpu_rate,
    })
}

/// The training workloads of the upload protocol (see the top of this file).
#[derive(Clone, Copy)]
enum Workload {
    Lesson,
    Sgd,
    Cnn,
    Boundary,
    Digits,
    Streetlight,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Lesson => "lesson",
            Workload::Sgd => "sgd",
            Workload::Cnn => "cnn",
            Workload::Boundary => "boundary",
            Workload::Digits => "digits",
            Workload::Streetlight => "streetlight",
        }
    }

    /// One of the narrow networks, timed fused and layer by layer.
    fn narrow(self) -> bool {
        matches!(self, Workload::Boundary | Workload::Digits | Workload::Streetlight)
    }

    fn config(self) -> ModelConfig {
        match self {
            Workload::Lesson => ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.001 }),
            Workload::Cnn => ModelConfig::mnist_cnn(Optimizer::Adam { lr: 0.001 }),
            Workload::Sgd => ModelConfig::new(784)
                .dense(128)
                .relu()
                .dense(64)
                .relu()
                .dense(10)
                .loss(Loss::SoftmaxCrossEntropy)
                .optimizer(Optimizer::Sgd { lr: 0.01 }),
            Workload::Boundary => ModelConfig::new(2)
                .dense(64)
                .tanh()
                .dense(64)
                .tanh()
                .dense(3)
                .loss(Loss::SoftmaxCrossEntropy)
                .optimizer(Optimizer::Adam { lr: 0.01 }),
            Workload::Digits => ModelConfig::new(64)
                .dense(64)
                .relu()
                .dropout(0.2)
                .dense(32)
                .relu()
                .dense(10)
                .loss(Loss::SoftmaxCrossEntropy)
                .optimizer(Optimizer::Adam { lr: 0.001 }),
            Workload::Streetlight => ModelConfig::new(3)
                .dense(4)
                .relu()
                .dense(1)
                .loss(Loss::Mse)
                .optimizer(Optimizer::Sgd { lr: 0.2 }),
        }
    }
}

/// The upload protocol: 8 random batches cycled, each step uploading its batch; samples/s
/// over the median of 3 blocks of 50 steps (5 with `--quick`) after 20 warm-up steps. `fused`:
/// whether the GPU may run its fused step (the narrow networks are timed both ways; the row
/// of the layer-by-layer path is named "… layered").
fn time_upload(
    gpu: Option<&Gpu>,
    workload: Workload,
    batch: usize,
    quick: bool,
    fused: bool,
) -> wgpu_nn::Result<Row> {
    let steps = if quick { 5 } else { 50 };
    let config = workload.config();
    let (inputs, outputs) = (config.width_at(0), config.width());
    let batches: Vec<(Vec<f32>, Vec<u32>, Vec<f32>)> = (0..8)
        .map(|i| {
            let x = values(batch * inputs, 11 * i + batch).iter().map(|v| v.abs()).collect();
            let labels = (0..batch).map(|j| ((i * 7 + j * 3) % outputs) as u32).collect();
            (x, labels, values(batch * outputs, 13 * i + batch))
        })
        .collect();
    let rate = |backend: Backend| -> wgpu_nn::Result<f64> {
        let mut model = config.build(backend, gpu)?;
        if backend == Backend::Gpu {
            model.set_fused(fused)?;
            // A narrow network's "fused" row that ran layer by layer would compare nothing:
            // say so instead.
            if fused
                && workload.narrow()
                && let Err(why) = model.fused(batch)?
            {
                panic!("{} at batch {batch} does not run fused: {why}", workload.name());
            }
        }
        let mut step = 0;
        let mut block = |steps: usize| -> wgpu_nn::Result<f64> {
            let start = Instant::now();
            for _ in 0..steps {
                let (x, labels, values) = &batches[step % batches.len()];
                step += 1;
                let target = if config.loss_kind().takes_labels() {
                    Target::Labels(labels)
                } else {
                    Target::Values(values)
                };
                model.train_step(x, &target)?;
            }
            model.take_loss()?; // the block is done when its last loss is back
            Ok(start.elapsed().as_secs_f64())
        };
        block(if quick { 2 } else { 20 })?;
        let mut times = (0..3).map(|_| block(steps)).collect::<wgpu_nn::Result<Vec<_>>>()?;
        times.sort_by(f64::total_cmp);
        Ok((steps * batch) as f64 / times[1])
    };
    let gpu_rate = if gpu.is_some() { Some(rate(Backend::Gpu)?) } else { None };
    let name = if fused { workload.name().to_string() } else { format!("{}-layered", workload.name()) };
    Ok(Row {
        name: format!("{name} upload, batch {batch}"),
        unit: "samples/s",
        size: batch,
        gpu: gpu_rate,
        cpu: rate(Backend::Cpu)?,
    })
}

/// `--narrow`: each narrow network on the GPU fused and layer by layer (and the CPU), side
/// by side, with the speed-up and the launches of a step each way.
fn narrow(gpu: Option<&Gpu>, o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = gpu.ok_or("--narrow compares two GPU paths: it needs an adapter")?;
    let mut report = Vec::new();
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>12} {:>9}",
        "samples/s", "fused", "layered", "ratio", "CPU", "launches"
    );
    for (workload, batch) in NARROW {
        let fused = time_upload(Some(gpu), workload, batch, o.quick, true)?;
        let layered = time_upload(Some(gpu), workload, batch, o.quick, false)?;
        let (f, l) = (fused.gpu.unwrap_or(0.0), layered.gpu.unwrap_or(0.0));
        let (fl, ll) =
            (launches_per_step(gpu, workload, batch, true)?, launches_per_step(gpu, workload, batch, false)?);
        let name = format!("{} batch {batch}", workload.name());
        println!("{name:<28} {f:>12.0} {l:>12.0} {:>7.2}x {:>12.0} {fl:>4}/{ll:<4}", f / l, fused.cpu);
        report.push(json!({"workload": workload.name(), "batch": batch, "fused": f, "layered": l,
            "cpu": fused.cpu, "launches_fused": fl, "launches_layered": ll}));
    }
    if o.common.json {
        println!("{}", json!({"adapter": gpu.adapter_name(), "cpu": cpu_name(), "narrow": report}));
    }
    Ok(())
}

/// Launches one training step of `workload` records (after a first step built its plan).
fn launches_per_step(gpu: &Gpu, workload: Workload, batch: usize, fused: bool) -> wgpu_nn::Result<u64> {
    let config = workload.config();
    let mut model = config.build_gpu(gpu)?;
    model.set_fused(fused)?;
    let x = values(batch * config.width_at(0), 3);
    let (labels, targets): (Vec<u32>, Vec<f32>) =
        ((0..batch).map(|i| (i % config.width()) as u32).collect(), values(batch * config.width(), 5));
    let target =
        if config.loss_kind().takes_labels() { Target::Labels(&labels) } else { Target::Values(&targets) };
    model.train_step(&x, &target)?;
    let before = gpu.counters().dispatches;
    model.train_step(&x, &target)?;
    let launched = gpu.counters().dispatches - before;
    model.take_loss()?;
    Ok(launched)
}

/// A peer's figures, as `scripts/peers/` print them: a name and a flat JSON object of
/// "workload … unit" keys to values.
struct Peer {
    name: String,
    figures: serde_json::Map<String, serde_json::Value>,
}

fn read_peer(path: &str) -> Result<Peer, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading peer figures {path}: {e}"))?;
    let figures = match serde_json::from_str(text.lines().last().unwrap_or_default()) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(format!("{path}: the last line is not a JSON object of figures").into()),
    };
    let name = std::path::Path::new(path).file_stem().map_or(path.into(), |s| s.to_string_lossy().into());
    Ok(Peer { name, figures })
}

/// Each peer figure beside ours on the same workload, with the ratio ours / theirs.
fn print_peers(peers: &[Peer], matmul: &[((usize, usize, usize), Row)], upload: &[Row]) {
    println!(
        "\n{:<44} {:>12} {:>12} {:>12} {:>7}",
        "against peers (same protocol)", "peer", "ours GPU", "ours CPU", ""
    );
    let mut ours: Vec<(String, Option<f64>, f64)> =
        matmul.iter().map(|((m, k, n), r)| (format!("matmul {m}x{k}x{n} GFLOP/s"), r.gpu, r.cpu)).collect();
    ours.extend(upload.iter().map(|r| {
        let workload = r.name.split(' ').next().unwrap_or_default();
        (format!("{workload} batch {} samples/s", r.size), r.gpu, r.cpu)
    }));
    for peer in peers {
        for (key, value) in &peer.figures {
            let Some(theirs) = value.as_f64() else { continue };
            // PyTorch's script prints numpy's matmul too, as "numpy matmul …".
            let (who, workload) = match key.strip_prefix("numpy ") {
                Some(rest) => ("numpy".to_string(), rest),
                None => (peer.name.clone(), key.strip_prefix("torch ").unwrap_or(key)),
            };
            let Some((_, gpu, cpu)) = ours.iter().find(|(name, ..)| name == workload) else { continue };
            let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}x", v / theirs));
            println!(
                "{:<44} {theirs:>12.1} {:>12} {:>12}",
                format!("{who}: {workload}"),
                ratio(*gpu),
                ratio(Some(*cpu))
            );
        }
    }
}

/// Kernel launches one MNIST training step records on the GPU (batch 64, after a first
/// step has built its buffers): the figure fusion brings down.
fn dispatches_per_step(gpu: &Gpu, train: &Dataset) -> wgpu_nn::Result<u64> {
    let mut model = ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.001 }).build_gpu(gpu)?;
    let batch = train.take(64);
    model.train_step(batch.inputs(), &batch.target())?;
    let before = gpu.counters().dispatches;
    model.train_step(batch.inputs(), &batch.target())?;
    Ok(gpu.counters().dispatches - before)
}

/// Seconds from starting a fresh process to its first finished MNIST training step (the
/// adapter, the kernels, the model's buffers, one batch of 64): the median of three.
fn first_step_seconds(on_gpu: bool) -> Result<f64, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let backend = if on_gpu { "gpu" } else { "cpu" };
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let status =
            std::process::Command::new(&exe).args(["--first-step", "--backend", backend]).status()?;
        if !status.success() {
            return Err(format!("the first-step child failed: {status}").into());
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// The child of [`first_step_seconds`]: on the side the parent timed.
fn first_step(o: &Options) {
    let gpu = o.common.gpu().expect("the parent found this backend");
    let backend = cli::backend(gpu.as_ref());
    let mut model =
        ModelConfig::mnist_mlp(Optimizer::Adam { lr: 0.001 }).build(backend, gpu.as_ref()).unwrap();
    let x = values(64 * 784, 4).iter().map(|v| v.abs()).collect::<Vec<_>>();
    let labels: Vec<u32> = (0..64).map(|i| i % 10).collect();
    model.train_step(&x, &Target::Labels(&labels)).unwrap();
    model.take_loss().unwrap(); // the step is done when its loss is back
}

/// The CPU's model name (Linux) and how many threads the CPU backend may use.
fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {threads} threads")
}

/// Throughput against size, GPU and CPU: square matmuls (left) and training batches (right).
fn plot(path: &str, squares: &[Row], train: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    plot_font::register()?;
    let root = BitMapBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    for (area, rows, title, x_desc) in [
        (left, squares, "square matmul, GFLOP/s", "n"),
        (right, train, "MNIST MLP training, samples/s", "batch"),
    ] {
        let values = rows.iter().flat_map(|r| r.sides().map(|(_, v)| v));
        let (low, high) = values.fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
        let sizes = (rows[0].size as f64, rows[rows.len() - 1].size as f64);
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d((sizes.0..sizes.1).log_scale(), (low / 2.0..high * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .x_labels(8)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(WHITE)
            .draw()?;
        for (backend, color) in [("gpu", RED), ("cpu", BLUE)] {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| r.sides().find(|(b, _)| *b == backend).map(|(_, v)| (r.size as f64, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), &color))?
                .label(backend)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
