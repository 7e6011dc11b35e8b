//! Pipelines of `shaders/mlp.wgsl`: a narrow MLP's training step (forward, loss, backward and
//! the optimizer's update) fused into two launches, `mlp_step` and `mlp_update`. The model's
//! plan chooses it for the networks [`MlpShape::new`] accepts; the layer-by-layer kernels are
//! its fallback and its reference.

use bytemuck::{Pod, Zeroable};

use super::dispatch::{Arg, Binding, Dispatch, Family};
use super::{DropoutCounter, GpuTensor, Kernels, SettingsRow};
use crate::loss::Loss;
use crate::{Activation, Error, Result};

/// The most rows of the batch one workgroup of `mlp_step` takes (its `p.tile`): one per
/// invocation.
const MOST_TILE: usize = 64;
/// The flat parameter buffer's values a fused step takes (each tensor padded to the
/// adapter's storage alignment), with room for its reads of up to 3 values past the last
/// weight row: `mlp_step` reads them from a uniform binding of this many (64 KiB, every
/// adapter's least limit).
pub(crate) const UNIFORM_FLOATS: usize = 16384;
pub(crate) const MAX_PARAMS: usize = UNIFORM_FLOATS - 4;
/// The most dense layers a fused step takes (the shader's table).
pub(crate) const MAX_LAYERS: usize = 8;
/// The widest activation a fused step takes. Wider layers have enough arithmetic per launch
/// that the layer-by-layer kernels, which spread a product over many more invocations, win.
pub(crate) const MAX_WIDTH: usize = 64;
/// llvmpipe ends an invocation after 65535 loop turns in all (see `conv.rs`): `mlp_update`'s
/// invocations each sum `workgroups` slices for `flat / 64` values and pass over them again,
/// and the first adds the loss's terms. (Software adapters only: GPUs have no such limit.)
const UPDATE_TURNS: usize = 30_000;
const NONE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct LayerParams {
    inputs: u32,
    outputs: u32,
    w: u32,
    b: u32,
    act: u32,
    slope: f32,
    drop_p: f32,
    drop_seed: u32,
    x: u32,
    dz: u32,
    _pad: [u32; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    layers: u32,
    loss: u32,
    classes: u32,
    scale: f32,
    delta: f32,
    tile_len: u32,
    _pad0: [u32; 2],
    flat: u32,
    terms: u32,
    terms_len: u32,
    workgroups: u32,
    tile: u32,
    _pad: [u32; 2],
    layer: [LayerParams; MAX_LAYERS],
}

/// The two layouts of `mlp.wgsl`: the step, in the variant this adapter runs, and the update.
pub(crate) struct MlpKernels {
    step: Family,
    update: Family,
}

/// `mlp.wgsl` with one variant of its products: subgroups of 8 lanes sharing their weight
/// loads where the adapter has them (llvmpipe), each lane loading its own elsewhere.
pub(crate) fn kernels(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> MlpKernels {
    use Binding::*;
    let eight_lanes = info.subgroup_min_size == 8 && info.subgroup_max_size == 8;
    let products = if eight_lanes && device.features().contains(wgpu::Features::SUBGROUP) {
        include_str!("../../shaders/mlp_subgroup.wgsl")
    } else {
        include_str!("../../shaders/mlp_lanes.wgsl")
    };
    let source = super::shaders::settings_row(&super::shaders::optimizer_math(&super::shaders::loss_math(
        &super::shaders::elementwise(&[include_str!("../../shaders/mlp.wgsl"), products].concat()),
    )));
    let uniform = Uniform(size_of::<Params>() as u64);
    MlpKernels {
        step: Family::new(
            device,
            "mlp_step",
            &source,
            &[uniform, Uniform(4 * UNIFORM_FLOATS as u64), Read, Read, Read, ReadWrite, ReadWrite],
            &["mlp_step"],
        ),
        update: Family::new(
            device,
            "mlp_update",
            &source,
            &[uniform, ReadWrite, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
            &["mlp_update"],
        ),
    }
}

/// One dense layer of a fused MLP, with the activation and dropout after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MlpLayer {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// Where its weight `(outputs, inputs)` and bias start in the flat parameter buffer.
    pub(crate) weight: usize,
    pub(crate) bias: Option<usize>,
    pub(crate) activation: Option<Activation>,
    /// Dropout's probability and seed.
    pub(crate) dropout: Option<(f32, u32)>,
}

/// A network `mlp.wgsl` can train: dense layers up to [`MAX_WIDTH`] wide, then a loss.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MlpShape {
    layers: Vec<MlpLayer>,
    loss: Loss,
}

impl MlpShape {
    /// The shape, or why the fused step cannot take it (in words for a user: the plan runs
    /// layer by layer then, and [`crate::model::Model::fused`] says why).
    pub(crate) fn new(layers: Vec<MlpLayer>, loss: Loss) -> std::result::Result<MlpShape, String> {
        if layers.is_empty() || layers.len() > MAX_LAYERS {
            return Err(format!("{} dense layers (it takes 1 to {MAX_LAYERS})", layers.len()));
        }
        if let Some(l) = layers.iter().find(|l| l.inputs.max(l.outputs) > MAX_WIDTH) {
            return Err(format!("a layer {} -> {} (it takes widths up to {MAX_WIDTH})", l.inputs, l.outputs));
        }
        // (NLL reaches a fused step only as cross-entropy from the logits: a model must end
        // in a log-softmax for it, which the trunk leaves out.)
        debug_assert!(!matches!(loss, Loss::Nll), "NLL over a layer's own output");
        Ok(MlpShape { layers, loss })
    }

    fn classes(&self) -> usize {
        self.layers.last().expect("checked in new").outputs
    }

    /// The loss's terms for `rows` samples: one per row (cross-entropy), or per value.
    fn terms(&self, rows: usize) -> usize {
        if self.loss.takes_labels() { rows } else { rows * self.classes() }
    }

    /// Rows per workgroup (and invocations in it) for a batch of `rows`, 8 to 64: on a
    /// software adapter (lavapipe, SwiftShader: the CPU's cores, one workgroup at a time each)
    /// the batch in one part per core, as few workgroups as keep every core busy, since each
    /// adds a slice for the update's one workgroup to sum; on a GPU 16, for many workgroups.
    /// Measured on 2 cores (`bench --narrow`): 4 tiles of 64 at batch 256 against 32 of 8
    /// took the 2-64-64-3 net from 1.0× to 1.65× the layer-by-layer step.
    pub(crate) fn tile(rows: usize, software: bool) -> usize {
        let tile = if software { rows.div_ceil(cores()).next_multiple_of(8).max(16) } else { 16 };
        tile.clamp(8, MOST_TILE)
    }

    pub(crate) fn workgroups(rows: usize, tile: usize) -> usize {
        rows.div_ceil(tile)
    }

    /// Offsets (in vec4s) in a workgroup's scratch: each layer's inputs and its product's
    /// gradients; and the length of it all.
    fn scratch_layout(&self, tile: usize) -> (Vec<[u32; 2]>, usize) {
        let q = |n: usize| n.div_ceil(4) * tile;
        let mut at = 0;
        let mut take = |n: usize| {
            let start = at;
            at += n;
            start as u32
        };
        let regions: Vec<[u32; 2]> =
            self.layers.iter().map(|l| [take(q(l.inputs)), take(q(l.outputs))]).collect();
        (regions, at)
    }

    /// The scratch `mlp_step` needs for `rows` samples in tiles of `tile`, in floats.
    pub(crate) fn scratch_len(&self, rows: usize, tile: usize) -> usize {
        Self::workgroups(rows, tile) * self.scratch_layout(tile).1 * 4
    }

    /// The partial sums `mlp_step` leaves for `mlp_update`, in floats: one flat gradient per
    /// workgroup, then the loss's terms.
    pub(crate) fn partials_len(&self, rows: usize, tile: usize, flat: usize) -> usize {
        Self::workgroups(rows, tile) * flat + self.terms(rows)
    }

    /// Whether a batch of `rows` with `flat` parameters stays inside llvmpipe's loop limit
    /// and its buffers inside one storage binding of `gpu`.
    pub(crate) fn fits(&self, gpu: &super::Gpu, rows: usize, flat: usize) -> std::result::Result<(), String> {
        let tile = Self::tile(rows, software(gpu));
        let turns = flat.div_ceil(64) * (Self::workgroups(rows, tile) + 1);
        if rows == 0 || (software(gpu) && turns + self.terms(rows) > UPDATE_TURNS) {
            return Err(format!("a batch of {rows} over {flat} parameters is past its update's loop limit"));
        }
        let most = gpu.limits().max_storage_buffer_binding_size.min(gpu.limits().max_buffer_size) / 4;
        let need = self.scratch_len(rows, tile).max(self.partials_len(rows, tile, flat));
        if need as u64 > most {
            return Err(format!(
                "a batch of {rows} needs {need} values of scratch, past one binding's {most}"
            ));
        }
        Ok(())
    }

    fn params(&self, rows: usize, tile: usize, flat: usize) -> Result<Params> {
        let (regions, tile_len) = self.scratch_layout(tile);
        let u = |n: usize, what: &str| {
            u32::try_from(n)
                .map_err(|_| Error::shape("mlp_step", format!("{what} below 2^32"), n.to_string()))
        };
        let mut layer = [LayerParams::default(); MAX_LAYERS];
        for (i, (l, [x, dz])) in self.layers.iter().zip(regions).enumerate() {
            layer[i] = LayerParams {
                inputs: u(l.inputs, "inputs")?,
                outputs: u(l.outputs, "outputs")?,
                w: u(l.weight, "offsets")?,
                b: l.bias.map_or(Ok(NONE), |b| u(b, "offsets"))?,
                act: l.activation.map_or(0, Activation::code),
                slope: l.activation.map_or(0.0, Activation::parameter),
                drop_p: l.dropout.map_or(0.0, |(p, _)| p),
                drop_seed: l.dropout.map_or(0, |(_, seed)| seed),
                x,
                dz,
                _pad: [0; 6],
            };
        }
        let terms = self.terms(rows);
        let workgroups = Self::workgroups(rows, tile);
        Ok(Params {
            rows: u(rows, "rows")?,
            layers: self.layers.len() as u32,
            loss: self.loss.value_code().map_or(0, |(code, _)| code),
            classes: self.classes() as u32,
            scale: 1.0 / terms as f32,
            delta: self.loss.parameter(),
            tile_len: u(tile_len, "scratch")?,
            _pad0: [0; 2],
            flat: u(flat, "parameters")?,
            terms: u(workgroups * flat, "partial sums")?,
            terms_len: u(terms, "terms")?,
            workgroups: u(workgroups, "workgroups")?,
            tile: tile as u32,
            _pad: [0; 2],
            layer,
        })
    }
}

/// What a fused step's loss compares the network's output with.
pub(crate) enum MlpTarget<'a> {
    Labels(&'a super::GpuLabels),
    Values(&'a GpuTensor),
}

/// The optimizer a fused update takes, as `mlp.wgsl`'s `OPTIMIZER` numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MlpOptimizer {
    Sgd = 0,
    Momentum = 1,
    Adam = 2,
    AdamW = 3,
}

impl Kernels<'_> {
    /// Binds `mlp_step` for a batch of `x.rows()` samples in tiles of `tile` rows: forward,
    /// loss and backward, every workgroup's share of the gradients and the loss's terms into
    /// `partials`. `values`: the flat parameters, a view at the start of `uniform`, a buffer
    /// of [`UNIFORM_FLOATS`] that a uniform binding can hold.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mlp_step(
        &self,
        shape: &MlpShape,
        tile: usize,
        values: &GpuTensor,
        uniform: &GpuTensor,
        x: &GpuTensor,
        target: MlpTarget,
        counter: &DropoutCounter,
        scratch: &GpuTensor,
        partials: &GpuTensor,
    ) -> Result<Dispatch> {
        let op = "mlp_step";
        let rows = x.rows();
        let params = shape.params(rows, tile, values.len())?;
        let need = |t: &GpuTensor, len: usize, what: &str| {
            if t.len() < len {
                return Err(Error::shape(op, format!("{what} of {len} values"), t.len().to_string()));
            }
            Ok(())
        };
        need(scratch, shape.scratch_len(rows, tile), "scratch")?;
        need(partials, shape.partials_len(rows, tile, values.len()), "partial sums")?;
        if x.cols() != shape.layers[0].inputs {
            return Err(Error::shape(op, format!("{} inputs", shape.layers[0].inputs), x.cols().to_string()));
        }
        let target = match target {
            MlpTarget::Labels(labels) => Arg::from(labels),
            MlpTarget::Values(values) => Arg::from(values),
        };
        if uniform.len() != UNIFORM_FLOATS || uniform.buffer() != values.buffer() || values.offset() != 0 {
            return Err(Error::shape(op, "parameters at the start of a uniform buffer", "another tensor"));
        }
        let args = [uniform.into(), x.into(), target, counter.into(), scratch.into(), partials.into()];
        let workgroups = u32::try_from(MlpShape::workgroups(rows, tile))
            .ok()
            .filter(|&w| w <= self.limits().max_compute_workgroups_per_dimension)
            .ok_or_else(|| Error::shape(op, "a batch one dispatch can hold", rows.to_string()))?;
        let step = self.compiled.mlp.step.step_with(
            self,
            op,
            &[("WG", tile as u32)],
            bytemuck::bytes_of(&params),
            &args,
            [workgroups, 1, 1],
        )?;
        Ok(Dispatch::new(op, vec![step], self.id()))
    }

    /// Binds `mlp_update`: the gradients summed from `partials` into `grads`, the mean loss
    /// into the loss watch, and the optimizer's checked update of `values` (with `states`:
    /// none for SGD, the velocity for momentum, both moments for Adam).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mlp_update(
        &self,
        shape: &MlpShape,
        rows: usize,
        tile: usize,
        optimizer: MlpOptimizer,
        settings: &SettingsRow,
        partials: &GpuTensor,
        grads: &GpuTensor,
        values: &GpuTensor,
        states: &[GpuTensor],
    ) -> Result<Dispatch> {
        let params = shape.params(rows, tile, values.len())?;
        let state = |i: usize| states.get(i).map_or(Arg::Unused, Arg::from);
        let args = [settings.into(), partials.into(), grads.into(), values.into(), state(0), state(1)];
        let step = self.compiled.mlp.update.step_with(
            self,
            "mlp_update",
            &[("OPTIMIZER", optimizer as u32)],
            bytemuck::bytes_of(&params),
            &args,
            [1, 1, 1],
        )?;
        Ok(Dispatch::new("mlp_update", vec![step], self.id()))
    }
}

/// The CPU's cores (4 where the platform does not say, as in a browser).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

/// Whether `gpu` is a software adapter (lavapipe, SwiftShader): see [`MlpShape::tile`].
pub(crate) fn software(gpu: &super::Gpu) -> bool {
    gpu.adapter_info().device_type == wgpu::DeviceType::Cpu
}
