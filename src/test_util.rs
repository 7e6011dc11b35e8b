//! What the unit tests of the CPU backend's fast paths share.

/// The largest difference between `got` and `want`, value by value: infinite where one is NaN
/// and the other is not (an output never written stays the NaN the tests fill it with), 0
/// where both are.
pub(crate) fn worst_difference(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths");
    let difference = |(g, w): (&f64, &f64)| match (g.is_nan(), w.is_nan()) {
        (false, false) => (g - w).abs(),
        (true, true) => 0.0,
        _ => f64::INFINITY,
    };
    got.iter().zip(want).map(difference).fold(0.0, f64::max)
}
