//! What the page's script calls: a [`Playground`] that builds the networks the controls
//! describe, trains them a few steps per animation frame, and draws them (see `view.rs`).
//!
//! On WebGPU the classifier's steps, its forward pass over the picture's grid and the draw
//! are recorded into one encoder per frame; its training loss comes back through a
//! [`LossReading`] polled on later frames, and its test loss from its outputs on the test
//! points, copied into a mapped buffer every few frames: the page never waits. On the CPU
//! backend the same network trains on the host and the page writes its outputs into the
//! buffers the picture reads (or, without WebGPU, hands them to the script to draw).

// The calls that read from the GPU hold the playground across their awaits on purpose: the
// frame calls meanwhile find it borrowed and skip (see `Playground`).
#![allow(clippy::await_holding_refcell_ref)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wgpu_nn::data::{self, Dataset, idx};
use wgpu_nn::model::{Backend, Forward, Loss, LossReading, Model, ModelConfig, Optimizer, Target};
use wgpu_nn::{Gpu, wgpu};

use crate::view::{self, Bound, View};

/// Grid cells per side of the pictures.
const GRID: u32 = 50;
/// Frames between loss reads.
const LOSS_EVERY: u32 = 10;

/// What the controls say, as the script sends it (JSON).
#[derive(Clone, Debug, Deserialize)]
struct Settings {
    dataset: String,
    noise: f32,
    /// Share of the points held out as the test set.
    test_share: f32,
    hidden: Vec<usize>,
    activation: String,
    lr: f32,
    optimizer: String,
    batch: usize,
    dropout: f32,
    seed: u64,
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The device everything runs on, and where its pictures go.
struct Canvas {
    shown: Shown,
    /// Frames submitted, and finished on the GPU: a frame is skipped while two are in flight,
    /// so the steps counted are steps done and the page stays responsive on a slow adapter.
    submitted: u32,
    finished: Arc<std::sync::atomic::AtomicU32>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    gpu: Gpu,
    view: View,
}

/// The classifier being trained, its data and how it is drawn.
struct Session {
    settings: Settings,
    model: Model,
    train: Dataset,
    test: Dataset,
    order: Vec<usize>,
    cursor: usize,
    rng: StdRng,
    /// The grid's points, (GRID², 2), y up.
    cells: Vec<f32>,
    /// For each hidden layer: its dense layer's index in the config and its width.
    hidden: Vec<(usize, usize)>,
    picture: Option<Picture>,
    steps: u64,
    /// Steps since the last training-loss read.
    unread: u32,
    frames: u32,
    /// (step, training loss, test loss) not yet given to the script.
    losses: Vec<(u64, f32, f32)>,
    last_test: f32,
    reading: Option<(LossReading, u64)>,
    test_read: Option<TestRead>,
}

/// What the canvas draws from: the network's own buffers on the GPU backend, the page's own
/// on the CPU backend.
struct Picture {
    bound: Bound,
    source: Source,
}

enum Source {
    Gpu { grid: Box<Forward>, test: Box<Forward> },
    Cpu { probs: wgpu::Buffer, layers: Vec<wgpu::Buffer> },
}

/// Where a frame is drawn. A browser that can show a WebGPU canvas gets the frames in it
/// (nothing copied). One that cannot (headless Chromium on SwiftShader destroys the device at
/// a canvas's first `getCurrentTexture`: the page's script tries first) gets them drawn into
/// a texture and copied back, a frame behind, for the script to put on a 2D canvas.
enum Shown {
    Canvas {
        surface: wgpu::Surface<'static>,
        config: wgpu::SurfaceConfiguration,
    },
    Copied {
        texture: wgpu::Texture,
        buffer: wgpu::Buffer,
        state: Arc<std::sync::atomic::AtomicU8>,
        pixels: Option<Vec<u8>>,
    },
}

/// A copied frame's buffer: free, on its way back, or mapped.
const FREE: u8 = 0;
const COPYING: u8 = 1;
const MAPPED: u8 = 2;
/// A copied row's bytes, padded to what a texture copy needs.
const ROW: u32 = (view::CANVAS.0 * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);

/// The test points' outputs on their way back.
struct TestRead {
    buffer: wgpu::Buffer,
    mapped: Arc<AtomicBool>,
}

struct Digits {
    model: Model,
    train: Dataset,
    test: Dataset,
    order: Vec<usize>,
    cursor: usize,
    rng: StdRng,
    steps: u64,
}

struct Inner {
    canvas: Option<Canvas>,
    backend: Backend,
    session: Session,
    digits: Option<Digits>,
}

/// The page's handle. Calls that read from the GPU return promises; while one is pending the
/// frame calls return `false` (nothing done) rather than wait.
#[wasm_bindgen]
pub struct Playground {
    inner: Rc<RefCell<Inner>>,
}

#[wasm_bindgen]
impl Playground {
    /// Opens WebGPU and builds the network `settings` describe, on the GPU: drawn on `canvas`
    /// when `show` is "canvas", into frames the script takes with `take_frame` when it is
    /// "copy"; with "none" (the browser has no WebGPU) the CPU backend alone, drawn by the
    /// script from `picture`.
    pub async fn create(
        canvas: web_sys::HtmlCanvasElement,
        settings: String,
        show: String,
    ) -> Result<Playground, JsError> {
        // A panic is a bug: say where in the console (wasm's own report is "unreachable").
        std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&info.to_string().into())));
        let settings: Settings = serde_json::from_str(&settings).map_err(js)?;
        let canvas = match show.as_str() {
            "none" => None,
            "canvas" => Some(open(Some(canvas)).await?),
            _ => Some(open(None).await?),
        };
        let backend = if canvas.is_some() { Backend::Gpu } else { Backend::Cpu };
        let session = Session::new(settings, backend, canvas.as_ref()).map_err(js)?;
        let inner = Inner { canvas, backend, session, digits: None };
        Ok(Playground { inner: Rc::new(RefCell::new(inner)) })
    }

    /// The adapter the page runs on, in words.
    pub fn adapter(&self) -> String {
        let inner = self.inner.borrow();
        inner.canvas.as_ref().map_or("none (no WebGPU)".into(), |c| c.gpu.adapter_name())
    }

    /// Builds the network and data afresh from new settings (a reset).
    pub fn configure(&self, settings: String) -> Result<(), JsError> {
        let settings: Settings = serde_json::from_str(&settings).map_err(js)?;
        let mut inner = self.inner.try_borrow_mut().map_err(js)?;
        let inner = &mut *inner;
        inner.session = Session::new(settings, inner.backend, inner.canvas.as_ref()).map_err(js)?;
        Ok(())
    }

    /// Trains `steps` steps and draws a frame. `false` when a read is still pending.
    pub fn frame(&self, steps: u32) -> Result<bool, JsError> {
        let Ok(mut inner) = self.inner.try_borrow_mut() else { return Ok(false) };
        let inner = &mut *inner;
        if let Some(canvas) = &mut inner.canvas {
            if canvas.submitted.wrapping_sub(canvas.finished.load(Ordering::Acquire)) >= 2 {
                return Ok(false);
            }
            canvas.submitted = canvas.submitted.wrapping_add(1);
        }
        inner.session.frame(steps, inner.canvas.as_ref()).map_err(js)?;
        if let Some(canvas) = &inner.canvas {
            let finished = canvas.finished.clone();
            canvas.queue.on_submitted_work_done(move || {
                finished.fetch_add(1, Ordering::AcqRel);
            });
        }
        if let Some(Canvas { shown: Shown::Copied { buffer, state, pixels, .. }, .. }) = &mut inner.canvas
            && state.load(Ordering::Acquire) == MAPPED
        {
            let (width, height) = view::CANVAS;
            {
                let view = buffer.slice(..).get_mapped_range().map_err(js)?;
                *pixels = Some(
                    view.chunks(ROW as usize)
                        .take(height as usize)
                        .flat_map(|row| &row[..width as usize * 4])
                        .copied()
                        .collect(),
                );
            }
            buffer.unmap();
            state.store(FREE, Ordering::Release);
        }
        Ok(true)
    }

    /// The last frame copied back (RGBA rows of the canvas's size), when the page draws
    /// through copies and a new one has arrived.
    pub fn take_frame(&self) -> Option<Vec<u8>> {
        let mut inner = self.inner.try_borrow_mut().ok()?;
        match &mut inner.canvas.as_mut()?.shown {
            Shown::Copied { pixels, .. } => pixels.take(),
            Shown::Canvas { .. } => None,
        }
    }

    /// JSON: the backend, steps taken, and the (step, training loss, test loss) readings that
    /// arrived since the last call.
    pub fn status(&self) -> String {
        let Ok(mut inner) = self.inner.try_borrow_mut() else { return "null".into() };
        let losses = std::mem::take(&mut inner.session.losses);
        serde_json::json!({
            "backend": inner.backend.name(),
            "steps": inner.session.steps,
            "losses": losses,
            "digitSteps": inner.digits.as_ref().map_or(0, |d| d.steps),
        })
        .to_string()
    }

    /// The points as (x, y, class, test) rows.
    pub fn points(&self) -> Vec<f32> {
        self.inner.borrow().session.points()
    }

    /// For the script's own drawing (no WebGPU): the output over the grid, (GRID², 2), then
    /// each hidden layer's, (GRID², width), as `layout()` lists them.
    pub fn picture(&self) -> Result<Vec<f32>, JsError> {
        let mut inner = self.inner.try_borrow_mut().map_err(js)?;
        let (probs, layers) = inner.session.host_picture().map_err(js)?;
        Ok(probs.into_iter().chain(layers.into_iter().flatten()).collect())
    }

    /// JSON: the grid, where the boundary and each neuron picture sit on the canvas, and the
    /// hidden widths.
    pub fn layout(&self) -> String {
        let inner = self.inner.borrow();
        let widths: Vec<usize> = inner.session.hidden.iter().map(|&(_, w)| w).collect();
        let neurons: Vec<[u32; 5]> = widths
            .iter()
            .enumerate()
            .take(view::MAX_LAYERS)
            .flat_map(|(l, &w)| {
                (0..w.min(view::MAX_NEURONS)).map(move |j| {
                    let (x, y, side) = view::neuron_rect(l, j);
                    [l as u32, j as u32, x, y, side]
                })
            })
            .collect();
        serde_json::json!({ "grid": GRID, "main": view::MAIN, "canvas": view::CANVAS, "widths": widths, "neurons": neurons })
            .to_string()
    }

    /// Moves the same network (weights, optimizer state, steps) to the other backend.
    pub fn switch_backend(&self, backend: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let backend = match backend.as_str() {
                "gpu" => Backend::Gpu,
                "cpu" => Backend::Cpu,
                other => return Err(JsValue::from_str(&format!("no backend {other:?}: gpu or cpu"))),
            };
            let mut inner = inner.try_borrow_mut().map_err(|e| JsValue::from_str(&e.to_string()))?;
            let inner = &mut *inner;
            if backend == Backend::Gpu && inner.canvas.is_none() {
                return Err(JsValue::from_str("this browser has no WebGPU: the CPU backend only"));
            }
            let saved = inner.session.model.save_bytes_async().await.map_err(to_js)?;
            let gpu = inner.canvas.as_ref().map(|c| &c.gpu);
            let mut model = inner.session.model.config().build(backend, gpu).map_err(to_js)?;
            model.load_checkpoint_bytes(&saved, "the other backend's network").map_err(to_js)?;
            inner.session.adopt(model, inner.canvas.as_ref()).map_err(to_js)?;
            if let Some(digits) = &mut inner.digits {
                let saved = digits.model.save_bytes_async().await.map_err(to_js)?;
                let mut model = digits.model.config().build(backend, gpu).map_err(to_js)?;
                model.load_checkpoint_bytes(&saved, "the digits network").map_err(to_js)?;
                digits.model = model;
            }
            inner.backend = backend;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The classifier as a safetensors checkpoint (its config included): what the page's
    /// test checks the picture against.
    pub fn weights(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let inner = inner.try_borrow().map_err(|e| JsValue::from_str(&e.to_string()))?;
            let bytes = inner.session.model.save_bytes_async().await.map_err(to_js)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }

    /// Trains the digits network `steps` minibatches (built on the first call, on the current
    /// backend). `false` when a read is still pending.
    pub fn digits_frame(&self, steps: u32) -> Result<bool, JsError> {
        let Ok(mut inner) = self.inner.try_borrow_mut() else { return Ok(false) };
        let inner = &mut *inner;
        if inner.digits.is_none() {
            let gpu = inner.canvas.as_ref().map(|c| &c.gpu);
            inner.digits = Some(Digits::new(inner.backend, gpu).map_err(js)?);
        }
        inner.digits.as_mut().expect("built above").train(steps).map_err(js)?;
        Ok(true)
    }

    /// The digits network's accuracy on its test digits.
    pub fn digits_accuracy(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut inner = inner.try_borrow_mut().map_err(|e| JsValue::from_str(&e.to_string()))?;
            let digits = inner.digits.as_mut().ok_or_else(|| JsValue::from_str("train the digits first"))?;
            let (x, target) =
                (digits.test.inputs().to_vec(), digits.test.labels().unwrap_or_default().to_vec());
            let evaluation =
                digits.model.evaluate_async(&x, &Target::Labels(&target)).await.map_err(to_js)?;
            Ok(JsValue::from_f64(f64::from(evaluation.accuracy.unwrap_or(0.0))))
        })
    }

    /// The digits network's probabilities for one 8×8 drawing (64 values in [0, 1], rows
    /// from the top).
    pub fn digits_predict(&self, pixels: Vec<f32>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut inner = inner.try_borrow_mut().map_err(|e| JsValue::from_str(&e.to_string()))?;
            let digits = inner.digits.as_mut().ok_or_else(|| JsValue::from_str("train the digits first"))?;
            let probabilities = digits.model.predict_async(&pixels).await.map_err(to_js)?;
            Ok(js_sys::Float32Array::from(&probabilities[..]).into())
        })
    }
}

