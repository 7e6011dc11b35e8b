//! Each lesson example's claim, checked on its real command line (`--json`) on both backends.

use serde_json::Value;

/// Runs `target/<profile>/examples/<name> --backend <backend> --json` and returns its last
/// stdout line as JSON, checking the keys every lesson reports.
fn run(name: &str, backend: &str) -> Value {
    let report = crate::common::run_example(name, &["--backend", backend, "--json"]);
    assert_eq!(report["example"], name);
    assert_eq!(report["backend"], backend);
    assert!(report["adapter"].is_string() && report["seconds"].is_number(), "{report}");
    report
}

/// The backends to check: the CPU always, the GPU where there is one.
fn backends() -> Vec<&'static str> {
    if crate::common::gpu().is_some() { vec!["gpu", "cpu"] } else { vec!["cpu"] }
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().expect("an array").iter().map(|v| v.as_f64().expect("a number") as f32).collect()
}

#[test]
fn one_weight_prints_the_lessons_errors_and_approaches_42() {
    for backend in backends() {
        let report = run("one_weight", backend);
        let losses = floats(&report["losses"]);
        assert_eq!(losses.len(), 20);
        // The lesson's numbers. The first two are exact in f32; after that the weight (2.85,
        // 4.2375, …) is rounded, and an update computed in another order of f32 operations
        // lands an ulp or two away: 433.16025 here against the lesson's 433.16016 (exact
        // 433.16015625). 1e-6 relative is 4 ulps.
        let lesson = [1369.0f32, 770.0625, 433.16016, 243.65259, 137.05458];
        crate::common::assert_close(
            &format!("one_weight errors on {backend}"),
            &losses[..5],
            &lesson,
            1e-6,
            0.0,
        );
        // Each step shrinks the miss by 0.75, so 20 steps leave 37 · 0.75^20 = 0.117.
        let prediction = report["prediction"].as_f64().unwrap();
        assert!((prediction - 42.0).abs() < 0.12, "{backend}: {prediction}");
    }
}

#[test]
fn rectangles_learns_the_average() {
    for backend in backends() {
        let report = run("rectangles", backend);
        let before = report["mse_before"].as_f64().unwrap();
        assert!((0.35..0.5).contains(&before), "{backend}: MSE before {before} (the lesson's is about 0.42)");
        assert!(report["mse_after"].as_f64().unwrap() < 1e-6, "{backend}: {report}");
        for w in floats(&report["weights"]) {
            assert!((w - 0.25).abs() < 1e-3, "{backend}: weights {}", report["weights"]);
        }
    }
}

#[test]
fn streetlight_error_falls_below_one_millionth() {
    for backend in backends() {
        let report = run("streetlight", backend);
        let losses = floats(&report["losses"]);
        assert_eq!(losses.len(), 15, "{backend}: an error every 10 iterations of 150");
        assert!(*losses.last().unwrap() < 1e-6, "{backend}: {losses:?}");
        assert!(losses.first() > losses.last(), "{backend}: {losses:?}");
    }
}

#[test]
fn sigmoid_net_learns_xor() {
    for backend in backends() {
        let report = run("sigmoid_net", backend);
        assert_eq!(report["accuracy"].as_f64(), Some(1.0), "{backend}: {report}");
        let losses = floats(&report["losses"]);
        assert!(losses.last().unwrap() < &0.05 && losses.first() > losses.last(), "{backend}: {losses:?}");
    }
}

#[test]
fn slope_of_x_squared_at_2_is_4() {
    for backend in backends() {
        let report = run("slope", backend);
        assert_eq!(report["gradient"].as_f64(), Some(4.0), "{backend}: {report}");
    }
}

