//! The losses and optimizer updates, GPU against the CPU reference.

use crate::common::{assert_close, random, random_labels, run, shared_gpu};
use wgpu_nn::model::Loss;
use wgpu_nn::{Gpu, OptimizerSettings, cpu};

/// log, division and pow on GPUs are allowed a few ULP; Adam's √ and division compound them
/// over a few steps.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

portable! {
/// Every element-wise loss (Huber at δ = 1 and 0.25, so its values straddle δ), GPU against CPU.
async fn element_wise_losses_match_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    let losses = Loss::ALL.into_iter().chain([Loss::Huber { delta: 0.25 }]).filter(|l| !l.takes_labels());
    for loss in losses {
        let bce = loss == Loss::BinaryCrossEntropy;
        let name = format!("{loss:?}");
        for (rows, cols) in [(1, 1), (7, 1), (63, 5), (257, 3), (1000, 65)] {
            let len = rows * cols;
            // Probabilities for BCE, including the clamped ends 0 and 1; any values otherwise.
            let squash = |v: f32| if bce { (v + 1.0) / 2.0 } else { 3.0 * v };
            let mut y: Vec<f32> = random(len, len as u64).into_iter().map(squash).collect();
            let t: Vec<f32> = random(len, len as u64 + 1).into_iter().map(squash).collect();
            y[0] = if bce { 0.0 } else { t[0] }; // a clamp, or a zero difference
            let (y_g, t_g, out_g) = (
                gpu.upload(&y, rows, cols).unwrap(),
                gpu.upload(&t, rows, cols).unwrap(),
                gpu.zeros(rows, cols).unwrap(),
            );
            let mut want = vec![0.0; len];

            cpu::value_loss_forward(loss, &mut want, &y, &t).unwrap();
            let forward = gpu.kernels().value_loss_forward(loss, &out_g, &y_g, &t_g).unwrap();
            let got = run(gpu, &[&forward], &out_g).await;
            assert_close(&format!("{name}_forward {rows}x{cols}"), &got, &want, RTOL, ATOL);

            // The mean loss: the terms summed on the GPU with scale 1/len.
            let mean = gpu.zeros(1, 1).unwrap();
            let got = run(gpu, &[&gpu.kernels().sum_all(&mean, &out_g, 1.0 / len as f32).unwrap()], &mean).await;
            let atol = 8.0 * f64::from(f32::EPSILON) * want.iter().map(|v| f64::from(v.abs())).sum::<f64>();
            assert_close(&format!("{name} mean"), &got, &[cpu::sum_all(&want, 1.0 / len as f32)], RTOL, atol);

            cpu::value_loss_backward(loss, &mut want, &y, &t).unwrap();
            let backward = gpu.kernels().value_loss_backward(loss, &out_g, &y_g, &t_g).unwrap();
            let got = run(gpu, &[&backward], &out_g).await;
            assert_close(&format!("{name}_backward {rows}x{cols}"), &got, &want, RTOL, ATOL);
        }
    }
}
}

portable! {
async fn nll_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    for (rows, cols) in [(1, 1), (7, 3), (257, 10), (64, 65)] {
        let x = random(rows * cols, 3);
        let mut log_p = vec![0.0; x.len()];
        cpu::log_softmax_forward(&mut log_p, &x, rows, cols).unwrap();
        let labels = random_labels(rows, cols, 4);
        let (log_p_g, labels_g) =
            (gpu.upload(&log_p, rows, cols).unwrap(), gpu.upload_labels(&labels, cols).unwrap());

        let mut want = vec![0.0; rows];
        cpu::nll_forward(&mut want, &log_p, &labels, rows, cols).unwrap();
        let losses = gpu.zeros(rows, 1).unwrap();
        let got = run(gpu, &[&gpu.kernels().nll_forward(&losses, &log_p_g, &labels_g).unwrap()], &losses).await;
        assert_close(&format!("nll_forward {rows}x{cols}"), &got, &want, 0.0, 0.0);

        let mut want = vec![0.0; rows * cols];
        cpu::nll_backward(&mut want, &labels, rows, cols).unwrap();
        let grad = gpu.zeros(rows, cols).unwrap();
        let got = run(gpu, &[&gpu.kernels().nll_backward(&grad, &log_p_g, &labels_g).unwrap()], &grad).await;
        assert_close(&format!("nll_backward {rows}x{cols}"), &got, &want, 0.0, 0.0);
    }
}
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Optimizer {
    Sgd,
    Momentum,
    Adam,
    AdamW,
}