fn to_js(e: wgpu_nn::Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// WebGPU on the canvas: an adapter that can present to it, a device with the adapter's own
/// limits (as `Gpu::new` asks), and the crate's kernels on that device.
async fn open(canvas: Option<web_sys::HtmlCanvasElement>) -> Result<Canvas, JsError> {
    let gpu = Gpu::new_async().await.map_err(js)?;
    let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
    let (width, height) = view::CANVAS;
    let (shown, format) = match canvas {
        Some(canvas) => {
            let instance =
                wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
            let surface = instance.create_surface(wgpu::SurfaceTarget::Canvas(canvas)).map_err(js)?;
            let adapter = instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    compatible_surface: Some(&surface),
                    ..Default::default()
                })
                .await
                .map_err(|e| js(format!("no WebGPU adapter for the canvas: {e}")))?;
            let mut config = surface
                .get_default_config(&adapter, width, height)
                .ok_or_else(|| js("cannot draw on the canvas"))?;
            // A linear format, so the canvas shows the shader's colours as they are.
            let formats = surface.get_capabilities(&adapter).formats;
            config.format = formats.iter().copied().find(|f| !f.is_srgb()).unwrap_or(config.format);
            surface.configure(&device, &config);
            (Shown::Canvas { surface, config: config.clone() }, config.format)
        }
        None => {
            let format = wgpu::TextureFormat::Rgba8Unorm;
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("frame"),
                size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
                view_formats: &[],
            });
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("frame copy"),
                size: u64::from(ROW * height),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (Shown::Copied { texture, buffer, state: Arc::default(), pixels: None }, format)
        }
    };
    let view = View::new(&device, format);
    Ok(Canvas { shown, submitted: 0, finished: Arc::default(), device, queue, gpu, view })
}

