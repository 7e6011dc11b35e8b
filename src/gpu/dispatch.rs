//! How kernels are built once and bound once: a [`Family`] is one WGSL file compiled into a
//! bind group layout and a pipeline per entry point; a [`Dispatch`] is one op bound to its
//! buffers and grid, ready to be recorded any number of times.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::counters::Held;
use super::{Gpu, GpuLabels, GpuTensor};
use crate::{Error, Result};

/// What one storage binding of a kernel is bound to. Binding goes through this so that one
/// place checks every operand belongs to this context, that the output aliases no input,
/// and fills the bindings an entry point does not read.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Tensor(&'a GpuTensor),
    Labels(&'a GpuLabels),
    /// A float texture (a [`Binding::Texture`]).
    Texture(&'a wgpu::TextureView),
    /// Declared by the shader but not read by this entry point.
    Unused,
}

impl<'a> From<&'a GpuTensor> for Arg<'a> {
    fn from(tensor: &'a GpuTensor) -> Self {
        Arg::Tensor(tensor)
    }
}

impl<'a> From<Option<&'a GpuTensor>> for Arg<'a> {
    fn from(tensor: Option<&'a GpuTensor>) -> Self {
        tensor.map_or(Arg::Unused, Arg::Tensor)
    }
}

impl<'a> From<&'a super::SettingsRow> for Arg<'a> {
    fn from(row: &'a super::SettingsRow) -> Self {
        Arg::Tensor(row)
    }
}

impl<'a> From<&'a super::DropoutCounter> for Arg<'a> {
    fn from(counter: &'a super::DropoutCounter) -> Self {
        Arg::Tensor(counter)
    }
}

impl<'a> From<&'a GpuLabels> for Arg<'a> {
    fn from(labels: &'a GpuLabels) -> Self {
        Arg::Labels(labels)
    }
}

impl<'a> From<Option<&'a GpuLabels>> for Arg<'a> {
    fn from(labels: Option<&'a GpuLabels>) -> Self {
        labels.map_or(Arg::Unused, Arg::Labels)
    }
}

impl<'a> Arg<'a> {
    fn owner(self) -> Option<u64> {
        match self {
            Arg::Tensor(t) => Some(t.owner()),
            Arg::Labels(l) => Some(l.owner()),
            // (Textures are made by the kernel that binds them, on its own device.)
            Arg::Unused | Arg::Texture(_) => None,
        }
    }

    /// What to bind at storage slot `slot` (0 for binding 1), or none for a texture.
    fn binding(self, gpu: &'a Gpu, slot: usize) -> Option<wgpu::BufferBinding<'a>> {
        match self {
            Arg::Tensor(t) => Some(t.binding()),
            Arg::Labels(l) => Some(l.buffer().as_entire_buffer_binding()),
            Arg::Unused => Some(gpu.placeholders[slot].as_entire_buffer_binding()),
            Arg::Texture(_) => None,
        }
    }
}

/// One op bound to its buffers and grid. Building it validates shapes and allocates its
/// small parameter buffers (and, for a large product on llvmpipe, the two textures it copies
/// its operands into: see [`Dispatch::copies_to_textures`]); recording it costs a few encoder
/// calls and allocates nothing.
///
/// Most ops are one kernel launch. A long reduction (a matmul over a very large k, a column
/// sum over very many rows) is split into segments launched one after another, each adding
/// to the last: llvmpipe stops a shader invocation after 65535 loop iterations in all, and the
/// fixed order keeps the result deterministic.
#[derive(Debug)]
pub struct Dispatch {
    label: &'static str,
    steps: Vec<Step>,
    /// The [`Gpu`](super::Gpu) whose device made the pipelines and bind groups.
    owner: u64,
    /// A faster variant that needs copies before its pass: what [`Gpu::record`] records. An
    /// app's own pass ([`Dispatch::record`]) gets `steps`, which need none.
    staged: Option<Box<Staged>>,
}

/// Launches that read textures, and the copies that fill them, recorded before the pass
/// that holds the launches (a copy cannot be recorded inside a compute pass).
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) copies: Vec<TextureCopy>,
    pub(crate) steps: Vec<Step>,
}

/// A buffer's rows into a texture owned by the dispatch.
#[derive(Debug)]
pub(crate) struct TextureCopy {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) bytes_per_row: u32,
    pub(crate) texture: wgpu::Texture,
    /// Counts the texture as held memory.
    pub(crate) _held: Held,
}

