//! The playground page end to end (`examples/playground`): `tests/web/playground.mjs` drives
//! it in headless Chromium (train the spirals on WebGPU, then on the CPU backend, the digits,
//! and the page without WebGPU), and here the canvas's pixels it read are held against the
//! CPU backend's predictions for the weights the page reported at those pixels.
//!
//! Needs the built page (`scripts/web.sh build`), node with `tests/web`'s packages
//! (`npm ci --prefix tests/web`) and chromium, so plain `cargo test` leaves it out; `.ci/run`
//! prepares them and runs it with `cargo test --test it playground -- --ignored`, where a
//! missing piece fails it.

use std::path::PathBuf;
use std::process::Command;

use wgpu_nn::model::{Backend, Model};

use crate::common::boundary::{Drawing, assert_shows};

#[test]
#[ignore = "needs scripts/web.sh build, npm ci --prefix tests/web and chromium; run with --ignored"]
fn the_playground_trains_and_draws_its_network_in_headless_chromium() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("playground-e2e");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("node")
        .arg("tests/web/playground.mjs")
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("node runs (apt-get install nodejs)");
    assert!(status.success(), "tests/web/playground.mjs failed: {status}");
    println!("playground screenshots: {}", out.display());

    let points: Vec<f32> = serde_json::from_slice(&std::fs::read(out.join("points.json")).unwrap()).unwrap();
    let markers: Vec<[f32; 2]> = points.chunks(4).map(|p| [p[0], p[1]]).collect();
    // The boundary's place on the canvas (examples/playground/view.rs: MAIN) and its grid.
    let drawing = Drawing { left: 10, top: 10, width: 400, height: 400, grid: 50 };
    for backend in ["webgpu", "cpu"] {
        let pixels = std::fs::read(out.join(format!("{backend}.rgba"))).unwrap();
        assert_eq!(pixels.len(), 760 * 420 * 4, "{backend}: the canvas's pixels");
        let weights = out.join(format!("{backend}.safetensors"));
        let mut model = Model::from_checkpoint(&weights, Backend::Cpu, None).unwrap();
        // Class 0 is drawn orange (red dominant), class 1 blue.
        assert_shows(&pixels, 760, &drawing, &mut model, &markers, &[0, 2]);
    }
}
