//! burn-wgpu on the protocol of wgpu-nn's `bench --peers` (see scripts/peers/README.md):
//! matmul GFLOP/s at the bench's three target shapes, and MNIST training samples/s for the
//! "lesson" (784-128-64-10, ReLU, dropout 0.2, Adam lr 0.001) and "sgd" (no dropout, plain
//! SGD lr 0.01) workloads at batch 64 and 256, and the "cnn" workload (wgpu-nn's
//! `ModelConfig::mnist_cnn`: two 3×3 convolutions without bias, each with a batch norm, ReLU
//! and 2×2 max pooling, dense 128, dropout 0.5, Adam lr 0.001) at batch 32 and 128, and the
//! narrow networks: "boundary" (2-64-64-3 tanh, Adam lr 0.01, batch 256), "digits"
//! (64-64-32-10 ReLU, dropout 0.2 after the first, Adam lr 0.001, batch 64) and "streetlight"
//! (3-4-1 ReLU, MSE, SGD lr 0.2, batch 16). Each training step uploads its batch
//! (8 random batches cycled); the figure is the median of 3 blocks of 50 steps, each block
//! ended by reading the loss back. Prints one JSON object.

use std::time::Instant;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

#[derive(Module, Debug)]
struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
    dropout: Dropout,
    relu: Relu,
}

/// A network trained on rows of `INPUTS` values: to `CLASSES` classes by cross-entropy, or
/// (`MSE`) to as many values by the mean squared error.
trait Net: Module {
    const INPUTS: usize = 784;
    const CLASSES: usize = 10;
    const MSE: bool = false;
    fn forward(&self, x: Tensor<2>) -> Tensor<2>;
}

/// A narrow MLP: dense layers with an activation (and a dropout after the first) between them.
#[derive(Module, Debug)]
struct Narrow {
    layers: Vec<Linear>,
    dropout: Dropout,
    tanh: bool,
}

impl Narrow {
    fn new(widths: &[usize], tanh: bool, dropout: f64, device: &Device) -> Self {
        let layers = widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
        Self { layers, dropout: DropoutConfig::new(dropout).init(), tanh }
    }

    fn run(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = if self.tanh {
                    burn::tensor::activation::tanh(x)
                } else {
                    burn::tensor::activation::relu(x)
                };
                if i == 0 {
                    x = self.dropout.forward(x);
                }
            }
        }
        x
    }
}

/// The three narrow workloads, as types: each sets its input and output widths.
#[derive(Module, Debug)]
struct Boundary {
    net: Narrow,
}
#[derive(Module, Debug)]
struct Digits {
    net: Narrow,
}
#[derive(Module, Debug)]
struct Streetlight {
    net: Narrow,
}

impl Net for Boundary {
    const INPUTS: usize = 2;
    const CLASSES: usize = 3;
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.net.run(x)
    }
}

impl Net for Digits {
    const INPUTS: usize = 64;
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.net.run(x)
    }
}

impl Net for Streetlight {
    const INPUTS: usize = 3;
    const CLASSES: usize = 1;
    const MSE: bool = true;
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.net.run(x)
    }
}

impl Net for Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        Mlp::forward(self, x)
    }
}

#[derive(Module, Debug)]
struct Cnn {
    c1: Conv2d,
    n1: BatchNorm,
    c2: Conv2d,
    n2: BatchNorm,
    pool: MaxPool2d,
    l1: Linear,
    l2: Linear,
    dropout: Dropout,
    relu: Relu,
}

impl Cnn {
    fn new(device: &Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device)
        };
        Self {
            c1: conv(1, 16),
            n1: BatchNormConfig::new(16).init(device),
            c2: conv(16, 32),
            n2: BatchNormConfig::new(32).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            l1: LinearConfig::new(32 * 7 * 7, 128).init(device),
            l2: LinearConfig::new(128, 10).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            relu: Relu::new(),
        }
    }
}

impl Net for Cnn {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [batch, _] = x.dims();
        let x = x.reshape([batch, 1, 28, 28]);
        let x = self.pool.forward(self.relu.forward(self.n1.forward(self.c1.forward(x))));
        let x = self.pool.forward(self.relu.forward(self.n2.forward(self.c2.forward(x))));
        let x: Tensor<2> = x.flatten(1, 3);
        self.l2.forward(self.dropout.forward(self.relu.forward(self.l1.forward(x))))
    }
}