/// The network the controls describe: the hidden layers, then two softmax outputs.
fn network(s: &Settings) -> Result<(ModelConfig, Vec<(usize, usize)>), String> {
    let mut config = ModelConfig::new(2);
    let (mut hidden, mut layers) = (Vec::new(), 0);
    for &width in &s.hidden {
        hidden.push((layers, width));
        config = config.dense(width);
        config = match s.activation.as_str() {
            "relu" => config.relu(),
            "sigmoid" => config.sigmoid(),
            "tanh" => config.tanh(),
            other => return Err(format!("no activation {other:?}")),
        };
        layers += 2;
        if s.dropout > 0.0 {
            config = config.dropout(s.dropout);
            layers += 1;
        }
    }
    let optimizer = match s.optimizer.as_str() {
        "sgd" => Optimizer::Sgd { lr: s.lr },
        "momentum" => Optimizer::Momentum { lr: s.lr, momentum: 0.9 },
        "adam" => Optimizer::Adam { lr: s.lr },
        other => return Err(format!("no optimizer {other:?}")),
    };
    let config = config.dense(2).softmax().loss(Loss::SoftmaxCrossEntropy).optimizer(optimizer).seed(s.seed);
    Ok((config, hidden))
}

fn dataset(s: &Settings) -> wgpu_nn::Result<Dataset> {
    const PER_CLASS: usize = 150;
    match s.dataset.as_str() {
        "spirals" => data::spirals(PER_CLASS, 2, s.noise, s.seed),
        "circles" => data::circles(PER_CLASS, s.noise, s.seed),
        "xor" => data::xor(PER_CLASS, s.noise, s.seed),
        _ => data::gaussians(PER_CLASS, s.noise, s.seed),
    }
}

