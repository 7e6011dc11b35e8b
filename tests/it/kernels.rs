//! Every GPU kernel, forward and backward, held against the CPU reference.

use crate::common::{
    GELU_BACKWARD_ATOL, TRANSCENDENTAL_ATOL, TRANSCENDENTAL_RTOL, assert_close, matmul_atol, random,
    random_labels, run, shared_gpu,
};
use wgpu_nn::gpu::MAX_LAYER_NORM_COLS;
use wgpu_nn::gpu::{Epilogue, EpilogueDropout, Keep, Kernels};
use wgpu_nn::{
    Activation, BatchNorm, Conv2dShape, Dispatch, Gpu, GpuTensor, MatmulForm, MatmulKernel,
    OptimizerSettings, Pool2dShape, Tiling, cpu, wgpu,
};

/// Sizes that are not multiples of any tile: 1, primes, one off a power of two.
const SIZES: [usize; 6] = [1, 7, 63, 65, 127, 257];

async fn check_matmul(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n: usize,
    form: MatmulForm,
    with_bias: bool,
    kernel: MatmulKernel,
) {
    let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
    let seed = (m * 1_000_000 + k * 1000 + n) as u64;
    let (a, b, bias) = (random(ar * ac, seed), random(br * bc, seed + 1), random(n, seed + 2));
    let bias = with_bias.then_some(&bias[..]);

    let mut want = vec![0.0; m * n];
    cpu::matmul_forward(&mut want, &a, &b, bias, m, k, n, form).unwrap();

    let (a_gpu, b_gpu, c_gpu) =
        (gpu.upload(&a, ar, ac).unwrap(), gpu.upload(&b, br, bc).unwrap(), gpu.zeros(m, n).unwrap());
    let bias_gpu = bias.map(|bias| gpu.upload(bias, 1, n).unwrap());
    let product =
        gpu.kernels().matmul_forward_with(kernel, &c_gpu, &a_gpu, &b_gpu, bias_gpu.as_ref(), form).unwrap();
    let got = run(gpu, &[&product], &c_gpu).await;
    let what = format!("{} {m}x{k}x{n} bias={with_bias} kernel={}", form.op_name(), product.label());
    assert_close(&what, &got, &want, 0.0, matmul_atol(k));
}

portable! {
async fn matmul_matches_reference_at_awkward_sizes() {
    let Some(gpu) = shared_gpu().await else { return };
    for form in MatmulForm::ALL {
        for s in SIZES {
            check_matmul(gpu, s, s, s, form, s % 2 == 1, MatmulKernel::Auto).await;
        }
    }
}
}

portable! {
async fn matmul_matches_reference_on_non_square_shapes() {
    let Some(gpu) = shared_gpu().await else { return };
    let shapes =
        [(7, 257, 65), (65, 1, 127), (1, 784, 10), (257, 63, 1), (64, 784, 128), (12, 8, 100), (130, 64, 10)];
    // llvmpipe cuts any loop after 65535 iterations; the kernels split long loops.
    let shapes: Vec<_> = shapes.into_iter().chain([(2, 70_001, 3), (4, 70_000, 8)]).collect();
    for form in MatmulForm::ALL {
        for (m, k, n) in &shapes {
            check_matmul(gpu, *m, *k, *n, form, true, MatmulKernel::Auto).await;
            check_matmul(gpu, *m, *k, *n, form, false, MatmulKernel::Auto).await;
        }
    }
}
}

/// Every kernel this adapter has, for shapes aligned enough for all of them (the tiled ones
/// with their default tiles; `other_tilings_match_too` tries others).
fn kernels(gpu: &Gpu) -> Vec<MatmulKernel> {
    let mut kernels = vec![MatmulKernel::Scalar, MatmulKernel::Vec4];
    if gpu.has_subgroup_matmul() {
        kernels.push(MatmulKernel::Subgroup);
    }
    kernels.push(MatmulKernel::Tiled(Tiling::default()));
    kernels
}

portable! {
async fn other_tilings_match_too() {
    let Some(gpu) = shared_gpu().await else { return };
    // Small uneven tiles (many of them, a k step of two quads) and wide ones (16×4 invocations,
    // a 32×128 tile, one quad of k a step), where the adapter takes them; on shapes with
    // partial tiles, odd rows, and (A·Bᵀ) a width that is not a multiple of 4. (A step of 32 k
    // took GL's llvmpipe minutes to compile, the unrolled loop being that long.)
    let limits = gpu.limits();
    let tilings = [Tiling::new([4, 2], 8), Tiling::new([16, 4], 4)];
    let fits = |t: &Tiling| {
        t.workgroup[0] * t.workgroup[1] <= limits.max_compute_invocations_per_workgroup
            && t.workgroup_bytes() <= u64::from(limits.max_compute_workgroup_storage_size)
    };
    for form in MatmulForm::ALL {
        for (m, k, n) in [(68, 260, 132), (132, 20, 68), (8, 12, 16), (130, 64, 10), (7, 8, 12), (4, 7, 8)] {
            let ((_, a_cols), (_, b_cols)) = form.operand_shapes(m, k, n);
            if a_cols % 4 != 0 || b_cols % 4 != 0 {
                continue; // not a shape the vec4 kernels take
            }
            for tiling in tilings.iter().filter(|t| fits(t)) {
                check_matmul(gpu, m, k, n, form, true, MatmulKernel::Tiled(*tiling)).await;
            }
        }
        check_matmul(gpu, 8, 70_004, 12, form, false, MatmulKernel::Tiled(tilings[0])).await;
    }
}
}

portable! {
async fn every_matmul_kernel_matches_on_aligned_shapes() {
    let Some(gpu) = shared_gpu().await else { return };
    let shapes = [(4, 4, 4), (64, 64, 64), (68, 260, 132), (8, 12, 16), (132, 20, 68), (4, 7, 4), (20, 1, 8)];
    for form in MatmulForm::ALL {
        for (m, k, n) in shapes {
            // Rows are read along their length: vec4 kernels need it to be a multiple of 4.
            // (4, 7, 4) and (20, 1, 8) are aligned for Aᵀ·B only, whose k is the batch.
            let ((_, a_cols), (_, b_cols)) = form.operand_shapes(m, k, n);
            if a_cols % 4 != 0 || b_cols % 4 != 0 {
                continue;
            }
            for kernel in kernels(gpu) {
                check_matmul(gpu, m, k, n, form, true, kernel).await;
                check_matmul(gpu, m, k, n, form, false, kernel).await;
            }
        }
    }
}
}

