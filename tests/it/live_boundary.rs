//! The `live_boundary` example, headless: the picture it writes really is the network. Its
//! weights are saved, loaded into the CPU backend, and at sample pixels the colour's class
//! must be the class the CPU predicts there (`common/boundary.rs`).

use crate::common::boundary::{Drawing, assert_matches_cpu, read_png};

#[test]
fn the_headless_picture_is_the_network_the_cpu_reads_from_its_weights() {
    if crate::common::gpu().is_none() {
        return; // drawing needs an adapter, whichever backend trains
    }
    // Trained on the app's device, or on the CPU backend writing into the app's buffer.
    for backend in ["gpu", "cpu"] {
        picture_matches_the_cpu(backend);
    }
}

fn picture_matches_the_cpu(backend: &str) {
    let dir = std::env::temp_dir().join(format!("wgpu-nn-live-boundary-{}-{backend}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (png_path, weights) = (dir.join("boundary.png"), dir.join("boundary.safetensors"));
    let size = 96;
    let args = ["--backend", backend, "--headless", "--frames", "20", "--size", "96", "--json", "--out"];
    let (png_arg, weights_arg) = (png_path.to_str().unwrap(), weights.to_str().unwrap());
    let report =
        crate::common::run_example("live_boundary", &[&args[..], &[png_arg, "--save", weights_arg]].concat());
    assert_eq!((&report["steps"], &report["backend"]), (&200.into(), &backend.into()));
    let loss = report["loss"].as_f64().unwrap();
    assert!(loss < 3f64.ln(), "200 steps learn something: loss {loss}, chance is ln 3");

    let (pixels, width, height) = read_png(&png_path);
    assert_eq!((width, height), (size, size));
    let drawing = Drawing { left: 0, top: 0, width: size, height: size, grid: size };
    assert_matches_cpu(&pixels, width, &drawing, &weights);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_options_are_errors() {
    let deps = std::env::current_exe().unwrap();
    let binary = deps.parent().and_then(|d| d.parent()).unwrap().join("examples").join("live_boundary");
    let output = std::process::Command::new(binary).args(["--headless", "--size", "5"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("5 is not in 16..=2048"));
}