/// `data` shuffled and split: the test share held out.
fn split(data: &Dataset, share: f32, rng: &mut StdRng) -> (Dataset, Dataset) {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(rng);
    let labels = data.labels().expect("the toy sets are labelled");
    let pick = |rows: &[usize]| {
        let inputs = rows.iter().flat_map(|&r| data.inputs()[r * 2..r * 2 + 2].to_vec()).collect();
        let labels = rows.iter().map(|&r| labels[r]).collect();
        Dataset::labelled(inputs, 2, labels, 2).expect("rows of a valid set")
    };
    let test = ((data.len() as f32 * share.clamp(0.0, 0.9)) as usize).max(1);
    (pick(&order[test..]), pick(&order[..test]))
}

impl Session {
    fn new(settings: Settings, backend: Backend, canvas: Option<&Canvas>) -> Result<Session, String> {
        let (config, hidden) = network(&settings)?;
        if hidden.len() > view::MAX_LAYERS {
            return Err(format!("at most {} hidden layers", view::MAX_LAYERS));
        }
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let (train, test) =
            split(&dataset(&settings).map_err(|e| e.to_string())?, settings.test_share, &mut rng);
        let model = config.build(backend, canvas.map(|c| &c.gpu)).map_err(|e| e.to_string())?;
        let cells = (0..GRID * GRID)
            .flat_map(|i| {
                let (x, y) = ((i % GRID) as f32 + 0.5, (i / GRID) as f32 + 0.5);
                [x / GRID as f32 * 2.0 - 1.0, 1.0 - y / GRID as f32 * 2.0]
            })
            .collect();
        let mut session = Session {
            order: (0..train.len()).collect(),
            cursor: usize::MAX,
            settings,
            model,
            train,
            test,
            rng,
            cells,
            hidden,
            picture: None,
            steps: 0,
            unread: 0,
            frames: 0,
            losses: Vec::new(),
            last_test: f32::NAN,
            reading: None,
            test_read: None,
        };
        if let Some(canvas) = canvas {
            session.picture = Some(session.bind(canvas).map_err(|e| e.to_string())?);
        }
        Ok(session)
    }

