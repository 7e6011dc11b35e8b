//! The fused kernels held against the separate ops they replace and the CPU reference: the
//! matmul epilogues (`shaders/matmul_common.wgsl`) on every matmul kernel the adapter has,
//! and the one-launch loss steps (`shaders/loss.wgsl`).

use crate::common::{assert_close, gpu, random, random_labels};
use wgpu_nn::gpu::SettingsRow;
use wgpu_nn::model::{Backend, Loss, ModelConfig, Target};
use wgpu_nn::{
    Activation, Dispatch, Epilogue, EpilogueDropout, Gpu, GpuTensor, Keep, MatmulForm, MatmulKernel,
    OptimizerSettings, StepTarget, Tiling, cpu,
};

/// An [`Epilogue`] with the given stages, the rest off (it is `#[non_exhaustive]`: built from
/// its default, as a user outside the crate builds one).
macro_rules! epilogue {
    ($($stage:ident: $value:expr),* $(,)?) => {{
        let mut epilogue = Epilogue::default();
        $(epilogue.$stage = $value;)*
        epilogue
    }};
}

/// The dropout step the counter holds in these tests.
const STEP: u32 = 5;

/// Kernels this adapter has, and (m, k, n) each takes in every form: the vec4 ones need the
/// rows they read along to be multiples of 4; (7, 13, 10) is for the scalar kernel alone.
fn cases(gpu: &Gpu) -> Vec<(MatmulKernel, (usize, usize, usize))> {
    let mut cases = vec![(MatmulKernel::Scalar, (7, 13, 10)), (MatmulKernel::Scalar, (68, 20, 36))];
    cases.push((MatmulKernel::Vec4, (68, 20, 36)));
    if gpu.has_subgroup_matmul() {
        cases.push((MatmulKernel::Subgroup, (68, 20, 36)));
    }
    cases.push((MatmulKernel::Tiled(Tiling::default()), (68, 20, 36)));
    cases.push((MatmulKernel::Tiled(Tiling::new([2, 4], 4)), (68, 20, 36)));
    cases.push((MatmulKernel::Auto, (130, 64, 12)));
    cases
}

