//! The `egui_trainer` example in a real window (under Xvfb when there is no display): it
//! trains inside egui's paint callback on egui's own device and encoder, takes a screenshot
//! through eframe, and saves the weights it drew. The screenshot's drawing must be the
//! network, pixel for pixel, as the CPU backend reads it from those weights.

use std::process::Command;

use crate::common::boundary::{Drawing, assert_matches_cpu, read_png};

/// Set by CI: no way to open a window fails the test instead of skipping it.
const REQUIRE_DISPLAY: &str = "WGPU_NN_REQUIRE_DISPLAY";

/// The command that opens the example's window: directly on a display, else under a
/// virtual X server (`xvfb-run`); `None` when neither is there. Under coreutils' `timeout`
/// where it exists, so that a window that never closes fails the test instead of hanging it.
fn windowed(binary: &std::path::Path) -> Option<Command> {
    let limited = |program: &std::ffi::OsStr| {
        if Command::new("timeout").arg("--version").output().is_ok() {
            let mut command = Command::new("timeout");
            command.arg("300").arg(program);
            command
        } else {
            Command::new(program)
        }
    };
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some());
    if has_display {
        return Some(limited(binary.as_os_str()));
    }
    let xvfb = Command::new("xvfb-run").arg("--help").output().is_ok();
    if !xvfb {
        assert!(
            std::env::var_os(REQUIRE_DISPLAY).is_none(),
            "{REQUIRE_DISPLAY} is set but there is no display and no xvfb-run"
        );
        eprintln!("SKIPPING the egui window test: no display and no xvfb-run (apt-get install xvfb)");
        return None;
    }
    let mut command = limited("xvfb-run".as_ref());
    command.args(["-a", "-s", "-screen 0 1280x800x24"]).arg(binary);
    Some(command)
}

#[test]
fn the_egui_screenshot_is_the_network_trained_in_the_paint_callback() {
    let Some(gpu) = crate::common::gpu() else {
        return; // the window needs an adapter, whichever backend trains
    };
    let dir = tempfile::tempdir().unwrap();
    if gpu.adapter_info().name.contains("SwiftShader") {
        // Chromium's SwiftShader has no window-system surfaces (no VK_KHR_xlib_surface): the
        // app must fail at its window with wgpu's error, not hang or draw nothing.
        let Some(mut command) = windowed(&crate::common::example_binary("egui_trainer")) else { return };
        let output = command.args(["--frames", "2", "--json"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("Failed to create surface"), "{stderr}");
        eprintln!("SwiftShader has no window surfaces: the egui window test ran only to its clear error");
        return;
    }
    // Trained in egui's encoder, or on the CPU backend writing into egui's buffer.
    for backend in ["gpu", "cpu"] {
        let (shot, weights) =
            (dir.path().join(format!("{backend}.png")), dir.path().join(format!("{backend}.safetensors")));
        let Some(mut command) = windowed(&crate::common::example_binary("egui_trainer")) else { return };
        command.args(["--backend", backend, "--frames", "20", "--size", "160", "--json", "--screenshot"]);
        command.arg(&shot).arg("--save").arg(&weights);
        let report = crate::common::run_command("egui_trainer", &mut command);
        assert_eq!((&report["steps"], &report["backend"]), (&200.into(), &backend.into()), "{report}");
        let numbers = |key: &str| -> Vec<f64> {
            report[key].as_array().unwrap().iter().map(|l| l.as_f64().unwrap()).collect()
        };
        let (losses, steps) = (numbers("losses"), numbers("loss_steps"));
        // Read every 10 frames when the last read is back (when depends on the adapter's pace):
        // the first after 10 steps, at most one at 200.
        assert!(losses.len() >= 2 && steps[0] == 10.0, "{report}");
        assert!(steps.windows(2).all(|w| w[0] < w[1]) && *steps.last().unwrap() <= 200.0, "{report}");
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < first && last < 3f64.ln(), "{backend}: the loss falls: {losses:?}");

        let (pixels, width, height) = read_png(&shot);
        assert_eq!(report["screenshot_size"], serde_json::json!([width, height]));
        let at = |i: usize| report["drawing"][i].as_f64().unwrap() as u32;
        let drawing = Drawing { left: at(0), top: at(1), width: at(2), height: at(3), grid: 160 };
        assert!(drawing.left + drawing.width <= width && drawing.top + drawing.height <= height, "{report}");
        assert_matches_cpu(&pixels, width, &drawing, &weights);
    }
}

#[test]
fn bad_options_are_errors_before_any_window_opens() {
    let run = |args: &[&str]| {
        Command::new(crate::common::example_binary("egui_trainer")).args(args).output().unwrap()
    };
    let output = run(&["--screenshot", "x.png"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--screenshot needs --frames"));
    let output = run(&["--size", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("5 is not in 16..=1024"));
    let output = run(&["--steps", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("0 is not in 1..=50"));
}

#[test]
fn without_a_display_it_says_so_and_fails() {
    let output = Command::new(crate::common::example_binary("egui_trainer"))
        .args(["--frames", "1"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("egui_trainer:") && stderr.contains("DISPLAY"), "{stderr}");
}