#[test]
fn quadratic_fit_approaches_3_2_1() {
    for backend in backends() {
        let report = run("quadratic", backend);
        let losses = floats(&report["losses"]);
        // Ten single steps, falling, then the means of later stretches, lower still.
        assert!(losses[..10].windows(2).all(|w| w[1] < w[0]), "{backend}: {losses:?}");
        assert!(losses.last().unwrap() < &(losses[9] / 5.0), "{backend}: {losses:?}");
        let params = floats(&report["params"]);
        for (got, want) in params.iter().zip([3.0, 2.0, 1.0]) {
            assert!((got - want).abs() < 0.2, "{backend}: params {params:?}");
        }
    }
}

/// The chapter-10 CNN, 10 of its 300 iterations (the chapter's slow start: its tiny kernels
/// and α/128 steps): the loss falls from chance's ln 10 ≈ 2.30 (2.28 → 1.68 here, on both
/// backends) and the test accuracy is far past chance's 0.1 (0.618 here; 0.5 leaves room).
#[test]
fn edges_learns_digits_with_a_convolution() {
    for backend in backends() {
        let report =
            crate::common::run_example("edges", &["--iterations", "10", "--backend", backend, "--json"]);
        assert_eq!(report["example"], "edges");
        let losses = floats(&report["losses"]);
        assert_eq!(losses.len(), 10);
        assert!(losses[9] < 0.8 * losses[0] && losses[0] < 2.31, "{backend}: {losses:?}");
        let accuracy = report["test_accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.5, "{backend}: test accuracy {accuracy}");
    }
}

#[test]
fn mnist_example_trains_plots_saves_and_loads() {
    let dir = std::env::temp_dir().join(format!("wgpu-nn-mnist-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for backend in backends() {
        let (plot, checkpoint) =
            (dir.join(format!("{backend}.png")), dir.join(format!("{backend}.safetensors")));
        let (plot_arg, checkpoint_arg) = (plot.to_str().unwrap(), checkpoint.to_str().unwrap());
        let args = [
            "--backend",
            backend,
            "--epochs",
            "2",
            "--limit",
            "600",
            "--json",
            "--plot",
            plot_arg,
            "--save",
            checkpoint_arg,
        ];
        let report = crate::common::run_example("mnist", &args);
        for key in [
            "example",
            "backend",
            "adapter",
            "losses",
            "test_accuracy",
            "test_loss",
            "samples_per_second",
            "epochs",
            "seconds",
            "validation_accuracies",
            "best_epoch",
            "stop",
        ] {
            assert!(!report[key].is_null(), "{backend}: no {key} in {report}");
        }
        assert_eq!(floats(&report["losses"]).len(), 2);
        // Trainer's report: both epochs validated on the 60 held-out digits, one of them kept.
        assert_eq!(floats(&report["validation_accuracies"]).len(), 2);
        assert!([1, 2].contains(&report["best_epoch"].as_u64().unwrap()), "{report}");
        assert_eq!(report["stop"], "Finished");
        let accuracy = report["test_accuracy"].as_f64().unwrap();
        // Two epochs on 600 digits reach about 0.8 (chance is 0.1).
        assert!(accuracy > 0.6, "{backend}: {accuracy}");
        assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"), "{backend}: the plot is a PNG");

        // Loading the checkpoint and evaluating gives the same test accuracy.
        let reloaded = crate::common::run_example(
            "mnist",
            &["--backend", backend, "--epochs", "0", "--json", "--load", checkpoint_arg],
        );
        assert_eq!(reloaded["test_accuracy"], report["test_accuracy"], "{backend}");
    }
}

#[test]
fn the_bench_example_reports_every_figure_the_json_promises() {
    let dir = std::env::temp_dir().join(format!("wgpu-nn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("bench.png");
    let report =
        crate::common::run_example("bench", &["--quick", "--json", "--plot", plot.to_str().unwrap()]);
    assert!(report["adapter"].is_string() && report["cpu"].is_string(), "{report}");
    // Kernel launches of one MNIST training step: a count on the GPU, nothing without one.
    match crate::common::gpu() {
        Some(_) => assert!(report["dispatches_per_step"].as_u64().is_some_and(|n| n > 0), "{report}"),
        None => assert!(report["dispatches_per_step"].is_null(), "{report}"),
    }
    let backends: &[&str] = if crate::common::gpu().is_some() { &["gpu", "cpu"] } else { &["cpu"] };
    for &(m, k, n) in &[(1024, 1024, 1024), (256, 784, 128), (256, 128, 64)] {
        for backend in backends {
            let entry = report["matmul"].as_array().unwrap().iter().find(|e| {
                (e["m"].as_u64(), e["k"].as_u64(), e["n"].as_u64(), e["backend"].as_str())
                    == (Some(m), Some(k), Some(n), Some(backend))
            });
            let gflops =
                entry.unwrap_or_else(|| panic!("no {m}x{k}x{n} {backend} in {report}"))["gflops"].as_f64();
            assert!(gflops.is_some_and(|g| g > 0.0), "{m}x{k}x{n} {backend}: {gflops:?}");
        }
    }
    for batch in [64, 256] {
        for backend in backends {
            let found = report["train"].as_array().unwrap().iter().any(|e| {
                e["batch"] == batch
                    && e["backend"] == *backend
                    && e["samples_per_second"].as_f64().unwrap() > 0.0
            });
            assert!(found, "no batch {batch} {backend} training figure in {report}");
        }
    }
    assert!(
        report["crossover"].get("matmul_n").is_some() && report["crossover"].get("train_batch").is_some()
    );
    assert!(report["first_step_seconds"].as_f64().is_some_and(|s| s > 0.0));
    assert!(std::fs::metadata(&plot).unwrap().len() > 1000, "the plot was written");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every example parses its command line the same way (clap): `--help` describes it, and an
/// unknown flag or a bad `--backend` is refused with clap's message and exit code 2.
#[test]
fn every_example_explains_itself_and_refuses_unknown_flags() {
    let examples = [
        "one_weight",
        "rectangles",
        "streetlight",
        "sigmoid_net",
        "slope",
        "quadratic",
        "mnist",
        "edges",
        "matmul",
        "bench",
        "live_boundary",
        "egui_trainer",
    ];
    let deps = std::env::current_exe().unwrap();
    let folder = deps.parent().and_then(|d| d.parent()).unwrap().join("examples");
    for name in examples {
        let run = |args: &[&str]| std::process::Command::new(folder.join(name)).args(args).output().unwrap();
        let help = run(&["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{name} --help");
        assert!(text.contains("--backend") && text.contains("--json"), "{name} --help:\n{text}");
        for bad in [&["--no-such-flag"][..], &["--backend", "tpu"]] {
            let refused = run(bad);
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert_eq!(refused.status.code(), Some(2), "{name} {bad:?}: {stderr}");
            assert!(
                stderr.contains("error:") && stderr.contains(bad.last().unwrap()),
                "{name} {bad:?}: {stderr}"
            );
        }
    }
}

/// With no adapter (asking wgpu for Metal off Apple machines finds none), an example without
/// `--backend` runs on the CPU and says so on stderr; `--backend gpu` is an error instead.
#[test]
fn without_an_adapter_the_examples_fall_back_to_the_cpu_with_a_notice() {
    if cfg!(any(target_os = "macos", target_os = "ios")) {
        return;
    }
    let deps = std::env::current_exe().unwrap();
    let folder = deps.parent().and_then(|d| d.parent()).unwrap().join("examples");
    for (name, args) in
        [("one_weight", &[][..]), ("matmul", &["65", "63", "67"]), ("mnist", &["--epochs", "0"])]
    {
        let run = |extra: &[&str]| {
            let mut command = std::process::Command::new(folder.join(name));
            command.env("WGPU_BACKEND", "metal").args(args).args(extra).output().unwrap()
        };
        let output = run(&["--json"]);
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("notice: no GPU, running on the CPU instead"), "{name}: {stderr}");
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(report["adapter"], "cpu", "{name}: {report}");
        let refused = run(&["--backend", "gpu"]);
        assert!(!refused.status.success(), "{name} --backend gpu without a GPU");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("no GPU adapter found"), "{name}");
    }
}
