//! Watch a classifier learn: a 2 → 64 → 64 → 3 network trains on three interleaved spirals
//! while its decision boundary is drawn live, every pixel coloured by the class the network
//! gives it. The app owns the wgpu device; the network lives on it. Each frame records a few
//! training steps, a forward pass over every pixel of a grid (straight into a storage buffer)
//! and the render pass that draws that buffer, into one encoder and one submit. The weights
//! are never read back; the loss comes back through a polled reading, into the title.
//!
//! ```sh
//! cargo run --release --example live_boundary                  # in a window
//! cargo run --release --example live_boundary -- --headless --frames 60 --out boundary.png
//! ```
//!
//! `--help` lists the options. `--backend cpu` trains on the CPU backend and writes its output
//! into the app's buffer each frame; drawing needs an adapter either way.

#[path = "../cli/mod.rs"]
mod cli;
mod scene;

use std::path::PathBuf;
use std::sync::Arc;

use scene::Scene;
use wgpu_nn::model::Backend;
use wgpu_nn::wgpu;
use winit::application::ApplicationHandler;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, EventLoop};
use winit::window::{Window, WindowId};

/// Watch a classifier learn three spirals, its decision boundary drawn live.
#[derive(clap::Parser)]
#[command(name = "live_boundary")]
struct Options {
    /// Render offscreen and write the last frame to --out (no display needed)
    #[arg(long)]
    headless: bool,
    /// Frames to render when headless
    #[arg(long, default_value_t = 60)]
    frames: u32,
    /// The PNG a headless run writes
    #[arg(long, value_name = "FILE.png", default_value = "boundary.png")]
    out: PathBuf,
    /// Pixels and grid cells per side
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=2048))]
    size: u32,
    /// Training steps per frame
    #[arg(long, default_value_t = 10)]
    steps: u32,
    /// Train layer by layer, not with the fused step (to compare the two; see README)
    #[arg(long)]
    layered: bool,
    /// Save the weights at the end (safetensors)
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    #[command(flatten)]
    common: cli::Common,
}

impl Options {
    /// The backend `--backend` asks for: the GPU unless it says the CPU (drawing needs the
    /// app's device anyway, so there is no CPU fallback without one).
    fn backend(&self) -> Backend {
        if self.common.backend == Some(cli::Place::Cpu) { Backend::Cpu } else { Backend::Gpu }
    }
}

fn main() {
    let o: Options = clap::Parser::parse();
    let result = if o.headless { headless(&o) } else { windowed(o) };
    if let Err(e) = result {
        eprintln!("live_boundary: {e}");
        std::process::exit(1);
    }
}

/// The app's own device, as a graphics app would make it (here with the adapter's limits).
async fn device(
    instance: &wgpu::Instance,
    surface: Option<&wgpu::Surface<'_>>,
) -> Result<(wgpu::Adapter, wgpu::Device, wgpu::Queue), String> {
    let adapter = match surface {
        None => wgpu::util::initialize_adapter_from_env_or_default(instance, None).await,
        Some(surface) => wgpu::util::initialize_adapter_from_env_or_default(instance, Some(surface)).await,
    }
    .map_err(|e| format!("no GPU adapter ({e}); install mesa-vulkan-drivers or try WGPU_BACKEND=gl"))?;
    let descriptor = wgpu::DeviceDescriptor { required_limits: adapter.limits(), ..Default::default() };
    let (device, queue) = adapter.request_device(&descriptor).await.map_err(|e| e.to_string())?;
    Ok((adapter, device, queue))
}

/// Renders `frames` frames offscreen and writes the last to a PNG: no display needed.
fn headless(o: &Options) -> Result<(), String> {
    let start = std::time::Instant::now();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let (adapter, device, queue) = pollster::block_on(device(&instance, None))?;
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut scene =
        Scene::new(&device, &queue, format, o.size, o.steps, o.backend()).map_err(|e| e.to_string())?;
    scene.resize(o.size, o.size);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("frame"),
        size: wgpu::Extent3d { width: o.size, height: o.size, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    if o.layered {
        scene.model.set_fused(false).map_err(|e| e.to_string())?;
    }
    let frames_start = std::time::Instant::now();
    for _ in 0..o.frames {
        let mut encoder = device.create_command_encoder(&Default::default());
        scene.frame(&mut encoder, &view).map_err(|e| e.to_string())?;
        queue.submit([encoder.finish()]);
        scene.after_submit().map_err(|e| e.to_string())?;
    }
    let pixels = read_texture(&device, &queue, &target, o.size)?;
    let frame_ms = frames_start.elapsed().as_secs_f64() * 1e3 / f64::from(o.frames.max(1));
    write_png(&o.out, o.size, &pixels)?;
    let (loss, accuracy) = scene.finish().map_err(|e| e.to_string())?;
    if let Some(path) = &o.save {
        scene.model.save(path).map_err(|e| e.to_string())?;
    }
    println!(
        "{} frames ({} steps) on {}: loss {loss:.4}, training accuracy {accuracy:.3}; wrote {}",
        o.frames,
        o.frames * o.steps,
        adapter.get_info().name,
        o.out.display()
    );
    if o.common.json {
        let report = serde_json::json!({
            "example": "live_boundary",
            "adapter": format!("{} ({:?})", adapter.get_info().name, adapter.get_info().backend),
            "backend": o.backend().name(),
            "frames": o.frames, "steps": o.frames * o.steps, "size": o.size,
            "loss": loss, "accuracy": accuracy, "out": o.out, "seconds": start.elapsed().as_secs_f64(),
            "frame_ms": frame_ms, "fused": scene.model.fused(scene.batch()).is_ok_and(|f| f.is_ok()),
        });
        println!("{report}");
    }
    Ok(())
}

/// Copies the frame to a buffer and maps it (the one blocking wait, after the last frame).
fn read_texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
    size: u32,
) -> Result<Vec<u8>, String> {
    let row = (size * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("frame read-back"),
        size: u64::from(row * size),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: None },
        },
        texture.size(),
    );
    encoder.map_buffer_on_submit(&buffer, wgpu::MapMode::Read, .., |_| {});
    queue.submit([encoder.finish()]);
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| e.to_string())?;
    let view = buffer.slice(..).get_mapped_range().map_err(|e| e.to_string())?;
    Ok(view.chunks(row as usize).flat_map(|r| &r[..size as usize * 4]).copied().collect())
}

