//! The check that a picture of a decision boundary (`live_boundary`'s scene, drawn by
//! `live_boundary` itself or inside `egui_trainer`, or the playground page's) really is the
//! network: at sample pixels, the colour's class must be the class the CPU backend predicts
//! from the saved weights.

use std::path::Path;

use wgpu_nn::data::spirals;
use wgpu_nn::model::Model;

pub use super::boundary_network as network;

/// Where the scene is drawn in a picture, in pixels, and its grid of cells per side.
pub struct Drawing {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
    pub grid: u32,
}

/// The class a pixel shows: its palette colour's dominant channel (red, green, blue), as
/// `boundary.wgsl` mixes it with white.
fn shown_class(rgba: &[u8]) -> usize {
    (0..3).max_by_key(|&c| rgba[c]).expect("three channels")
}

/// Fails unless every clear sample pixel of the drawing in `pixels` (RGBA rows of `stride`
/// pixels) shows the class the CPU predicts for its grid cell from `weights`.
#[track_caller]
pub fn assert_matches_cpu(pixels: &[u8], stride: u32, drawing: &Drawing, weights: &Path) {
    let mut cpu = network().build_cpu().unwrap();
    cpu.load_checkpoint(weights).unwrap();
    // The examples' training points (100 a class, noise 0.15, seed 7) are drawn on top.
    let data = spirals(100, 3, 0.15, 7).unwrap();
    let markers: Vec<[f32; 2]> = data.inputs().chunks(2).map(|q| [q[0], q[1]]).collect();
    assert_shows(pixels, stride, drawing, &mut cpu, &markers, &[0, 1, 2]);
}

/// Fails unless every clear sample pixel of the drawing in `pixels` (RGBA rows of `stride`
/// pixels) shows the class `model` predicts for its grid cell: class k's colour has channel
/// `channels[k]` dominant. Pixels near the boundary, or within 6 pixels of a marker in
/// `markers` (points in the data's [−1, 1]², y up), are skipped.
#[track_caller]
pub fn assert_shows(
    pixels: &[u8],
    stride: u32,
    drawing: &Drawing,
    model: &mut Model,
    markers: &[[f32; 2]],
    channels: &[usize],
) {
    let Drawing { left, top, width, height, grid } = *drawing;
    let classes = channels.len();
    // Every 4th pixel; the point the model is asked about is its grid cell's centre in the
    // data's [−1, 1]², y up, as the scene's grid holds it.
    let samples: Vec<(u32, u32)> =
        (0..height).step_by(4).flat_map(|y| (0..width).step_by(4).map(move |x| (x, y))).collect();
    let cell = |p: u32, size: u32| (((p as f32 + 0.5) / size as f32 * grid as f32) as u32).min(grid - 1);
    let centre = |c: u32| (c as f32 + 0.5) / grid as f32 * 2.0;
    let points: Vec<f32> = samples
        .iter()
        .flat_map(|&(x, y)| [centre(cell(x, width)) - 1.0, 1.0 - centre(cell(y, height))])
        .collect();
    let probs = model.predict(&points).unwrap();

    let near_a_marker = |x: u32, y: u32| {
        markers.iter().any(|q| {
            let (mx, my) = ((q[0] + 1.0) / 2.0 * width as f32, (1.0 - q[1]) / 2.0 * height as f32);
            let (dx, dy) = (x as f32 + 0.5 - mx, y as f32 + 0.5 - my);
            dx * dx + dy * dy < 36.0 // markers are 4 pixels across the radius; 6 for margin
        })
    };
    let (mut checked, mut wrong) = (0, Vec::new());
    for (i, &(x, y)) in samples.iter().enumerate() {
        let p = &probs[i * classes..(i + 1) * classes];
        let mut sorted = p.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // Skip the boundary itself, where a rounding difference may pick the other class.
        if sorted[0] - sorted[1] < 0.1 || near_a_marker(x, y) {
            continue;
        }
        let want = (0..classes).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        let at = (((top + y) * stride + left + x) * 4) as usize;
        checked += 1;
        if shown_class(&pixels[at..at + 4]) != channels[want] {
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
}

/// Reads an RGBA PNG: its pixels, width and height.
pub fn read_png(path: &Path) -> (Vec<u8>, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba, "{}", path.display());
    (pixels, info.width, info.height)
}
