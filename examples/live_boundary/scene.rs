//! What a frame holds: the network on the app's device, the grid it is evaluated on, and the
//! render pipeline that draws the network's output buffer. Shared by `live_boundary` (its own
//! window and render pass) and `egui_trainer` (egui's encoder and render pass).
#![allow(dead_code)] // live_boundary, egui_trainer and a test each use a part of it

use wgpu_nn::data::{Dataset, spirals};
use wgpu_nn::model::{Backend, Forward, Loss, LossReading, Model, ModelConfig, Optimizer};
use wgpu_nn::{Gpu, Result, wgpu};

/// The network: must match `tests/common/boundary.rs`, which loads its saved weights.
pub fn network() -> ModelConfig {
    ModelConfig::new(2)
        .dense(64)
        .tanh()
        .dense(64)
        .tanh()
        .dense(3)
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(Optimizer::Adam { lr: 0.01 })
        .seed(1)
}

/// Frames between loss reads (each is one small copy in the frame's encoder).
const LOSS_EVERY: u32 = 10;

/// Where the network's output comes from each frame. (One per scene: its size is no matter.)
#[allow(clippy::large_enum_variant)]
enum Network {
    /// The model on the app's device: steps and the forward pass recorded into its encoder.
    Gpu(Forward),
    /// The model on the CPU backend: trained and evaluated on the host, its output written
    /// into a buffer of the app's each frame (what an app without a spare GPU would do).
    Cpu { cells: Vec<f32>, output: wgpu::Buffer },
}

pub struct Scene {
    pub model: Model,
    data: Dataset,
    network: Network,
    view: wgpu::Buffer,
    /// The size last written into `view`.
    size: (u32, u32),
    queue: wgpu::Queue,
    grid: u32,
    /// The boundary (a full-screen triangle) and the points (instanced quads): pipeline,
    /// bind group, vertices, instances.
    draws: [(wgpu::RenderPipeline, wgpu::BindGroup, u32, u32); 2],
    steps: u32,
    frames: u32,
    /// Training steps recorded so far, and since the last loss read.
    trained: u32,
    unread: u32,
    /// A loss read on its way back, with the steps trained when it was recorded.
    reading: Option<(LossReading, u32)>,
    loss: Option<f32>,
    /// (steps, loss) of a read that arrived since `after_submit` last returned one.
    fresh: Option<(u32, f32)>,
}