fn upload(gpu: &Gpu, values: &[f32], (rows, cols): (usize, usize)) -> GpuTensor {
    gpu.upload(values, rows, cols).unwrap()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_dense_forward_in_one_launch_equals_its_separate_ops_to_the_bit() {
    let Some(gpu) = gpu() else { return };
    let form = MatmulForm::ABt; // x·Wᵀ, the dense layer's forward
    let counter = gpu.kernels().dropout_counter().unwrap();
    gpu.write(&counter, &[f32::from_bits(STEP)]).unwrap();
    for (kernel, (m, k, n)) in cases(gpu) {
        let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
        let seed = (m * 1000 + n) as u64;
        // Wide enough inputs that every activation's both branches (and GELU's tails) occur.
        let scaled = |v: Vec<f32>| v.into_iter().map(|x| 3.0 * x).collect::<Vec<_>>();
        let (a, b, bias) = (scaled(random(ar * ac, seed)), random(br * bc, seed + 1), random(n, seed + 2));
        let (a_gpu, b_gpu, bias_gpu) =
            (upload(gpu, &a, (ar, ac)), upload(gpu, &b, (br, bc)), upload(gpu, &bias, (1, n)));
        for f in Activation::ALL {
            for p in [None, Some(0.3)] {
                let what = format!("{kernel:?} {m}x{k}x{n} {f:?} dropout {p:?}");
                let zeros = || gpu.zeros(m, n).unwrap();
                // Fused: one launch.
                let (out, keep, mask) = (zeros(), zeros(), zeros());
                let dropout = p.map(|p| EpilogueDropout::new(p, 77, &mask, &counter));
                let epilogue = epilogue! {
                    activation: Some(f),
                    keep: Some((if f.backward_reads_output() { Keep::Output } else { Keep::Input }, &keep)),
                    dropout: dropout,
                };
                let fused = gpu
                    .kernels()
                    .matmul_fused(kernel, &out, &a_gpu, &b_gpu, Some(&bias_gpu), form, &epilogue)
                    .unwrap();
                assert_eq!(fused.launches(), 1, "{what}");
                // Separate: the product, the activation, the dropout.
                let (z, y, dropped, mask2) = (zeros(), zeros(), zeros(), zeros());
                let mut separate = vec![
                    gpu.kernels()
                        .matmul_forward_with(kernel, &z, &a_gpu, &b_gpu, Some(&bias_gpu), form)
                        .unwrap(),
                    gpu.kernels().activation_forward(f, &y, &z).unwrap(),
                ];
                if let Some(p) = p {
                    separate
                        .push(gpu.kernels().dropout_forward(&dropped, &mask2, &y, p, 77, &counter).unwrap());
                }
                let all: Vec<_> = std::iter::once(&fused).chain(&separate).collect();
                gpu.run(&all).unwrap();
                let read = |t: &GpuTensor| gpu.read(t).unwrap();
                let want = read(if p.is_some() { &dropped } else { &y });
                assert_eq!(bits(&read(&out)), bits(&want), "{what}: output");
                let kept = if f.backward_reads_output() { read(&y) } else { read(&z) };
                assert_eq!(bits(&read(&keep)), bits(&kept), "{what}: kept for the backward");
                if p.is_some() {
                    assert_eq!(bits(&read(&mask)), bits(&read(&mask2)), "{what}: mask");
                }

                // And the CPU reference: the product, the activation, the same masks.
                let mut want = vec![0.0; m * n];
                cpu::matmul_forward(&mut want, &a, &b, Some(&bias), m, k, n, form).unwrap();
                let z_cpu = want.clone();
                cpu::activation_forward(f, &mut want, &z_cpu).unwrap();
                if let Some(p) = p {
                    let (act, mut cpu_mask) = (want.clone(), vec![0.0; m * n]);
                    cpu::dropout_forward(&mut want, &mut cpu_mask, &act, p, 77, STEP).unwrap();
                    assert_eq!(bits(&read(&mask)), bits(&cpu_mask), "{what}: mask against the CPU's");
                }
                // The product's rounding (see kernels.rs) passed through the activation, whose
                // slope is at most 1.13 (GELU) and whose transcendentals add a few ULP.
                assert_close(&what, &read(&out), &want, 1e-5, 2e-5 * k as f64);
            }
        }
    }
}

#[test]
fn a_backward_product_applies_the_derivative_below_it_to_the_bit() {
    let Some(gpu) = gpu() else { return };
    let form = MatmulForm::AB; // dX = dZ·W
    for (kernel, (m, k, n)) in cases(gpu) {
        let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
        let seed = (m * 1000 + n) as u64 + 9;
        let (a, b) = (random(ar * ac, seed), random(br * bc, seed + 1));
        let saved = random(m * n, seed + 2).into_iter().map(|x| 2.0 * x).collect::<Vec<_>>();
        let sigmoid_like = saved.iter().map(|x| 0.5 + 0.4 * x / 2.0).collect::<Vec<_>>(); // outputs in (0, 1)
        let mask: Vec<f32> =
            random(m * n, seed + 3).iter().map(|&u| if u > 0.0 { 1.25 } else { 0.0 }).collect();
        let (a_gpu, b_gpu, mask_gpu) =
            (upload(gpu, &a, (ar, ac)), upload(gpu, &b, (br, bc)), upload(gpu, &mask, (m, n)));
        for f in Activation::ALL {
            let s = if f.backward_reads_output() { &sigmoid_like } else { &saved };
            let saved_gpu = upload(gpu, s, (m, n));
            for with_mask in [false, true] {
                let what = format!("{kernel:?} {m}x{k}x{n} {f:?} mask {with_mask}");
                let zeros = || gpu.zeros(m, n).unwrap();
                let out = zeros();
                let epilogue = epilogue! {
                mask: with_mask.then_some(&mask_gpu),
                derivative: Some((f, &saved_gpu)) };
                let fused =
                    gpu.kernels().matmul_fused(kernel, &out, &a_gpu, &b_gpu, None, form, &epilogue).unwrap();
                let (dy, masked, dx) = (zeros(), zeros(), zeros());
                let mut separate =
                    vec![gpu.kernels().matmul_forward_with(kernel, &dy, &a_gpu, &b_gpu, None, form).unwrap()];
                let through = if with_mask {
                    separate.push(gpu.kernels().dropout_backward(&masked, &mask_gpu, &dy).unwrap());
                    &masked
                } else {
                    &dy
                };
                separate.push(gpu.kernels().activation_backward(f, &dx, &saved_gpu, through).unwrap());
                let all: Vec<_> = std::iter::once(&fused).chain(&separate).collect();
                gpu.run(&all).unwrap();
                let got = gpu.read(&out).unwrap();
                assert_eq!(bits(&got), bits(&gpu.read(&dx).unwrap()), "{what}");

                let mut want = vec![0.0; m * n];
                cpu::matmul_forward(&mut want, &a, &b, None, m, k, n, form).unwrap();
                if with_mask {
                    let product = want.clone();
                    cpu::dropout_backward(&mut want, &mask, &product).unwrap();
                }
                let upstream = want.clone();
                cpu::activation_backward(f, &mut want, s, &upstream).unwrap();
                assert_close(&what, &got, &want, 1e-5, 2e-5 * k as f64);
            }
        }
    }
}

#[test]
fn the_weight_gradient_sums_the_bias_gradient_beside_it() {
    let Some(gpu) = gpu() else { return };
    let form = MatmulForm::AtB; // dW = dZᵀ·X: A is dZ (batch, outputs)
    let mut cases = cases(gpu);
    // A batch that is not a multiple of 4, and one long enough to be split into launches.
    cases.extend([(MatmulKernel::Vec4, (36, 7, 20)), (MatmulKernel::Auto, (12, 70_004, 8))]);
    if gpu.has_subgroup_matmul() {
        cases.extend([(MatmulKernel::Subgroup, (36, 7, 20)), (MatmulKernel::Subgroup, (12, 70_004, 8))]);
    }
    let tiled = MatmulKernel::Tiled(Tiling::default());
    cases.extend([(tiled, (36, 7, 20)), (tiled, (12, 70_004, 8))]);
    for (kernel, (m, k, n)) in cases {
        let what = format!("{kernel:?} {m}x{k}x{n}");
        let (dz, x) = (random(k * m, (k + m) as u64), random(k * n, (k + n) as u64));
        let (dz_gpu, x_gpu) = (upload(gpu, &dz, (k, m)), upload(gpu, &x, (k, n)));
        let (dw, db, db_separate, dw_separate) = (
            gpu.zeros(m, n).unwrap(),
            gpu.zeros(1, m).unwrap(),
            gpu.zeros(1, m).unwrap(),
            gpu.zeros(m, n).unwrap(),
        );
        let epilogue = epilogue! { row_sums: Some(&db) };
        let fused = gpu.kernels().matmul_fused(kernel, &dw, &dz_gpu, &x_gpu, None, form, &epilogue).unwrap();
        let product =
            gpu.kernels().matmul_forward_with(kernel, &dw_separate, &dz_gpu, &x_gpu, None, form).unwrap();
        let sums = gpu.kernels().sum_columns(&db_separate, &dz_gpu, 1.0).unwrap();
        gpu.run(&[&fused, &product, &sums]).unwrap();
        assert_eq!(bits(&gpu.read(&dw).unwrap()), bits(&gpu.read(&dw_separate).unwrap()), "{what}: dW");
        let mut want = vec![0.0; m];
        cpu::sum_columns(&mut want, &dz, k, m, 1.0).unwrap();
        // Summed in another order than the reference's (by lanes and quads): k·ε·max.
        assert_close(&what, &gpu.read(&db).unwrap(), &want, 0.0, 8.0 * f64::from(f32::EPSILON) * k as f64);
    }
}

#[test]
fn epilogues_whose_stages_do_not_go_together_are_refused() {
    let Some(gpu) = gpu() else { return };
    let (m, k, n) = (4, 8, 4);
    let (a, b, out) = (gpu.zeros(m, k).unwrap(), gpu.zeros(n, k).unwrap(), gpu.zeros(m, n).unwrap());
    let (same, wrong, counter, sums) = (
        gpu.zeros(m, n).unwrap(),
        gpu.zeros(m, n + 1).unwrap(),
        gpu.kernels().dropout_counter().unwrap(),
        gpu.zeros(1, m).unwrap(),
    );
    let fused =
        |e: Epilogue| gpu.kernels().matmul_fused(MatmulKernel::Auto, &out, &a, &b, None, MatmulForm::ABt, &e);
    let relu = Some(Activation::Relu);
    let dropout = |p, mask| Some(EpilogueDropout::new(p, 1, mask, &counter));
    let refused = [
        (epilogue! { activation: relu, derivative: Some((Activation::Relu, &same)) }, "at once"),
        (epilogue! { dropout: dropout(0.5, &same), mask: Some(&same) }, "at once"),
        (epilogue! { keep: Some((Keep::Input, &same)) }, "no activation"),
        (
            epilogue! {
            activation: relu,
            keep: Some((Keep::Input, &same)),
            row_sums: Some(&sums) },
            "share",
        ),
        (epilogue! { activation: relu, keep: Some((Keep::Input, &wrong)) }, "kept activation"),
        (epilogue! { mask: Some(&wrong) }, "mask"),
        (epilogue! { derivative: Some((Activation::Tanh, &wrong)) }, "saved activation"),
        (epilogue! { row_sums: Some(&sums) }, "other than Aᵀ·B"),
        (epilogue! { dropout: dropout(1.0, &same) }, "drop probability"),
        (epilogue! { dropout: dropout(f32::NAN, &same) }, "drop probability"),
        (epilogue! { dropout: dropout(0.5, &wrong) }, "dropout mask"),
    ];
    for (epilogue, says) in refused {
        let err = fused(epilogue).unwrap_err().to_string();
        assert!(err.contains(says), "{epilogue:?}: {err}");
    }
    // An output bound again as the kept activation would be written twice: refused too.
    let err = fused(epilogue! { activation: relu, keep: Some((Keep::Input, &out)) }).unwrap_err();
    assert!(err.to_string().contains("in-place"), "{err}");
    // And the stages that do go together are taken.
    let mask = gpu.zeros(m, n).unwrap();
    fused(epilogue! {
    activation: relu,
    keep: Some((Keep::Input, &same)),
    dropout: dropout(0.5, &mask) })
    .unwrap();
}

/// The four ops a loss step replaces, for `loss`.
#[allow(clippy::too_many_arguments)]
fn separate_loss(
    gpu: &'static Gpu,
    loss: Loss,
    dy: &GpuTensor,
    y: &GpuTensor,
    target: StepTarget,
    terms: &GpuTensor,
    mean: &GpuTensor,
    settings: &SettingsRow,
) -> Vec<Dispatch> {
    let kernels = gpu.kernels();
    let mut ops = Vec::new();
    match target {
        StepTarget::Labels(labels) => {
            ops.push(kernels.softmax_cross_entropy_forward(terms, y, labels).unwrap());
            ops.push(kernels.sum_all(mean, terms, 1.0 / y.rows() as f32).unwrap());
            ops.push(kernels.watch_loss(settings, mean).unwrap());
            ops.push(kernels.softmax_cross_entropy_backward(dy, y, labels).unwrap());
        }
        StepTarget::Values(t) => {
            ops.push(kernels.value_loss_forward(loss, terms, y, t).unwrap());
            ops.push(kernels.sum_all(mean, terms, 1.0 / y.len() as f32).unwrap());
            ops.push(kernels.watch_loss(settings, mean).unwrap());
            ops.push(kernels.value_loss_backward(loss, dy, y, t).unwrap());
        }
        _ => unreachable!(),
    }
    ops
}

#[test]
fn a_loss_step_in_one_launch_equals_its_separate_ops_to_the_bit() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 2), (7, 10), (300, 10), (64, 3), (513, 1)] {
        // Every loss with a fused step: all but NLL, which training never leaves unfused.
        for loss in Loss::ALL.into_iter().filter(|&l| l != Loss::Nll) {
            let labelled = loss.takes_labels();
            if labelled && cols < 2 {
                continue;
            }
            let what = format!("{loss:?} {rows}x{cols}");
            let seed = (rows * 100 + cols) as u64;
            let mut y = random(rows * cols, seed).into_iter().map(|v| 4.0 * v).collect::<Vec<_>>();
            if loss == Loss::BinaryCrossEntropy {
                y.iter_mut().for_each(|v| *v = 0.5 + *v / 9.0);
            }
            if rows == 300 && loss == Loss::Mse {
                y[17] = f32::INFINITY; // a non-finite loss: the watch marks the step
            }
            let t: Vec<f32> = random(rows * cols, seed + 1).iter().map(|v| (v + 1.0) / 2.0).collect();
            let labels = gpu.upload_labels(&random_labels(rows, cols, seed + 2), cols).unwrap();
            let (y_gpu, t_gpu) = (gpu.upload(&y, rows, cols).unwrap(), gpu.upload(&t, rows, cols).unwrap());
            let target = if labelled { StepTarget::Labels(&labels) } else { StepTarget::Values(&t_gpu) };
            let terms_shape = if labelled { (rows, 1) } else { (rows, cols) };
            let fresh = || {
                (
                    gpu.zeros(rows, cols).unwrap(),
                    gpu.zeros(1, 1).unwrap(),
                    gpu.kernels().upload_settings(&OptimizerSettings::new(0.1)).unwrap(),
                )
            };
            let (dy, mean, settings) = fresh();
            let (dy2, mean2, settings2) = fresh();
            let terms = gpu.zeros(terms_shape.0, terms_shape.1).unwrap();
            let fused = gpu
                .kernels()
                .loss_step(loss, &dy, &y_gpu, target, &mean, &settings)
                .unwrap()
                .expect("a small batch");
            assert_eq!(fused.launches(), 1);
            let separate = separate_loss(gpu, loss, &dy2, &y_gpu, target, &terms, &mean2, &settings2);
            // Twice, so the watch counts two steps.
            let all: Vec<_> = [&fused, &fused].into_iter().chain(separate.iter().chain(&separate)).collect();
            gpu.run(&all).unwrap();
            let read = |t: &GpuTensor| bits(&gpu.read(t).unwrap());
            assert_eq!(read(&dy), read(&dy2), "{what}: gradient");
            assert_eq!(read(&mean), read(&mean2), "{what}: mean");
            assert_eq!(read(&settings), read(&settings2), "{what}: watch");
            let watch = gpu.read(&settings).unwrap();
            assert_eq!(watch[8], 2.0, "{what}: steps watched");
            assert_eq!(
                watch[9] != 0.0,
                rows == 300 && loss == Loss::Mse,
                "{what}: first bad step {}",
                watch[9]
            );
        }
    }
}