portable! {
async fn every_matmul_kernel_splits_long_products() {
    let Some(gpu) = shared_gpu().await else { return };
    for form in MatmulForm::ALL {
        for kernel in kernels(gpu) {
            check_matmul(gpu, 8, 70_004, 12, form, true, kernel).await;
        }
    }
}
}

portable! {
async fn kernels_that_cannot_take_a_shape_say_so() {
    let Some(gpu) = shared_gpu().await else { return };
    let (a, b, c) = (gpu.zeros(3, 5).unwrap(), gpu.zeros(5, 7).unwrap(), gpu.zeros(3, 7).unwrap());
    let err = gpu.kernels().matmul_forward_with(MatmulKernel::Vec4, &c, &a, &b, None, MatmulForm::AB).unwrap_err();
    assert!(err.to_string().contains("Vec4"), "{err}");
    let tiled = MatmulKernel::Tiled(Tiling::default());
    let err = gpu.kernels().matmul_forward_with(tiled, &c, &a, &b, None, MatmulForm::AB).unwrap_err();
    assert!(err.to_string().contains("Tiled"), "{err}");
}
}

portable! {
async fn tilings_no_adapter_runs_are_refused_by_name() {
    let Some(gpu) = shared_gpu().await else { return };
    let (a, b, c) = (gpu.zeros(8, 8).unwrap(), gpu.zeros(8, 8).unwrap(), gpu.zeros(8, 8).unwrap());
    // (Limits an adapter may or may not have: the unit tests of src/gpu/matmul.rs.)
    for (tiling, names) in [
        (Tiling::new([3, 8], 16), "power of two"),
        (Tiling::new([8, 8], 6), "tile_k 6"),
    ] {
        let err = gpu
            .kernels().matmul_forward_with(MatmulKernel::Tiled(tiling), &c, &a, &b, None, MatmulForm::AB)
            .unwrap_err();
        assert!(err.to_string().contains(names), "{tiling:?}: {err}");
    }
}
}

portable! {
async fn auto_runs_the_kernel_the_adapter_type_calls_for() {
    let Some(gpu) = shared_gpu().await else { return };
    let (a, b, c) = (gpu.zeros(64, 64).unwrap(), gpu.zeros(64, 64).unwrap(), gpu.zeros(64, 64).unwrap());
    let label = gpu.kernels().matmul_forward(&c, &a, &b, None, MatmulForm::AB).unwrap().label();
    let info = gpu.adapter_info();
    // Fixed expectations (the policy is unit-tested in src/gpu/matmul.rs): llvmpipe's 8-lane
    // subgroups get the subgroup kernels, real GPUs the tiles.
    match info.device_type {
        wgpu::DeviceType::Cpu if gpu.has_subgroup_matmul() => assert_eq!(label, "matmul_ab_subgroup"),
        wgpu::DeviceType::Cpu | wgpu::DeviceType::Other => assert_eq!(label, "matmul_ab"),
        _ => assert_eq!(label, "matmul_ab_tiled", "{}", gpu.adapter_name()),
    }
    assert_eq!(matches!(gpu.matmul_kernel(), MatmulKernel::Tiled(_)), label.ends_with("_tiled"), "{label}");
}
}
portable! {
async fn large_products_on_llvmpipe_read_through_textures_and_match() {
    let Some(gpu) = shared_gpu().await else { return };
    // Past TEXTURE_READS_FROM on every side, rows copied whole (k and n multiples of 64), and
    // m not a multiple of the 32-row block; with a bias and an epilogue (a ReLU). Between two
    // other launches in one run: the copies must see the first launch's output and the last
    // launch the product.
    let (m, k, n) = (520, 576, 640);
    let (x, b, bias) = (random(m * k, 71), random(k * n, 72), random(n, 73));
    let relu = |v: &[f32]| v.iter().map(|v| v.max(0.0)).collect::<Vec<f32>>();
    let mut want = vec![0.0; m * n];
    cpu::matmul_forward(&mut want, &relu(&x), &b, Some(&bias), m, k, n, MatmulForm::AB).unwrap();
    let want: Vec<f32> = relu(&want).iter().map(|v| v.tanh()).collect();

    let (x_gpu, a_gpu, b_gpu) = (gpu.upload(&x, m, k).unwrap(), gpu.zeros(m, k).unwrap(), gpu.upload(&b, k, n).unwrap());
    let (c_gpu, out) = (gpu.zeros(m, n).unwrap(), gpu.zeros(m, n).unwrap());
    let kernels = gpu.kernels();
    let first = kernels.activation_forward(Activation::Relu, &a_gpu, &x_gpu).unwrap();
    let bias_gpu = gpu.upload(&bias, 1, n).unwrap();
    let mut epilogue = Epilogue::default();
    epilogue.activation = Some(Activation::Relu);
    let product = kernels
        .matmul_fused(MatmulKernel::Auto, &c_gpu, &a_gpu, &b_gpu, Some(&bias_gpu), MatmulForm::AB, &epilogue)
        .unwrap();
    let last = kernels.activation_forward(Activation::Tanh, &out, &c_gpu).unwrap();
    let atol = matmul_atol(k) + TRANSCENDENTAL_ATOL;
    let llvmpipe = gpu.adapter_info().device_type == wgpu::DeviceType::Cpu && gpu.has_subgroup_matmul();
    assert_eq!(product.copies_to_textures(), llvmpipe, "{}", gpu.adapter_name());
    let got = run(gpu, &[&first, &product, &last], &out).await;
    assert_close("tanh(relu(relu(x)·B + bias)) through Gpu::run", &got, &want, TRANSCENDENTAL_RTOL, atol);

    // In an app's own pass the same op reads the buffers, with the same result.
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    encoder.clear_buffer(out.buffer(), 0, None);
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for dispatch in [&first, &product, &last] {
            dispatch.record(&mut pass);
        }
    }
    gpu.queue().submit([encoder.finish()]);
    let got = gpu.read_async(&out).await.unwrap();
    assert_close("tanh(relu(relu(x)·B + bias)) in an app's pass", &got, &want, TRANSCENDENTAL_RTOL, atol);

    // Smaller products, and those whose rows do not copy whole, read the buffers everywhere.
    for (m, k, n) in [(256, 512, 512), (512, 520, 512)] {
        let (a, b, c) = (gpu.zeros(m, k).unwrap(), gpu.zeros(k, n).unwrap(), gpu.zeros(m, n).unwrap());
        let product = kernels.matmul_forward(&c, &a, &b, None, MatmulForm::AB).unwrap();
        assert!(!product.copies_to_textures(), "{m}x{k}x{n}");
    }
}
}