impl Scene {
    /// Builds the network on `backend` (on the GPU, on the app's `device`), a `grid × grid`
    /// forward pass over the points of [−1, 1]², and a pipeline drawing into `format`.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        format: wgpu::TextureFormat,
        grid: u32,
        steps: u32,
        backend: Backend,
    ) -> Result<Scene> {
        let gpu = Gpu::from_device(device.clone(), queue.clone())?;
        let mut model = network().build(backend, Some(&gpu))?;
        let data = spirals(100, 3, 0.15, 7)?;

        // The app's grid buffer: cell (x, y) holds the point at that cell's centre, y up.
        let cells: Vec<f32> = (0..grid * grid)
            .flat_map(|i| {
                let (x, y) = ((i % grid) as f32 + 0.5, (i / grid) as f32 + 0.5);
                [x / grid as f32 * 2.0 - 1.0, 1.0 - y / grid as f32 * 2.0]
            })
            .collect();
        let storage = |label, bytes: &[u8], usage| {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (bytes.len() as u64).next_multiple_of(16),
                usage: usage | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            queue.write_buffer(&buffer, 0, bytes);
            buffer
        };
        let grid_buffer = storage("grid", bytemuck::cast_slice(&cells), wgpu::BufferUsages::STORAGE);
        let labels = data.labels().expect("spirals are labelled");
        let points: Vec<f32> = data
            .inputs()
            .chunks(2)
            .zip(labels)
            .flat_map(|(p, &label)| [p[0], p[1], label as f32, 0.0])
            .collect();
        let points = storage("points", bytemuck::cast_slice(&points), wgpu::BufferUsages::STORAGE);
        let view = storage("view", &[0; 16], wgpu::BufferUsages::UNIFORM);
        let rows = (grid * grid) as usize;
        let network = match backend {
            Backend::Gpu => {
                Network::Gpu(model.bind_forward(gpu.tensor_from_buffer(&grid_buffer, rows, 2)?)?)
            }
            _ => {
                let output = vec![0u8; rows * 3 * 4];
                let output = storage("output", &output, wgpu::BufferUsages::STORAGE);
                Network::Cpu { cells, output }
            }
        };
        let output = match &network {
            Network::Gpu(forward) => forward.output().buffer(),
            Network::Cpu { output, .. } => output,
        };

        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("boundary"),
            source: wgpu::ShaderSource::Wgsl(include_str!("boundary.wgsl").into()),
        });
        let pipeline = |vs: &str, fs: &str| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(fs),
                layout: None,
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some(vs),
                    compilation_options: Default::default(),
                    buffers: &[],
                },
                primitive: Default::default(),
                depth_stencil: None,
                multisample: Default::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &module,
                    entry_point: Some(fs),
                    compilation_options: Default::default(),
                    targets: &[Some(format.into())],
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        let bind = |pipeline: &wgpu::RenderPipeline, binding: u32, data: &wgpu::Buffer| {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: view.as_entire_binding() },
                    wgpu::BindGroupEntry { binding, resource: data.as_entire_binding() },
                ],
            })
        };
        let (boundary, markers) = (pipeline("vs", "fs"), pipeline("vs_point", "fs_point"));
        // The network's output buffer, bound as it is: the picture is the network.
        let boundary_group = bind(&boundary, 1, output);
        let markers_group = bind(&markers, 2, &points);
        let draws = [(boundary, boundary_group, 3, 1), (markers, markers_group, 6, data.len() as u32)];
        let queue = queue.clone();
        Ok(Scene {
            model,
            data,
            network,
            view,
            size: (0, 0),
            queue,
            grid,
            draws,
            steps,
            frames: 0,
            trained: 0,
            unread: 0,
            reading: None,
            loss: None,
            fresh: None,
        })
    }

    /// The drawing's size in pixels (the markers' radius is in pixels).
    pub fn resize(&mut self, width: u32, height: u32) {
        if self.size == (width, height) {
            return; // egui_trainer calls this every frame: an upload only when it changes
        }
        self.size = (width, height);
        let view = [width, height, self.grid, 0];
        self.queue.write_buffer(&self.view, 0, bytemuck::cast_slice(&view));
    }

    /// Training steps per frame from now on (0 pauses training; the drawing goes on).
    pub fn set_steps(&mut self, steps: u32) {
        self.steps = steps;
    }

    /// Samples a training step takes (the whole data set).
    pub fn batch(&self) -> usize {
        self.data.len()
    }

    /// Training steps recorded so far.
    pub fn trained(&self) -> u32 {
        self.trained
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Records one frame: training steps, now and then a loss read, the forward pass over the
    /// grid, and the draw. Nothing here waits for the GPU.
    pub fn frame(&mut self, encoder: &mut wgpu::CommandEncoder, target: &wgpu::TextureView) -> Result<()> {
        self.record(encoder)?;
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("boundary"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::WHITE),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        self.draw(&mut pass);
        Ok(())
    }

    /// Records everything of a frame but the drawing: training steps, now and then a loss
    /// read, and the forward pass over the grid.
    pub fn record(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let labels = self.data.target();
        let read_loss = self.unread + self.steps > 0 && self.frames.is_multiple_of(LOSS_EVERY);
        match &self.network {
            Network::Gpu(forward) => {
                for _ in 0..self.steps {
                    self.model.record_train_step(encoder, self.data.inputs(), &labels)?;
                }
                self.unread += self.steps;
                if self.reading.is_none() && read_loss {
                    self.reading = Some((self.model.record_loss(encoder)?, self.trained + self.steps));
                    self.unread = 0;
                }
                forward.record(encoder);
            }
            Network::Cpu { cells, output } => {
                for _ in 0..self.steps {
                    self.model.train_step(self.data.inputs(), &labels)?;
                }
                self.unread += self.steps;
                if read_loss {
                    let loss = self.model.take_loss()?;
                    (self.loss, self.fresh) = (Some(loss), Some((self.trained + self.steps, loss)));
                    self.unread = 0;
                }
                let probabilities = self.model.predict(cells)?;
                self.queue.write_buffer(output, 0, bytemuck::cast_slice(&probabilities));
            }
        }
        self.trained += self.steps;
        self.frames += 1;
        Ok(())
    }

    /// Draws the boundary over the whole of `pass`'s viewport, and the points on top.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>) {
        for (pipeline, bind_group, vertices, instances) in &self.draws {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            pass.draw(0..*vertices, 0..*instances);
        }
    }

    /// Picks up the loss if it has arrived (after the frame's submit; never blocks), and
    /// returns a loss read since the last call, with the steps trained when it was taken.
    pub fn after_submit(&mut self) -> Result<Option<(u32, f32)>> {
        if let Some((reading, steps)) = &mut self.reading
            && let Some(result) = reading.poll()
        {
            let (steps, loss) = (*steps, result?);
            (self.loss, self.fresh, self.reading) = (Some(loss), Some((steps, loss)), None);
        }
        Ok(self.fresh.take())
    }

    pub fn title(&self) -> String {
        let loss = self.loss.map_or("…".to_string(), |l| format!("{l:.4}"));
        format!("live_boundary: {} steps, loss {loss}", self.trained)
    }

    /// The final loss and training accuracy (read back once, at the end).
    pub fn finish(&mut self) -> Result<(f32, f32)> {
        let evaluation = self.model.evaluate(self.data.inputs(), &self.data.target())?;
        Ok((evaluation.loss, evaluation.accuracy.unwrap_or(0.0)))
    }
}
