//! The render side of the page: three pipelines over `view.wgsl` (the boundary, each hidden
//! neuron's picture, the points) and where each sits on the canvas.

use wgpu_nn::wgpu;

/// Where the boundary is drawn on the canvas, in pixels: (left, top, side).
pub const MAIN: (u32, u32, u32) = (10, 10, 400);
/// The canvas: the boundary, then a column of neuron pictures per hidden layer.
pub const CANVAS: (u32, u32) = (760, 420);
/// Hidden layers and neurons per layer that get a picture.
pub const MAX_LAYERS: usize = 4;
pub const MAX_NEURONS: usize = 8;

/// A neuron picture's rectangle: layer `l`'s column, neuron `j`'s row.
pub fn neuron_rect(l: usize, j: usize) -> (u32, u32, u32) {
    (430 + 80 * l as u32, 10 + 50 * j as u32, 44)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniform {
    width: u32,
    height: u32,
    grid: u32,
    _pad: u32,
    neurons: [[u32; 4]; 32],
}

pub struct View {
    boundary: wgpu::RenderPipeline,
    neuron: wgpu::RenderPipeline,
    points: wgpu::RenderPipeline,
    uniform: wgpu::Buffer,
    /// Bound in place of a hidden layer the network does not have.
    empty: wgpu::Buffer,
}

/// One network's bindings: made again when the network or its data change.
pub struct Bound {
    boundary: wgpu::BindGroup,
    neuron: wgpu::BindGroup,
    points: wgpu::BindGroup,
    point_count: u32,
    /// (layer, column) of each neuron picture.
    neurons: Vec<(usize, usize)>,
}

impl View {
    pub fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> View {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("playground view"),
            source: wgpu::ShaderSource::Wgsl(include_str!("view.wgsl").into()),
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
        let buffer = |label, size, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        View {
            boundary: pipeline("vs", "fs_boundary"),
            neuron: pipeline("vs", "fs_neuron"),
            points: pipeline("vs_point", "fs_point"),
            uniform: buffer(
                "view",
                size_of::<Uniform>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            empty: buffer("no layer", 16, wgpu::BufferUsages::STORAGE),
        }
    }

    /// Binds a network's output (`probs`), its hidden layers' outputs (`layers`: the buffer
    /// binding and width of each) and the points, and writes the grid and neuron table.
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        grid: u32,
        probs: wgpu::BufferBinding<'_>,
        layers: &[(wgpu::BufferBinding<'_>, usize)],
        points: &wgpu::Buffer,
        point_count: u32,
    ) -> Bound {
        let mut uniform = Uniform { width: MAIN.2, height: MAIN.2, grid, _pad: 0, neurons: [[0; 4]; 32] };
        let mut neurons = Vec::new();
        for (l, (_, width)) in layers.iter().enumerate().take(MAX_LAYERS) {
            for j in 0..(*width).min(MAX_NEURONS) {
                uniform.neurons[neurons.len()] = [l as u32, j as u32, *width as u32, 0];
                neurons.push((l, j));
            }
        }
        queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(&uniform));
        let group = |pipeline: &wgpu::RenderPipeline, entries: Vec<(u32, wgpu::BindingResource<'_>)>| {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = entries
                .into_iter()
                .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
                .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let uniform_entry = || (0, self.uniform.as_entire_binding());
        let mut layer_entries = vec![uniform_entry()];
        for l in 0..MAX_LAYERS {
            let resource = match layers.get(l) {
                Some((binding, _)) => wgpu::BindingResource::Buffer(binding.clone()),
                None => self.empty.as_entire_binding(),
            };
            layer_entries.push((3 + l as u32, resource));
        }
        Bound {
            boundary: group(&self.boundary, vec![uniform_entry(), (1, wgpu::BindingResource::Buffer(probs))]),
            neuron: group(&self.neuron, layer_entries),
            points: group(&self.points, vec![uniform_entry(), (2, points.as_entire_binding())]),
            point_count,
            neurons,
        }
    }

    /// Draws the picture into `target`, a whole canvas.
    pub fn draw(&self, encoder: &mut wgpu::CommandEncoder, target: &wgpu::TextureView, bound: &Bound) {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("playground"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color { r: 0.97, g: 0.97, b: 0.97, a: 1.0 }),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        let viewport = |pass: &mut wgpu::RenderPass<'_>, (x, y, side): (u32, u32, u32)| {
            pass.set_viewport(x as f32, y as f32, side as f32, side as f32, 0.0, 1.0);
        };
        viewport(&mut pass, MAIN);
        pass.set_pipeline(&self.boundary);
        pass.set_bind_group(0, &bound.boundary, &[]);
        pass.draw(0..3, 0..1);
        pass.set_pipeline(&self.points);
        pass.set_bind_group(0, &bound.points, &[]);
        pass.draw(0..6, 0..bound.point_count);
        pass.set_pipeline(&self.neuron);
        pass.set_bind_group(0, &bound.neuron, &[]);
        for (i, &(l, j)) in bound.neurons.iter().enumerate() {
            viewport(&mut pass, neuron_rect(l, j));
            pass.draw(0..3, i as u32..i as u32 + 1);
        }
    }
}