portable! {
async fn matmul_picks_vec4_kernels_only_where_rows_are_aligned() {
    let Some(gpu) = shared_gpu().await else { return };
    let label = |m, k, n, form: MatmulForm| {
        let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
        let (a, b, c) = (gpu.zeros(ar, ac).unwrap(), gpu.zeros(br, bc).unwrap(), gpu.zeros(m, n).unwrap());
        gpu.kernels().matmul_forward(&c, &a, &b, None, form).unwrap().label()
    };
    // Aligned products take the variants of the kernel Auto runs on this adapter.
    let fast = |name: &str| match gpu.matmul_kernel() {
        MatmulKernel::Subgroup => format!("{name}_subgroup"),
        MatmulKernel::Tiled(_) => format!("{name}_tiled"),
        _ => name.to_string(),
    };
    assert_eq!(label(64, 784, 128, MatmulForm::AB), fast("matmul_ab"));
    assert_eq!(label(64, 64, 10, MatmulForm::AB), "matmul_any");
    assert_eq!(label(64, 64, 10, MatmulForm::ABt), fast("matmul_abt"));
    assert_eq!(label(7, 64, 8, MatmulForm::ABt), fast("matmul_abt"));
    assert_eq!(label(64, 63, 128, MatmulForm::AtB), fast("matmul_atb"));
    assert_eq!(label(10, 64, 128, MatmulForm::AtB), "matmul_any");
}
}

portable! {
async fn matmul_ones_times_identity_is_exact() {
    let Some(gpu) = shared_gpu().await else { return };
    for n in [1, 5, 64, 67] {
        let ones = vec![1.0; 3 * n];
        let identity: Vec<f32> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
        let (a, i, c) = (
            gpu.upload(&ones, 3, n).unwrap(),
            gpu.upload(&identity, n, n).unwrap(),
            gpu.zeros(3, n).unwrap(),
        );
        let product = gpu.kernels().matmul_forward(&c, &a, &i, None, MatmulForm::AB).unwrap();
        assert_eq!(run(gpu, &[&product], &c).await, ones, "ones·I, n = {n}");
        // Integer-valued sums are exact in f32 whatever the order: ones(3,n)·ones(n,2) = n.
        let (b, d) = (gpu.upload(&vec![1.0; 2 * n], n, 2).unwrap(), gpu.zeros(3, 2).unwrap());
        let product = gpu.kernels().matmul_forward(&d, &a, &b, None, MatmulForm::AB).unwrap();
        assert_eq!(run(gpu, &[&product], &d).await, vec![n as f32; 6], "ones·ones, n = {n}");
    }
}
}

portable! {
async fn matmul_backward_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    for form in MatmulForm::ALL {
        for (m, k, n) in [(7, 63, 65), (64, 128, 32), (1, 1, 1), (257, 10, 7)] {
            let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
            let (a, b, d_out) = (random(ar * ac, 1), random(br * bc, 2), random(m * n, 3));
            let (mut d_a, mut d_b, mut d_bias) = (vec![0.0; a.len()], vec![0.0; b.len()], vec![0.0; n]);
            cpu::matmul_backward(&mut d_a, &mut d_b, Some(&mut d_bias), &d_out, &a, &b, m, k, n, form)
                .unwrap();

            let (a_g, b_g, d_out_g) = (
                gpu.upload(&a, ar, ac).unwrap(),
                gpu.upload(&b, br, bc).unwrap(),
                gpu.upload(&d_out, m, n).unwrap(),
            );
            let (d_a_g, d_b_g, d_bias_g) =
                (gpu.zeros(ar, ac).unwrap(), gpu.zeros(br, bc).unwrap(), gpu.zeros(1, n).unwrap());
            let grads =
                gpu.kernels().matmul_backward(&d_a_g, &d_b_g, Some(&d_bias_g), &d_out_g, &a_g, &b_g, form).unwrap();
            gpu.run(&grads.iter().collect::<Vec<_>>()).unwrap();
            let what = format!("{} backward {m}x{k}x{n}", form.op_name());
            assert_close(&format!("{what} dA"), &gpu.read_async(&d_a_g).await.unwrap(), &d_a, 0.0, matmul_atol(n));
            assert_close(&format!("{what} dB"), &gpu.read_async(&d_b_g).await.unwrap(), &d_b, 0.0, matmul_atol(m));
            assert_close(
                &format!("{what} dbias"),
                &gpu.read_async(&d_bias_g).await.unwrap(),
                &d_bias,
                0.0,
                matmul_atol(m),
            );
        }
    }
}
}

