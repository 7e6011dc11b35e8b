//! Pipelines of `shaders/matmul.wgsl`, `shaders/matmul_subgroup.wgsl` and
//! `shaders/matmul_tiled.wgsl`: the three products of a dense layer, each with the epilogue of `shaders/matmul_common.wgsl` (bias, activation
//! and dropout in the forward; a derivative, or the bias gradient, in the backward).

use super::Kernels;
use bytemuck::{Pod, Zeroable};

use super::dispatch::{Arg, Binding, Dispatch, Family, Staged, TextureCopy, fold, segments};
use super::{Gpu, GpuTensor};
use crate::shape::{MatmulForm, check_same};
use crate::{Activation, Error, Result};

/// The (rows, columns) of C one workgroup of `entry` covers: matmul.wgsl's 8×8 invocations of
/// 8×8 blocks, matmul_subgroup.wgsl's one subgroup of `lanes` 32×4 blocks side by side, or the
/// tiled kernels' workgroup of 8×8 blocks.
fn tile(entry: &str, tiling: Option<Tiling>, lanes: u32) -> (usize, usize) {
    match tiling {
        Some(t) => (8 * t.workgroup[1] as usize, 8 * t.workgroup[0] as usize),
        None if entry.ends_with("_subgroup") => (32, 4 * lanes as usize),
        None => (64, 64),
    }
}

/// `shaders/matmul_common.wgsl`'s parameters, shared with the convolutions (`conv.rs`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) m: u32,
    pub(super) k: u32,
    pub(super) n: u32,
    pub(super) has_bias: u32,
    pub(super) tiles_n: u32,
    pub(super) tiles: u32,
    pub(super) a_row: u32,
    pub(super) a_col: u32,
    pub(super) b_row: u32,
    pub(super) b_col: u32,
    pub(super) k_begin: u32,
    pub(super) k_end: u32,
    pub(super) accumulate: u32,
    pub(super) slope: f32,
    pub(super) keep: u32,
    pub(super) drop_p: f32,
    pub(super) seed: u32,
    pub(super) has_mask: u32,
    pub(super) row_sums: u32,
    pub(super) ci: u32,
    pub(super) h: u32,
    pub(super) w: u32,
    pub(super) co: u32,
    pub(super) kh: u32,
    pub(super) kw: u32,
    pub(super) sh: u32,
    pub(super) sw: u32,
    pub(super) ph: u32,
    pub(super) pw: u32,
    pub(super) oh: u32,
    pub(super) ow: u32,
    pub(super) plane: u32,
}

/// What a matrix product does to each value of C as it stores it, so that a dense layer's
/// forward, or a step of its backward, is one launch instead of one per element-wise op
/// (`shaders/matmul_common.wgsl` gives the exact order). The default stores `C (+ bias)`.
///
/// A forward epilogue takes `activation`, `keep` and `dropout`; a backward one `mask` and
/// `derivative`; either may take `row_sums`. The results equal the separate ops'
/// ([`Kernels::activation_forward`], [`Kernels::dropout_forward`], …) to the bit.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Epilogue<'a> {
    /// Forward: `C = f(C + bias)`.
    pub activation: Option<Activation>,
    /// Forward, with an activation: an (m, n) tensor to keep the activation's input or its
    /// output in (what its backward reads, or an intermediate an app wants to see).
    pub keep: Option<(Keep, &'a GpuTensor)>,
    /// Forward: dropout after the activation, with the mask of the counter's step.
    pub dropout: Option<EpilogueDropout<'a>>,
    /// Backward: `C = C ⊙ mask`, an (m, n) dropout mask (the gradient through dropout).
    pub mask: Option<&'a GpuTensor>,
    /// Backward: `C = f'(saved) ⊙ C`, from what the activation's forward kept (m, n): the
    /// gradient through the activation of the layer below.
    pub derivative: Option<(Activation, &'a GpuTensor)>,
    /// [`MatmulForm::AtB`] only: `Σ_k A(i, k)` into this (1, m) tensor; with `A = dZᵀ`, the
    /// bias gradient beside the weight gradient `dW = dZᵀ·X`. Summed in another order than
    /// [`Kernels::sum_columns`], so equal to it within rounding, not to the bit.
    pub row_sums: Option<&'a GpuTensor>,
}

/// Which value of a forward [`Epilogue`]'s activation to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Keep {
    /// `C + bias`, before the activation.
    Input,
    /// The activation's output, before dropout.
    Output,
}

