//! Image shapes through a model: a config that takes images follows their shape layer by
//! layer (the builders read it, `build` checks it), data sets say their images' shape and
//! load only into a model of that shape, and checkpoints keep it.

use crate::common::{backends, gpu, random};
use wgpu_nn::data::Dataset;
use wgpu_nn::model::{Layer, Loss, Model, ModelConfig, Target};
use wgpu_nn::{Conv2dShape, Error, ImageShape, Pool2dShape};

/// The shape-following builders give the same layers as spelling every shape out.
#[test]
fn the_builders_follow_the_image_through_the_layers() {
    let built = ModelConfig::image(3, 9, 7)
        .conv(4, 3, 2, 1)
        .no_bias()
        .batch_norm()
        .relu()
        .max_pool(2)
        .flatten()
        .dense(5);
    let conv = Conv2dShape::new(3, (9, 7), 4, (3, 3)).stride((2, 2)).padding((1, 1));
    let pool = Pool2dShape::new(4, conv.out_size(), (2, 2));
    let spelled = [
        Layer::Conv2d { shape: conv, bias: false, init: wgpu_nn::model::Init::PyTorch },
        Layer::BatchNorm2d(wgpu_nn::BatchNorm::new(4)),
        Layer::Activation(wgpu_nn::Activation::Relu),
        Layer::MaxPool2d(pool),
        Layer::Flatten,
    ];
    assert_eq!(&built.layers()[..5], &spelled);
    assert_eq!(built.image_at(0), Some(ImageShape::new(3, 9, 7)));
    assert_eq!(built.image_at(1), Some(ImageShape::new(4, 5, 4)));
    assert_eq!(built.image_at(4), Some(ImageShape::new(4, 2, 2)));
    assert_eq!(built.image_at(5), None, "a flatten ends the image");
    assert_eq!(built.width_at(5), 16);
    built.build_cpu().unwrap();
}

/// IDX files say their images' shape; a set of another shape (or of the same width in
/// another shape) is refused by an image model, and taken by one of plain rows.
#[test]
fn data_sets_load_only_into_models_of_their_images_shape() {
    let (train, _) = wgpu_nn::data::bundled_digits8x8().unwrap();
    assert_eq!(train.image(), Some(ImageShape::new(1, 8, 8)));
    assert_eq!(train.take(10).image(), train.image(), "cuts keep the shape");
    let wide = Dataset::labelled(random(4 * 64, 1), 64, vec![0, 1, 2, 3], 10)
        .unwrap()
        .with_image(ImageShape::new(4, 4, 4))
        .unwrap();
    let images =
        ModelConfig::image(1, 8, 8).conv(2, 3, 1, 1).flatten().dense(10).loss(Loss::SoftmaxCrossEntropy);
    let rows = ModelConfig::new(64).dense(10).loss(Loss::SoftmaxCrossEntropy);
    for backend in backends() {
        let mut model = images.build(backend, gpu()).unwrap();
        let resident = model.load(&train).unwrap();
        assert_eq!(resident.image(), Some(ImageShape::new(1, 8, 8)));
        let err = model.load(&wide).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "load", .. }), "{backend:?}: {err}");
        assert!(err.to_string().contains("channels: 4"), "{err}");
        rows.build(backend, gpu()).unwrap().load(&wide).unwrap();
    }
}

/// A saved image model comes back from its file alone with its shape, and predicts the same.
#[test]
fn checkpoints_keep_the_image_shape() {
    let config =
        ModelConfig::image(2, 5, 5).conv(3, 3, 1, 0).batch_norm().tanh().avg_pool(3).flatten().dense(2);
    let x = random(4 * 50, 2);
    for backend in backends() {
        let mut model = config.build(backend, gpu()).unwrap();
        model.train_step(&x, &Target::Values(&random(8, 3))).unwrap();
        let saved = model.save_bytes().unwrap();
        let mut rebuilt = Model::from_checkpoint_bytes(&saved, "saved", backend, gpu()).unwrap();
        assert_eq!(rebuilt.config().image_at(0), Some(ImageShape::new(2, 5, 5)));
        assert_eq!(rebuilt.config(), &config);
        assert_eq!(rebuilt.predict(&x).unwrap(), model.predict(&x).unwrap());
    }
}