/// One kernel launch.
#[derive(Debug)]
pub(crate) struct Step {
    /// Counts the parameter block as held memory, the bind group as held, and each launch.
    held: Held,
    pipeline: Pipeline,
    bind_group: super::context::Locked<wgpu::BindGroup>,
    workgroups: [u32; 3],
}

impl Dispatch {
    pub(crate) fn new(label: &'static str, steps: Vec<Step>, owner: u64) -> Dispatch {
        Dispatch { label, steps, owner, staged: None }
    }

    /// This dispatch, recorded by [`Gpu::record`] as `staged` instead.
    pub(crate) fn with_staged(self, staged: Staged) -> Dispatch {
        Dispatch { staged: Some(Box::new(staged)), ..self }
    }

    pub(crate) fn staged(&self) -> Option<&Staged> {
        self.staged.as_deref()
    }

    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    /// The WGSL entry point this dispatch runs (in an app's own pass; where
    /// [`Dispatch::copies_to_textures`], `Gpu::record` runs that entry point's texture-read
    /// variant).
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// The workgroup grid of each launch.
    pub fn workgroups(&self) -> [u32; 3] {
        self.steps[0].workgroups
    }

    /// How many kernel launches recording this takes (more than one for segmented reductions).
    pub fn launches(&self) -> usize {
        self.steps.len()
    }

    /// Whether [`Gpu::record`](super::Gpu::record) (and so [`Gpu::run`](super::Gpu::run))
    /// copies this op's operands into textures before its launches: large A·B products on
    /// llvmpipe, which reads textures faster than storage buffers. Recorded into an app's own
    /// pass ([`Dispatch::record`]), the same op reads the buffers. Such a dispatch holds both
    /// variants, and the textures (as large as A and B) as long as it lives.
    pub fn copies_to_textures(&self) -> bool {
        self.staged.is_some()
    }

    /// Records the op into a compute pass (the app's own, or one of [`Gpu::record`]).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        record_steps(&self.steps, pass);
    }

    /// Waits for the pipelines bound under a [`Deferred`] (making any no thread has started
    /// yet): an error if one could not be made.
    pub(crate) fn resolve(&mut self, gpu: &Gpu) -> Result<()> {
        let staged = self.staged.iter_mut().flat_map(|s| s.steps.iter_mut());
        for step in self.steps.iter_mut().chain(staged) {
            if let Pipeline::Pending(made, recipe) = &step.pipeline {
                step.pipeline = Pipeline::Ready(recipe.finish(gpu, made)?);
            }
        }
        Ok(())
    }
}

impl Staged {
    /// The copies, then the launches in a pass of their own.
    pub(crate) fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        for copy in &self.copies {
            let size = copy.texture.size();
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &copy.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: copy.offset,
                        bytes_per_row: Some(copy.bytes_per_row),
                        rows_per_image: None,
                    },
                },
                copy.texture.as_image_copy(),
                size,
            );
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("wgpu-nn"),
            timestamp_writes: None,
        });
        record_steps(&self.steps, &mut pass);
    }
}

