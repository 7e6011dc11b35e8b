//! Without an adapter, `Gpu::new` fails with a message that says how to get one.
//! (Its own test binary: it changes the process environment.)

use wgpu_nn::{Error, Gpu};

#[test]
fn no_adapter_is_a_clear_error() {
    // Metal exists only on Apple machines; elsewhere asking for it finds no adapter.
    if cfg!(any(target_os = "macos", target_os = "ios")) {
        return;
    }
    // SAFETY: this binary has one test, so no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("WGPU_BACKEND", "metal") };
    match Gpu::new() {
        Err(e @ Error::NoAdapter { .. }) => {
            let message = e.to_string();
            assert!(message.contains("mesa-vulkan-drivers"), "{message}");
            assert!(message.contains("CPU backend"), "{message}");
        }
        other => panic!("expected NoAdapter, got {other:?}"),
    }
}
