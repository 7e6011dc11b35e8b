//! The playground: a page that trains a small classifier live in the browser, on WebGPU or on
//! the CPU backend compiled to wasm, and draws what it learns on a canvas of the same device
//! as the network (the network's output and hidden activations are what the render pipeline
//! reads; nothing is copied back to draw). TensorFlow Playground's lesson, on this crate.
//!
//! ```sh
//! scripts/web.sh          # builds it for wasm32 and serves it on http://127.0.0.1:8000
//! ```
//!
//! The page's script (`playground.js`) owns the controls, the loss curves and the digit pad;
//! this example owns the networks and the drawing (`page.rs`, `view.rs`, `view.wgsl`).
//! Natively it only says how to open the page.

#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod view;

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    println!("The playground runs in a browser: `scripts/web.sh` builds it and serves it on 127.0.0.1.");
}