/// Five steps with a new gradient each, and a learning-rate change before the fourth,
/// recorded as the layer graph does: check (and advance the step counter), then update. The
/// third step's gradient has an infinite element: the check is false on the CPU and marks the
/// step on the GPU, and neither backend takes that step, in any element.
async fn check_optimizer(gpu: &Gpu, optimizer: Optimizer, len: usize) {
    let mut settings = OptimizerSettings::new(0.05);
    let mut w = random(len, 10);
    let (mut m, mut v) = (vec![0.0; len], vec![0.0; len]);
    let (w_g, m_g, v_g, g_g) = (
        gpu.upload(&w, 1, len).unwrap(),
        gpu.zeros(1, len).unwrap(),
        gpu.zeros(1, len).unwrap(),
        gpu.zeros(1, len).unwrap(),
    );
    let settings_g = gpu.kernels().upload_settings(&settings).unwrap();
    let k = gpu.kernels();
    let (check, update) = match optimizer {
        Optimizer::Sgd => (k.sgd_check(&w_g, &g_g, &settings_g), k.sgd_update(&w_g, &g_g, &settings_g)),
        Optimizer::Momentum => (
            k.momentum_check(&w_g, &m_g, &g_g, &settings_g),
            k.momentum_update(&w_g, &m_g, &g_g, &settings_g),
        ),
        Optimizer::Adam => (
            k.adam_check(&w_g, &m_g, &v_g, &g_g, &settings_g),
            k.adam_update(&w_g, &m_g, &v_g, &g_g, &settings_g),
        ),
        Optimizer::AdamW => (
            k.adamw_check(&w_g, &m_g, &v_g, &g_g, &settings_g),
            k.adamw_update(&w_g, &m_g, &v_g, &g_g, &settings_g),
        ),
    };
    let (check, update) = (check.unwrap(), update.unwrap());
    let what = format!("{optimizer:?} over 5 steps, {len} weights");
    for step in 0..5 {
        if step == 3 {
            settings.lr = 0.01;
            gpu.write(&settings_g, &settings.to_row()).unwrap();
        }
        let mut g = random(len, 20 + step);
        if step == 2 {
            g[len / 2] = f32::INFINITY;
        }
        gpu.write(&g_g, &g).unwrap();
        settings.step += 1;
        let finite = match optimizer {
            Optimizer::Sgd => cpu::sgd_check(&w, &g, &settings),
            Optimizer::Momentum => cpu::momentum_check(&w, &m, &g, &settings),
            Optimizer::Adam => cpu::adam_check(&w, &m, &v, &g, &settings),
            Optimizer::AdamW => cpu::adamw_check(&w, &m, &v, &g, &settings),
        }
        .unwrap();
        assert_eq!(finite, step != 2, "{what}: the CPU's check at step {step}");
        if finite {
            match optimizer {
                Optimizer::Sgd => cpu::sgd_update(&mut w, &g, &settings),
                Optimizer::Momentum => cpu::momentum_update(&mut w, &mut m, &g, &settings),
                Optimizer::Adam => cpu::adam_update(&mut w, &mut m, &mut v, &g, &settings),
                Optimizer::AdamW => cpu::adamw_update(&mut w, &mut m, &mut v, &g, &settings),
            }
            .unwrap();
        } else {
            settings.step -= 1;
        }
        gpu.run(&[&check, &update]).unwrap();
        let row = gpu.read_async(&settings_g).await.unwrap();
        // The halt mark: the watch's count (none here), or 1.
        assert_eq!(row[9], if finite { 0.0 } else { 1.0 }, "{what}: the GPU's check at step {step}");
        if !finite {
            gpu.write(&settings_g, &settings.to_row()).unwrap(); // as a model's loss read does
        }
    }
    assert_close(&what, &gpu.read_async(&w_g).await.unwrap(), &w, RTOL, ATOL);
    // The GPU's step counters are bit-identical to the host's.
    assert_eq!(gpu.read_async(&settings_g).await.unwrap(), settings.to_row(), "{what}: settings row");
}

portable! {
async fn optimizers_match_reference_over_several_steps() {
    let Some(gpu) = shared_gpu().await else { return };
    for optimizer in [Optimizer::Sgd, Optimizer::Momentum, Optimizer::Adam, Optimizer::AdamW] {
        for len in [1, 7, 257, 70_000] {
            check_optimizer(gpu, optimizer, len).await;
        }
    }
}
}