/// Writes an RGBA PNG to a temporary file, then renames it into place.
fn write_png(path: &std::path::Path, size: u32, rgba: &[u8]) -> Result<(), String> {
    let temporary = path.with_extension("png.tmp");
    let file = std::fs::File::create(&temporary).map_err(|e| format!("{}: {e}", temporary.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), size, size);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgba).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The window: a frame per redraw, the loss in the title, until it is closed.
fn windowed(o: Options) -> Result<(), String> {
    let event_loop = EventLoop::new().map_err(|e| format!("no display ({e}); try --headless"))?;
    let display = Box::new(event_loop.owned_display_handle());
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_with_display_handle_from_env(display));
    let mut app = App { instance, options: o, window: None, error: None };
    event_loop.run_app(&mut app).map_err(|e| e.to_string())?;
    app.error.map_or(Ok(()), Err)
}

struct App {
    instance: wgpu::Instance,
    options: Options,
    window: Option<Windowed>,
    error: Option<String>,
}

struct Windowed {
    window: Arc<Window>,
    surface: wgpu::Surface<'static>,
    config: wgpu::SurfaceConfiguration,
    device: wgpu::Device,
    queue: wgpu::Queue,
    scene: Scene,
}

impl App {
    fn open(&self, event_loop: &ActiveEventLoop) -> Result<Windowed, String> {
        let attributes = Window::default_attributes().with_title("live_boundary").with_inner_size(
            winit::dpi::LogicalSize::new(self.options.size.max(512), self.options.size.max(512)),
        );
        let window = Arc::new(event_loop.create_window(attributes).map_err(|e| e.to_string())?);
        let surface = self.instance.create_surface(window.clone()).map_err(|e| e.to_string())?;
        let (adapter, device, queue) = pollster::block_on(device(&self.instance, Some(&surface)))?;
        let size = window.inner_size();
        let mut config = surface
            .get_default_config(&adapter, size.width.max(1), size.height.max(1))
            .ok_or("the adapter cannot present to this window")?;
        // A linear format, so the window shows the same colours as the PNG.
        let formats = surface.get_capabilities(&adapter).formats;
        config.format = formats.iter().copied().find(|f| !f.is_srgb()).unwrap_or(config.format);
        surface.configure(&device, &config);
        let o = &self.options;
        let mut scene = Scene::new(&device, &queue, config.format, o.size, o.steps, o.backend())
            .map_err(|e| e.to_string())?;
        scene.resize(config.width, config.height);
        Ok(Windowed { window, surface, config, device, queue, scene })
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_none() {
            match self.open(event_loop) {
                Ok(w) => self.window = Some(w),
                Err(e) => {
                    self.error = Some(e);
                    event_loop.exit();
                }
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        let Some(w) = self.window.as_mut() else { return };
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::Resized(size) if size.width > 0 && size.height > 0 => {
                (w.config.width, w.config.height) = (size.width, size.height);
                w.surface.configure(&w.device, &w.config);
                w.scene.resize(size.width, size.height);
            }
            WindowEvent::RedrawRequested => {
                if let Err(e) = redraw(w) {
                    self.error = Some(e);
                    event_loop.exit();
                }
            }
            _ => {}
        }
    }

    fn about_to_wait(&mut self, _: &ActiveEventLoop) {
        if let Some(w) = &self.window {
            w.window.request_redraw();
        }
    }
}

fn redraw(w: &mut Windowed) -> Result<(), String> {
    let frame = match w.surface.get_current_texture() {
        wgpu::CurrentSurfaceTexture::Success(frame) | wgpu::CurrentSurfaceTexture::Suboptimal(frame) => frame,
        wgpu::CurrentSurfaceTexture::Outdated | wgpu::CurrentSurfaceTexture::Lost => {
            w.surface.configure(&w.device, &w.config);
            return Ok(());
        }
        _ => return Ok(()), // occluded or timed out: skip this frame
    };
    let view = frame.texture.create_view(&Default::default());
    let mut encoder = w.device.create_command_encoder(&Default::default());
    w.scene.frame(&mut encoder, &view).map_err(|e| e.to_string())?;
    w.queue.submit([encoder.finish()]);
    w.queue.present(frame);
    w.scene.after_submit().map_err(|e| e.to_string())?;
    w.window.set_title(&w.scene.title());
    Ok(())
}