fn record_steps(steps: &[Step], pass: &mut wgpu::ComputePass<'_>) {
    for step in steps {
        let Pipeline::Ready(pipeline) = &step.pipeline else {
            unreachable!("a deferred pipeline is resolved where it was deferred (a plan's binding)")
        };
        step.held.launched();
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &*step.bind_group, &[]);
        let [x, y, z] = step.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

thread_local! {
    /// Whether kernels bound on this thread now make their pipelines on rayon's pool.
    static DEFERRED: Cell<bool> = const { Cell::new(false) };
    /// Set by [`with_pipelines_made_at_once`]: no deferring on this thread.
    static AT_ONCE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every pipeline bound on this thread made at once, as on GL: the tests hold
/// the pipelines made on rayon's pool against these.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn with_pipelines_made_at_once<R>(f: impl FnOnce() -> R) -> R {
    let was = AT_ONCE.replace(true);
    let result = f();
    AT_ONCE.set(was);
    result
}

/// While alive, kernels bound on this thread leave their new pipelines to rayon's pool and
/// go on; [`Dispatch::resolve`] waits for them. A model's first plan binds a dozen kernels in
/// a row, and making their pipelines one after another (lavapipe translating and optimising
/// each shader as it is made: 70 ms of a fresh process's 160 ms to its first MNIST-MLP step)
/// left the other cores idle. Only where that pays and is safe: native, more than one
/// thread, and not on GL, whose calls take one context lock in turn (see `Serial`).
pub(crate) struct Deferred {
    was: bool,
}

impl Deferred {
    pub(crate) fn begin(gpu: &Gpu) -> Deferred {
        let on = cfg!(not(target_arch = "wasm32"))
            && !gpu.serial.locks()
            && !AT_ONCE.get()
            && rayon::current_num_threads() > 1;
        Deferred { was: DEFERRED.replace(on) }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        DEFERRED.set(self.was);
    }
}

/// A pipeline of one entry point and override constants, made once by whichever thread gets
/// there first (another asking meanwhile waits for it); its error, if making it failed.
type Made = Arc<OnceLock<std::result::Result<wgpu::ComputePipeline, String>>>;

/// A family's pipelines, made or being made, by entry point and override constants.
type Pipelines = Arc<Mutex<HashMap<Specialization, Made>>>;

/// A step's pipeline: made, or being made on rayon's pool (see [`Deferred`]).
#[derive(Debug)]
enum Pipeline {
    Ready(wgpu::ComputePipeline),
    Pending(Made, Recipe),
}

/// What making one pipeline takes, owned, so that a thread of rayon's pool can make it.
#[derive(Clone, Debug)]
struct Recipe {
    module: wgpu::ShaderModule,
    layout: wgpu::PipelineLayout,
    pipelines: Pipelines,
    entry: &'static str,
    constants: Vec<(&'static str, u32)>,
}

impl Recipe {
    fn make(&self, gpu: &Gpu) -> std::result::Result<wgpu::ComputePipeline, String> {
        let values: Vec<(&str, f64)> = self.constants.iter().map(|&(name, v)| (name, f64::from(v))).collect();
        let made = gpu.scoped(&self.context(), || {
            gpu.device().create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(self.entry),
                layout: Some(&self.layout),
                module: &self.module,
                entry_point: Some(self.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &values,
                    ..Default::default()
                },
                cache: None,
            })
        });
        made.map_err(|e| match e {
            Error::Gpu { message, .. } => message,
            other => other.to_string(),
        })
    }

    /// The pipeline: made by another thread (waiting for it), or now by this one. A failed
    /// one is an error now and is forgotten, to be tried again by the next bind.
    fn finish(&self, gpu: &Gpu, made: &Made) -> Result<wgpu::ComputePipeline> {
        match made.get_or_init(|| self.make(gpu)) {
            Ok(pipeline) => Ok(pipeline.clone()),
            Err(message) => {
                if let Ok(mut pipelines) = self.pipelines.lock() {
                    let key = (self.entry, self.constants.clone());
                    if pipelines.get(&key).is_some_and(|cell| Arc::ptr_eq(cell, made)) {
                        pipelines.remove(&key);
                    }
                }
                Err(Error::Gpu { context: self.context(), message: message.clone() })
            }
        }
    }

    fn context(&self) -> String {
        format!("creating the {} pipeline", self.entry)
    }
}

/// The half-open ranges `[start, end)` of at most `segment` that cover `0..len`.
pub(crate) fn segments(len: usize, segment: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len.div_ceil(segment).max(1)).map(move |i| (i * segment, ((i + 1) * segment).min(len)))
}

/// How a kernel sees one binding.
#[derive(Clone, Copy)]
pub(crate) enum Binding {
    /// A uniform block of exactly this many bytes (checked when the pipeline is created).
    Uniform(u64),
    Read,
    ReadWrite,
    /// A 2-D float texture, read with textureLoad.
    Texture,
}

/// The pipelines of one WGSL file, sharing one bind group layout. The module is parsed and
/// validated when the family is made, but each entry point's pipeline (for each set of
/// override constants, see [`Family::step_with`]) is created on its first bind: creating all
/// ~40 up front took half a second on lavapipe, most of a fresh process's time to its first
/// training step, for kernels a model may never use.
pub(crate) struct Family {
    name: &'static str,
    /// Which storage bindings (1, 2, …) the kernels write.
    writes: Vec<bool>,
    layout: wgpu::BindGroupLayout,
    module: wgpu::ShaderModule,
    pipeline_layout: wgpu::PipelineLayout,
    entry_points: Vec<&'static str>,
    pipelines: Pipelines,
}