portable! {
async fn adams_first_step_moves_each_weight_by_about_the_learning_rate() {
    let Some(gpu) = shared_gpu().await else { return };
    // After one step m̂ = g and v̂ = g², so w moves by lr · g / (|g| + ε) ≈ lr · sign(g).
    let (w, g) = (vec![1.0f32, -2.0, 0.5, 3.0], vec![0.3f32, -4.0, 1e-3, -0.02]);
    let (w_g, m_g, v_g, g_g) = (
        gpu.upload(&w, 1, 4).unwrap(),
        gpu.zeros(1, 4).unwrap(),
        gpu.zeros(1, 4).unwrap(),
        gpu.upload(&g, 1, 4).unwrap(),
    );
    let settings = gpu.kernels().upload_settings(&OptimizerSettings::new(0.1)).unwrap();
    let steps = [
        gpu.kernels().optimizer_advance(&settings).unwrap(),
        gpu.kernels().adam_update(&w_g, &m_g, &v_g, &g_g, &settings).unwrap(),
    ];
    gpu.run(&steps.iter().collect::<Vec<_>>()).unwrap();
    let want: Vec<f32> = w.iter().zip(&g).map(|(w, g)| w - 0.1 * g.signum()).collect();
    assert_close("Adam's first step", &gpu.read_async(&w_g).await.unwrap(), &want, 0.0, 1e-5);
}
}