impl Mlp {
    fn new(p: f64, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(784, 128).init(device),
            l2: LinearConfig::new(128, 64).init(device),
            l3: LinearConfig::new(64, 10).init(device),
            dropout: DropoutConfig::new(p).init(),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.dropout.forward(self.relu.forward(self.l1.forward(x)));
        let x = self.dropout.forward(self.relu.forward(self.l2.forward(x)));
        self.l3.forward(x)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn matmul(device: &Device, m: usize, k: usize, n: usize) -> f64 {
    let a = Tensor::<2>::random([m, k], Distribution::Uniform(-1.0, 1.0), device);
    let b = Tensor::<2>::random([k, n], Distribution::Uniform(-1.0, 1.0), device);
    let run = || {
        let c = a.clone().matmul(b.clone());
        device.sync().unwrap();
        drop(c);
    };
    for _ in 0..5 {
        run(); // autotune and warm-up
    }
    let times: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (m * k * n) as f64 / median(times) / 1e9
}

fn train<M: Net>(device: &Device, batch: usize, mut model: M, mut optim: ModuleOptimizer, lr: f64) -> f64 {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut seed = 1u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    let (inputs, classes) = (M::INPUTS, M::CLASSES);
    let batches: Vec<(Vec<f32>, Vec<i64>, Vec<f32>)> = (0..8)
        .map(|_| {
            let x = (0..batch * inputs).map(|_| (next() % 256) as f32 / 255.0).collect();
            let y = (0..batch).map(|_| (next() % classes as u32) as i64).collect();
            let t = (0..batch * classes).map(|_| (next() % 256) as f32 / 255.0).collect();
            (x, y, t)
        })
        .collect();
    let mut step = 0usize;
    let mut block = |steps: usize, model: &mut M| -> f64 {
        let t = Instant::now();
        let mut last = None;
        for _ in 0..steps {
            let (x, y, t) = &batches[step % batches.len()];
            step += 1;
            let x = Tensor::<2>::from_data(TensorData::new(x.clone(), [batch, inputs]), device);
            let loss = if M::MSE {
                let t = Tensor::<2>::from_data(TensorData::new(t.clone(), [batch, classes]), device);
                MseLoss::new().forward(model.forward(x), t, Reduction::Mean)
            } else {
                let y = Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [batch]), device);
                loss_fn.forward(model.forward(x), y)
            };
            let grads = GradientsParams::from_grads(loss.backward(), &*model);
            *model = optim.step(lr, model.clone(), grads);
            last = Some(loss);
        }
        let _: f32 = last.unwrap().into_scalar(); // wait for the block
        t.elapsed().as_secs_f64()
    };
    block(20, &mut model); // autotune and warm-up
    let times = (0..3).map(|_| block(50, &mut model)).collect::<Vec<_>>();
    50.0 * batch as f64 / median(times)
}

fn main() {
    let device = Device::default();
    let mut out = serde_json::Map::new();
    out.insert("device".into(), format!("{device:?}").into());
    for (m, k, n) in [(1024, 1024, 1024), (256, 784, 128), (256, 128, 64)] {
        out.insert(format!("matmul {m}x{k}x{n} GFLOP/s"), matmul(&device, m, k, n).into());
    }
    let device = device.autodiff();
    for batch in [64, 256] {
        let lesson = train(&device, batch, Mlp::new(0.2, &device), AdamConfig::new().init(), 0.001);
        out.insert(format!("lesson batch {batch} samples/s"), lesson.into());
        let sgd = train(&device, batch, Mlp::new(0.0, &device), SgdConfig::new().init(), 0.01);
        out.insert(format!("sgd batch {batch} samples/s"), sgd.into());
    }
    for batch in [32, 128] {
        let cnn = train(&device, batch, Cnn::new(&device), AdamConfig::new().init(), 0.001);
        out.insert(format!("cnn batch {batch} samples/s"), cnn.into());
    }
    let narrow = |widths: &[usize], tanh, dropout| Narrow::new(widths, tanh, dropout, &device);
    let boundary = Boundary { net: narrow(&[2, 64, 64, 3], true, 0.0) };
    out.insert(
        "boundary batch 256 samples/s".into(),
        train(&device, 256, boundary, AdamConfig::new().init(), 0.01).into(),
    );
    let digits = Digits { net: narrow(&[64, 64, 32, 10], false, 0.2) };
    out.insert(
        "digits batch 64 samples/s".into(),
        train(&device, 64, digits, AdamConfig::new().init(), 0.001).into(),
    );
    let streetlight = Streetlight { net: narrow(&[3, 4, 1], false, 0.0) };
    out.insert(
        "streetlight batch 16 samples/s".into(),
        train(&device, 16, streetlight, SgdConfig::new().init(), 0.2).into(),
    );
    println!("{}", serde_json::Value::Object(out));
}
