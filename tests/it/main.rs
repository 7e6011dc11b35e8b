//! The integration tests: one binary (one link of the crate and its GPU stack, not twenty),
//! a module per subject.
//!
//! The modules marked portable hold test bodies written once as `async` code on the crate's
//! `async` calls ([`common::portable`]): natively each is a `#[test]` that blocks on its body,
//! and built for `wasm32-unknown-unknown` the same bodies are the browser suite, run by
//! `wasm-bindgen-test-runner` in headless Chromium on WebGPU (see README, "The browser").
//! The rest run native programs, windows, files or threads, which a page has not.

#[macro_use]
mod common;

// Portable: native and browser.
mod bench;
mod fused_step;
mod kernels;
mod training;
mod training_kernels;

// Native only.
#[cfg(not(target_arch = "wasm32"))]
mod bad_inputs;
#[cfg(not(target_arch = "wasm32"))]
mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
mod context;
#[cfg(not(target_arch = "wasm32"))]
mod data;
#[cfg(not(target_arch = "wasm32"))]
mod egui_trainer;
#[cfg(not(target_arch = "wasm32"))]
mod embedding;
#[cfg(not(target_arch = "wasm32"))]
mod errors;
#[cfg(not(target_arch = "wasm32"))]
mod fused;
#[cfg(not(target_arch = "wasm32"))]
mod gradients;
#[cfg(not(target_arch = "wasm32"))]
mod lessons;
#[cfg(not(target_arch = "wasm32"))]
mod live_boundary;
#[cfg(not(target_arch = "wasm32"))]
mod mnist;
#[cfg(not(target_arch = "wasm32"))]
mod model;
#[cfg(not(target_arch = "wasm32"))]
mod playground;
#[cfg(not(target_arch = "wasm32"))]
mod properties;
#[cfg(not(target_arch = "wasm32"))]
mod pytorch;
#[cfg(not(target_arch = "wasm32"))]
mod reliability;
#[cfg(not(target_arch = "wasm32"))]
mod seeds;
#[cfg(not(target_arch = "wasm32"))]
mod shapes;
#[cfg(not(target_arch = "wasm32"))]
mod trainer;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