    /// Takes over a model of the same network on another backend.
    fn adopt(&mut self, model: Model, canvas: Option<&Canvas>) -> wgpu_nn::Result<()> {
        self.model = model;
        (self.reading, self.test_read, self.unread) = (None, None, 0);
        self.picture = canvas.map(|c| self.bind(c)).transpose()?;
        Ok(())
    }

    fn points(&self) -> Vec<f32> {
        let rows = |data: &Dataset, test: f32| {
            let labels = data.labels().expect("labelled").to_vec();
            data.inputs()
                .chunks(2)
                .zip(labels)
                .map(move |(p, l)| [p[0], p[1], l as f32, test])
                .collect::<Vec<_>>()
        };
        rows(&self.train, 0.0).into_iter().chain(rows(&self.test, 1.0)).flatten().collect()
    }

    /// The buffers the canvas draws from, bound to the view.
    fn bind(&mut self, canvas: &Canvas) -> wgpu_nn::Result<Picture> {
        let Canvas { device, queue, gpu, view, .. } = canvas;
        let points = self.points();
        let point_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("points"),
            size: (points.len() * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&point_buffer, 0, bytemuck::cast_slice(&points));
        let count = (points.len() / 4) as u32;
        let rows = (GRID * GRID) as usize;
        if self.model.backend() == Backend::Gpu {
            let grid = self.model.bind_forward(gpu.upload(&self.cells, rows, 2)?)?;
            let test = self.model.bind_forward(gpu.upload(self.test.inputs(), self.test.len(), 2)?)?;
            // Hidden layer k's output is activation (its dense layer's index + 2).
            let mut layers = Vec::new();
            for &(dense, width) in &self.hidden {
                layers.push((grid.activation(dense + 2)?.binding(), width));
            }
            let bound =
                view.bind(device, queue, GRID, grid.output().binding(), &layers, &point_buffer, count);
            Ok(Picture { bound, source: Source::Gpu { grid: Box::new(grid), test: Box::new(test) } })
        } else {
            let storage = |values: usize| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("host outputs"),
                    size: (values * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            let probs = storage(rows * 2);
            let buffers: Vec<wgpu::Buffer> = self.hidden.iter().map(|&(_, w)| storage(rows * w)).collect();
            let layers: Vec<_> = buffers
                .iter()
                .zip(&self.hidden)
                .map(|(b, &(_, w))| (b.as_entire_buffer_binding(), w))
                .collect();
            let bound = view.bind(
                device,
                queue,
                GRID,
                probs.as_entire_buffer_binding(),
                &layers,
                &point_buffer,
                count,
            );
            Ok(Picture { bound, source: Source::Cpu { probs, layers: buffers } })
        }
    }

    /// The next minibatch, cycling through a fresh shuffle each epoch.
    fn batch(&mut self) -> (Vec<f32>, Vec<u32>) {
        let size = self.settings.batch.clamp(1, self.train.len());
        if self.cursor.saturating_add(size) > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let rows = &self.order[self.cursor..self.cursor + size];
        self.cursor += size;
        let labels = self.train.labels().expect("labelled");
        let x = rows.iter().flat_map(|&r| self.train.inputs()[r * 2..r * 2 + 2].to_vec()).collect();
        (x, rows.iter().map(|&r| labels[r]).collect())
    }

    fn frame(&mut self, steps: u32, canvas: Option<&Canvas>) -> wgpu_nn::Result<()> {
        self.unread += steps;
        let read = self.frames.is_multiple_of(LOSS_EVERY) && self.unread > 0;
        self.frames += 1;
        let Some(canvas) = canvas else {
            // The CPU backend without WebGPU: the script draws from `picture()`.
            return self.train_on_host(steps, read);
        };
        let frame = match &canvas.shown {
            Shown::Canvas { surface, config } => match surface.get_current_texture() {
                wgpu::CurrentSurfaceTexture::Success(frame)
                | wgpu::CurrentSurfaceTexture::Suboptimal(frame) => Some(frame),
                wgpu::CurrentSurfaceTexture::Outdated | wgpu::CurrentSurfaceTexture::Lost => {
                    surface.configure(&canvas.device, config);
                    return Ok(());
                }
                _ => return Ok(()),
            },
            Shown::Copied { .. } => None,
        };
        let mut encoder = canvas.device.create_command_encoder(&Default::default());
        if self.model.backend() == Backend::Gpu {
            for _ in 0..steps {
                let (x, labels) = self.batch();
                self.model.record_train_step(&mut encoder, &x, &Target::Labels(&labels))?;
            }
            self.steps += u64::from(steps);
            if read && self.reading.is_none() {
                self.reading = Some((self.model.record_loss(&mut encoder)?, self.steps));
                self.unread = 0;
            }
            let picture = self.picture.as_ref().expect("a canvas has a picture");
            if let Source::Gpu { grid, test } = &picture.source {
                grid.record(&mut encoder);
                if read && self.test_read.is_none() {
                    test.record(&mut encoder);
                    let output = test.output();
                    let bytes = (output.len() * 4) as u64;
                    let buffer = canvas.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("test outputs"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    encoder.copy_buffer_to_buffer(output.buffer(), output.offset(), &buffer, 0, bytes);
                    let mapped = Arc::new(AtomicBool::new(false));
                    let flag = mapped.clone();
                    encoder.map_buffer_on_submit(&buffer, wgpu::MapMode::Read, .., move |r| {
                        flag.store(r.is_ok(), Ordering::Release)
                    });
                    self.test_read = Some(TestRead { buffer, mapped });
                }
            }
        } else {
            self.train_on_host(steps, read)?;
            let (probs, layers) = self.host_picture()?;
            if let Some(Picture { source: Source::Cpu { probs: p, layers: l }, .. }) = &self.picture {
                canvas.queue.write_buffer(p, 0, bytemuck::cast_slice(&probs));
                for (buffer, values) in l.iter().zip(&layers) {
                    canvas.queue.write_buffer(buffer, 0, bytemuck::cast_slice(values));
                }
            }
        }
        let bound = &self.picture.as_ref().expect("a canvas has a picture").bound;
        match (&canvas.shown, frame) {
            (_, Some(frame)) => {
                canvas.view.draw(&mut encoder, &frame.texture.create_view(&Default::default()), bound);
                canvas.queue.submit([encoder.finish()]);
                canvas.queue.present(frame);
            }
            (Shown::Copied { texture, buffer, state, .. }, None) => {
                canvas.view.draw(&mut encoder, &texture.create_view(&Default::default()), bound);
                // One copy on its way at a time: a frame whose buffer is busy is drawn, not copied.
                if state.compare_exchange(FREE, COPYING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    encoder.copy_texture_to_buffer(
                        texture.as_image_copy(),
                        wgpu::TexelCopyBufferInfo {
                            buffer,
                            layout: wgpu::TexelCopyBufferLayout {
                                offset: 0,
                                bytes_per_row: Some(ROW),
                                rows_per_image: None,
                            },
                        },
                        texture.size(),
                    );
                    let state = state.clone();
                    encoder.map_buffer_on_submit(buffer, wgpu::MapMode::Read, .., move |r| {
                        state.store(if r.is_ok() { MAPPED } else { FREE }, Ordering::Release)
                    });
                }
                canvas.queue.submit([encoder.finish()]);
            }
            (Shown::Canvas { .. }, None) => unreachable!("a canvas frame has its texture"),
        }
        self.after_submit()
    }

    /// Picks up the GPU's readings that have arrived; never waits.
    fn after_submit(&mut self) -> wgpu_nn::Result<()> {
        if let Some(read) = &self.test_read
            && read.mapped.load(Ordering::Acquire)
        {
            let outputs: Vec<f32> = {
                let view = read
                    .buffer
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| wgpu_nn::Error::Readback(e.to_string()))?;
                bytemuck::cast_slice(&view).to_vec()
            };
            self.last_test = cross_entropy(&outputs, self.test.labels().expect("labelled"));
            self.test_read = None;
        }
        if let Some((reading, steps)) = &mut self.reading
            && let Some(loss) = reading.poll()
        {
            self.losses.push((*steps, loss?, self.last_test));
            self.reading = None;
        }
        Ok(())
    }

    /// Steps on the CPU backend, and its losses when `read`.
    fn train_on_host(&mut self, steps: u32, read: bool) -> wgpu_nn::Result<()> {
        for _ in 0..steps {
            let (x, labels) = self.batch();
            self.model.train_step(&x, &Target::Labels(&labels))?;
        }
        self.steps += u64::from(steps);
        if read { self.read_cpu_losses() } else { Ok(()) }
    }

    fn read_cpu_losses(&mut self) -> wgpu_nn::Result<()> {
        let train = self.model.take_loss()?;
        self.unread = 0;
        let labels = self.test.labels().expect("labelled").to_vec();
        let test = self.model.evaluate(self.test.inputs(), &Target::Labels(&labels))?.loss;
        self.losses.push((self.steps, train, test));
        Ok(())
    }

    /// On the CPU backend: the output over the grid and each hidden layer's, computed on the
    /// host from the model's weights (layer by layer, as the network does).
    fn host_picture(&mut self) -> wgpu_nn::Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let probs = self.model.predict(&self.cells)?;
        let mut x = self.cells.clone();
        let (mut width, mut layers) = (2, Vec::new());
        for &(dense, outputs) in &self.hidden {
            let (w, b) = (self.model.weights(dense)?, self.model.bias(dense)?);
            let f = |z: f32| match self.settings.activation.as_str() {
                "relu" => z.max(0.0),
                "sigmoid" => 1.0 / (1.0 + (-z).exp()),
                _ => z.tanh(),
            };
            x = x
                .chunks(width)
                .flat_map(|row| {
                    (0..outputs).map(|o| {
                        f(b[o]
                            + row.iter().zip(&w[o * width..(o + 1) * width]).map(|(a, b)| a * b).sum::<f32>())
                    })
                })
                .collect();
            width = outputs;
            layers.push(x.clone());
        }
        Ok((probs, layers))
    }
}

