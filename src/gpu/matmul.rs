//! Pipelines of `shaders/matmul.wgsl`: the three products of a dense layer, bias fused.

use bytemuck::{Pod, Zeroable};

use super::dispatch::{Arg, Binding, Dispatch, Family, fold, segments};
use super::{Gpu, GpuTensor};
use crate::shape::{MatmulForm, check_same};
use crate::{Error, Result};

/// Outputs per workgroup along each side: 8×8 invocations, each an 8×8 block.
const TILE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    k: u32,
    n: u32,
    has_bias: u32,
    tiles_n: u32,
    tiles: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    k_begin: u32,
    k_end: u32,
    accumulate: u32,
    _pad: u32,
}

/// The most k one launch sums. The scalar kernel loops once per k, the vec4 ones once per
/// four; llvmpipe stops an invocation after 65535 iterations in all, so longer products are
/// split into launches that each add to C (see [`Dispatch`]).
const K_SEGMENT: usize = 32_768;

/// Which matmul kernel runs a product. [`MatmulKernel::Auto`] picks the fastest that fits the
/// shapes and the adapter; the others exist so tests can hold each against the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// The fastest kernel that fits the shapes and the adapter (what the model uses).
    Auto,
    /// `matmul_any`: any shape, scalar loads.
    Scalar,
    /// `matmul_ab` / `matmul_abt` / `matmul_atb`: vec4 loads; the rows they read along must
    /// be multiples of 4 long.
    Vec4,
    /// The `_subgroup` variants: vec4 alignment as above, and 8-lane subgroups.
    Subgroup,
}

const BINDINGS: [Binding; 5] = [
    Binding::Uniform(size_of::<Params>() as u64),
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
];

pub(crate) fn family(device: &wgpu::Device) -> Family {
    Family::new(
        device,
        "matmul",
        super::shaders::MATMUL,
        &BINDINGS,
        &["matmul_ab", "matmul_abt", "matmul_atb", "matmul_any"],
    )
}

/// The subgroup kernels assume exactly 8 lanes (llvmpipe's width on 256-bit SIMD), where
/// they load 6 vec4s per 64 multiply-adds instead of 16. Elsewhere: none.
pub(crate) fn subgroup_family(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> Option<Family> {
    let eight_lanes = info.subgroup_min_size == 8 && info.subgroup_max_size == 8;
    (eight_lanes && device.features().contains(wgpu::Features::SUBGROUP)).then(|| {
        Family::new(
            device,
            "matmul_subgroup",
            super::shaders::MATMUL_SUBGROUP,
            &BINDINGS,
            &["matmul_ab_subgroup", "matmul_abt_subgroup", "matmul_atb_subgroup"],
        )
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

impl Gpu {
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
        self.bind_matmul(out, a, b, bias, form, MatmulKernel::Auto)
    }

    /// [`Gpu::matmul_forward`] on a chosen kernel; an error when that kernel can't take these
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
        self.bind_matmul(out, a, b, bias, form, kernel)
    }

    /// Whether this adapter has the subgroup matmul kernels.
    pub fn has_subgroup_matmul(&self) -> bool {
        self.kernels.matmul_subgroup.is_some()
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

    fn bind_matmul(
        &self,
        out: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        form: MatmulForm,
        kernel: MatmulKernel,
    ) -> Result<Dispatch> {
        let op = form.op_name();
        let (m, k, n) = form.dims(a.shape(), b.shape())?;
        check_same(op, "output", out.shape(), (m, n))?;
        if let Some(bias) = bias {
            check_same(op, "bias", bias.shape(), (1, n))?;
        }
        let vec4 = vec4_entry(form, m, k, n);
        let subgroup = self.kernels.matmul_subgroup.as_ref().filter(|_| vec4.is_some());
        let (family, entry) = match (kernel, vec4, subgroup) {
            (MatmulKernel::Auto | MatmulKernel::Subgroup, Some(entry), Some(family)) => {
                (family, subgroup_entry(entry))
            }
            (MatmulKernel::Auto, Some(entry), None) | (MatmulKernel::Vec4, Some(entry), _) => {
                (&self.kernels.matmul, entry)
            }
            (MatmulKernel::Auto | MatmulKernel::Scalar, _, _) => (&self.kernels.matmul, "matmul_any"),
            (MatmulKernel::Vec4 | MatmulKernel::Subgroup, _, _) => {
                return Err(Error::shape(
                    op,
                    format!("shapes and an adapter the {kernel:?} kernel takes"),
                    format!("{m}x{k}x{n} on {}", self.adapter_name()),
                ));
            }
        };
        // Element strides for matmul_any; see Params in the shader.
        let (a_row, a_col) = if form == MatmulForm::AtB { (1, m) } else { (k, 1) };
        let (b_row, b_col) = if form == MatmulForm::ABt { (1, k) } else { (n, 1) };
        let tiles_n = n.div_ceil(TILE);
        let tiles = m.div_ceil(TILE) * tiles_n;
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
            _pad: 0,
        };
        let workgroups = fold(tiles as u64, self.max_workgroups())?;
        let args: [Arg; 4] = [a.into(), b.into(), bias.into(), out.into()];
        let steps = segments(k, K_SEGMENT)
            .map(|(k_begin, k_end)| {
                // The first segment adds the bias; the later ones add to what it wrote.
                let segment = Params {
                    k_begin: k_begin as u32,
                    k_end: k_end as u32,
                    has_bias: whole.has_bias * (k_begin == 0) as u32,
                    accumulate: (k_begin > 0) as u32,
                    ..whole
                };
                family.step(self, entry, bytemuck::bytes_of(&segment), &args, workgroups)
            })
            .collect::<Result<_>>()?;
        Ok(Dispatch::new(entry, steps))
    }
}