/// An entry point and the values of its override constants.
type Specialization = (&'static str, Vec<(&'static str, u32)>);

impl Family {
    pub(crate) fn new(
        device: &wgpu::Device,
        name: &'static str,
        source: &str,
        bindings: &[Binding],
        entry_points: &[&'static str],
    ) -> Family {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let entries: Vec<_> = bindings
            .iter()
            .enumerate()
            .map(|(i, binding)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match *binding {
                    Binding::Uniform(size) => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(size),
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: matches!(binding, Binding::Read) },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Texture => wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let writes = bindings.iter().skip(1).map(|b| matches!(b, Binding::ReadWrite)).collect();
        let (entry_points, pipelines) = (entry_points.to_vec(), Pipelines::default());
        Family { name, writes, layout, module, pipeline_layout, entry_points, pipelines }
    }

    /// `entry`'s pipeline with these WGSL override constants (none for most kernels), created
    /// on first use in an error scope of its own and kept only when that scope comes back
    /// clean (a failed one is an error now and is tried again): once per set of values. Under
    /// a [`Deferred`], a new one is left to rayon's pool and comes back pending.
    fn pipeline(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        constants: &[(&'static str, u32)],
    ) -> Result<Pipeline> {
        if !self.entry_points.contains(&entry) {
            panic!("{} has no entry point {entry}", self.name);
        }
        let (made, new) = {
            let mut pipelines = self
                .pipelines
                .lock()
                .map_err(|_| Error::Gpu { context: entry.into(), message: "a poisoned lock".into() })?;
            let key = (entry, constants.to_vec());
            match pipelines.get(&key) {
                Some(made) => (made.clone(), false),
                None => (pipelines.entry(key).or_default().clone(), true),
            }
        };
        let recipe = Recipe {
            module: self.module.clone(),
            layout: self.pipeline_layout.clone(),
            pipelines: self.pipelines.clone(),
            entry,
            constants: constants.to_vec(),
        };
        if made.get().is_none() && DEFERRED.get() {
            if new {
                let (gpu, made, recipe) = (gpu.clone(), made.clone(), recipe.clone());
                rayon::spawn(move || {
                    made.get_or_init(|| recipe.make(&gpu));
                });
            }
            return Ok(Pipeline::Pending(made, recipe));
        }
        recipe.finish(gpu, &made).map(Pipeline::Ready)
    }

    /// Binds `entry` to a fresh parameter block and `args` (bindings 1, 2, …): one launch.
    pub(crate) fn bind(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        params: &[u8],
        args: &[Arg],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let step = self.step(gpu, entry, params, args, workgroups)?;
        Ok(Dispatch::new(entry, vec![step], gpu.id()))
    }

    /// [`Family::bind`] for one launch of several.
    pub(crate) fn step(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        params: &[u8],
        args: &[Arg],
        workgroups: [u32; 3],
    ) -> Result<Step> {
        self.step_with(gpu, entry, &[], params, args, workgroups)
    }

    /// [`Family::step`] on a pipeline specialized by WGSL override constants, so the
    /// compiler sees only the code those values reach (see `shaders/matmul_common.wgsl`).
    pub(crate) fn step_with(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        constants: &[(&'static str, u32)],
        params: &[u8],
        args: &[Arg],
        workgroups: [u32; 3],
    ) -> Result<Step> {
        self.step_as(gpu, entry, entry, constants, params, args, workgroups)
    }

    /// [`Family::step_with`] for an entry point that serves several ops (each activation's,
    /// each element-wise loss's): errors and labels name `op`, the call made (`relu_forward`),
    /// not the shared `entry` (`activation_forward`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step_as(
        &self,
        gpu: &Gpu,
        op: &'static str,
        entry: &'static str,
        constants: &[(&'static str, u32)],
        params: &[u8],
        args: &[Arg],
        workgroups: [u32; 3],
    ) -> Result<Step> {
        if args.iter().any(|arg| arg.owner().is_some_and(|owner| owner != gpu.id())) {
            // wgpu panics, rather than erring, when one instance's buffer meets another's.
            return Err(Error::Gpu {
                context: op.to_string(),
                message: "an operand belongs to another Gpu context (another device)".into(),
            });
        }
        // (The storage bindings come first; textures, if any, after them.)
        debug_assert!(
            args.iter().skip_while(|a| !matches!(a, Arg::Texture(_))).all(|a| matches!(a, Arg::Texture(_))),
            "{op}: textures are bound after every buffer"
        );
        let buffers: Vec<wgpu::BufferBinding> =
            args.iter().enumerate().filter_map(|(slot, arg)| arg.binding(gpu, slot)).collect();
        let textures = args.iter().filter_map(|arg| match arg {
            Arg::Texture(view) => Some(*view),
            _ => None,
        });
        // A buffer a kernel writes may be bound nowhere else in the same launch, except as
        // another written range that does not overlap (a weight gradient and its bias's, say:
        // wgpu refuses a buffer that one launch both reads and writes).
        let written = |i: usize| self.writes.get(i).copied().unwrap_or(false);
        let range =
            |b: &wgpu::BufferBinding| b.offset..b.size.map_or(b.buffer.size(), |s| b.offset + s.get());
        let clash = |i: usize, j: usize| {
            let (a, b) = (range(&buffers[i]), range(&buffers[j]));
            !written(j) || (a.start < b.end && b.start < a.end)
        };
        let aliased = (0..buffers.len()).any(|i| {
            written(i)
                && (0..buffers.len()).any(|j| j != i && buffers[j].buffer == buffers[i].buffer && clash(i, j))
        });
        if aliased {
            return Err(Error::shape(
                op,
                "outputs distinct from every other operand",
                "an output is also bound as another operand (in-place ops are not supported)",
            ));
        }
        let pipeline = self.pipeline(gpu, entry, constants)?;
        gpu.scoped(op, || {
            let device = gpu.device();
            // Not create_buffer_init: on a lost device it panics where this returns an error.
            let contents = params;
            let params = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(op),
                size: contents.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            });
            params
                .get_mapped_range_mut(..)
                .map_err(|e| Error::Gpu { context: format!("binding {op}"), message: e.to_string() })?
                .copy_from_slice(contents);
            params.unmap();
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
            let resources = buffers
                .into_iter()
                .map(wgpu::BindingResource::Buffer)
                .chain(textures.map(wgpu::BindingResource::TextureView));
            entries.extend(
                resources
                    .enumerate()
                    .map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource }),
            );
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(op),
                layout: &self.layout,
                entries: &entries,
            });
            let held = Held::launch(&gpu.tally, params.size());
            let bind_group = super::context::Locked::new(bind_group, &gpu.serial);
            Ok(Step { held, pipeline, bind_group, workgroups })
        })?
    }
}

/// Spreads `groups` workgroups over (x, y) so neither exceeds the per-dimension limit; the
/// kernels number their workgroup `x + y · num_workgroups.x` and skip numbers past the end.
pub(crate) fn fold(groups: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = u64::from(max_per_dim);
    if groups <= max {
        return Ok([groups.max(1) as u32, 1, 1]);
    }
    let rows = groups.div_ceil(max);
    if rows > max {
        return Err(Error::BufferTooLarge {
            what: format!("a dispatch of {groups} workgroups"),
            size: groups,
            limit: max * max,
            limit_name: "max_compute_workgroups_per_dimension squared",
        });
    }
    Ok([max_per_dim, rows as u32, 1])
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn fold_keeps_every_dimension_under_the_limit_and_covers_all_groups() {
        for (groups, limit) in [(1, 65535), (65535, 65535), (65536, 65535), (1 << 31, 65535), (7, 3), (9, 3)]
        {
            let [x, y, z] = fold(groups, limit).unwrap();
            assert!(x <= limit && y <= limit && z == 1, "{groups}: {x} {y}");
            assert!(u64::from(x) * u64::from(y) >= groups, "{groups}: {x} {y}");
            assert!(u64::from(x) * u64::from(y - 1) < groups, "{groups}: one row too many");
        }
        assert!(fold(65535 * 65535 + 1, 65535).is_err());
    }

    #[test]
    fn segments_cover_the_range_in_order() {
        assert_eq!(super::segments(5, 2).collect::<Vec<_>>(), [(0, 2), (2, 4), (4, 5)]);
        assert_eq!(super::segments(4, 4).collect::<Vec<_>>(), [(0, 4)]);
        assert_eq!(super::segments(1, 4).collect::<Vec<_>>(), [(0, 1)]);
    }
}