type Unary = fn(&Kernels<'static>, &GpuTensor, &GpuTensor) -> wgpu_nn::Result<Dispatch>;
type Binary = fn(&Kernels<'static>, &GpuTensor, &GpuTensor, &GpuTensor) -> wgpu_nn::Result<Dispatch>;

portable! {
/// Every activation through the generic kernels, each against the CPU reference at the
/// awkward sizes; where a named kernel exists too (`relu_forward`, …) it must give the same
/// bits. ReLU and LeakyReLU select and multiply, so they must be exact; sigmoid, tanh and
/// GELU are a few ULP. GELU's backward adds two terms that cancel in the left tail, each
/// carrying `1 + t` (t = tanh(u) near −1, so a few ULP of 1 ≈ 2.4e-7 absolute) times up to
/// |x| · du ≈ 5 · 3.5 around x = −5: about 4e-6 absolute, [`GELU_BACKWARD_ATOL`].
async fn every_activation_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    let kernels = gpu.kernels();
    let named: [(Activation, Unary, Binary); 3] = [
        (Activation::Relu, Kernels::relu_forward, Kernels::relu_backward),
        (Activation::Sigmoid, Kernels::sigmoid_forward, Kernels::sigmoid_backward),
        (Activation::Tanh, Kernels::tanh_forward, Kernels::tanh_backward),
    ];
    for f in Activation::ALL.into_iter().chain([Activation::LeakyRelu(0.1), Activation::LeakyRelu(-0.5)]) {
        let exact = matches!(f, Activation::Relu | Activation::LeakyRelu(_));
        let (rtol, atol) = if exact { (0.0, 0.0) } else { (TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL) };
        let backward_atol = if f == Activation::Gelu { GELU_BACKWARD_ATOL } else { atol };
        for (rows, cols) in SIZES.iter().map(|&s| (s, s)).chain([(3, 1000), (1000, 3)]) {
            let len = rows * cols;
            // Scale to [-8, 8) so sigmoid and tanh saturate somewhere, and plant exact zeros.
            let mut x: Vec<f32> = random(len, len as u64).iter().map(|v| 8.0 * v).collect();
            x[0] = 0.0;
            let dy = random(len, len as u64 + 1);
            let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
            cpu::activation_forward(f, &mut y, &x).unwrap();
            // The backward reads what the forward kept: sigmoid's and tanh's output, the others' input.
            let saved = if f.backward_reads_output() { &y } else { &x };
            cpu::activation_backward(f, &mut dx, saved, &dy).unwrap();

            let up = |v: &[f32]| gpu.upload(v, rows, cols).unwrap();
            let (x_g, dy_g, saved_g) = (up(&x), up(&dy), up(saved));
            let (y_g, dx_g) = (gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
            let forward = kernels.activation_forward(f, &y_g, &x_g).unwrap();
            let backward = kernels.activation_backward(f, &dx_g, &saved_g, &dy_g).unwrap();
            let what = format!("{f:?} {rows}x{cols}");
            let got_y = run(gpu, &[&forward], &y_g).await;
            assert_close(&format!("{what} forward"), &got_y, &y, rtol, atol);
            let got_dx = run(gpu, &[&backward], &dx_g).await;
            assert_close(&format!("{what} backward"), &got_dx, &dx, rtol, backward_atol);
            if let Some((_, named_forward, named_backward)) = named.iter().find(|(g, ..)| *g == f) {
                let forward = named_forward(&kernels, &y_g, &x_g).unwrap();
                let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
                assert_eq!(bits(run(gpu, &[&forward], &y_g).await), bits(got_y), "{what}: the named forward");
                let backward = named_backward(&kernels, &dx_g, &saved_g, &dy_g).unwrap();
                assert_eq!(bits(run(gpu, &[&backward], &dx_g).await), bits(got_dx), "{what}: the named backward");
            }
        }
    }
}
}

portable! {
async fn softmax_family_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    for (rows, cols) in SIZES.iter().map(|&s| (s, s)).chain([
        (300, 10),
        (2, 1000),
        (1, 1),
        (2, wgpu_nn::gpu::MAX_SOFTMAX_COLS),
    ]) {
        let len = rows * cols;
        let x: Vec<f32> = random(len, 7 + len as u64).iter().map(|v| 10.0 * v).collect();
        let dy = random(len, 8 + len as u64);
        let labels = random_labels(rows, cols, 9);
        let (x_g, dy_g, labels_g) = (
            gpu.upload(&x, rows, cols).unwrap(),
            gpu.upload(&dy, rows, cols).unwrap(),
            gpu.upload_labels(&labels, cols).unwrap(),
        );
        // Every op here is a few exp/log per value: the transcendental tolerance.
        let check = async |op: &str, dispatch: &Dispatch, out: &GpuTensor, want: &[f32]| {
            let what = format!("{op} {rows}x{cols}");
            assert_close(&what, &run(gpu, &[dispatch], out).await, want, TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL)
        };

        let mut y = vec![0.0; len];
        cpu::softmax_forward(&mut y, &x, rows, cols).unwrap();
        let y_g = gpu.zeros(rows, cols).unwrap();
        let forward = gpu.kernels().softmax_forward(&y_g, &x_g).unwrap();
        check("softmax_forward", &forward, &y_g, &y).await;

        let mut dx = vec![0.0; len];
        cpu::softmax_backward(&mut dx, &y, &dy, rows, cols).unwrap();
        let (y_in, dx_g) = (gpu.upload(&y, rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
        let backward = gpu.kernels().softmax_backward(&dx_g, &y_in, &dy_g).unwrap();
        check("softmax_backward", &backward, &dx_g, &dx).await;

        let mut log_y = vec![0.0; len];
        cpu::log_softmax_forward(&mut log_y, &x, rows, cols).unwrap();
        let log_y_g = gpu.zeros(rows, cols).unwrap();
        let forward = gpu.kernels().log_softmax_forward(&log_y_g, &x_g).unwrap();
        check("log_softmax_forward", &forward, &log_y_g, &log_y).await;

        cpu::log_softmax_backward(&mut dx, &log_y, &dy, rows, cols).unwrap();
        let log_y_in = gpu.upload(&log_y, rows, cols).unwrap();
        let backward = gpu.kernels().log_softmax_backward(&dx_g, &log_y_in, &dy_g).unwrap();
        check("log_softmax_backward", &backward, &dx_g, &dx).await;

        let mut losses = vec![0.0; rows];
        cpu::softmax_cross_entropy_forward(&mut losses, &x, &labels, rows, cols).unwrap();
        let losses_g = gpu.zeros(rows, 1).unwrap();
        let forward = gpu.kernels().softmax_cross_entropy_forward(&losses_g, &x_g, &labels_g).unwrap();
        check("softmax_cross_entropy_forward", &forward, &losses_g, &losses).await;

        cpu::softmax_cross_entropy_backward(&mut dx, &x, &labels, rows, cols).unwrap();
        let backward = gpu.kernels().softmax_cross_entropy_backward(&dx_g, &x_g, &labels_g).unwrap();
        check("softmax_cross_entropy_backward", &backward, &dx_g, &dx).await;
    }
}
}

portable! {
async fn softmax_is_stable_for_large_and_very_negative_logits() {
    let Some(gpu) = shared_gpu().await else { return };
    let rows = [[1234.0, 0.0], [-1e30, -1e30], [-5000.0, -5010.0], [88.0, 89.0]];
    let x: Vec<f32> = rows.concat();
    let (x_g, y_g, log_g, loss_g) = (
        gpu.upload(&x, 4, 2).unwrap(),
        gpu.zeros(4, 2).unwrap(),
        gpu.zeros(4, 2).unwrap(),
        gpu.zeros(4, 1).unwrap(),
    );
    let labels = gpu.upload_labels(&[1, 0, 1, 0], 2).unwrap();
    let y = run(gpu, &[&gpu.kernels().softmax_forward(&y_g, &x_g).unwrap()], &y_g).await;
    let log_y = run(gpu, &[&gpu.kernels().log_softmax_forward(&log_g, &x_g).unwrap()], &log_g).await;
    let losses = run(gpu, &[&gpu.kernels().softmax_cross_entropy_forward(&loss_g, &x_g, &labels).unwrap()], &loss_g).await;
    assert!(
        y.iter().chain(&log_y).chain(&losses).all(|v| v.is_finite()),
        "non-finite: {y:?} {log_y:?} {losses:?}"
    );
    assert_close("softmax [1234, 0]", &y[0..2], &[1.0, 0.0], 0.0, 1e-6);
    assert_close("softmax of equal huge negatives", &y[2..4], &[0.5, 0.5], 0.0, 1e-6);
    let mut want = vec![0.0f32; 8];
    cpu::softmax_forward(&mut want, &x, 4, 2).unwrap();
    assert_close("softmax", &y, &want, TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL);
    // The loss for label 1 of [1234, 0] is 1234: ln(e^1234 + 1) − 0, computed without overflow.
    assert_close("cross-entropy of [1234, 0] against class 1", &losses[0..1], &[1234.0], 1e-6, 0.0);
}
}

portable! {
async fn tanh_and_sigmoid_saturate_without_nan() {
    let Some(gpu) = shared_gpu().await else { return };
    let x = [-1e4f32, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4, f32::MAX];
    let (x_g, y_g) = (gpu.upload(&x, 1, 8).unwrap(), gpu.zeros(1, 8).unwrap());
    for (name, op) in [("tanh", Kernels::tanh_forward as Unary), ("sigmoid", Kernels::sigmoid_forward)] {
        let y = run(gpu, &[&op(&gpu.kernels(), &y_g, &x_g).unwrap()], &y_g).await;
        assert!(y.iter().all(|v| v.is_finite()), "{name}: {y:?}");
    }
}
}

portable! {
async fn reductions_match_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    for (rows, cols) in
        SIZES.iter().map(|&s| (s, s)).chain([(1000, 3), (3, 1000), (100_000, 1), (9_000_000, 1)])
    {
        let x = random(rows * cols, 11);
        let x_g = gpu.upload(&x, rows, cols).unwrap();
        // Long sums are split into launches (llvmpipe's 65535-iteration limit); the last size
        // needs several for both kernels.
        let mut want = vec![0.0; cols];
        cpu::sum_columns(&mut want, &x, rows, cols, 0.5).unwrap();
        let out = gpu.zeros(1, cols).unwrap();
        let got = run(gpu, &[&gpu.kernels().sum_columns(&out, &x_g, 0.5).unwrap()], &out).await;
        assert_close(&format!("sum_columns {rows}x{cols}"), &got, &want, 0.0, matmul_atol(rows));

        let total = gpu.zeros(1, 1).unwrap();
        let scale = 1.0 / rows as f32;
        let got = run(gpu, &[&gpu.kernels().sum_all(&total, &x_g, scale).unwrap()], &total).await;
        let want = cpu::sum_all(&x, scale);
        assert_close(&format!("sum_all {rows}x{cols}"), &got, &[want], 0.0, matmul_atol(rows * cols));
    }
}
}

portable! {
async fn grids_beyond_65535_workgroups_are_folded() {
    let Some(gpu) = shared_gpu().await else { return };
    // 64 rows per matmul workgroup: this needs 65,537 workgroups along one axis.
    let (m, k, n) = (65_536 * 64 + 1, 4, 4);
    let (a, b) = (random(m * k, 21), random(k * n, 22));
    let mut want = vec![0.0; m * n];
    cpu::matmul_forward(&mut want, &a, &b, None, m, k, n, MatmulForm::AB).unwrap();
    let (a_g, b_g, c_g) =
        (gpu.upload(&a, m, k).unwrap(), gpu.upload(&b, k, n).unwrap(), gpu.zeros(m, n).unwrap());
    let product = gpu.kernels().matmul_forward(&c_g, &a_g, &b_g, None, MatmulForm::AB).unwrap();
    assert!(product.workgroups()[1] > 1, "grid not folded: {:?}", product.workgroups());
    assert_close("folded matmul", &run(gpu, &[&product], &c_g).await, &want, 0.0, matmul_atol(k));

    // 256 elements per activation workgroup.
    let len = 65_535 * 256 + 7;
    let x = random(len, 23);
    let mut want = vec![0.0; len];
    cpu::relu_forward(&mut want, &x).unwrap();
    let (x_g, y_g) = (gpu.upload(&x, len, 1).unwrap(), gpu.zeros(len, 1).unwrap());
    let relu = gpu.kernels().relu_forward(&y_g, &x_g).unwrap();
    assert!(relu.workgroups()[1] > 1, "grid not folded: {:?}", relu.workgroups());
    assert_close("folded relu", &run(gpu, &[&relu], &y_g).await, &want, 0.0, 0.0);
}
}

portable! {
async fn same_input_gives_bit_identical_output() {
    let Some(gpu) = shared_gpu().await else { return };
    let (m, k, n) = (127, 65, 10);
    let (x, w) = (random(m * k, 31), random(n * k, 32));
    let labels = random_labels(m, n, 33);
    let once = async || {
        let (x_g, w_g, logits, d_logits, losses, loss) = (
            gpu.upload(&x, m, k).unwrap(),
            gpu.upload(&w, n, k).unwrap(),
            gpu.zeros(m, n).unwrap(),
            gpu.zeros(m, n).unwrap(),
            gpu.zeros(m, 1).unwrap(),
            gpu.zeros(1, 1).unwrap(),
        );
        let labels = gpu.upload_labels(&labels, n).unwrap();
        let (d_x, d_w, d_b) = (gpu.zeros(m, k).unwrap(), gpu.zeros(n, k).unwrap(), gpu.zeros(1, n).unwrap());
        let mut steps = vec![
            gpu.kernels().matmul_forward(&logits, &x_g, &w_g, None, MatmulForm::ABt).unwrap(),
            gpu.kernels().softmax_cross_entropy_forward(&losses, &logits, &labels).unwrap(),
            gpu.kernels().sum_all(&loss, &losses, 1.0 / m as f32).unwrap(),
            gpu.kernels().softmax_cross_entropy_backward(&d_logits, &logits, &labels).unwrap(),
        ];
        steps.extend(
            gpu.kernels().matmul_backward(&d_x, &d_w, Some(&d_b), &d_logits, &x_g, &w_g, MatmulForm::ABt).unwrap(),
        );
        gpu.run(&steps.iter().collect::<Vec<_>>()).unwrap();
        let mut bits = Vec::new();
        for t in [&loss, &d_x, &d_w, &d_b] {
            bits.push(gpu.read_async(t).await.unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
        bits
    };
    assert_eq!(once().await, once().await);
}
}

portable! {
async fn gelu_saturates_without_nan() {
    let Some(gpu) = shared_gpu().await else { return };
    let x = [-f32::MAX, -1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4, f32::MAX];
    let (x_g, dy_g) = (gpu.upload(&x, 1, 9).unwrap(), gpu.upload(&[1.0; 9], 1, 9).unwrap());
    let (y_g, dx_g) = (gpu.zeros(1, 9).unwrap(), gpu.zeros(1, 9).unwrap());
    let forward = gpu.kernels().activation_forward(Activation::Gelu, &y_g, &x_g).unwrap();
    let backward = gpu.kernels().activation_backward(Activation::Gelu, &dx_g, &x_g, &dy_g).unwrap();
    let (y, dx) = (run(gpu, &[&forward], &y_g).await, run(gpu, &[&backward], &dx_g).await);
    assert!(y.iter().chain(&dx).all(|v| v.is_finite()), "{y:?} {dx:?}");
    // Far out GELU is the identity above and 0 below: slopes 1 and 0.
    assert_eq!((dx[0], dx[8], y[8]), (0.0, 1.0, f32::MAX));
}
}

portable! {
/// Layer norm's statistics are sums over a row, rounded like a dot product's (k·ε per term);
/// 1/σ then scales that error by up to 1/√ε for a constant row. The tolerance is the
/// dot-product bound on the row, relative to the values' size, plus a few ULP.
async fn layer_norm_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    for (rows, cols) in [(1, 1), (1, 7), (3, 5), (65, 129), (300, 64), (2, 1000)] {
        let len = rows * cols;
        let x: Vec<f32> = random(len, len as u64 + 5).iter().map(|v| 3.0 * v + 0.5).collect();
        let (gain, bias) = (random(cols, 6), random(cols, 7));
        let dy = random(len, 8);
        let (mut stats, mut y, mut dx, mut terms) =
            (vec![0.0; rows * 2], vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        cpu::layer_norm_stats(&mut stats, &x, rows, cols).unwrap();
        cpu::layer_norm_forward(&mut y, &x, &stats, &gain, &bias, rows, cols).unwrap();
        cpu::layer_norm_backward(&mut dx, &x, &stats, &gain, &dy, rows, cols).unwrap();
        cpu::layer_norm_gain_terms(&mut terms, &x, &stats, &dy, rows, cols).unwrap();

        let up = |v: &[f32], r, c| gpu.upload(v, r, c).unwrap();
        let (x_g, gain_g, bias_g, dy_g) =
            (up(&x, rows, cols), up(&gain, 1, cols), up(&bias, 1, cols), up(&dy, rows, cols));
        let stats_g = gpu.zeros(rows, 2).unwrap();
        let (y_g, dx_g, terms_g) =
            (gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap(), gpu.zeros(rows, cols).unwrap());
        let ops = [
            gpu.kernels().layer_norm_stats(&stats_g, &x_g).unwrap(),
            gpu.kernels().layer_norm_forward(&y_g, &x_g, &stats_g, &gain_g, &bias_g).unwrap(),
            gpu.kernels().layer_norm_backward(&dx_g, &x_g, &stats_g, &gain_g, &dy_g).unwrap(),
            gpu.kernels().layer_norm_gain_terms(&terms_g, &x_g, &stats_g, &dy_g).unwrap(),
        ];
        gpu.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        let atol = 4.0 * matmul_atol(cols) + TRANSCENDENTAL_ATOL;
        let what = format!("layer norm {rows}x{cols}");
        assert_close(
            &format!("{what} stats"),
            &gpu.read_async(&stats_g).await.unwrap(),
            &stats,
            TRANSCENDENTAL_RTOL,
            atol,
        );
        assert_close(&format!("{what} forward"), &gpu.read_async(&y_g).await.unwrap(), &y, TRANSCENDENTAL_RTOL, atol);
        assert_close(&format!("{what} backward"), &gpu.read_async(&dx_g).await.unwrap(), &dx, TRANSCENDENTAL_RTOL, atol);
        assert_close(
            &format!("{what} gain terms"),
            &gpu.read_async(&terms_g).await.unwrap(),
            &terms,
            TRANSCENDENTAL_RTOL,
            atol,
        );
    }
    // Rows wider than the kernels can walk are an error, not a silently short sum.
    let (wide, stats) = (gpu.zeros(1, MAX_LAYER_NORM_COLS + 1).unwrap(), gpu.zeros(1, 2).unwrap());
    let err = gpu.kernels().layer_norm_stats(&stats, &wide).unwrap_err();
    assert!(matches!(err, wgpu_nn::Error::Shape { op: "layer_norm_stats", .. }), "{err}");
}
}

portable! {
/// Conv2d and its three gradients, GPU against the CPU reference, at shapes no tile divides:
/// an MNIST-like first layer (28×28, 16 filters of 3×3, padding 1), stride 2 with padding,
/// non-square kernels and images, 1×1 kernels over 16 channels, a kernel as large as the
/// image, and a single pixel. Each value is a sum of products, so the bound is the matmul's
/// for its number of terms.
async fn conv2d_matches_reference_at_awkward_shapes() {
    let Some(gpu) = shared_gpu().await else { return };
    let k = gpu.kernels();
    let shapes = [
        (3, Conv2dShape::new(1, (28, 28), 16, (3, 3)).padding((1, 1))),
        (2, Conv2dShape::new(3, (9, 7), 5, (3, 2)).stride((2, 2)).padding((1, 1))),
        (5, Conv2dShape::new(16, (7, 7), 4, (1, 1))),
        (1, Conv2dShape::new(2, (6, 5), 3, (5, 5)).stride((2, 1)).padding((2, 0))),
        (4, Conv2dShape::new(3, (5, 5), 2, (5, 5))),
        (1, Conv2dShape::new(1, (1, 1), 1, (1, 1))),
        // More samples than one launch of the weight gradient sums (llvmpipe's loop limit).
        (50, Conv2dShape::new(1, (28, 28), 4, (3, 3)).padding((1, 1))),
    ];
    for (n, g) in shapes {
        let (oh, ow) = g.out_size();
        let x = random(n * g.input_len(), 40);
        let w = random(g.out_channels * g.filter_len(), 41);
        let b = random(g.out_channels, 42);
        let dy = random(n * g.output_len(), 43);
        let up = |v: &[f32], rows, cols| gpu.upload(v, rows, cols).unwrap();
        let (x_g, w_g, b_g) = (up(&x, n, g.input_len()), up(&w, g.out_channels, g.filter_len()), up(&b, 1, g.out_channels));
        let dy_g = up(&dy, n, g.output_len());
        let (y_g, dx_g) = (gpu.zeros(n, g.output_len()).unwrap(), gpu.zeros(n, g.input_len()).unwrap());
        let (dw_g, db_g) = (gpu.zeros(g.out_channels, g.filter_len()).unwrap(), gpu.zeros(1, g.out_channels).unwrap());
        let what = |op: &str| format!("{op} batch {n} {g:?}");

        let mut want = vec![0.0; n * g.output_len()];
        cpu::conv2d_forward(&mut want, &x, &w, Some(&b), n, &g).unwrap();
        let got = run(gpu, &[&k.conv2d_forward(&y_g, &x_g, &w_g, Some(&b_g), &g).unwrap()], &y_g).await;
        assert_close(&what("forward"), &got, &want, 0.0, matmul_atol(g.filter_len() + 1));

        let mut want = vec![0.0; n * g.input_len()];
        cpu::conv2d_input_grad(&mut want, &dy, &w, n, &g).unwrap();
        let got = run(gpu, &[&k.conv2d_input_grad(&dx_g, &dy_g, &w_g, &g).unwrap()], &dx_g).await;
        assert_close(&what("input grad"), &got, &want, 0.0, matmul_atol(g.out_channels * g.kernel.0 * g.kernel.1));

        let mut want = vec![0.0; g.out_channels * g.filter_len()];
        cpu::conv2d_weight_grad(&mut want, &dy, &x, n, &g).unwrap();
        let got = run(gpu, &[&k.conv2d_weight_grad(&dw_g, Some(&db_g), &dy_g, &x_g, &g).unwrap()], &dw_g).await;
        assert_close(&what("weight grad"), &got, &want, 0.0, matmul_atol(n * oh * ow));
        let mut want_db = vec![0.0; g.out_channels];
        cpu::conv2d_bias_grad(&mut want_db, &dy, n, &g).unwrap();
        let got = gpu.read_async(&db_g).await.unwrap();
        assert_close(&what("bias grad"), &got, &want_db, 0.0, matmul_atol(n * oh * ow));
        let got = run(gpu, &[&k.conv2d_weight_grad(&dw_g, None, &dy_g, &x_g, &g).unwrap()], &dw_g).await;
        assert_close(&what("weight grad alone"), &got, &want, 0.0, matmul_atol(n * oh * ow));
    }
}
}

portable! {
/// A convolution's forward with an epilogue (ReLU, keeping its input, dropout) equals the
/// separate ops on its output to the bit: the same values, the same masks, in NCHW order.
async fn a_fused_convolution_equals_its_separate_ops() {
    let Some(gpu) = shared_gpu().await else { return };
    let k = gpu.kernels();
    let (n, g) = (3, Conv2dShape::new(2, (9, 7), 5, (3, 2)).stride((2, 1)).padding((1, 1)));
    let up = |v: &[f32], rows, cols| gpu.upload(v, rows, cols).unwrap();
    let (x, w, b) = (random(n * g.input_len(), 44), random(g.out_channels * g.filter_len(), 45), random(g.out_channels, 46));
    let (x_g, w_g, b_g) = (up(&x, n, g.input_len()), up(&w, g.out_channels, g.filter_len()), up(&b, 1, g.out_channels));
    let zeros = || gpu.zeros(n, g.output_len()).unwrap();
    let (z, a, dropped, mask) = (zeros(), zeros(), zeros(), zeros());
    let (fused, kept, fused_mask) = (zeros(), zeros(), zeros());
    let counter = k.dropout_counter().unwrap();
    let separate = [
        k.conv2d_forward(&z, &x_g, &w_g, Some(&b_g), &g).unwrap(),
        k.activation_forward(Activation::Relu, &a, &z).unwrap(),
        k.dropout_forward(&dropped, &mask, &a, 0.3, 17, &counter).unwrap(),
    ];
    let mut epilogue = Epilogue::default();
    epilogue.activation = Some(Activation::Relu);
    epilogue.keep = Some((Keep::Input, &kept));
    epilogue.dropout = Some(EpilogueDropout::new(0.3, 17, &fused_mask, &counter));
    let one = [k.conv2d_fused(&fused, &x_g, &w_g, Some(&b_g), &g, &epilogue).unwrap()];
    let want = run(gpu, &separate.iter().collect::<Vec<_>>(), &dropped).await;
    let got = run(gpu, &one.iter().collect::<Vec<_>>(), &fused).await;
    assert_close("fused output", &got, &want, 0.0, 0.0);
    assert_close("kept input", &gpu.read_async(&kept).await.unwrap(), &gpu.read_async(&z).await.unwrap(), 0.0, 0.0);
    assert_close("mask", &gpu.read_async(&fused_mask).await.unwrap(), &gpu.read_async(&mask).await.unwrap(), 0.0, 0.0);
}
}

portable! {
/// Both poolings and their gradients, GPU against the CPU reference: MNIST's 2×2 pooling of
/// 16 channels, overlapping 3×3 windows at stride 1, gapped 2×3 windows at stride (3, 1), a
/// window the size of the image. Max pooling is a comparison, so it must agree exactly, ties
/// (planted) included; average pooling's sums in another order stay within a few ULP.
async fn pooling_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    let k = gpu.kernels();
    let shapes = [
        (3, Pool2dShape::new(16, (28, 28), (2, 2))),
        (2, Pool2dShape::new(3, (9, 7), (3, 3)).stride((1, 1))),
        (4, Pool2dShape::new(2, (8, 5), (2, 3)).stride((3, 1))),
        (1, Pool2dShape::new(5, (4, 6), (4, 6))),
    ];
    for (n, g) in shapes {
        let mut x = random(n * g.input_len(), 70);
        // A tie for the first window's largest value (the values are in [-1, 1)).
        (x[0], x[1]) = (2.0, 2.0);
        let dy = random(n * g.output_len(), 71);
        let (x_g, dy_g) = (gpu.upload(&x, n, g.input_len()).unwrap(), gpu.upload(&dy, n, g.output_len()).unwrap());
        let (y_g, argmax_g) = (gpu.zeros(n, g.output_len()).unwrap(), gpu.zeros(n, g.output_len()).unwrap());
        let dx_g = gpu.zeros(n, g.input_len()).unwrap();
        let what = |op: &str| format!("{op} batch {n} {g:?}");

        let (mut y, mut argmax, mut dx) = (vec![0.0; dy.len()], vec![0.0; dy.len()], vec![0.0; x.len()]);
        cpu::maxpool2d_forward(&mut y, &mut argmax, &x, n, &g).unwrap();
        let got = run(gpu, &[&k.maxpool2d_forward(&y_g, &argmax_g, &x_g, &g).unwrap()], &y_g).await;
        assert_close(&what("max forward"), &got, &y, 0.0, 0.0);
        let got = gpu.read_async(&argmax_g).await.unwrap();
        assert_close(&what("max argmax"), &got, &argmax, 0.0, 0.0);
        cpu::maxpool2d_backward(&mut dx, &dy, &argmax, n, &g).unwrap();
        let got = run(gpu, &[&k.maxpool2d_backward(&dx_g, &dy_g, &argmax_g, &g).unwrap()], &dx_g).await;
        let windows = g.kernel.0.div_ceil(g.stride.0) * g.kernel.1.div_ceil(g.stride.1);
        assert_close(&what("max backward"), &got, &dx, 0.0, matmul_atol(windows));

        cpu::avgpool2d_forward(&mut y, &x, n, &g).unwrap();
        let got = run(gpu, &[&k.avgpool2d_forward(&y_g, &x_g, &g).unwrap()], &y_g).await;
        assert_close(&what("avg forward"), &got, &y, 0.0, matmul_atol(g.kernel.0 * g.kernel.1));
        cpu::avgpool2d_backward(&mut dx, &dy, n, &g).unwrap();
        let got = run(gpu, &[&k.avgpool2d_backward(&dx_g, &dy_g, &g).unwrap()], &dx_g).await;
        assert_close(&what("avg backward"), &got, &dx, 0.0, matmul_atol(windows));
    }
}
}

portable! {
/// Batch normalisation at awkward sizes: 16 channels of MNIST's 7×7 planes, 1 channel of an
/// odd plane, planes of 1 value (BatchNorm1d's case, at the smallest batch training allows),
/// and a channel of 1088 values (more than one pass of a workgroup's 256 invocations). The
/// statistics are sums in another order than the reference's, so they agree to a few ULP
/// scaled by the values summed.
async fn batch_norm_matches_reference() {
    let Some(gpu) = shared_gpu().await else { return };
    let k = gpu.kernels();
    let settings = k.upload_settings(&OptimizerSettings::new(0.1)).unwrap();
    for (n, channels, plane) in [(3, 16, 49), (5, 1, 63), (2, 3, 1), (64, 6, 17)] {
        let g = BatchNorm::new(channels).eps(1e-3).momentum(0.3);
        let width = channels * plane;
        let what = |op: &str| format!("{op} batch {n} of {channels} x {plane}");
        // Shifted and scaled per channel, so the statistics are not 0 and 1 already.
        let x: Vec<f32> = random(n * width, 80).iter().enumerate().map(|(i, v)| 3.0 * v + (i / plane % channels) as f32).collect();
        let dy = random(n * width, 81);
        let (gain, bias) = (random(channels, 82), random(channels, 83));
        let (mut mean, mut var) = (random(channels, 84), random(channels, 85).iter().map(|v| v + 1.5).collect::<Vec<_>>());
        let up = |v: &[f32], rows: usize| gpu.upload(v, rows, v.len() / rows).unwrap();
        let (x_g, dy_g, gain_g, bias_g) = (up(&x, n), up(&dy, n), up(&gain, 1), up(&bias, 1));
        let (mean_g, var_g) = (up(&mean, 1), up(&var, 1));
        let (stats_g, y_g, dx_g) = (gpu.zeros(2, channels).unwrap(), gpu.zeros(n, width).unwrap(), gpu.zeros(n, width).unwrap());
        let (dgain_g, dbias_g) = (gpu.zeros(1, channels).unwrap(), gpu.zeros(1, channels).unwrap());
        let tolerance = matmul_atol(n * plane);

        let mut stats = vec![0.0; 2 * channels];
        cpu::batch_norm_stats(&mut stats, &mut mean, &mut var, &x, n, plane, &g).unwrap();
        let got = run(gpu, &[&k.batch_norm_stats(&stats_g, &mean_g, &var_g, &x_g, &settings, &g).unwrap()], &stats_g).await;
        assert_close(&what("training stats"), &got, &stats, 1e-5, tolerance);
        assert_close(&what("running mean"), &gpu.read_async(&mean_g).await.unwrap(), &mean, 1e-5, tolerance);
        assert_close(&what("running variance"), &gpu.read_async(&var_g).await.unwrap(), &var, 1e-5, tolerance);

        // From here on both read the CPU's statistics, so each op is compared alone.
        gpu.write(&stats_g, &stats).unwrap();
        let mut y = vec![0.0; x.len()];
        cpu::batch_norm_forward(&mut y, &x, &stats, &gain, &bias, n, plane, &g).unwrap();
        let got = run(gpu, &[&k.batch_norm_forward(&y_g, &x_g, &stats_g, &gain_g, &bias_g, &g).unwrap()], &y_g).await;
        assert_close(&what("forward"), &got, &y, 1e-6, 1e-6);

        let (mut dx, mut dgain, mut dbias) = (vec![0.0; x.len()], vec![0.0; channels], vec![0.0; channels]);
        cpu::batch_norm_backward(Some(&mut dx), &mut dgain, &mut dbias, &x, &stats, &gain, &dy, n, plane, &g).unwrap();
        let backward = k.batch_norm_backward(Some(&dx_g), &dgain_g, &dbias_g, &x_g, &stats_g, &gain_g, &dy_g, &g).unwrap();
        let got = run(gpu, &[&backward], &dx_g).await;
        assert_close(&what("input gradient"), &got, &dx, 1e-4, tolerance);
        assert_close(&what("gain gradient"), &gpu.read_async(&dgain_g).await.unwrap(), &dgain, 1e-5, tolerance);
        assert_close(&what("bias gradient"), &gpu.read_async(&dbias_g).await.unwrap(), &dbias, 1e-5, tolerance);
        // Without an input gradient (a first layer), the same parameter gradients.
        gpu.write(&dgain_g, &vec![0.0; channels]).unwrap();
        let backward = k.batch_norm_backward(None, &dgain_g, &dbias_g, &x_g, &stats_g, &gain_g, &dy_g, &g).unwrap();
        let got = run(gpu, &[&backward], &dgain_g).await;
        assert_close(&what("gain gradient alone"), &got, &dgain, 1e-5, tolerance);

        let mut eval = vec![0.0; 2 * channels];
        cpu::batch_norm_eval_stats(&mut eval, &mean, &var, &g).unwrap();
        gpu.write(&mean_g, &mean).unwrap();
        gpu.write(&var_g, &var).unwrap();
        let got = run(gpu, &[&k.batch_norm_eval_stats(&stats_g, &mean_g, &var_g, &g).unwrap()], &stats_g).await;
        assert_close(&what("evaluation stats"), &got, &eval, 1e-6, 0.0);
    }
}
}