/// Dropout in a forward [`Epilogue`]: as [`Kernels::dropout_forward`], whose mask and counter
/// these are.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct EpilogueDropout<'a> {
    /// The drop probability, in [0, 1).
    pub p: f32,
    /// The layer's seed.
    pub seed: u32,
    /// (m, n): written with `1 / (1 − p)` where kept, 0 where dropped.
    pub mask: &'a GpuTensor,
    /// The (1, 1) step counter of [`Kernels::dropout_advance`].
    pub counter: &'a super::DropoutCounter,
}

impl<'a> EpilogueDropout<'a> {
    /// Dropout with probability `p` and the layer's `seed`, writing its mask into `mask` at
    /// `counter`'s step.
    pub fn new(p: f32, seed: u32, mask: &'a GpuTensor, counter: &'a super::DropoutCounter) -> Self {
        EpilogueDropout { p, seed, mask, counter }
    }
}

/// The most k one launch sums. The scalar kernel loops once per k, the vec4 ones once per
/// four; llvmpipe stops an invocation after 65535 iterations in all, so longer products are
/// split into launches that each add to C (see [`Dispatch`]).
const K_SEGMENT: usize = 32_768;

/// Which matmul kernel runs a product. [`MatmulKernel::Auto`] picks the fastest that fits the
/// shapes and the adapter; the others exist so tests can hold each against the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatmulKernel {
    /// The fastest kernel that fits the shapes and the adapter (what the model uses).
    Auto,
    /// `matmul_any`: any shape, scalar loads.
    Scalar,
    /// `matmul_ab` / `matmul_abt` / `matmul_atb`: vec4 loads; the rows they read along must
    /// be multiples of 4 long.
    Vec4,
    /// The `_subgroup` variants: vec4 alignment as above, and subgroups of one fixed width of
    /// 8, 16, 32 or 64 lanes (what `Auto` runs on llvmpipe, whose subgroups are 8 lanes).
    Subgroup,
    /// The `_tiled` variants (`shaders/matmul_tiled.wgsl`): vec4 alignment as above, tiles
    /// staged through workgroup memory, the classic kernel for discrete and integrated GPUs.
    /// Runs on every adapter (on llvmpipe, slowly).
    Tiled(Tiling),
}

/// The tile sizes of [`MatmulKernel::Tiled`], compiled into its pipelines as override
/// constants. A workgroup of `workgroup[0] × workgroup[1]` invocations computes a
/// `8·workgroup[1]` × `8·workgroup[0]` tile of C, each invocation an 8×8 block, stepping
/// `tile_k` along k at a time through workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tiling {
    /// Invocations along C's columns and rows; each a power of two from 1 to 32, within the
    /// adapter's workgroup limits.
    pub workgroup: [u32; 2],
    /// k per step: a multiple of 4 from 4 to 64. (Each step's loop is unrolled by the driver;
    /// on llvmpipe a step of 32 compiles for minutes.)
    pub tile_k: u32,
}

impl Default for Tiling {
    /// 8×8 invocations (a 64×64 tile of C) and 16 k per step: 8 KiB of workgroup memory.
    fn default() -> Self {
        Tiling { workgroup: [8, 8], tile_k: 16 }
    }
}

impl Tiling {
    /// `workgroup` invocations along C's columns and rows, each a block of 8×8 outputs,
    /// stepping `tile_k` along k (checked against the adapter when bound).
    pub fn new(workgroup: [u32; 2], tile_k: u32) -> Self {
        Tiling { workgroup, tile_k }
    }

    /// Bytes of workgroup memory a workgroup stages (A's and B's pieces).
    pub fn workgroup_bytes(&self) -> u64 {
        let quads = 2 * (self.workgroup[0] + self.workgroup[1]) as u64;
        16 * quads * self.tile_k as u64
    }

