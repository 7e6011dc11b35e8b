//! The `live_boundary` example, headless: the picture it writes really is the network. Its
//! weights are saved, loaded into the CPU backend, and at sample pixels the colour's class
//! must be the class the CPU predicts there.

mod common;

use wgpu_nn::data::spirals;
use wgpu_nn::model::{Loss, ModelConfig};

/// The example's network (`examples/live_boundary/scene.rs`); a mismatch in shapes fails the
/// checkpoint load below with the tensor's name.
fn network() -> ModelConfig {
    ModelConfig::new(2).dense(64).tanh().dense(64).tanh().dense(3).softmax().loss(Loss::SoftmaxCrossEntropy)
}

/// The class a pixel shows: its palette colour's dominant channel (red, green, blue), as
/// `boundary.wgsl` mixes it with white.
fn shown_class(rgba: &[u8]) -> usize {
    let rgb = &rgba[..3];
    (0..3).max_by_key(|&c| rgb[c]).expect("three channels")
}

#[test]
fn the_headless_picture_is_the_network_the_cpu_reads_from_its_weights() {
    if common::gpu().is_none() {
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
        common::run_example("live_boundary", &[&args[..], &[png_arg, "--save", weights_arg]].concat());
    assert_eq!((&report["steps"], &report["backend"]), (&200.into(), &backend.into()));
    let loss = report["loss"].as_f64().unwrap();
    assert!(loss < 3f64.ln(), "200 steps learn something: loss {loss}, chance is ln 3");

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (size, size, png::ColorType::Rgba));

    let mut cpu = network().build_cpu().unwrap();
    cpu.load_checkpoint(&weights).unwrap();
    // Every 4th pixel: its centre in the data's [−1, 1]², y up, as the example's grid.
    let samples: Vec<(u32, u32)> =
        (0..size).step_by(4).flat_map(|y| (0..size).step_by(4).map(move |x| (x, y))).collect();
    let centre = |p: u32| (p as f32 + 0.5) / size as f32 * 2.0;
    let points: Vec<f32> = samples.iter().flat_map(|&(x, y)| [centre(x) - 1.0, 1.0 - centre(y)]).collect();
    let probs = cpu.predict(&points).unwrap();

    // The example's training points (100 a class, noise 0.15, seed 7) are drawn on top.
    let data = spirals(100, 3, 0.15, 7).unwrap();
    let near_a_marker = |px: f32, py: f32| {
        data.inputs().chunks(2).any(|q| {
            let (dx, dy) = ((px - q[0]) * size as f32 / 2.0, (py - q[1]) * size as f32 / 2.0);
            dx * dx + dy * dy < 36.0 // markers are 4 pixels across the radius; 6 for margin
        })
    };
    let (mut checked, mut wrong) = (0, Vec::new());
    for (i, &(x, y)) in samples.iter().enumerate() {
        let p = &probs[i * 3..i * 3 + 3];
        let mut sorted = p.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // Skip the boundary itself, where a rounding difference may pick the other class.
        if sorted[0] - sorted[1] < 0.1 || near_a_marker(points[2 * i], points[2 * i + 1]) {
            continue;
        }
        let want = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        let at = ((y * size + x) * 4) as usize;
        checked += 1;
        if shown_class(&pixels[at..at + 4]) != want {
            wrong.push((x, y, want, pixels[at..at + 4].to_vec()));
        }
    }
    assert!(checked > samples.len() / 3, "only {checked} of {} samples were clear", samples.len());
    assert!(
        wrong.is_empty(),
        "{} of {checked} pixels disagree with the CPU: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
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
