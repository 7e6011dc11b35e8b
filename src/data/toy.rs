//! The other 2-D toy sets of TensorFlow Playground beside the spirals: two classes in
//! [−1, 1]², each a shape a network of a given size can or cannot bend around (a circle needs
//! a hidden layer, XOR two hidden units, two clusters none). `noise` moves each point by up to
//! that much on each axis; the same seed gives the same points.

use super::Dataset;
use crate::random::Random;
use crate::{Error, Result};

/// A disc of class 0 (radius below 0.4) inside a ring of class 1 (radius 0.6 to 0.9).
pub fn circles(points_per_class: usize, noise: f32, seed: u64) -> Result<Dataset> {
    toy("circles", points_per_class, noise, seed, |rng, class| {
        let (low, high) = if class == 0 { (0.0, 0.4) } else { (0.6, 0.9) };
        let (r, theta) = (rng.uniform(low, high), rng.uniform(0.0, std::f32::consts::TAU));
        [r * theta.cos(), r * theta.sin()]
    })
}

/// XOR: class 0 in the quadrants where x and y share a sign, class 1 where they do not.
/// Points keep 0.05 from the axes, so without noise no point sits on the boundary.
pub fn xor(points_per_class: usize, noise: f32, seed: u64) -> Result<Dataset> {
    toy("xor", points_per_class, noise, seed, |rng, class| {
        let (x, y) = (rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95));
        let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
        // Class 1 flips the sign of y.
        [sign * x, if class == 0 { sign * y } else { -sign * y }]
    })
}

/// Two round clusters: class 0 about (−0.4, −0.4), class 1 about (0.4, 0.4), each point within
/// 0.3 of its centre on each axis (the mean of three uniforms: bell-shaped).
pub fn gaussians(points_per_class: usize, noise: f32, seed: u64) -> Result<Dataset> {
    toy("gaussians", points_per_class, noise, seed, |rng, class| {
        let centre = if class == 0 { -0.4 } else { 0.4 };
        let mut bell = || (0..3).map(|_| rng.uniform(-0.3, 0.3)).sum::<f32>() / 3.0 * 1.7;
        [centre + bell(), centre + bell()]
    })
}

/// `points_per_class` points of each of the two classes, drawn by `point`, then moved by the
/// noise and kept in [−1, 1]².
fn toy(
    op: &'static str,
    points_per_class: usize,
    noise: f32,
    seed: u64,
    mut point: impl FnMut(&mut Random, u32) -> [f32; 2],
) -> Result<Dataset> {
    if points_per_class == 0 || !(noise.is_finite() && noise >= 0.0) {
        return Err(Error::shape(
            op,
            "at least 1 point per class and a finite noise of at least 0",
            format!("{points_per_class} points, noise {noise}"),
        ));
    }
    let mut rng = Random::new(seed);
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for class in 0..2 {
        for _ in 0..points_per_class {
            let [x, y] = point(&mut rng, class);
            let mut jitter = || rng.uniform(-noise, noise);
            inputs.extend([(x + jitter()).clamp(-1.0, 1.0), (y + jitter()).clamp(-1.0, 1.0)]);
            labels.push(class);
        }
    }
    Dataset::labelled(inputs, 2, labels, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class of a point as each set defines it (without noise).
    fn shape_class(set: &str, [x, y]: [f32; 2]) -> u32 {
        match set {
            "circles" => u32::from(x.hypot(y) > 0.5),
            "xor" => u32::from(x * y < 0.0),
            _ => u32::from(x + y > 0.0),
        }
    }

    #[test]
    fn each_set_is_two_seeded_classes_in_the_unit_square_on_their_side_of_the_shape() {
        for (name, make) in [
            ("circles", circles as fn(usize, f32, u64) -> Result<Dataset>),
            ("xor", xor),
            ("gaussians", gaussians),
        ] {
            let data = make(100, 0.0, 3).unwrap();
            assert_eq!((data.len(), data.width()), (200, 2), "{name}");
            assert_eq!(make(100, 0.0, 3).unwrap().inputs(), data.inputs(), "{name}: seeded");
            assert_ne!(make(100, 0.0, 4).unwrap().inputs(), data.inputs(), "{name}: the seed matters");
            let labels = data.labels().unwrap();
            assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 100, "{name}");
            for (p, &label) in data.inputs().chunks(2).zip(labels) {
                assert!(p.iter().all(|v| (-1.0..=1.0).contains(v)), "{name}: {p:?}");
                assert_eq!(shape_class(name, [p[0], p[1]]), label, "{name}: {p:?}");
            }
            // Noise moves points, within its bound and the square.
            let noisy = make(100, 0.1, 3).unwrap();
            let moved = noisy.inputs().iter().zip(data.inputs()).map(|(a, b)| (a - b).abs());
            assert!(moved.clone().all(|d| d <= 0.1 + 1e-6), "{name}");
            assert!(moved.sum::<f32>() > 1.0, "{name}: noise moved nothing");
            assert!(matches!(make(0, 0.1, 3), Err(Error::Shape { .. })));
            assert!(matches!(make(10, f32::NAN, 3), Err(Error::Shape { .. })));
        }
    }
}
