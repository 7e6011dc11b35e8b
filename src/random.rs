//! The crate's one source of randomness: starting weights, epoch orders and the spirals data
//! set all draw from here, so that a seed means the same numbers in every release.
//!
//! rand documents `StdRng` as free to change its algorithm between versions, and its ranges
//! and shuffles as free to change how they spend random bits. Neither may happen to a user's
//! seeded run, so the generator is ChaCha8 (its stream is fixed by its specification) and the
//! three ways we use it are written out below. Golden-value tests (`tests/seeds.rs`) pin them.

use chacha20::ChaCha8Rng;
use rand::{Rng, SeedableRng};

/// A seeded stream of random numbers, the same on every platform and in every release.
pub(crate) struct Random(ChaCha8Rng);

impl Random {
    /// The stream for `seed`: the seed's 8 little-endian bytes as the start of ChaCha's key,
    /// the rest zero (not rand's `seed_from_u64`, whose expansion is rand's to change).
    pub(crate) fn new(seed: u64) -> Random {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        Random(ChaCha8Rng::from_seed(key))
    }

    /// Uniform in [`low`, `high`]: 24 random bits (an f32's precision) scaled onto the range.
    pub(crate) fn uniform(&mut self, low: f32, high: f32) -> f32 {
        let unit = (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32; // [0, 1)
        low + (high - low) * unit
    }

    /// Uniform in `0..n` (n > 0), without modulo bias: Lemire's multiply-and-reject.
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        let threshold = n.wrapping_neg() % n; // 2³² mod n: the low products to reject
        loop {
            let product = u64::from(self.0.next_u32()) * u64::from(n);
            if product as u32 >= threshold {
                return (product >> 32) as u32;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates, from the back).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_covers_its_range_evenly() {
        let mut random = Random::new(1);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[random.below(6) as usize] += 1;
        }
        // Each of 6 outcomes expects 10,000; 5 standard deviations (~456) either side.
        assert!(counts.iter().all(|&c| c.abs_diff(10_000) < 460), "{counts:?}");
    }

    #[test]
    fn uniform_stays_in_range_and_different_seeds_differ() {
        let mut random = Random::new(2);
        assert!((0..10_000).map(|_| random.uniform(-0.5, 0.25)).all(|x| (-0.5..=0.25).contains(&x)));
        let draw = |seed| {
            let mut r = Random::new(seed);
            (0..4).map(|_| r.uniform(0.0, 1.0)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..1000).collect();
        Random::new(5).shuffle(&mut items);
        assert_ne!(items, (0..1000).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..1000).collect::<Vec<_>>());
    }
}