/// Mean cross-entropy of softmax outputs against labels.
fn cross_entropy(probs: &[f32], labels: &[u32]) -> f32 {
    let total: f32 =
        labels.iter().enumerate().map(|(r, &l)| -(probs[r * 2 + l as usize].max(1e-7)).ln()).sum();
    total / labels.len() as f32
}

impl Digits {
    fn new(backend: Backend, gpu: Option<&Gpu>) -> wgpu_nn::Result<Digits> {
        let load = |images: &[u8], labels: &[u8], name: &str| -> wgpu_nn::Result<Dataset> {
            let images = idx::decode_images(images, format!("{name} images"))?;
            let labels = idx::decode_labels(labels, format!("{name} labels"))?;
            let pixels = images.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
            Dataset::labelled(pixels, 64, labels.iter().map(|&l| u32::from(l)).collect(), 10)
        };
        let train = load(
            include_bytes!("../../data/digits8x8-train-images-idx3-ubyte.gz"),
            include_bytes!("../../data/digits8x8-train-labels-idx1-ubyte.gz"),
            "training",
        )?;
        let test = load(
            include_bytes!("../../data/digits8x8-test-images-idx3-ubyte.gz"),
            include_bytes!("../../data/digits8x8-test-labels-idx1-ubyte.gz"),
            "test",
        )?;
        let config = ModelConfig::new(64)
            .dense(32)
            .relu()
            .dense(10)
            .softmax()
            .loss(Loss::SoftmaxCrossEntropy)
            .optimizer(Optimizer::Adam { lr: 0.01 })
            .seed(5);
        let model = config.build(backend, gpu)?;
        Ok(Digits {
            order: (0..train.len()).collect(),
            cursor: usize::MAX,
            model,
            train,
            test,
            rng: StdRng::seed_from_u64(5),
            steps: 0,
        })
    }

    fn train(&mut self, steps: u32) -> wgpu_nn::Result<()> {
        const BATCH: usize = 32;
        let labels = self.train.labels().expect("labelled").to_vec();
        for _ in 0..steps {
            if self.cursor.saturating_add(BATCH) > self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            let rows = &self.order[self.cursor..self.cursor + BATCH];
            self.cursor += BATCH;
            let x: Vec<f32> =
                rows.iter().flat_map(|&r| self.train.inputs()[r * 64..(r + 1) * 64].to_vec()).collect();
            let y: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
            self.model.train_step(&x, &Target::Labels(&y))?;
        }
        self.steps += u64::from(steps);
        // The running loss is not read: the page asks for the test accuracy instead.
        if self.steps > 0 && self.model.backend() == Backend::Cpu {
            let _ = self.model.take_loss();
        }
        Ok(())
    }
}