    /// Checks the tiling against `limits`, naming what doesn't fit.
    fn check(&self, limits: &wgpu::Limits) -> std::result::Result<(), String> {
        let [x, y] = self.workgroup;
        let power = |v: u32| v.is_power_of_two() && v <= 32;
        if !power(x) || !power(y) {
            return Err(format!("workgroup {x}x{y}: each side must be a power of two up to 32"));
        }
        if !(4..=64).contains(&self.tile_k) || !self.tile_k.is_multiple_of(4) {
            return Err(format!("tile_k {}: a multiple of 4 from 4 to 64", self.tile_k));
        }
        if x > limits.max_compute_workgroup_size_x
            || y > limits.max_compute_workgroup_size_y
            || x * y > limits.max_compute_invocations_per_workgroup
        {
            return Err(format!(
                "workgroup {x}x{y}: the adapter allows {}x{} and {} invocations",
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
                limits.max_compute_invocations_per_workgroup
            ));
        }
        if self.workgroup_bytes() > limits.max_compute_workgroup_storage_size as u64 {
            return Err(format!(
                "{} bytes of workgroup memory; the adapter allows {}",
                self.workgroup_bytes(),
                limits.max_compute_workgroup_storage_size
            ));
        }
        Ok(())
    }

    /// The most k one launch of these tiles sums within llvmpipe's 65,535 loop iterations
    /// per invocation: each step of `tile_k` costs the step itself, `tile_k` multiply-adds
    /// and this invocation's share of the two copies into workgroup memory. (Half the limit:
    /// with 60,000 counted this way, a long Aᵀ·B on lavapipe came out short.)
    fn k_segment(&self) -> usize {
        let [x, y] = self.workgroup.map(|v| v as usize);
        let k = self.tile_k as usize;
        let per_step = 1 + k + (2 * y * k).div_ceil(x * y) + (2 * x * k).div_ceil(x * y);
        (32_768 / per_step) * k
    }

