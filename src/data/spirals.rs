//! The interleaved spirals: the classic 2-D toy set that no straight line separates, for
//! watching a classifier bend its decision boundary (see `examples/live_boundary.rs`).

use super::Dataset;
use crate::random::Random;
use crate::{Error, Result};

/// `classes` spiral arms of `points_per_class` points each, in [−1, 1]²: point i of arm k
/// sits at radius r = i / n and angle θ = 2πk / classes + 4r, plus normal-ish noise of
/// `noise` radians on θ (the sum of three uniforms). The same seed gives the same points.
pub fn spirals(points_per_class: usize, classes: usize, noise: f32, seed: u64) -> Result<Dataset> {
    if points_per_class == 0 || classes < 2 || !noise.is_finite() {
        return Err(Error::shape(
            "spirals",
            "at least 1 point per class, 2 classes and a finite noise",
            format!("{points_per_class} points, {classes} classes, noise {noise}"),
        ));
    }
    let mut rng = Random::new(seed);
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for k in 0..classes {
        for i in 0..points_per_class {
            let r = i as f32 / points_per_class as f32;
            let jitter: f32 = (0..3).map(|_| rng.uniform(-1.0, 1.0)).sum::<f32>() * noise;
            let theta = std::f32::consts::TAU * k as f32 / classes as f32 + 4.0 * r + jitter;
            inputs.extend([r * theta.sin(), r * theta.cos()]);
            labels.push(k as u32);
        }
    }
    Dataset::labelled(inputs, 2, labels, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_are_seeded_inside_the_unit_square_and_labelled_by_arm() {
        let a = spirals(100, 3, 0.2, 7).unwrap();
        assert_eq!((a.len(), a.width()), (300, 2));
        let labels = a.labels().unwrap();
        assert_eq!(a, spirals(100, 3, 0.2, 7).unwrap());
        assert_ne!(a, spirals(100, 3, 0.2, 8).unwrap());
        assert!(a.inputs().iter().all(|v| v.abs() <= 1.0));
        assert_eq!(labels[..100], [0; 100]);
        assert_eq!(labels[200..], [2; 100]);
        assert!(spirals(0, 3, 0.2, 1).is_err() && spirals(10, 1, 0.2, 1).is_err());
    }
}
