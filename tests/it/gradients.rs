//! Every derivative of the CPU reference against central finite differences, in f64.
//!
//! For an op `y = f(x)` and a random weighting `g`, the scalar `L = Σ g ⊙ f(x)` has
//! `∂L/∂x = backward(dy = g)`; each partial is checked against `(L(x + h) − L(x − h)) / 2h`.

use crate::common::{assert_close, random_f64};
use wgpu_nn::model::Loss;
use wgpu_nn::{Activation, Conv2dShape, MatmulForm, Pool2dShape, cpu};

/// Central differences in f64 are accurate to about h² · |f'''| + ε / h: with h = 1e-5 both
/// terms are near 1e-10 for these smooth ops on inputs of order one.
const H: f64 = 1e-5;
const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-8;

fn weighted(y: &[f64], g: &[f64]) -> f64 {
    y.iter().zip(g).map(|(y, g)| y * g).sum()
}

/// ∂L/∂x by central differences, where `loss(x)` computes L.
fn numeric_gradient(x: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + H;
            let plus = loss(&x);
            x[i] = orig - H;
            let minus = loss(&x);
            x[i] = orig;
            (plus - minus) / (2.0 * H)
        })
        .collect()
}

#[test]
fn matmul_backward_matches_finite_differences() {
    for form in MatmulForm::ALL {
        for (m, k, n) in [(1, 1, 1), (3, 4, 5), (7, 2, 3)] {
            let ((ar, ac), (br, bc)) = form.operand_shapes(m, k, n);
            let (a, b, bias, g) =
                (random_f64(ar * ac, 1), random_f64(br * bc, 2), random_f64(n, 3), random_f64(m * n, 4));
            let loss = |a: &[f64], b: &[f64], bias: &[f64]| {
                let mut y = vec![0.0; m * n];
                cpu::matmul_forward(&mut y, a, b, Some(bias), m, k, n, form).unwrap();
                weighted(&y, &g)
            };
            let (mut d_a, mut d_b, mut d_bias) = (vec![0.0; a.len()], vec![0.0; b.len()], vec![0.0; n]);
            cpu::matmul_backward(&mut d_a, &mut d_b, Some(&mut d_bias), &g, &a, &b, m, k, n, form).unwrap();
            let what = format!("{} {m}x{k}x{n}", form.op_name());
            assert_close(
                &format!("{what} dA"),
                &d_a,
                &numeric_gradient(&a, |a| loss(a, &b, &bias)),
                RTOL,
                ATOL,
            );
            assert_close(
                &format!("{what} dB"),
                &d_b,
                &numeric_gradient(&b, |b| loss(&a, b, &bias)),
                RTOL,
                ATOL,
            );
            assert_close(
                &format!("{what} dbias"),
                &d_bias,
                &numeric_gradient(&bias, |bias| loss(&a, &b, bias)),
                RTOL,
                ATOL,
            );
        }
    }
}

/// Every activation (and LeakyReLU at two more slopes, one negative), from its input or its
/// output as its backward reads, against the central difference of its forward.
#[test]
fn every_activation_backward_matches_finite_differences() {
    let more = [Activation::LeakyRelu(0.1), Activation::LeakyRelu(-0.3)];
    for f in Activation::ALL.into_iter().chain(more) {
        // Away from the kink at 0 of ReLU and LeakyReLU; the smooth ones see both tails.
        let x: Vec<f64> = random_f64(50, 15).iter().map(|v| 4.0 * v + 0.2 * v.signum()).collect();
        let g = random_f64(50, 16);
        let mut y = vec![0.0; 50];
        cpu::activation_forward(f, &mut y, &x).unwrap();
        let mut dx = vec![0.0; 50];
        cpu::activation_backward(f, &mut dx, if f.backward_reads_output() { &y } else { &x }, &g).unwrap();
        let numeric = numeric_gradient(&x, |x| {
            let mut y = vec![0.0; x.len()];
            cpu::activation_forward(f, &mut y, x).unwrap();
            weighted(&y, &g)
        });
        assert_close(&format!("{f:?}"), &dx, &numeric, RTOL, ATOL);
    }
}

type RowForward = fn(&mut [f64], &[f64], usize, usize) -> wgpu_nn::Result<()>;
type RowBackward = fn(&mut [f64], &[f64], &[f64], usize, usize) -> wgpu_nn::Result<()>;