#[test]
fn a_batch_too_large_for_one_launch_trains_through_the_separate_ops_as_on_the_cpu() {
    let Some(gpu) = gpu() else { return };
    // 1000 classes: one workgroup's share of 2,600 rows passes llvmpipe's loop limit.
    let (rows, classes) = (2600, 1000);
    let (y, dy, mean) =
        (gpu.zeros(rows, classes).unwrap(), gpu.zeros(rows, classes).unwrap(), gpu.zeros(1, 1).unwrap());
    let labels = gpu.upload_labels(&vec![0; rows], classes).unwrap();
    let settings = gpu.kernels().upload_settings(&OptimizerSettings::new(0.1)).unwrap();
    let step = gpu
        .kernels()
        .loss_step(Loss::SoftmaxCrossEntropy, &dy, &y, StepTarget::Labels(&labels), &mean, &settings)
        .unwrap();
    assert!(step.is_none(), "one launch would run past the loop limit");
    // A target of the other kind is an error, not a read of the wrong buffer.
    let err = gpu
        .kernels()
        .loss_step(Loss::Mse, &dy, &y, StepTarget::Labels(&labels), &mean, &settings)
        .unwrap_err();
    assert!(err.to_string().contains("value targets"), "{err}");
    let err = gpu
        .kernels()
        .loss_step(Loss::SoftmaxCrossEntropy, &dy, &y, StepTarget::Values(&y), &mean, &settings)
        .unwrap_err();
    assert!(err.to_string().contains("label targets"), "{err}");

    let config = ModelConfig::new(4).dense(classes).softmax().loss(Loss::SoftmaxCrossEntropy).seed(2);
    let x = random(rows * 4, 5);
    let labels = random_labels(rows, classes, 6);
    let [gpu_run, cpu_run] = [Backend::Gpu, Backend::Cpu].map(|backend| {
        let mut model = config.build(backend, Some(gpu)).unwrap();
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
        (model.take_loss().unwrap(), model.weights(0).unwrap())
    });
    assert_close("loss", &[gpu_run.0], &[cpu_run.0], 1e-5, 0.0);
    assert_close("weights", &gpu_run.1, &cpu_run.1, 1e-4, 1e-5);
}