    fn constants(&self) -> [(&'static str, u32); 3] {
        [("WG_X", self.workgroup[0]), ("WG_Y", self.workgroup[1]), ("TILE_K", self.tile_k)]
    }
}

/// What [`MatmulKernel::Auto`] runs on an adapter (for shapes the vec4 kernels take): the
/// subgroup kernels on a CPU adapter that has them (llvmpipe, whose 8 lanes they are tuned
/// for), the tiled kernels on real GPUs (discrete, integrated, virtual) whose limits take
/// the default tiles, and the register-blocked vec4 kernels elsewhere: CPU adapters without
/// such subgroups, where workgroup memory costs what storage does, and adapters of unknown
/// type (wgpu's GL backend reports some desktop GPUs so).
pub(crate) fn auto_kernel(
    info: &wgpu::AdapterInfo,
    limits: &wgpu::Limits,
    has_subgroup: bool,
) -> MatmulKernel {
    use wgpu::DeviceType::*;
    match info.device_type {
        Cpu if has_subgroup => MatmulKernel::Subgroup,
        DiscreteGpu | IntegratedGpu | VirtualGpu if Tiling::default().check(limits).is_ok() => {
            MatmulKernel::Tiled(Tiling::default())
        }
        _ => MatmulKernel::Vec4,
    }
}

pub(super) const BINDINGS: [Binding; 8] = [
    Binding::Uniform(size_of::<Params>() as u64),
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Read,
];

pub(crate) fn family(device: &wgpu::Device) -> Family {
    Family::new(
        device,
        "matmul",
        &super::shaders::matmul(include_str!("../../shaders/matmul.wgsl")),
        &BINDINGS,
        &["matmul_ab", "matmul_abt", "matmul_atb", "matmul_any"],
    )
}

pub(crate) fn tiled_family(device: &wgpu::Device) -> Family {
    Family::new(
        device,
        "matmul_tiled",
        &super::shaders::matmul(include_str!("../../shaders/matmul_tiled.wgsl")),
        &BINDINGS,
        &["matmul_ab_tiled", "matmul_abt_tiled", "matmul_atb_tiled"],
    )
}

/// The subgroup kernels and their width, where the adapter's subgroups have one fixed width of
/// 8, 16, 32 or 64 lanes (the kernels' workgroup is one subgroup, so its width must be known
/// when the pipeline is made). Elsewhere: none.
pub(crate) fn subgroup_family(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> Option<(Family, u32)> {
    let lanes = info.subgroup_min_size;
    let fixed = lanes == info.subgroup_max_size && [8, 16, 32, 64].contains(&lanes);
    let fits = lanes <= device.limits().max_compute_invocations_per_workgroup;
    (fixed && fits && device.features().contains(wgpu::Features::SUBGROUP)).then(|| {
        let family = Family::new(
            device,
            "matmul_subgroup",
            &super::shaders::matmul(include_str!("../../shaders/matmul_subgroup.wgsl")),
            &BINDINGS,
            &["matmul_ab_subgroup", "matmul_abt_subgroup", "matmul_atb_subgroup"],
        );
        (family, lanes)
    })
}

/// `matmul_subgroup.wgsl` with `matmul_texture.wgsl`: its bindings and two textures after them.
/// Made on the first product that reads textures, not with the others: most contexts never
/// run one.
fn texture_family(gpu: &Gpu) -> std::result::Result<Family, String> {
    let bindings: Vec<Binding> =
        BINDINGS.iter().copied().chain([Binding::Texture, Binding::Texture]).collect();
    let source = [
        include_str!("../../shaders/matmul_subgroup.wgsl"),
        include_str!("../../shaders/matmul_texture.wgsl"),
    ];
    gpu.scoped("building the texture-read matmul", || {
        Family::new(
            gpu.device(),
            "matmul_texture",
            &super::shaders::matmul(&source.concat()),
            &bindings,
            &["matmul_ab_texture"],
        )
    })
    .map_err(|e| e.to_string())
}

/// The smallest side of a product whose A·B on llvmpipe reads through textures: at 1024³ the
/// copies and the texture reads ran 1.1–1.2× the storage reads (2-core AMD EPYC, Zen 4;
/// BENCHMARKS.md).
pub(crate) const TEXTURE_READS_FROM: usize = 512;

/// Whether `A·B` (m × k · k × n) on this adapter reads its operands through textures: where
/// `Auto` runs the subgroup kernels on a CPU adapter (llvmpipe), the product is large, every
/// row copies whole (bytes per row a multiple of 256), the textures fit the adapter, and the
/// operands' buffers can be copied from.
fn texture_reads(gpu: &Gpu, a: &GpuTensor, b: &GpuTensor, (m, k, n): (usize, usize, usize)) -> bool {
    let side = gpu.limits().max_texture_dimension_2d as usize;
    let copyable = |t: &GpuTensor| {
        t.buffer().usage().contains(wgpu::BufferUsages::COPY_SRC) && t.offset().is_multiple_of(256)
    };
    gpu.adapter_info().device_type == wgpu::DeviceType::Cpu
        && m.min(k).min(n) >= TEXTURE_READS_FROM
        && k.is_multiple_of(64)
        && n.is_multiple_of(64)
        && m.max(k).max(n / 4) <= side
        && copyable(a)
        && copyable(b)
}

/// The element-wise stages of a checked epilogue, as the shader's parameters.
pub(super) struct Stages {
    act: u32,
    slope: f32,
    keep: u32,
    dropout: Option<(f32, u32)>,
    has_mask: bool,
    derive: u32,
}

impl Stages {
    pub(super) fn apply(&self, params: Params) -> Params {
        let (drop_p, seed) = self.dropout.unwrap_or((0.0, 0));
        Params { slope: self.slope, keep: self.keep, drop_p, seed, has_mask: self.has_mask as u32, ..params }
    }

    /// The override constants the pipeline is specialized with (none for a plain product).
    pub(super) fn constants(&self) -> Vec<(&'static str, u32)> {
        let set = [("ACT", self.act), ("DROPOUT", self.dropout.is_some() as u32), ("DERIVE", self.derive)];
        set.into_iter().filter(|&(_, v)| v != 0).collect()
    }
}

/// Checks an epilogue's tensors against C's (m, n) and that its stages go together.
pub(super) fn check_epilogue(
    op: &'static str,
    e: &Epilogue,
    form: MatmulForm,
    m: usize,
    n: usize,
) -> Result<Stages> {
    let forward = e.activation.is_some() || e.keep.is_some() || e.dropout.is_some();
    let backward = e.mask.is_some() || e.derivative.is_some();
    let refuse =
        |problem: &str| Err(Error::shape(op, "an epilogue whose stages go together", problem.to_string()));
    if forward && backward {
        return refuse(
            "forward stages (activation, keep, dropout) and backward ones (mask, derivative) at once",
        );
    }
    if e.keep.is_some() && e.activation.is_none() {
        return refuse("a tensor to keep the activation's input or output in, but no activation");
    }
    if e.keep.is_some() && e.row_sums.is_some() {
        return refuse("both a kept activation and row sums (they share a binding)");
    }
    if e.row_sums.is_some() && form != MatmulForm::AtB {
        return refuse("row sums in a product other than Aᵀ·B");
    }
    let kept = e.keep.map(|(_, t)| t);
    for (name, tensor) in
        [("kept activation", kept), ("mask", e.mask), ("saved activation", e.derivative.map(|d| d.1))]
    {
        if let Some(tensor) = tensor {
            check_same(op, name, tensor.shape(), (m, n))?;
        }
    }
    if let Some(sums) = e.row_sums {
        check_same(op, "row sums", sums.shape(), (1, m))?;
    }
    if let Some(d) = &e.dropout {
        if !(0.0..1.0).contains(&d.p) {
            return Err(Error::shape(op, "a drop probability in [0, 1)", d.p.to_string()));
        }
        check_same(op, "dropout mask", d.mask.shape(), (m, n))?;
        check_same(op, "dropout counter", d.counter.shape(), (1, 1))?;
    }
    let f = e.activation.or(e.derivative.map(|d| d.0));
    Ok(Stages {
        act: e.activation.map_or(0, Activation::code),
        slope: f.map_or(0.0, Activation::parameter),
        keep: match e.keep {
            Some((Keep::Input, _)) => 1,
            Some((Keep::Output, _)) => 2,
            None => 0,
        },
        dropout: e.dropout.map(|d| (d.p, d.seed)),
        has_mask: e.mask.is_some(),
        derive: e.derivative.map_or(0, |d| d.0.code()),
    })
}

/// The vec4 entry point for `form`, when every row it reads along starts 16-byte aligned.
fn vec4_entry(form: MatmulForm, m: usize, k: usize, n: usize) -> Option<&'static str> {
    match form {
        MatmulForm::AB if k.is_multiple_of(4) && n.is_multiple_of(4) => Some("matmul_ab"),
        MatmulForm::ABt if k.is_multiple_of(4) => Some("matmul_abt"),
        MatmulForm::AtB if m.is_multiple_of(4) && n.is_multiple_of(4) => Some("matmul_atb"),
        _ => None,
    }
}

fn subgroup_entry(vec4_entry: &'static str) -> &'static str {
    match vec4_entry {
        "matmul_ab" => "matmul_ab_subgroup",
        "matmul_abt" => "matmul_abt_subgroup",
        _ => "matmul_atb_subgroup",
    }
}

fn tiled_entry(vec4_entry: &'static str) -> &'static str {
    match vec4_entry {
        "matmul_ab" => "matmul_ab_tiled",
        "matmul_abt" => "matmul_abt_tiled",
        _ => "matmul_atb_tiled",
    }
}

impl Kernels<'_> {
    /// Binds `out = A·B (+ bias)` in the given form. Shapes as in
    /// [`crate::cpu::matmul_forward`]: `out` is (m, n), `bias` is (1, n).
    pub fn matmul_forward(
        &self,
        out: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        form: MatmulForm,
    ) -> Result<Dispatch> {
        self.bind_matmul(out, a, b, bias, form, MatmulKernel::Auto, &Epilogue::default())
    }

    /// [`Kernels::matmul_forward`] with an [`Epilogue`] fused into the store: a dense layer's
    /// forward (`f(x·Wᵀ + b)` then dropout) or a step of its backward in one launch.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_fused(
        &self,
        kernel: MatmulKernel,
        out: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        form: MatmulForm,
        epilogue: &Epilogue,
    ) -> Result<Dispatch> {
        self.bind_matmul(out, a, b, bias, form, kernel, epilogue)
    }

    /// [`Kernels::matmul_forward`] on a chosen kernel; an error when that kernel can't take these
    /// shapes on this adapter.
    pub fn matmul_forward_with(
        &self,
        kernel: MatmulKernel,
        out: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        form: MatmulForm,
    ) -> Result<Dispatch> {
        self.bind_matmul(out, a, b, bias, form, kernel, &Epilogue::default())
    }

    /// Binds the gradients of `out = A·B + bias` in the given form, each itself a matmul
    /// (as in [`crate::cpu::matmul_backward`]), plus the column sums of `d_out` for `d_bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_backward(
        &self,
        d_a: &GpuTensor,
        d_b: &GpuTensor,
        d_bias: Option<&GpuTensor>,
        d_out: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        form: MatmulForm,
    ) -> Result<Vec<Dispatch>> {
        use MatmulForm::*;
        let (m, _, n) = form.dims(a.shape(), b.shape())?;
        check_same(form.op_name(), "output gradient", d_out.shape(), (m, n))?;
        // The gradients have their factors' shapes: checked here, so the error names this
        // call rather than one of the products below.
        check_same("matmul_backward", "gradient of A", d_a.shape(), a.shape())?;
        check_same("matmul_backward", "gradient of B", d_b.shape(), b.shape())?;
        let mut dispatches = match form {
            AB => vec![
                self.matmul_forward(d_a, d_out, b, None, ABt)?,
                self.matmul_forward(d_b, a, d_out, None, AtB)?,
            ],
            ABt => vec![
                self.matmul_forward(d_a, d_out, b, None, AB)?,
                self.matmul_forward(d_b, d_out, a, None, AtB)?,
            ],
            AtB => vec![
                self.matmul_forward(d_a, b, d_out, None, ABt)?,
                self.matmul_forward(d_b, a, d_out, None, AB)?,
            ],
        };
        if let Some(d_bias) = d_bias {
            dispatches.push(self.sum_columns(d_bias, d_out, 1.0)?);
        }
        Ok(dispatches)
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_matmul(
        &self,
        out: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        form: MatmulForm,
        kernel: MatmulKernel,
        epilogue: &Epilogue,
    ) -> Result<Dispatch> {
        let op = form.op_name();
        let (m, k, n) = form.dims(a.shape(), b.shape())?;
        check_same(op, "output", out.shape(), (m, n))?;
        if let Some(bias) = bias {
            check_same(op, "bias", bias.shape(), (1, n))?;
        }
        let stages = check_epilogue(op, epilogue, form, m, n)?;
        let vec4 = vec4_entry(form, m, k, n);
        // Auto falls back to the scalar kernel for shapes the vec4 ones can't take; a kernel
        // chosen by name is refused instead.
        let auto = kernel == MatmulKernel::Auto;
        let kernel = if auto { self.compiled.auto_matmul } else { kernel };
        let unfit = |why: String| {
            Err(Error::shape(op, format!("shapes and an adapter the {kernel:?} kernel takes"), why))
        };
        let mut tiling = None;
        let mut lanes = 0;
        let (family, entry) = match (kernel, vec4) {
            (MatmulKernel::Scalar, _) => (&self.compiled.matmul, "matmul_any"),
            (_, None) if auto => (&self.compiled.matmul, "matmul_any"),
            (_, None) => {
                return unfit(format!(
                    "{m}x{k}x{n} ({form:?}): the vec4 kernels read rows that must be multiples of 4 long"
                ));
            }
            (MatmulKernel::Subgroup, Some(entry)) => match &self.compiled.matmul_subgroup {
                Some((family, width)) => {
                    lanes = *width;
                    (family, subgroup_entry(entry))
                }
                None => {
                    return unfit(format!(
                        "{} has no subgroups of one fixed width of 8, 16, 32 or 64 lanes",
                        self.adapter_name()
                    ));
                }
            },
            (MatmulKernel::Tiled(t), Some(entry)) => {
                if let Err(why) = t.check(self.limits()) {
                    return unfit(why);
                }
                tiling = Some(t);
                (&self.compiled.matmul_tiled, tiled_entry(entry))
            }
            (MatmulKernel::Vec4 | MatmulKernel::Auto, Some(entry)) => (&self.compiled.matmul, entry),
        };
        // Element strides for matmul_any; see Params in the shader.
        let (a_row, a_col) = if form == MatmulForm::AtB { (1, m) } else { (k, 1) };
        let (b_row, b_col) = if form == MatmulForm::ABt { (1, k) } else { (n, 1) };
        let (tile_m, tile_n) = tile(entry, tiling, lanes);
        let tiles_n = n.div_ceil(tile_n);
        let tiles = m.div_ceil(tile_m) * tiles_n;
        let as_u32 = |v: usize| {
            u32::try_from(v).map_err(|_| Error::shape(op, "dimensions below 2^32", format!("{m}x{k}x{n}")))
        };
        let whole = Params {
            m: as_u32(m)?,
            k: as_u32(k)?,
            n: as_u32(n)?,
            has_bias: bias.is_some() as u32,
            tiles_n: as_u32(tiles_n)?,
            tiles: as_u32(tiles)?,
            a_row: as_u32(a_row)?,
            a_col: as_u32(a_col)?,
            b_row: as_u32(b_row)?,
            b_col: as_u32(b_col)?,
            k_begin: 0,
            k_end: as_u32(k)?,
            accumulate: 0,
            slope: 0.0,
            keep: 0,
            drop_p: 0.0,
            seed: 0,
            has_mask: 0,
            row_sums: epilogue.row_sums.is_some() as u32,
            ..Params::zeroed()
        };
        let workgroups = fold(tiles as u64, self.max_workgroups())?;
        let dropout = epilogue.dropout.as_ref();
        let args: [Arg; 7] = [
            a.into(),
            b.into(),
            bias.into(),
            out.into(),
            epilogue.keep.map(|(_, t)| t).or(epilogue.row_sums).into(),
            dropout.map(|d| d.mask).or(epilogue.mask).into(),
            dropout.map(|d| &**d.counter).or(epilogue.derivative.map(|(_, saved)| saved)).into(),
        ];
        let k_segment = tiling.map_or(K_SEGMENT, |t| t.k_segment());
        let bind_steps = |family: &Family, entry: &'static str, args: &[Arg]| {
            segments(k, k_segment)
                .map(|(k_begin, k_end)| {
                    // The first segment adds the bias; the later ones add to what it wrote, and
                    // the last runs the element-wise stages over the whole sum.
                    let last = k_end == k;
                    let segment = Params {
                        k_begin: k_begin as u32,
                        k_end: k_end as u32,
                        has_bias: whole.has_bias * (k_begin == 0) as u32,
                        accumulate: (k_begin > 0) as u32,
                        ..if last { stages.apply(whole) } else { whole }
                    };
                    let mut constants = if last { stages.constants() } else { Vec::new() };
                    constants.extend(tiling.iter().flat_map(Tiling::constants));
                    if lanes != 0 {
                        constants.push(("SG", lanes));
                    }
                    family.step_with(self, entry, &constants, bytemuck::bytes_of(&segment), args, workgroups)
                })
                .collect::<Result<Vec<_>>>()
        };
        let dispatch = Dispatch::new(entry, bind_steps(family, entry, &args)?, self.id());
        if !(auto && entry == "matmul_ab_subgroup" && texture_reads(self, a, b, (m, k, n))) {
            return Ok(dispatch);
        }
        // The same product reading A and B from textures that copies fill before its pass, for
        // Gpu::record; an app's own pass still gets the steps above. Only a speed-up: if any
        // of it fails (the textures' memory, say), the product reads its buffers.
        let family = match self.compiled.matmul_texture.get() {
            Some(family) => family,
            None => match texture_family(self) {
                // (A failure is tried again by the next large product.)
                Ok(family) => self.compiled.matmul_texture.get_or_init(|| family),
                Err(_) => return Ok(dispatch),
            },
        };
        let texture = |t: &GpuTensor, rows: usize, cols: usize| {
            let texture = self.device().create_texture(&wgpu::TextureDescriptor {
                label: Some("matmul operand"),
                size: wgpu::Extent3d {
                    width: (cols / 4) as u32,
                    height: rows as u32,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let copy = TextureCopy {
                buffer: t.buffer().clone(),
                offset: t.offset(),
                bytes_per_row: (cols * 4) as u32,
                texture,
                _held: super::counters::Held::new(&self.tally, (rows * cols * 4) as u64),
            };
            (copy.texture.create_view(&Default::default()), copy)
        };
        let Ok(((a_view, a_copy), (b_view, b_copy))) =
            self.scoped(op, || (texture(a, m, k), texture(b, k, n)))
        else {
            return Ok(dispatch);
        };
        let mut args = args.to_vec();
        args.extend([Arg::Texture(&a_view), Arg::Texture(&b_view)]);
        match bind_steps(family, "matmul_ab_texture", &args) {
            Ok(steps) => Ok(dispatch.with_staged(Staged { copies: vec![a_copy, b_copy], steps })),
            Err(_) => Ok(dispatch),
        }
    }
}

/// What the adapter runs: facts about the context, so on [`Gpu`] itself.
impl Gpu {
    /// Whether this adapter has the subgroup matmul kernels.
    pub fn has_subgroup_matmul(&self) -> bool {
        self.compiled.matmul_subgroup.is_some()
    }

    /// The kernel [`MatmulKernel::Auto`] runs on this adapter for shapes the vec4 kernels take
    /// (others run [`MatmulKernel::Scalar`]): [`MatmulKernel::Subgroup`] on a CPU adapter
    /// whose subgroups have one fixed width (llvmpipe: 8 lanes), [`MatmulKernel::Tiled`] on
    /// discrete, integrated and virtual GPUs, [`MatmulKernel::Vec4`] elsewhere.
    pub fn matmul_kernel(&self) -> MatmulKernel {
        self.compiled.auto_matmul
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(invocations: u32, side: u32, bytes: u32) -> wgpu::Limits {
        wgpu::Limits {
            max_compute_invocations_per_workgroup: invocations,
            max_compute_workgroup_size_x: side,
            max_compute_workgroup_size_y: side,
            max_compute_workgroup_storage_size: bytes,
            ..wgpu::Limits::default()
        }
    }

    #[test]
    fn tilings_are_checked_against_the_limits_naming_what_does_not_fit() {
        let t = |x, y, k| Tiling { workgroup: [x, y], tile_k: k };
        let (small, large) = (limits(256, 256, 16_384), limits(1024, 1024, 65_536));
        for (tiling, limits, refused_for) in [
            (t(3, 8, 16), &large, Some("power of two")),
            (t(64, 1, 16), &large, Some("power of two")),
            (t(8, 8, 6), &large, Some("tile_k 6")),
            (t(8, 8, 68), &large, Some("tile_k 68")),
            (t(32, 32, 4), &small, Some("invocations")),
            (t(32, 32, 4), &large, None),
            (t(32, 1, 4), &limits(256, 16, 16_384), Some("16x16")),
            (t(16, 16, 20), &small, Some("workgroup memory")),
            (t(16, 16, 16), &small, None),
            (t(16, 16, 64), &large, None),
            (Tiling::default(), &small, None),
        ] {
            match (tiling.check(limits), refused_for) {
                (Ok(()), None) => {}
                (Err(why), Some(names)) => assert!(why.contains(names), "{tiling:?}: {why}"),
                (result, _) => panic!("{tiling:?} under {limits:?}: {result:?}"),
            }
        }
    }

    #[test]
    fn auto_picks_by_adapter_type_subgroups_and_limits() {
        let info = |device_type| wgpu::AdapterInfo::new(device_type, wgpu::Backend::Vulkan);
        let roomy = limits(256, 256, 16_384);
        let tiled = MatmulKernel::Tiled(Tiling::default());
        use wgpu::DeviceType::*;
        for (device_type, has_subgroup, limits, want) in [
            (Cpu, true, &roomy, MatmulKernel::Subgroup),
            (Cpu, false, &roomy, MatmulKernel::Vec4),
            (DiscreteGpu, false, &roomy, tiled),
            // A real GPU with 8-lane subgroups still gets the tiles (the subgroup kernels are
            // tuned to llvmpipe).
            (IntegratedGpu, true, &roomy, tiled),
            (VirtualGpu, false, &roomy, tiled),
            (DiscreteGpu, false, &limits(32, 32, 16_384), MatmulKernel::Vec4),
            (Other, false, &roomy, MatmulKernel::Vec4),
        ] {
            assert_eq!(auto_kernel(&info(device_type), limits, has_subgroup), want, "{device_type:?}");
        }
    }
}
