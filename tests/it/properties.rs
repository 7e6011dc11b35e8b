//! Property tests: every kernel family and every layer at random shapes (each side 1..300),
//! GPU against the CPU reference. 1,570 cases a run (the counts below).
//!
//! The cases come from a fixed seed, so a red CI run replays exactly with the same command.
//! `WGPU_NN_PROPTEST_SEED=random` draws new cases (for exploring), `=<u64>` replays a run, and
//! `WGPU_NN_PROPTEST_SCALE=<n>` runs n times as many cases. Each test prints its seed, and a
//! failure also prints the shrunk case (RELIABILITY.md: "Reproducing a property failure").

use crate::common::{
    GELU_BACKWARD_ATOL, TRANSCENDENTAL_ATOL, TRANSCENDENTAL_RTOL, assert_close, gpu, matmul_atol, random,
    random_labels, run_now,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use wgpu_nn::model::{Backend, Loss, ModelConfig, Optimizer, Target};
use wgpu_nn::{Activation, Error, Gpu, MatmulForm, OptimizerSettings, cpu};

/// Which cases a run draws: unset, [`DEFAULT_SEED`]; `random`, a new seed; or a number.
const SEED_VAR: &str = "WGPU_NN_PROPTEST_SEED";
/// Multiplies every test's case count, for long local runs.
const SCALE_VAR: &str = "WGPU_NN_PROPTEST_SCALE";
const DEFAULT_SEED: u64 = 20261203;

fn config(cases: u32) -> Config {
    let seed = match std::env::var(SEED_VAR).as_deref() {
        Err(_) | Ok("") => DEFAULT_SEED,
        Ok("random") => rand::random(),
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{SEED_VAR}={text}: expected `random` or a u64")),
    };
    let scale = match std::env::var(SCALE_VAR).as_deref() {
        Err(_) | Ok("") => 1,
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{SCALE_VAR}={text}: expected a whole number")),
    };
    // Captured by the test harness and shown with a failure, beside proptest's shrunk case.
    eprintln!("proptest: {} cases from seed {seed}; replay with {SEED_VAR}={seed}", cases * scale);
    Config {
        cases: cases * scale,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    }
}

fn side() -> impl Strategy<Value = usize> {
    1usize..300
}

proptest! {
    #![proptest_config(config(300))]
    #[test]
    fn matmul(m in side(), k in side(), n in side(), form in 0usize..3, bias in any::<bool>(), seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let form = MatmulForm::ALL[form];
        let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
        let (a, b, bias) = (random(ar * ac, seed), random(br * bc, seed ^ 1), bias.then(|| random(n, seed ^ 2)));
        let mut want = vec![0.0; m * n];
        cpu::matmul_forward(&mut want, &a, &b, bias.as_deref(), m, k, n, form).unwrap();
        let (a_g, b_g, c_g) = (gpu.upload(&a, ar, ac).unwrap(), gpu.upload(&b, br, bc).unwrap(), gpu.zeros(m, n).unwrap());
        let bias_g = bias.map(|bias| gpu.upload(&bias, 1, n).unwrap());
        let op = gpu.kernels().matmul_forward(&c_g, &a_g, &b_g, bias_g.as_ref(), form).unwrap();
        assert_close(&format!("{} {m}x{k}x{n}", form.op_name()), &run_now(gpu, &[&op], &c_g), &want, 0.0, matmul_atol(k));
    }
}

proptest! {
    #![proptest_config(config(300))]
    #[test]
    fn activations(rows in side(), cols in side(), which in 0..Activation::ALL.len(), slope in -1.0f32..1.0, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let f = match Activation::ALL[which] { Activation::LeakyRelu(_) => Activation::LeakyRelu(slope), f => f };
        let len = rows * cols;
        // Over [-8, 8), so sigmoid and tanh saturate somewhere.
        let x: Vec<f32> = random(len, seed).iter().map(|v| 8.0 * v).collect();
        let dy = random(len, seed ^ 1);
        let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
        cpu::activation_forward(f, &mut y, &x).unwrap();
        let saved = if f.backward_reads_output() { &y } else { &x };
        cpu::activation_backward(f, &mut dx, saved, &dy).unwrap();
        let up = |v: &[f32]| gpu.upload(v, rows, cols).unwrap();
        let (x_g, saved_g, dy_g) = (up(&x), up(saved), up(&dy));
        let (y_g, dx_g) = (gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
        let forward = gpu.kernels().activation_forward(f, &y_g, &x_g).unwrap();
        let backward = gpu.kernels().activation_backward(f, &dx_g, &saved_g, &dy_g).unwrap();
        // ReLU and LeakyReLU are one select and one multiply: exact. The others: the bounds of
        // tests/kernels.rs (GELU's backward its own).
        let exact = matches!(f, Activation::Relu | Activation::LeakyRelu(_));
        let (rtol, atol) = if exact { (0.0, 0.0) } else { (TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL) };
        let backward_atol = if f == Activation::Gelu { GELU_BACKWARD_ATOL } else { atol };
        assert_close(&format!("{f:?} forward {rows}x{cols}"), &run_now(gpu, &[&forward], &y_g), &y, rtol, atol);
        assert_close(&format!("{f:?} backward {rows}x{cols}"), &run_now(gpu, &[&backward], &dx_g), &dx, rtol, backward_atol);
    }
}

proptest! {
    #![proptest_config(config(100))]
    #[test]
    fn layer_norm(rows in side(), cols in side(), scale in 0.01f32..10.0, shift in -5.0f32..5.0, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let len = rows * cols;
        let x: Vec<f32> = random(len, seed).iter().map(|v| scale * v + shift).collect();
        let (gain, bias, dy) = (random(cols, seed ^ 1), random(cols, seed ^ 2), random(len, seed ^ 3));
        let (mut stats, mut y, mut dx, mut terms) = (vec![0.0; rows * 2], vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        cpu::layer_norm_stats(&mut stats, &x, rows, cols).unwrap();
        cpu::layer_norm_forward(&mut y, &x, &stats, &gain, &bias, rows, cols).unwrap();
        cpu::layer_norm_backward(&mut dx, &x, &stats, &gain, &dy, rows, cols).unwrap();
        cpu::layer_norm_gain_terms(&mut terms, &x, &stats, &dy, rows, cols).unwrap();
        let up = |v: &[f32], r, c| gpu.upload(v, r, c).unwrap();
        let (x_g, gain_g, bias_g, dy_g) = (up(&x, rows, cols), up(&gain, 1, cols), up(&bias, 1, cols), up(&dy, rows, cols));
        let stats_g = gpu.zeros(rows, 2).unwrap();
        let (y_g, dx_g, terms_g) = (gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
        let ops = [
            gpu.kernels().layer_norm_stats(&stats_g, &x_g).unwrap(),
            gpu.kernels().layer_norm_forward(&y_g, &x_g, &stats_g, &gain_g, &bias_g).unwrap(),
            gpu.kernels().layer_norm_backward(&dx_g, &x_g, &stats_g, &gain_g, &dy_g).unwrap(),
            gpu.kernels().layer_norm_gain_terms(&terms_g, &x_g, &stats_g, &dy_g).unwrap(),
        ];
        gpu.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        // tests/kernels.rs's bound: the row's sums round like a dot product's, relative to the
        // values' size (the mean's error scales with |shift| + scale; x̂ and dx do not).
        let what = format!("layer norm {rows}x{cols} scale {scale} shift {shift}");
        let atol = 4.0 * matmul_atol(cols) + TRANSCENDENTAL_ATOL;
        let mean_atol = atol * f64::from(scale + shift.abs());
        let (got_stats, rstd_rtol) = (gpu.read(&stats_g).unwrap(), TRANSCENDENTAL_RTOL + 4.0 * matmul_atol(cols));
        let means = |s: &[f32]| s.iter().step_by(2).copied().collect::<Vec<f32>>();
        let rstds = |s: &[f32]| s.iter().skip(1).step_by(2).copied().collect::<Vec<f32>>();
        assert_close(&format!("{what} means"), &means(&got_stats), &means(&stats), 0.0, mean_atol);
        assert_close(&format!("{what} 1/σ"), &rstds(&got_stats), &rstds(&stats), rstd_rtol, 0.0);
        assert_close(&format!("{what} forward"), &gpu.read(&y_g).unwrap(), &y, TRANSCENDENTAL_RTOL, atol);
        assert_close(&format!("{what} backward"), &gpu.read(&dx_g).unwrap(), &dx, TRANSCENDENTAL_RTOL, atol);
        assert_close(&format!("{what} gain terms"), &gpu.read(&terms_g).unwrap(), &terms, TRANSCENDENTAL_RTOL, atol);
    }
}

proptest! {
    #![proptest_config(config(150))]
    #[test]
    fn softmax_family(rows in side(), cols in side(), op in 0usize..6, scale in 1.0f32..30.0, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let len = rows * cols;
        let x: Vec<f32> = random(len, seed).iter().map(|v| v * scale).collect();
        let (dy, labels) = (random(len, seed ^ 1), random_labels(rows, cols, seed ^ 2));
        let (x_g, dy_g) = (gpu.upload(&x, rows, cols).unwrap(), gpu.upload(&dy, rows, cols).unwrap());
        let labels_g = gpu.upload_labels(&labels, cols).unwrap();
        // Backward ops take the forward's output: the reference's, uploaded.
        let (mut probs, mut log_probs) = (vec![0.0; len], vec![0.0; len]);
        cpu::softmax_forward(&mut probs, &x, rows, cols).unwrap();
        cpu::log_softmax_forward(&mut log_probs, &x, rows, cols).unwrap();
        let (probs_g, log_probs_g) = (gpu.upload(&probs, rows, cols).unwrap(), gpu.upload(&log_probs, rows, cols).unwrap());
        let out_rows = if op == 4 { 1 } else { cols };
        let out_g = gpu.zeros(rows, out_rows).unwrap();
        let mut want = vec![0.0; rows * out_rows];
        let (name, dispatch) = match op {
            0 => { want.copy_from_slice(&probs); ("softmax_forward", gpu.kernels().softmax_forward(&out_g, &x_g)) }
            1 => { cpu::softmax_backward(&mut want, &probs, &dy, rows, cols).unwrap(); ("softmax_backward", gpu.kernels().softmax_backward(&out_g, &probs_g, &dy_g)) }
            2 => { want.copy_from_slice(&log_probs); ("log_softmax_forward", gpu.kernels().log_softmax_forward(&out_g, &x_g)) }
            3 => { cpu::log_softmax_backward(&mut want, &log_probs, &dy, rows, cols).unwrap(); ("log_softmax_backward", gpu.kernels().log_softmax_backward(&out_g, &log_probs_g, &dy_g)) }
            4 => { cpu::softmax_cross_entropy_forward(&mut want, &x, &labels, rows, cols).unwrap(); ("softmax_cross_entropy_forward", gpu.kernels().softmax_cross_entropy_forward(&out_g, &x_g, &labels_g)) }
            _ => { cpu::softmax_cross_entropy_backward(&mut want, &x, &labels, rows, cols).unwrap(); ("softmax_cross_entropy_backward", gpu.kernels().softmax_cross_entropy_backward(&out_g, &x_g, &labels_g)) }
        };
        let got = run_now(gpu, &[&dispatch.unwrap()], &out_g);
        // Softmax sums `cols` exponentials: the sum's rounding grows with the row like a dot product's.
        assert_close(&format!("{name} {rows}x{cols} scale {scale}"), &got, &want, TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL + matmul_atol(cols));
    }
}

proptest! {
    #![proptest_config(config(250))]
    #[test]
    fn losses(rows in side(), cols in side(), which in 0..Loss::ALL.len(), backward in any::<bool>(), delta in 0.05f32..2.0, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let loss = match Loss::ALL[which] { Loss::Huber { .. } => Loss::Huber { delta }, loss => loss };
        let len = rows * cols;
        // Probabilities for BCE (strictly inside (0, 1)); targets in [0, 1].
        let y: Vec<f32> = random(len, seed).iter().map(|v| 0.02 + 0.48 * (v + 1.0)).collect();
        let t: Vec<f32> = random(len, seed ^ 1).iter().map(|v| (v + 1.0) / 2.0).collect();
        let labels = random_labels(rows, cols, seed ^ 2);
        let (y_g, t_g, labels_g) = (gpu.upload(&y, rows, cols).unwrap(), gpu.upload(&t, rows, cols).unwrap(), gpu.upload_labels(&labels, cols).unwrap());
        // A label loss's terms are one per row.
        let out_cols = if loss.takes_labels() && !backward { 1 } else { cols };
        let out_g = gpu.zeros(rows, out_cols).unwrap();
        let mut want = vec![0.0; rows * out_cols];
        let k = gpu.kernels();
        let dispatch = match (loss, backward) {
            (Loss::Nll, false) => { cpu::nll_forward(&mut want, &y, &labels, rows, cols).unwrap(); k.nll_forward(&out_g, &y_g, &labels_g) }
            (Loss::Nll, true) => { cpu::nll_backward(&mut want, &labels, rows, cols).unwrap(); k.nll_backward(&out_g, &y_g, &labels_g) }
            (Loss::SoftmaxCrossEntropy, false) => { cpu::softmax_cross_entropy_forward(&mut want, &y, &labels, rows, cols).unwrap(); k.softmax_cross_entropy_forward(&out_g, &y_g, &labels_g) }
            (Loss::SoftmaxCrossEntropy, true) => { cpu::softmax_cross_entropy_backward(&mut want, &y, &labels, rows, cols).unwrap(); k.softmax_cross_entropy_backward(&out_g, &y_g, &labels_g) }
            (_, false) => { cpu::value_loss_forward(loss, &mut want, &y, &t).unwrap(); k.value_loss_forward(loss, &out_g, &y_g, &t_g) }
            (_, true) => { cpu::value_loss_backward(loss, &mut want, &y, &t).unwrap(); k.value_loss_backward(loss, &out_g, &y_g, &t_g) }
        };
        let got = run_now(gpu, &[&dispatch.unwrap()], &out_g);
        let what = if backward { "backward" } else { "forward" };
        assert_close(&format!("{loss:?} {what} {rows}x{cols}"), &got, &want, TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL);
    }
}

proptest! {
    #![proptest_config(config(100))]
    #[test]
    fn reductions(rows in side(), cols in side(), scale in -2.0f32..2.0, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let x = random(rows * cols, seed);
        let x_g = gpu.upload(&x, rows, cols).unwrap();
        let (columns_g, total_g) = (gpu.zeros(1, cols).unwrap(), gpu.zeros(1, 1).unwrap());
        let mut columns = vec![0.0; cols];
        cpu::sum_columns(&mut columns, &x, rows, cols, scale).unwrap();
        let total = cpu::sum_all(&x, scale);
        let (by_column, all) = (gpu.kernels().sum_columns(&columns_g, &x_g, scale).unwrap(), gpu.kernels().sum_all(&total_g, &x_g, scale).unwrap());
        gpu.run(&[&by_column, &all]).unwrap();
        let atol = |len: usize| matmul_atol(len) * f64::from(scale.abs());
        assert_close(&format!("sum_columns {rows}x{cols}"), &gpu.read(&columns_g).unwrap(), &columns, 0.0, atol(rows));
        assert_close(&format!("sum_all {rows}x{cols}"), &gpu.read(&total_g).unwrap(), &[total], 0.0, atol(rows * cols));
    }
}

proptest! {
    #![proptest_config(config(100))]
    #[test]
    fn optimizers(rows in side(), cols in side(), which in 0usize..4, lr in 0.001f32..0.5, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let len = rows * cols;
        let mut settings = OptimizerSettings::new(lr);
        let (mut w, mut m, mut v) = (random(len, seed), vec![0.0; len], vec![0.0; len]);
        let (w_g, m_g, v_g, g_g) = (gpu.upload(&w, rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
        let settings_g = gpu.kernels().upload_settings(&settings).unwrap();
        let update = match which {
            0 => gpu.kernels().sgd_update(&w_g, &g_g, &settings_g),
            1 => gpu.kernels().momentum_update(&w_g, &m_g, &g_g, &settings_g),
            2 => gpu.kernels().adam_update(&w_g, &m_g, &v_g, &g_g, &settings_g),
            _ => gpu.kernels().adamw_update(&w_g, &m_g, &v_g, &g_g, &settings_g),
        }.unwrap();
        let advance = gpu.kernels().optimizer_advance(&settings_g).unwrap();
        for step in 0..3 {
            let g = random(len, seed ^ (10 + step));
            gpu.write(&g_g, &g).unwrap();
            settings.step += 1;
            match which {
                0 => cpu::sgd_update(&mut w, &g, &settings),
                1 => cpu::momentum_update(&mut w, &mut m, &g, &settings),
                2 => cpu::adam_update(&mut w, &mut m, &mut v, &g, &settings),
                _ => cpu::adamw_update(&mut w, &mut m, &mut v, &g, &settings),
            }.unwrap();
            gpu.run(&[&advance, &update]).unwrap();
        }
        // Adam divides by √v̂: a few ULP of sqrt and division, per step.
        assert_close(&format!("optimizer {which} {rows}x{cols}"), &gpu.read(&w_g).unwrap(), &w, TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL);
    }
}

proptest! {
    #![proptest_config(config(50))]
    #[test]
    fn dropout(rows in side(), cols in side(), p in 0.0f32..0.9, seed in any::<u32>(), step in any::<u32>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let len = rows * cols;
        let (x, dy) = (random(len, u64::from(seed)), random(len, u64::from(step)));
        let (mut out, mut mask, mut dx) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        cpu::dropout_forward(&mut out, &mut mask, &x, p, seed, step).unwrap();
        cpu::dropout_backward(&mut dx, &mask, &dy).unwrap();
        let (x_g, dy_g) = (gpu.upload(&x, rows, cols).unwrap(), gpu.upload(&dy, rows, cols).unwrap());
        let (out_g, mask_g, dx_g) = (gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
        let counter = gpu.kernels().dropout_counter().unwrap();
        gpu.write(&counter, &[f32::from_bits(step)]).unwrap(); // the step, as u32 bits
        let forward = gpu.kernels().dropout_forward(&out_g, &mask_g, &x_g, p, seed, &counter).unwrap();
        let backward = gpu.kernels().dropout_backward(&dx_g, &mask_g, &dy_g).unwrap();
        gpu.run(&[&forward, &backward]).unwrap();
        // The same hash on both sides: the masks agree exactly; 1/(1−p) is one rounding.
        assert_close("dropout mask", &gpu.read(&mask_g).unwrap(), &mask, 1e-6, 0.0);
        assert_close("dropout output", &gpu.read(&out_g).unwrap(), &out, 1e-6, 0.0);
        assert_close("dropout gradient", &gpu.read(&dx_g).unwrap(), &dx, 1e-6, 0.0);
    }
}

/// Random layer stacks: dense → activation (ReLU, sigmoid, tanh, LeakyReLU, GELU, or a layer
/// norm then ReLU) (→ dropout) → dense, then MSE or softmax cross-entropy, two training steps
/// on each backend from the same weights.
fn network(
    inputs: usize,
    hidden: usize,
    outputs: usize,
    activation: usize,
    dropout: bool,
    classify: bool,
    momentum: bool,
) -> ModelConfig {
    let mut config = ModelConfig::new(inputs).dense(hidden);
    config = match Activation::ALL.get(activation) {
        Some(&f) => config.activation(f),
        None => config.layer_norm().relu(),
    };
    if dropout {
        config = config.dropout(0.3);
    }
    config = config.dense(outputs);
    config = if classify { config.softmax().loss(Loss::SoftmaxCrossEntropy) } else { config.loss(Loss::Mse) };
    // SGD and momentum only: Adam's first step is lr·sign(g), so a gradient within rounding of
    // zero flips it by 2·lr between backends. Adam's parity is tested on fixed nets in model.rs.
    let optimizer =
        if momentum { Optimizer::Momentum { lr: 0.05, momentum: 0.9 } } else { Optimizer::Sgd { lr: 0.1 } };
    config.optimizer(optimizer).seed(inputs as u64)
}

/// Whether the network classifies, and its outputs: a classifier needs at least 2 classes
/// (`build` refuses fewer; `one_class_classifiers_are_refused` checks that).
fn head() -> impl Strategy<Value = (bool, usize)> {
    any::<bool>().prop_flat_map(|classify| (Just(classify), if classify { 2usize..300 } else { 1usize..300 }))
}

/// Past the activations: a layer norm, then ReLU.
const LAYER_NORM: usize = Activation::ALL.len();

/// The hidden layer's activation (an index into `Activation::ALL`, or [`LAYER_NORM`]) and its width. A layer norm is
/// drawn over at least 16 values: over 2, σ = |a − b| / 2 is often near rounding, and 1/σ
/// multiplies the GPU's and the CPU's few-ULP difference in a and b into percent-size
/// differences after two steps (seen: 1.5e-2 at hidden = 2, in 2 of 12 runs of 500 cases).
/// That is the layer's conditioning, not a kernel error; narrow rows are covered with exact
/// shared inputs by the `layer_norm` test above.
fn body() -> impl Strategy<Value = (usize, usize)> {
    (0..=LAYER_NORM).prop_flat_map(|activation| {
        (Just(activation), if activation == LAYER_NORM { 16usize..300 } else { 1usize..300 })
    })
}

proptest! {
    #![proptest_config(config(100))]
    #[test]
    fn layers(inputs in side(), (activation, hidden) in body(), (classify, outputs) in head(), rows in side(),
              dropout in any::<bool>(), momentum in any::<bool>(), seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        layers_agree(gpu, inputs, hidden, outputs, rows, activation, dropout, classify, momentum, seed);
    }
}

/// One training case of `layers`: two steps on each backend from the same weights, then the
/// loss, the first and last layers' parameters and the predictions compared.
#[allow(clippy::too_many_arguments)]
fn layers_agree(
    gpu: &Gpu,
    inputs: usize,
    hidden: usize,
    outputs: usize,
    rows: usize,
    activation: usize,
    dropout: bool,
    classify: bool,
    momentum: bool,
    seed: u64,
) {
    let config = network(inputs, hidden, outputs, activation, dropout, classify, momentum);
    let x = random(rows * inputs, seed);
    let labels = random_labels(rows, outputs, seed ^ 1);
    let values: Vec<f32> = random(rows * outputs, seed ^ 2);
    let target = if classify { Target::Labels(&labels) } else { Target::Values(&values) };
    let [gpu_run, cpu_run] = [Backend::Gpu, Backend::Cpu].map(|backend| {
        let mut model = config.build(backend, Some(gpu)).unwrap();
        model.train_step(&x, &target).unwrap();
        model.train_step(&x, &target).unwrap();
        let loss = model.take_loss().unwrap();
        let mut parameters = model.weights(0).unwrap();
        parameters.extend(model.bias(0).unwrap());
        let last = config.layers().len() - 1 - usize::from(classify);
        parameters.extend(model.weights(last).unwrap());
        (loss, parameters, model.predict(&x).unwrap())
    });
    let what =
        format!("{inputs}-{hidden}-{outputs} x{rows} act {activation} dropout {dropout} classify {classify}");
    // Two steps of sums over up to 300 terms each way; the model tests' parity tolerance
    // (rtol 1e-4) plus the dot-product bound for the widest sum.
    let atol = 1e-5 + matmul_atol(inputs.max(hidden).max(rows));
    assert_close(&format!("{what} loss"), &[gpu_run.0], &[cpu_run.0], 1e-4, atol);
    assert_close(&format!("{what} parameters"), &gpu_run.1, &cpu_run.1, 1e-4, atol);
    assert_close(&format!("{what} predictions"), &gpu_run.2, &cpu_run.2, 1e-4, atol);
}

/// The case behind CI's one-in-four red runs (a one-class softmax classifier drawn at
/// random): `build` refuses it, on both backends, with an error that says why.
#[test]
fn one_class_classifiers_are_refused() {
    let Some(gpu) = gpu() else { return };
    for (loss, head) in [(Loss::SoftmaxCrossEntropy, "softmax"), (Loss::Nll, "log_softmax")] {
        let config = ModelConfig::new(3).dense(4).relu().dense(1);
        let config = if head == "softmax" { config.softmax() } else { config.log_softmax() }.loss(loss);
        for backend in [Backend::Gpu, Backend::Cpu] {
            match config.build(backend, Some(gpu)) {
                Err(Error::Shape { op: "build", expected, actual }) => {
                    assert_eq!(expected, format!("{loss:?} over at least 2 classes"));
                    assert_eq!(actual, "1 outputs");
                }
                Err(other) => panic!("{loss:?} on {backend:?}: wrong error {other}"),
                Ok(_) => panic!("{loss:?} on {backend:?}: a one-class classifier was built"),
            }
        }
    }
}

/// The case exploration found (a layer norm over 2 values, `body`'s note), drawn as `body`
/// now draws it: over 16 values it trains alike on both backends; and `body` never draws a
/// layer norm narrower than that.
#[test]
fn layer_norm_networks_are_drawn_wide_enough() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(Config { rng_seed: RngSeed::Fixed(DEFAULT_SEED), ..Config::default() });
    let draws: Vec<(usize, usize)> =
        (0..10_000).map(|_| body().new_tree(&mut runner).unwrap().current()).collect();
    assert!(draws.iter().all(|&(activation, hidden)| activation != LAYER_NORM || hidden >= 16));
    assert!(
        draws.iter().any(|&(activation, _)| activation == LAYER_NORM)
            && draws.iter().any(|&(_, hidden)| hidden < 16)
    );
    if let Some(gpu) = gpu() {
        layers_agree(gpu, 24, 16, 8, 40, LAYER_NORM, false, false, false, 14579702922524723777);
    }
}

/// The generator never draws what `build` refuses: 10,000 draws of `head` from a fixed seed,
/// each classifier with at least 2 classes, both kinds of network drawn, 2 outputs reached.
#[test]
fn layers_draws_only_networks_the_crate_accepts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(Config { rng_seed: RngSeed::Fixed(DEFAULT_SEED), ..Config::default() });
    let draws: Vec<(bool, usize)> =
        (0..10_000).map(|_| head().new_tree(&mut runner).unwrap().current()).collect();
    assert!(draws.iter().all(|&(classify, outputs)| outputs > usize::from(classify)), "{draws:?}");
    assert!(draws.iter().any(|&(classify, _)| classify) && draws.iter().any(|&(classify, _)| !classify));
    assert!(
        draws.iter().any(|&(classify, outputs)| classify && outputs == 2),
        "the smallest classifier is drawn"
    );
    // And the smallest classifier trains alike on both backends.
    if let Some(gpu) = gpu() {
        layers_agree(gpu, 5, 7, 2, 9, 0, true, true, false, 1);
    }
}

/// A convolution no input could go through is not drawn: the kernel must fit the padded image.
fn conv_shape() -> impl Strategy<Value = (usize, wgpu_nn::Conv2dShape)> {
    (
        1usize..6,
        1usize..5,
        1usize..13,
        1usize..13,
        1usize..6,
        1usize..5,
        1usize..5,
        1usize..4,
        1usize..4,
        0usize..3,
        0usize..3,
    )
        .prop_filter_map(
            "a kernel that fits the padded image",
            |(n, ci, h, w, co, kh, kw, sh, sw, ph, pw)| {
                (kh <= h + 2 * ph && kw <= w + 2 * pw).then(|| {
                    (
                        n,
                        wgpu_nn::Conv2dShape::new(ci, (h, w), co, (kh, kw))
                            .stride((sh, sw))
                            .padding((ph, pw)),
                    )
                })
            },
        )
}

proptest! {
    #![proptest_config(config(60))]
    #[test]
    fn conv2d((n, g) in conv_shape(), bias in any::<bool>(), seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let k = gpu.kernels();
        let (x, w, b, dy) = (
            random(n * g.input_len(), seed),
            random(g.out_channels * g.filter_len(), seed ^ 1),
            random(g.out_channels, seed ^ 2),
            random(n * g.output_len(), seed ^ 3),
        );
        let bias = bias.then_some(&b[..]);
        let (mut y, mut dx, mut dw, mut db) =
            (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; g.out_channels]);
        cpu::conv2d_forward(&mut y, &x, &w, bias, n, &g).unwrap();
        cpu::conv2d_input_grad(&mut dx, &dy, &w, n, &g).unwrap();
        cpu::conv2d_weight_grad(&mut dw, &dy, &x, n, &g).unwrap();
        cpu::conv2d_bias_grad(&mut db, &dy, n, &g).unwrap();
        let up = |v: &[f32], r: usize| gpu.upload(v, r, v.len() / r).unwrap();
        let (x_g, w_g, b_g, dy_g) = (up(&x, n), up(&w, g.out_channels), up(&b, 1), up(&dy, n));
        let (y_g, dx_g) = (gpu.zeros(n, g.output_len()).unwrap(), gpu.zeros(n, g.input_len()).unwrap());
        let (dw_g, db_g) = (gpu.zeros(g.out_channels, g.filter_len()).unwrap(), gpu.zeros(1, g.out_channels).unwrap());
        let ops = [
            k.conv2d_forward(&y_g, &x_g, &w_g, bias.map(|_| &b_g), &g).unwrap(),
            k.conv2d_input_grad(&dx_g, &dy_g, &w_g, &g).unwrap(),
            k.conv2d_weight_grad(&dw_g, Some(&db_g), &dy_g, &x_g, &g).unwrap(),
        ];
        gpu.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        let (oh, ow) = g.out_size();
        let what = format!("conv2d batch {n} {g:?}");
        assert_close(&format!("{what} forward"), &gpu.read(&y_g).unwrap(), &y, 0.0, matmul_atol(g.filter_len() + 1));
        let taps = g.out_channels * g.kernel.0 * g.kernel.1;
        assert_close(&format!("{what} input grad"), &gpu.read(&dx_g).unwrap(), &dx, 0.0, matmul_atol(taps));
        assert_close(&format!("{what} weight grad"), &gpu.read(&dw_g).unwrap(), &dw, 0.0, matmul_atol(n * oh * ow));
        assert_close(&format!("{what} bias grad"), &gpu.read(&db_g).unwrap(), &db, 0.0, matmul_atol(n * oh * ow));
    }
}

proptest! {
    #![proptest_config(config(60))]
    #[test]
    fn batch_norm(n in 1usize..9, channels in 1usize..9, plane in 1usize..80, scale in 0.1f32..10.0, shift in -5.0f32..5.0,
                  momentum in 0.0f32..1.0, seed in any::<u64>()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assume!(n * plane >= 2); // training needs more than one value per channel
        let k = gpu.kernels();
        let g = wgpu_nn::BatchNorm::new(channels).momentum(momentum);
        let len = n * channels * plane;
        let x: Vec<f32> = random(len, seed).iter().map(|v| scale * v + shift).collect();
        let (gain, bias, dy) = (random(channels, seed ^ 1), random(channels, seed ^ 2), random(len, seed ^ 3));
        let (mut mean, mut var) = (vec![0.0; channels], vec![1.0; channels]);
        let (mut stats, mut y, mut dx, mut dgain, mut dbias) =
            (vec![0.0; 2 * channels], vec![0.0; len], vec![0.0; len], vec![0.0; channels], vec![0.0; channels]);
        cpu::batch_norm_stats(&mut stats, &mut mean, &mut var, &x, n, plane, &g).unwrap();
        cpu::batch_norm_forward(&mut y, &x, &stats, &gain, &bias, n, plane, &g).unwrap();
        cpu::batch_norm_backward(Some(&mut dx), &mut dgain, &mut dbias, &x, &stats, &gain, &dy, n, plane, &g).unwrap();
        let up = |v: &[f32], r: usize| gpu.upload(v, r, v.len() / r).unwrap();
        let (x_g, gain_g, bias_g, dy_g) = (up(&x, n), up(&gain, 1), up(&bias, 1), up(&dy, n));
        let (mean_g, var_g) = (gpu.zeros(1, channels).unwrap(), up(&vec![1.0; channels], 1));
        let settings = k.upload_settings(&OptimizerSettings::new(0.1)).unwrap();
        let stats_g = gpu.zeros(2, channels).unwrap();
        let (y_g, dx_g) = (gpu.zeros(n, channels * plane).unwrap(), gpu.zeros(n, channels * plane).unwrap());
        let (dgain_g, dbias_g) = (gpu.zeros(1, channels).unwrap(), gpu.zeros(1, channels).unwrap());
        gpu.run(&[&k.batch_norm_stats(&stats_g, &mean_g, &var_g, &x_g, &settings, &g).unwrap()]).unwrap();
        let what = format!("batch norm {n} x {channels} x {plane} scale {scale} shift {shift}");
        let atol = 4.0 * matmul_atol(n * plane) + TRANSCENDENTAL_ATOL;
        let got = gpu.read(&stats_g).unwrap();
        assert_close(&format!("{what} means"), &got[..channels], &stats[..channels], 0.0, atol * f64::from(scale + shift.abs()));
        assert_close(&format!("{what} 1/σ"), &got[channels..], &stats[channels..], TRANSCENDENTAL_RTOL + atol, 0.0);
        assert_close(&format!("{what} running mean"), &gpu.read(&mean_g).unwrap(), &mean, 0.0, atol * f64::from(scale + shift.abs()));
        assert_close(&format!("{what} running var"), &gpu.read(&var_g).unwrap(), &var, TRANSCENDENTAL_RTOL + atol, atol);
        // The rest from the reference's statistics, each op alone.
        gpu.write(&stats_g, &stats).unwrap();
        let ops = [
            k.batch_norm_forward(&y_g, &x_g, &stats_g, &gain_g, &bias_g, &g).unwrap(),
            k.batch_norm_backward(Some(&dx_g), &dgain_g, &dbias_g, &x_g, &stats_g, &gain_g, &dy_g, &g).unwrap(),
        ];
        gpu.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        assert_close(&format!("{what} forward"), &gpu.read(&y_g).unwrap(), &y, TRANSCENDENTAL_RTOL, atol);
        assert_close(&format!("{what} input grad"), &gpu.read(&dx_g).unwrap(), &dx, TRANSCENDENTAL_RTOL, atol);
        assert_close(&format!("{what} gain grad"), &gpu.read(&dgain_g).unwrap(), &dgain, TRANSCENDENTAL_RTOL, atol);
        assert_close(&format!("{what} bias grad"), &gpu.read(&dbias_g).unwrap(), &dbias, TRANSCENDENTAL_RTOL, atol);
    }
}