portable! {
async fn moments_that_decay_below_the_normal_floats_become_zero() {
    // A weight whose gradient is 0 has moments that shrink by β each step; x86 (and llvmpipe,
    // which runs on it) computes with subnormal floats 50–100 times slower, so both backends
    // flush them to zero.
    let tiny = f32::MIN_POSITIVE;
    let mut settings = OptimizerSettings::new(0.1);
    settings.step = 1;
    let (w, g) = (vec![1.0f32; 3], vec![0.0f32; 3]);
    let (m, v) = (vec![tiny, 1e-30, -tiny], vec![tiny, 1e-30, 0.0]);
    let (want_m, want_v) = (vec![0.0, 0.9 * 1e-30, 0.0], vec![0.0, 0.999 * 1e-30, 0.0]);
    let (mut w_cpu, mut m_cpu, mut v_cpu) = (w.clone(), m.clone(), v.clone());
    cpu::adam_update(&mut w_cpu, &mut m_cpu, &mut v_cpu, &g, &settings).unwrap();
    assert_eq!((&m_cpu, &v_cpu), (&want_m, &want_v), "CPU moments");
    let mut velocity = vec![tiny, 1.0];
    cpu::momentum_update(&mut w_cpu[..2], &mut velocity, &g[..2], &settings).unwrap();
    assert_eq!(velocity, vec![0.0, 0.9], "CPU momentum");

    let Some(gpu) = shared_gpu().await else { return };
    let upload = |values: &[f32]| gpu.upload(values, 1, values.len()).unwrap();
    let (w_g, m_g, v_g, g_g) = (upload(&w), upload(&m), upload(&v), upload(&g));
    let (w2_g, velocity_g) = (upload(&w[..2]), upload(&[tiny, 1.0]));
    let settings_g = gpu.kernels().upload_settings(&settings).unwrap();
    let steps = [
        gpu.kernels().adam_update(&w_g, &m_g, &v_g, &g_g, &settings_g).unwrap(),
        gpu.kernels().momentum_update(&w2_g, &velocity_g, &upload(&g[..2]), &settings_g).unwrap(),
    ];
    gpu.run(&steps.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!((gpu.read_async(&m_g).await.unwrap(), gpu.read_async(&v_g).await.unwrap()), (want_m, want_v), "GPU moments");
    assert_eq!(gpu.read_async(&velocity_g).await.unwrap(), vec![0.0, 0.9], "GPU momentum");
}
}

portable! {
async fn optimizer_misuse_is_an_error() {
    let Some(gpu) = shared_gpu().await else { return };
    let (w, g) = (gpu.zeros(2, 3).unwrap(), gpu.zeros(2, 3).unwrap());
    let settings = gpu.kernels().upload_settings(&OptimizerSettings::new(0.1)).unwrap();
    // (Another tensor in the settings row's place is a type error: `SettingsRow`.)
    let err = gpu.kernels().sgd_update(&w, &gpu.zeros(3, 2).unwrap(), &settings).unwrap_err();
    assert!(err.to_string().contains("gradient of 2x3"), "{err}");
    // A moment buffer that is also the weights would be written twice in one launch.
    let err = gpu.kernels().adam_update(&w, &w, &g, &g, &settings).unwrap_err();
    assert!(err.to_string().contains("in-place"), "{err}");
    let err = gpu.write(&w, &[1.0; 5]).unwrap_err();
    assert!(err.to_string().contains("write"), "{err}");
}
}

portable! {
async fn dropout_masks_are_the_same_on_gpu_and_cpu_and_change_every_step() {
    let Some(gpu) = shared_gpu().await else { return };
    let (rows, cols, p, seed) = (257, 65, 0.2, 7);
    let (x, dy) = (random(rows * cols, 30), random(rows * cols, 31));
    let (x_g, dy_g) = (gpu.upload(&x, rows, cols).unwrap(), gpu.upload(&dy, rows, cols).unwrap());
    let (out_g, mask_g, dx_g, counter) = (
        gpu.zeros(rows, cols).unwrap(),
        gpu.zeros(rows, cols).unwrap(),
        gpu.zeros(rows, cols).unwrap(),
        gpu.kernels().dropout_counter().unwrap(),
    );
    let advance = gpu.kernels().dropout_advance(&counter).unwrap();
    let forward = gpu.kernels().dropout_forward(&out_g, &mask_g, &x_g, p, seed, &counter).unwrap();
    let backward = gpu.kernels().dropout_backward(&dx_g, &mask_g, &dy_g).unwrap();
    let mut previous_mask = Vec::new();
    for step in 1..=3 {
        gpu.run(&[&advance, &forward, &backward]).unwrap();
        let (mut out, mut mask, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
        cpu::dropout_forward(&mut out, &mut mask, &x, p, seed, step).unwrap();
        cpu::dropout_backward(&mut dx, &mask, &dy).unwrap();
        // Same hash, same f32 arithmetic: bit for bit.
        assert_close(&format!("dropout mask, step {step}"), &gpu.read_async(&mask_g).await.unwrap(), &mask, 0.0, 0.0);
        assert_close(&format!("dropout_forward, step {step}"), &gpu.read_async(&out_g).await.unwrap(), &out, 0.0, 0.0);
        assert_close(&format!("dropout_backward, step {step}"), &gpu.read_async(&dx_g).await.unwrap(), &dx, 0.0, 0.0);

        let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / mask.len() as f64;
        // 16,705 Bernoulli(0.2) draws: the standard deviation of the fraction is 0.003.
        assert!((dropped - 0.2).abs() < 0.015, "step {step}: dropped {dropped}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.25), "step {step}: mask values");
        assert_ne!(mask, previous_mask, "step {step}: the mask must change between steps");
        previous_mask = mask;
    }
    let err = gpu.kernels().dropout_forward(&out_g, &mask_g, &x_g, 1.0, seed, &counter).unwrap_err();
    assert!(err.to_string().contains("[0, 1)"), "{err}");
}
}

portable! {
async fn the_loss_watch_totals_finite_losses_and_halts_the_optimizer_at_the_first_other() {
    let Some(gpu) = shared_gpu().await else { return };
    let settings_g = gpu.kernels().upload_settings(&OptimizerSettings::new(0.5)).unwrap();
    let batch_loss = gpu.zeros(1, 1).unwrap();
    let watch = gpu.kernels().watch_loss(&settings_g, &batch_loss).unwrap();
    let (w, g) = (vec![1.0, -2.0, 3.0], vec![1.0, 1.0, 1.0]);
    let (w_g, g_g) = (gpu.upload(&w, 1, 3).unwrap(), gpu.upload(&g, 1, 3).unwrap());
    let (advance, update) =
        (gpu.kernels().optimizer_advance(&settings_g).unwrap(), gpu.kernels().sgd_update(&w_g, &g_g, &settings_g).unwrap());
    let mut applied = w.clone();
    for (step, loss) in [1.5, 2.5, f32::NAN, 3.0, f32::INFINITY].into_iter().enumerate() {
        gpu.write(&batch_loss, &[loss]).unwrap();
        gpu.run(&[&watch, &advance, &update]).unwrap(); // a model step's order
        if step < 2 {
            applied.iter_mut().zip(&g).for_each(|(w, g)| *w -= 0.5 * g);
        }
        assert_eq!(gpu.read_async(&w_g).await.unwrap(), applied, "after step {}", step + 1);
    }
    let row = gpu.read_async(&settings_g).await.unwrap();
    // Five steps watched; the third was the first bad one; the total holds steps 1 and 2.
    assert_eq!(row[8..11], [5.0, 3.0, 4.0]);
    assert!(row[11].is_nan(), "the bad loss is kept: {}", row[11]);
    // The β powers advanced only for the two applied steps.
    let mut expected = OptimizerSettings::new(0.5);
    expected.step = 2;
    let expected = expected.to_row();
    assert_eq!(row[6..8], expected[6..8]);
}
}
