//! Training inside an egui app: eframe owns the window, the wgpu device and the frame's
//! encoder; a paint callback records the network's training steps and its forward pass over
//! a grid into egui's own encoder (`prepare`), then draws the decision boundary inside egui's
//! render pass (`paint`). The side panel shows the loss curve as it comes back, a polled
//! read of a few bytes every ten frames; the weights are never read back.
//!
//! ```sh
//! cargo run --release --example egui_trainer
//! cargo run --release --example egui_trainer -- --frames 30 --screenshot shot.png --json
//! ```
//!
//! The network and the drawing are `live_boundary`'s (`../live_boundary/scene.rs`): only
//! where the frame comes from differs. `--backend cpu` trains on the CPU backend and writes its
//! output into a buffer on egui's device each frame; the window needs an adapter either way.

#[path = "../cli/mod.rs"]
mod cli;
#[path = "../live_boundary/scene.rs"]
mod scene;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui;
use eframe::egui_wgpu::{self, wgpu};
use scene::Scene;
use serde_json::json;
use wgpu_nn::model::Backend;

/// Train a classifier inside an egui app, its boundary and loss curve drawn live.
#[derive(clap::Parser)]
#[command(name = "egui_trainer")]
struct Options {
    /// Train for N frames, then take a screenshot (with --screenshot) and close
    #[arg(long, value_name = "N")]
    frames: Option<u32>,
    /// Where the screenshot goes (PNG), after --frames
    #[arg(long, value_name = "FILE.png")]
    screenshot: Option<PathBuf>,
    /// Save the weights drawn in the screenshot (safetensors)
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Points per side of the drawing, and grid cells per side
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=1024))]
    size: u32,
    /// Training steps per frame (the slider's range)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    steps: u32,
    #[command(flatten)]
    common: cli::Common,
}

fn main() {
    let o: Options = clap::Parser::parse();
    if o.screenshot.is_some() && o.frames.is_none() {
        eprintln!("egui_trainer: --screenshot needs --frames");
        std::process::exit(2);
    }
    if let Err(e) = run(o) {
        eprintln!("egui_trainer: {e}");
        std::process::exit(1);
    }
}

