//! Golden values: what a seed gives, pinned, so that no dependency update or refactor can
//! silently change a user's seeded run (see `src/random.rs`). A failure here means seeded
//! runs now differ from earlier releases: a breaking change to call out, not numbers to paste.
//! (The epoch order's golden test is beside `epoch_order`, in `src/model/batch.rs`.)

use crate::common::{backends, gpu};
use wgpu_nn::data::spirals;
use wgpu_nn::model::{Init, ModelConfig};

#[test]
fn a_seeded_model_starts_from_the_same_weights_in_every_release_and_on_every_backend() {
    for backend in backends() {
        let model = ModelConfig::new(3).dense(2).relu().dense(1).seed(42).build(backend, gpu()).unwrap();
        // He: uniform in ±√(6 / inputs), drawn in layer order.
        let first = [-1.1317999, -0.42920125, -1.1643281, -0.6061361, -0.29845905, -0.018462658];
        assert_eq!(model.weights(0).unwrap(), first, "{backend:?}");
        assert_eq!(model.weights(2).unwrap(), [0.30863583, -0.45763457], "{backend:?}");
        assert_eq!(model.bias(0).unwrap(), [0.0; 2], "{backend:?}");

        let init = Init::Uniform(-0.5, 0.25);
        let model = ModelConfig::new(2).dense_with(2, true, init).seed(7).build(backend, gpu()).unwrap();
        assert_eq!(model.weights(0).unwrap(), [-0.37030724, 0.07308173, 0.18735063, -0.15054679]);
        assert_eq!(model.bias(0).unwrap(), [-0.1640932, -0.49574414], "{backend:?}");
    }
}

#[test]
fn the_spirals_of_a_seed_are_the_same_in_every_release() {
    let data = spirals(2, 2, 0.1, 7).unwrap();
    let golden = [0.0, 0.0, 0.47569147, -0.15400527, 0.0, -0.0, -0.4517343, 0.21432713];
    assert_eq!(data.inputs(), golden);
    assert_eq!(data.labels(), Some(&[0, 0, 1, 1][..]));
}