#[test]
fn softmax_backwards_match_finite_differences() {
    let ops: [(&str, RowForward, RowBackward); 2] = [
        ("softmax", cpu::softmax_forward, cpu::softmax_backward),
        ("log_softmax", cpu::log_softmax_forward, cpu::log_softmax_backward),
    ];
    for (name, forward, backward) in ops {
        for (rows, cols) in [(1, 1), (1, 2), (3, 5), (4, 10)] {
            let x: Vec<f64> = random_f64(rows * cols, 7).iter().map(|v| 4.0 * v).collect();
            let g = random_f64(rows * cols, 8);
            let mut y = vec![0.0; x.len()];
            forward(&mut y, &x, rows, cols).unwrap();
            let mut dx = vec![0.0; x.len()];
            backward(&mut dx, &y, &g, rows, cols).unwrap();
            let numeric = numeric_gradient(&x, |x| {
                let mut y = vec![0.0; x.len()];
                forward(&mut y, x, rows, cols).unwrap();
                weighted(&y, &g)
            });
            assert_close(&format!("{name} {rows}x{cols}"), &dx, &numeric, RTOL, ATOL);
        }
    }
}

#[test]
fn softmax_cross_entropy_backward_is_the_gradient_of_the_mean_loss() {
    for (rows, cols) in [(1, 1), (1, 3), (5, 4), (8, 10)] {
        let x: Vec<f64> = random_f64(rows * cols, 9).iter().map(|v| 5.0 * v).collect();
        let labels: Vec<u32> = (0..rows).map(|r| ((r * 7 + 3) % cols) as u32).collect();
        let mean_loss = |x: &[f64]| {
            let mut losses = vec![0.0; rows];
            cpu::softmax_cross_entropy_forward(&mut losses, x, &labels, rows, cols).unwrap();
            cpu::sum_all(&losses, 1.0 / rows as f64)
        };
        let mut dx = vec![0.0; x.len()];
        cpu::softmax_cross_entropy_backward(&mut dx, &x, &labels, rows, cols).unwrap();
        assert_close(
            &format!("softmax_cross_entropy {rows}x{cols}"),
            &dx,
            &numeric_gradient(&x, mean_loss),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn fused_cross_entropy_equals_log_softmax_then_negative_log_likelihood() {
    let (rows, cols) = (6, 4);
    let x = random_f64(rows * cols, 10);
    let labels = [0u32, 1, 2, 3, 0, 1];
    let mut losses = vec![0.0; rows];
    cpu::softmax_cross_entropy_forward(&mut losses, &x, &labels, rows, cols).unwrap();
    let mut log_p = vec![0.0; x.len()];
    cpu::log_softmax_forward(&mut log_p, &x, rows, cols).unwrap();
    let nll: Vec<f64> = (0..rows).map(|r| -log_p[r * cols + labels[r] as usize]).collect();
    assert_close("cross-entropy vs -log_softmax[label]", &losses, &nll, 1e-12, 1e-12);
}

#[test]
fn loss_backwards_are_gradients_of_the_mean_loss() {
    // Huber at δ = 1 and at δ = 3, so some differences fall on each side of δ.
    let losses = Loss::ALL.into_iter().chain([Loss::Huber { delta: 3.0 }]).filter(|l| !l.takes_labels());
    for loss in losses {
        let bce = loss == Loss::BinaryCrossEntropy;
        // Probabilities away from 0 and 1 for BCE; targets away from y for MAE's kink (and
        // Huber's seam at |y − t| = δ, where its second derivative jumps).
        let y: Vec<f64> = random_f64(12, 11).iter().map(|v| 0.5 + 0.4 * v).collect();
        let t: Vec<f64> =
            random_f64(12, 12).iter().map(|v| if bce { 0.5 + 0.5 * v } else { 2.0 * v + 3.0 }).collect();
        let mean = |y: &[f64]| {
            let mut terms = vec![0.0; y.len()];
            cpu::value_loss_forward(loss, &mut terms, y, &t).unwrap();
            cpu::sum_all(&terms, 1.0 / y.len() as f64)
        };
        let mut dy = vec![0.0; y.len()];
        cpu::value_loss_backward(loss, &mut dy, &y, &t).unwrap();
        assert_close(&format!("{loss:?}"), &dy, &numeric_gradient(&y, mean), RTOL, ATOL);
    }
}

#[test]
fn nll_backward_is_the_gradient_of_the_mean_nll() {
    let (rows, cols) = (5, 4);
    let log_p = random_f64(rows * cols, 13);
    let labels = [3u32, 0, 1, 1, 2];
    let mean = |log_p: &[f64]| {
        let mut losses = vec![0.0; rows];
        cpu::nll_forward(&mut losses, log_p, &labels, rows, cols).unwrap();
        cpu::sum_all(&losses, 1.0 / rows as f64)
    };
    let mut d = vec![0.0; rows * cols];
    cpu::nll_backward(&mut d, &labels, rows, cols).unwrap();
    assert_close("nll", &d, &numeric_gradient(&log_p, mean), RTOL, ATOL);
}

/// `L = Σ g ⊙ layer_norm(x; gain, bias)`: its gradients with respect to x (through the row's
/// mean and variance), the gain (column sums of the gain terms) and the bias (column sums of g).
#[test]
fn layer_norm_backward_matches_finite_differences() {
    for (rows, cols) in [(1, 2), (3, 5), (4, 9)] {
        let x: Vec<f64> = random_f64(rows * cols, 17).iter().map(|v| 2.0 * v + 0.3).collect();
        let (gain, bias, g) = (random_f64(cols, 18), random_f64(cols, 19), random_f64(rows * cols, 20));
        let loss = |x: &[f64], gain: &[f64], bias: &[f64]| {
            let (mut stats, mut y) = (vec![0.0; rows * 2], vec![0.0; rows * cols]);
            cpu::layer_norm_stats(&mut stats, x, rows, cols).unwrap();
            cpu::layer_norm_forward(&mut y, x, &stats, gain, bias, rows, cols).unwrap();
            weighted(&y, &g)
        };
        let mut stats = vec![0.0; rows * 2];
        cpu::layer_norm_stats(&mut stats, &x, rows, cols).unwrap();
        let (mut dx, mut terms) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        cpu::layer_norm_backward(&mut dx, &x, &stats, &gain, &g, rows, cols).unwrap();
        cpu::layer_norm_gain_terms(&mut terms, &x, &stats, &g, rows, cols).unwrap();
        let (mut d_gain, mut d_bias) = (vec![0.0; cols], vec![0.0; cols]);
        cpu::sum_columns(&mut d_gain, &terms, rows, cols, 1.0).unwrap();
        cpu::sum_columns(&mut d_bias, &g, rows, cols, 1.0).unwrap();
        let what = format!("layer norm {rows}x{cols}");
        assert_close(
            &format!("{what} dx"),
            &dx,
            &numeric_gradient(&x, |x| loss(x, &gain, &bias)),
            RTOL,
            ATOL,
        );
        let numeric_gain = numeric_gradient(&gain, |gain| loss(&x, gain, &bias));
        assert_close(&format!("{what} dgain"), &d_gain, &numeric_gain, RTOL, ATOL);
        let numeric_bias = numeric_gradient(&bias, |bias| loss(&x, &gain, bias));
        assert_close(&format!("{what} dbias"), &d_bias, &numeric_bias, RTOL, ATOL);
    }
}

/// A convolution small enough to work out by hand, as PyTorch's `conv2d` computes it (a
/// cross-correlation): the 3×3 image 1…9 through the 2×2 kernel [[1, 0], [0, −1]], plain, then
/// with bias 0.5, then with padding 1 and stride 2.
#[test]
fn conv2d_forward_matches_a_hand_worked_example() {
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let w = [1.0, 0.0, 0.0, -1.0];
    let plain = Conv2dShape::new(1, (3, 3), 1, (2, 2));
    let mut y = vec![0.0; 4];
    cpu::conv2d_forward(&mut y, &x, &w, None, 1, &plain).unwrap();
    assert_eq!(y, [-4.0, -4.0, -4.0, -4.0]); // x[r, c] − x[r + 1, c + 1] = −4 everywhere
    cpu::conv2d_forward(&mut y, &x, &w, Some(&[0.5]), 1, &plain).unwrap();
    assert_eq!(y, [-3.5, -3.5, -3.5, -3.5]);
    let strided = plain.padding((1, 1)).stride((2, 2));
    assert_eq!(strided.out_size(), (2, 2));
    cpu::conv2d_forward(&mut y, &x, &w, None, 1, &strided).unwrap();
    // Windows at rows/columns {−1, 0} and {1, 2}: only the kernel taps inside the image count.
    assert_eq!(y, [-1.0, -3.0, -7.0, 5.0 - 9.0]);
}

/// Conv2d's three gradients against central differences of `L = Σ g ⊙ conv2d(x; w, b)`, at
/// shapes that reach the window's edges: odd and non-square kernels, stride 2, padding, 1×1
/// kernels, 1 and 3 input channels.
#[test]
fn conv2d_gradients_match_finite_differences() {
    let shapes = [
        Conv2dShape::new(1, (5, 4), 2, (3, 3)),
        Conv2dShape::new(3, (6, 5), 2, (3, 2)).stride((2, 2)).padding((1, 1)),
        Conv2dShape::new(2, (4, 4), 3, (1, 1)),
        Conv2dShape::new(3, (7, 7), 1, (5, 3)).stride((2, 1)).padding((2, 0)),
    ];
    for shape in shapes {
        let n = 2;
        let x = random_f64(n * shape.input_len(), 30);
        let w = random_f64(shape.out_channels * shape.filter_len(), 31);
        let b = random_f64(shape.out_channels, 32);
        let g = random_f64(n * shape.output_len(), 33);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; g.len()];
            cpu::conv2d_forward(&mut y, x, w, Some(b), n, &shape).unwrap();
            weighted(&y, &g)
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        cpu::conv2d_input_grad(&mut dx, &g, &w, n, &shape).unwrap();
        cpu::conv2d_weight_grad(&mut dw, &g, &x, n, &shape).unwrap();
        cpu::conv2d_bias_grad(&mut db, &g, n, &shape).unwrap();
        assert_close(&format!("{shape:?} dx"), &dx, &numeric_gradient(&x, |x| loss(x, &w, &b)), RTOL, ATOL);
        assert_close(&format!("{shape:?} dw"), &dw, &numeric_gradient(&w, |w| loss(&x, w, &b)), RTOL, ATOL);
        assert_close(&format!("{shape:?} db"), &db, &numeric_gradient(&b, |b| loss(&x, &w, b)), RTOL, ATOL);
    }
}

/// Pooling worked by hand over the 4×4 image 1…16 (with a tie and a NaN planted): 2×2
/// windows at stride 2, then 3×3 windows at stride 1 (overlapping), then a 3×2 window at
/// stride 2 that leaves the last row uncovered.
#[test]
fn pooling_matches_hand_worked_examples() {
    let x: Vec<f64> = (1..=16).map(f64::from).collect();
    let run = |shape: Pool2dShape, x: &[f64]| {
        let len = shape.output_len();
        let (mut max, mut argmax, mut avg) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        cpu::maxpool2d_forward(&mut max, &mut argmax, x, 1, &shape).unwrap();
        cpu::avgpool2d_forward(&mut avg, x, 1, &shape).unwrap();
        (max, argmax, avg)
    };
    let (max, argmax, avg) = run(Pool2dShape::new(1, (4, 4), (2, 2)), &x);
    assert_eq!(max, [6.0, 8.0, 14.0, 16.0]);
    assert_eq!(argmax, [5.0, 7.0, 13.0, 15.0]);
    assert_eq!(avg, [3.5, 5.5, 11.5, 13.5]);
    let (max, _, avg) = run(Pool2dShape::new(1, (4, 4), (3, 3)).stride((1, 1)), &x);
    assert_eq!(max, [11.0, 12.0, 15.0, 16.0]);
    assert_eq!(avg, [6.0, 7.0, 10.0, 11.0]);
    let (max, _, avg) = run(Pool2dShape::new(1, (4, 4), (3, 2)).stride((2, 2)), &x);
    assert_eq!(max, [10.0, 12.0]);
    assert_eq!(avg, [5.5, 7.5]);
    // A tie goes to the first in row-major order; a NaN wins, as in PyTorch.
    let mut tied = x.clone();
    tied[4] = 6.0;
    let (_, argmax, _) = run(Pool2dShape::new(1, (4, 4), (2, 2)), &tied);
    assert_eq!(argmax[0], 4.0);
    tied[1] = f64::NAN;
    let (max, argmax, _) = run(Pool2dShape::new(1, (4, 4), (2, 2)), &tied);
    assert!(max[0].is_nan() && argmax[0] == 1.0, "{max:?} {argmax:?}");
}

/// Both poolings' backwards against central differences, at overlapping, gapped and
/// non-square windows over 1 and 3 channels (max pooling away from ties: distinct random
/// values, each window's winner clear by far more than the step).
#[test]
fn pooling_gradients_match_finite_differences() {
    let shapes = [
        Pool2dShape::new(1, (4, 4), (2, 2)),
        Pool2dShape::new(3, (5, 6), (3, 2)).stride((1, 2)),
        Pool2dShape::new(2, (7, 5), (2, 3)).stride((3, 1)),
    ];
    for shape in shapes {
        let n = 2;
        let x = random_f64(n * shape.input_len(), 60);
        let g = random_f64(n * shape.output_len(), 61);
        let max = |x: &[f64]| {
            let (mut y, mut argmax) = (vec![0.0; g.len()], vec![0.0; g.len()]);
            cpu::maxpool2d_forward(&mut y, &mut argmax, x, n, &shape).unwrap();
            weighted(&y, &g)
        };
        let avg = |x: &[f64]| {
            let mut y = vec![0.0; g.len()];
            cpu::avgpool2d_forward(&mut y, x, n, &shape).unwrap();
            weighted(&y, &g)
        };
        let (mut y, mut argmax, mut dx) = (vec![0.0; g.len()], vec![0.0; g.len()], vec![0.0; x.len()]);
        cpu::maxpool2d_forward(&mut y, &mut argmax, &x, n, &shape).unwrap();
        cpu::maxpool2d_backward(&mut dx, &g, &argmax, n, &shape).unwrap();
        assert_close(&format!("max {shape:?}"), &dx, &numeric_gradient(&x, max), RTOL, ATOL);
        cpu::avgpool2d_backward(&mut dx, &g, n, &shape).unwrap();
        assert_close(&format!("avg {shape:?}"), &dx, &numeric_gradient(&x, avg), RTOL, ATOL);
    }
}

/// SiLU and Huber at points worked out by hand (as PyTorch's `F.silu` and `HuberLoss`
/// compute them): silu(1) = σ(1) = 0.7310586, silu'(1) = σ(1)(1 + 1 − σ(1)) = 0.9276705;
/// silu(−2) = −2σ(−2) = −0.2384058, silu'(−2) = σ(−2)(1 − 2(1 − σ(−2))) = −0.0907842.
/// Huber: ½d² inside δ, δ(|d| − ½δ) outside; gradients d and δ·sign(d), averaged over 3.
#[test]
fn silu_and_huber_match_hand_worked_values() {
    let x = [1.0, -2.0];
    let (mut y, mut dx) = ([0.0; 2], [0.0; 2]);
    cpu::activation_forward(Activation::Silu, &mut y, &x).unwrap();
    cpu::activation_backward(Activation::Silu, &mut dx, &x, &[1.0, 1.0]).unwrap();
    assert_close("silu", &y, &[0.7310586, -0.2384058], 1e-6, 1e-7);
    assert_close("silu'", &dx, &[0.9276705, -0.0907842], 1e-6, 1e-7);

    let (prediction, target) = ([0.5, 2.0, -3.0], [0.0; 3]);
    let (mut terms, mut grad) = ([0.0; 3], [0.0; 3]);
    let huber = |delta| Loss::Huber { delta };
    cpu::value_loss_forward(huber(1.0), &mut terms, &prediction, &target).unwrap();
    assert_eq!(terms, [0.125, 1.5, 2.5]);
    cpu::value_loss_backward(huber(1.0), &mut grad, &prediction, &target).unwrap();
    assert_close("huber δ=1 gradient", &grad, &[0.5 / 3.0, 1.0 / 3.0, -1.0 / 3.0], 1e-12, 0.0);
    cpu::value_loss_forward(huber(2.0), &mut terms, &prediction, &target).unwrap();
    assert_eq!(terms, [0.125, 2.0, 4.0]); // d = 2 sits on the seam: 2(2 − 1) = ½·2² = 2
    cpu::value_loss_backward(huber(2.0), &mut grad, &prediction, &target).unwrap();
    assert_close("huber δ=2 gradient", &grad, &[0.5 / 3.0, 2.0 / 3.0, -2.0 / 3.0], 1e-12, 0.0);
}
