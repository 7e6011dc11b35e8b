//! Any bytes, as an IDX image file and as an IDX label file (plain, or gzip when they start
//! with its magic): the reader must return Ok or an Error, never panic or allocate from an
//! unchecked header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpu_nn::data::idx::{decode_images, decode_labels};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(images) = decode_images(bytes, "fuzz-images") {
        assert_eq!(images.pixels.len(), images.count * images.rows * images.cols);
    }
    let _ = decode_labels(bytes, "fuzz-labels");
});