fn run(o: Options) -> Result<(), String> {
    // egui asks for WebGL2's limits on GL adapters; training needs the adapter's own (storage
    // buffers in compute shaders), as any app sharing its device with wgpu-nn would ask.
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.device_descriptor = Arc::new(|adapter: &wgpu::Adapter| wgpu::DeviceDescriptor {
        label: Some("egui_trainer"),
        required_limits: adapter.limits(),
        ..Default::default()
    });
    let side = o.size as f32 + 280.0;
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([side + 40.0, o.size as f32 + 40.0])
            .with_title("egui_trainer"),
        wgpu_options: egui_wgpu::WgpuConfiguration {
            wgpu_setup: egui_wgpu::WgpuSetup::CreateNew(setup),
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = Arc::new(Mutex::new(Ok(())));
    let app_outcome = Arc::clone(&outcome);
    eframe::run_native(
        "egui_trainer",
        options,
        Box::new(move |cc| Ok(Box::new(App::new(cc, o, app_outcome)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| e.to_string())?;
    let outcome = outcome.lock().map_err(|e| e.to_string())?;
    outcome.clone()
}

/// Frames to wait for eframe's screenshot before giving up (it comes the frame after).
const SHOT_FRAMES: u32 = 120;

/// What lives in egui's callback resources: the scene (network, grid, pipelines), and the
/// first error a callback met (callbacks cannot return one).
struct Live {
    scene: Scene,
    error: Option<String>,
}

/// The paint callback of one frame: where the drawing is, in points.
struct Draw {
    rect: egui::Rect,
}

impl egui_wgpu::CallbackTrait for Draw {
    fn prepare(
        &self,
        _device: &wgpu::Device,
        _queue: &wgpu::Queue,
        screen: &egui_wgpu::ScreenDescriptor,
        egui_encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(live) = resources.get_mut::<Mutex<Live>>() else { return Vec::new() };
        let Ok(live) = live.get_mut() else { return Vec::new() };
        let pixels = self.rect.size() * screen.pixels_per_point;
        live.scene.resize(pixels.x.round() as u32, pixels.y.round() as u32);
        // Training steps and the forward pass go into egui's encoder, before its render pass.
        if let Err(e) = live.scene.record(egui_encoder) {
            live.error.get_or_insert(e.to_string());
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        // egui has set the viewport to this callback's rectangle.
        if let Some(Ok(live)) = resources.get::<Mutex<Live>>().map(Mutex::lock) {
            live.scene.draw(render_pass);
        }
    }
}

struct App {
    options: Options,
    /// (training steps, mean loss since the last read) for the curve.
    losses: Vec<(u32, f32)>,
    paused: bool,
    steps: u32,
    /// The drawing's rectangle in physical pixels, for the report.
    drawn: Option<egui::Rect>,
    /// The frame the screenshot was asked for in, and whether the run has ended.
    shot_requested: Option<u32>,
    finished: bool,
    shot: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
    outcome: Arc<Mutex<Result<(), String>>>,
}

impl App {
    fn new(
        cc: &eframe::CreationContext<'_>,
        options: Options,
        outcome: Arc<Mutex<Result<(), String>>>,
    ) -> Result<App, String> {
        let state = cc.wgpu_render_state.as_ref().ok_or("eframe did not start its wgpu renderer")?;
        let backend = match options.common.backend {
            Some(cli::Place::Cpu) => Backend::Cpu,
            _ => Backend::Gpu,
        };
        let scene = Scene::new(
            &state.device,
            &state.queue,
            state.target_format,
            options.size,
            options.steps,
            backend,
        )
        .map_err(|e| e.to_string())?;
        let live = Mutex::new(Live { scene, error: None });
        state.renderer.write().callback_resources.insert(live);
        Ok(App {
            steps: options.steps,
            options,
            losses: Vec::new(),
            paused: false,
            drawn: None,
            shot_requested: None,
            finished: false,
            shot: Arc::new(Mutex::new(None)),
            outcome,
        })
    }

    /// Polls the loss, applies the controls, and runs the screenshot of a `--frames` run.
    fn step(&mut self, ctx: &egui::Context, frame: &eframe::Frame) -> Result<(), String> {
        let state = frame.wgpu_render_state().ok_or("no wgpu renderer")?;
        let renderer = state.renderer.read();
        let live = renderer.callback_resources.get::<Mutex<Live>>().ok_or("no scene")?;
        let mut live = live.lock().map_err(|e| e.to_string())?;
        if let Some(error) = live.error.take() {
            return Err(error);
        }
        let trained = live.scene.trained();
        if let Some(reading) = live.scene.after_submit().map_err(|e| e.to_string())? {
            self.losses.push(reading);
        }
        let done = self.options.frames.is_some_and(|frames| live.scene.frames() >= frames);
        live.scene.set_steps(if self.paused || done { 0 } else { self.steps });
        if !done || self.finished {
            return Ok(());
        }
        if self.options.screenshot.is_none() {
            self.finish(&mut live.scene, None, trained)?;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return Ok(());
        }
        // Training has stopped, so this frame and the later ones draw the same weights.
        let frames = live.scene.frames();
        let asked = *self.shot_requested.get_or_insert_with(|| {
            let slot = Arc::clone(&self.shot);
            ctx.request_screenshot(move |image| {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(image);
                }
            });
            frames
        });
        let image = self.shot.lock().map_err(|e| e.to_string())?.take();
        match image {
            Some(image) => {
                self.finish(&mut live.scene, Some(&image), trained)?;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            // egui-wgpu captures only RGBA8 and BGRA8 surfaces, and logs instead of failing.
            None if frames > asked + SHOT_FRAMES => {
                return Err(format!("no screenshot {SHOT_FRAMES} frames after asking (see egui's log)"));
            }
            None => {}
        }
        Ok(())
    }

    /// The end of a `--frames` run: the screenshot, the weights it shows, and the report.
    fn finish(
        &mut self,
        scene: &mut Scene,
        image: Option<&egui::ColorImage>,
        trained: u32,
    ) -> Result<(), String> {
        self.finished = true; // eframe may run a frame or two more before it closes
        if let (Some(path), Some(image)) = (&self.options.screenshot, image) {
            let [width, height] = image.size;
            let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
            encoder.set_color(png::ColorType::Rgba);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer.write_image_data(image.as_raw()).map_err(|e| e.to_string())?;
        }
        if let Some(path) = &self.options.save {
            scene.model.save(path).map_err(|e| e.to_string())?;
        }
        let loss = self.losses.last().map(|&(_, loss)| loss);
        println!("egui_trainer: {trained} steps, loss {loss:?}");
        if self.options.common.json {
            let rect = self.drawn.unwrap_or(egui::Rect::NOTHING);
            let report = json!({
                "example": "egui_trainer",
                "backend": if self.options.common.backend == Some(cli::Place::Cpu) { "cpu" } else { "gpu" },
                "steps": trained,
                "losses": self.losses.iter().map(|&(_, loss)| loss).collect::<Vec<_>>(),
                "loss_steps": self.losses.iter().map(|&(steps, _)| steps).collect::<Vec<_>>(),
                "size": self.options.size,
                "screenshot_size": image.map(|image| image.size),
                "drawing": [rect.min.x, rect.min.y, rect.width(), rect.height()],
            });
            println!("{report}");
        }
        Ok(())
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if let Err(e) = self.step(&ctx, frame) {
            if let Ok(mut outcome) = self.outcome.lock() {
                *outcome = Err(e);
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        egui::Panel::left("controls").exact_size(260.0).show(ui, |ui| {
            ui.heading("wgpu-nn in egui");
            let steps = self.losses.last().map_or(0, |&(steps, _)| steps);
            let loss = self.losses.last().map_or("…".into(), |&(_, loss)| format!("{loss:.4}"));
            ui.label(format!("{steps} steps, loss {loss}"));
            ui.checkbox(&mut self.paused, "pause training");
            ui.add(egui::Slider::new(&mut self.steps, 1..=50).text("steps per frame"));
            ui.separator();
            ui.label("loss");
            loss_curve(ui, &self.losses);
        });
        egui::CentralPanel::default_margins().show(ui, |ui| {
            let size = egui::Vec2::splat(self.options.size as f32);
            let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
            let ppp = ctx.pixels_per_point();
            self.drawn = Some(egui::Rect::from_min_size(
                (rect.min.to_vec2() * ppp).round().to_pos2(),
                (rect.size() * ppp).round(),
            ));
            ui.painter().add(egui_wgpu::Callback::new_paint_callback(rect, Draw { rect }));
        });
        ctx.request_repaint(); // training goes on between input events
    }
}

/// The mean loss against training steps, on a log scale (it falls by orders of magnitude).
fn loss_curve(ui: &mut egui::Ui, losses: &[(u32, f32)]) {
    let (response, painter) =
        ui.allocate_painter(egui::vec2(ui.available_width(), 160.0), egui::Sense::hover());
    let area = response.rect.shrink(4.0);
    painter.rect_stroke(
        response.rect,
        2.0,
        ui.visuals().widgets.noninteractive.bg_stroke,
        egui::StrokeKind::Inside,
    );
    let points: Vec<(f32, f32)> =
        losses.iter().filter(|(_, l)| *l > 0.0).map(|&(s, l)| (s as f32, l.log10())).collect();
    let Some(&(last, _)) = points.last() else { return };
    let (low, high) = points.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
    let span = (high - low).max(1e-3);
    let line: Vec<egui::Pos2> = points
        .iter()
        .map(|&(x, y)| {
            egui::pos2(
                area.left() + x / last.max(1.0) * area.width(),
                area.bottom() - (y - low) / span * area.height(),
            )
        })
        .collect();
    painter.add(egui::Shape::line(line, egui::Stroke::new(1.5, egui::Color32::from_rgb(220, 90, 60))));
    let font = egui::FontId::proportional(11.0);
    let color = ui.visuals().text_color();
    painter.text(
        area.left_top(),
        egui::Align2::LEFT_TOP,
        format!("{:.3}", 10f32.powf(high)),
        font.clone(),
        color,
    );
    painter.text(
        area.left_bottom(),
        egui::Align2::LEFT_BOTTOM,
        format!("{:.3}", 10f32.powf(low)),
        font,
        color,
    );
}
