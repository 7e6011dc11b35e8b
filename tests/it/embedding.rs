//! A graphics app's view: its own device and queue, training recorded into its own encoder
//! next to its own passes, one submit per frame, the loss polled without blocking, and a
//! forward pass over the app's buffer.

/// The `live_boundary` example's frame: its network, for the soak below.
#[path = "../../examples/live_boundary/scene.rs"]
mod live_boundary;

use crate::common::{assert_close, gpu, random, random_labels};
use wgpu_nn::model::{Backend, Loss, Model, ModelConfig, Optimizer, Target};
use wgpu_nn::{Error, Gpu, wgpu};

fn app_device() -> Option<(wgpu::Device, wgpu::Queue)> {
    app_devices(1).pop()
}

/// `count` devices of the app's, on one instance and adapter (none without a GPU, which
/// skips the test, or fails it under WGPU_NN_REQUIRE_GPU, like every GPU test).
fn app_devices(count: usize) -> Vec<(wgpu::Device, wgpu::Queue)> {
    if gpu().is_none() {
        return Vec::new();
    }
    crate::common::app_devices(count, wgpu::Limits::default())
}

/// Labels the net can learn: which of three bands x0 + x1 falls in.
fn bands(x: &[f32]) -> Vec<u32> {
    x.chunks(2)
        .map(|p| {
            if p[0] + p[1] < -0.5 {
                0
            } else if p[0] + p[1] < 0.5 {
                1
            } else {
                2
            }
        })
        .collect()
}

fn classifier() -> ModelConfig {
    ModelConfig::new(2)
        .dense(16)
        .tanh()
        .dense(3)
        .softmax()
        .loss(Loss::SoftmaxCrossEntropy)
        .optimizer(Optimizer::Adam { lr: 0.05 })
        .seed(4)
}

/// The app's own compute work: doubles every value of a buffer.
const DOUBLE: &str = "@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&v) { v[id.x] = 2.0 * v[id.x]; }
}";

#[test]
fn training_shares_the_apps_encoder_and_submit_with_its_own_passes() {
    let Some((device, queue)) = app_device() else { return };
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let mut model = classifier().build_gpu(&gpu).unwrap();
    let x = random(64 * 2, 1);
    let labels = bands(&x);

    // The app's resources: a compute pipeline over its own buffer, and a render target.
    let values = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app values"),
        size: 256 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    queue.write_buffer(&values, 0, bytemuck::cast_slice(&[1.0f32; 256]));
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(DOUBLE.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: values.as_entire_binding() }],
    });
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d { width: 16, height: 16, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());

    let crate_submits = gpu.counters().submits;
    let mut readings = Vec::new();
    for frame in 0..20 {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(4, 1, 1);
        }
        for _ in 0..3 {
            model.record_train_step(&mut encoder, &x, &Target::Labels(&labels)).unwrap();
        }
        if frame == 0 || frame == 19 {
            let mut reading = model.record_loss(&mut encoder).unwrap();
            assert!(reading.poll().is_none(), "nothing is read before the app submits");
            readings.push(reading);
        }
        drop(encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLUE),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        }));
        queue.submit([encoder.finish()]); // the frame's one submit: the app's
    }
    assert_eq!(gpu.counters().submits, crate_submits, "the crate submitted nothing of its own");
    let losses: Vec<f32> = readings.into_iter().map(|r| r.wait().unwrap()).collect();
    assert!(losses[1] < 0.5 * losses[0], "the loss fell: {losses:?}");
    let doubled = gpu.read(&gpu.tensor_from_buffer(&values, 1, 256).unwrap()).unwrap();
    assert_eq!(doubled, vec![2f32.powi(20); 256], "the app's own pass ran in every frame");

    // Parity: the same 60 steps through Model::train_step on the CPU backend.
    let mut cpu = classifier().build_cpu().unwrap();
    for _ in 0..60 {
        cpu.train_step(&x, &Target::Labels(&labels)).unwrap();
    }
    assert_close(
        "weights after 60 recorded steps",
        &model.weights(0).unwrap(),
        &cpu.weights(0).unwrap(),
        1e-4, // tests/model.rs's parity tolerance
        1e-5,
    );
}

#[test]
fn a_loss_reading_is_polled_without_blocking_and_reports_divergence() {
    let Some((device, queue)) = app_device() else { return };
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let weight = wgpu_nn::model::Init::Given { weights: vec![1.0], bias: None };
    let mut model = ModelConfig::new(1)
        .dense_with(1, false, weight)
        .loss(Loss::Mse)
        .optimizer(Optimizer::Sgd { lr: 10.0 })
        .build_gpu(&gpu)
        .unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    for _ in 0..20 {
        model.record_train_step(&mut encoder, &[1.0], &Target::Values(&[0.0])).unwrap();
    }
    let mut reading = model.record_loss(&mut encoder).unwrap();
    queue.submit([encoder.finish()]);
    // A frame loop's way: poll until it is there (here with nothing else to do).
    let result = loop {
        if let Some(result) = reading.poll() {
            break result;
        }
        std::thread::yield_now();
    };
    match result {
        Err(Error::Diverged { step, skipped, .. }) => assert_eq!((step, skipped), (17, 3)),
        other => panic!("expected the divergence at step 17, got {other:?}"),
    }
    assert!(reading.poll().is_none(), "a reading gives its loss once");
    // Steps 17 to 20 were not applied: w = (−19)^16, from step 16's update.
    let w = f64::from(model.weights(0).unwrap()[0]);
    assert!((w / 19f64.powi(16) - 1.0).abs() < 1e-5, "w = {w}");

    // The read cleared the mark, and the model counts only the 16 applied steps: the next
    // divergence (again 16 steps on from a weight of 1) is step 16 + 17 = 33.
    model.set_weights(0, &[1.0], None).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    for _ in 0..20 {
        model.record_train_step(&mut encoder, &[1.0], &Target::Values(&[0.0])).unwrap();
    }
    let reading = model.record_loss(&mut encoder).unwrap();
    queue.submit([encoder.finish()]);
    match reading.wait() {
        Err(Error::Diverged { step, skipped, .. }) => assert_eq!((step, skipped), (33, 3)),
        other => panic!("expected the divergence at step 33, got {other:?}"),
    }

    // A reading whose encoder is never submitted is an error from wait, not a hang.
    let mut encoder = device.create_command_encoder(&Default::default());
    model.record_train_step(&mut encoder, &[1.0], &Target::Values(&[0.0])).unwrap();
    let reading = model.record_loss(&mut encoder).unwrap();
    drop(encoder);
    let err = reading.wait().unwrap_err();
    assert!(err.to_string().contains("never submitted"), "{err}");
}

#[test]
fn a_forward_pass_over_the_apps_buffer_matches_the_cpu() {
    let Some((device, queue)) = app_device() else { return };
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let mut model = classifier().build_gpu(&gpu).unwrap();
    let (x, labels) = (random(32 * 2, 5), random_labels(32, 3, 6));
    for _ in 0..10 {
        model.train_step(&x, &Target::Labels(&labels)).unwrap();
    }
    // The app's grid of points, 100 × 2 f32, in a buffer it made.
    let grid = random(100 * 2, 7);
    let points = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app grid"),
        size: 100 * 2 * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&points, 0, bytemuck::cast_slice(&grid));
    let forward = model.bind_forward(gpu.tensor_from_buffer(&points, 100, 2).unwrap()).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    forward.record(&mut encoder);
    queue.submit([encoder.finish()]);
    let got = gpu.read(forward.output()).unwrap();

    // The CPU backend, from the weights read out of the GPU.
    let mut cpu = classifier().build_cpu().unwrap();
    for layer in [0, 2] {
        cpu.set_weights(layer, &model.weights(layer).unwrap(), Some(&model.bias(layer).unwrap())).unwrap();
    }
    assert_close("forward over the app's buffer", &got, &cpu.predict(&grid).unwrap(), 1e-5, 1e-6);
    assert_eq!(forward.output().shape(), (100, 3));
    assert_eq!(forward.activation(1).unwrap().shape(), (100, 16));
    // The dense layer's own output, before its tanh, is written too (the fused forward keeps
    // it): x·W0ᵀ + b0 from the same weights.
    let mut z = vec![0.0; 100 * 16];
    let (w0, b0) = (model.weights(0).unwrap(), model.bias(0).unwrap());
    wgpu_nn::cpu::matmul_forward(&mut z, &grid, &w0, Some(&b0), 100, 2, 16, wgpu_nn::MatmulForm::ABt)
        .unwrap();
    assert_close(
        "the first dense layer's output",
        &gpu.read(forward.activation(1).unwrap()).unwrap(),
        &z,
        1e-5,
        1e-6,
    );
    assert_eq!(model.weights_tensor(2).unwrap().shape(), (3, 16), "(out, in)");
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut devices = app_devices(2);
    let Some((device, queue)) = devices.pop() else { return };
    let (other_device, _) = devices.pop().unwrap();
    let gpu = Gpu::from_device(device.clone(), queue).unwrap();
    let mut model = classifier().build_gpu(&gpu).unwrap();
    let buffer = |size: u64, usage: wgpu::BufferUsages| {
        device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false })
    };
    // Too small for 100 × 2 f32 (800 bytes).
    let err = gpu.tensor_from_buffer(&buffer(512, wgpu::BufferUsages::STORAGE), 100, 2).unwrap_err();
    assert!(err.to_string().contains("at least 800 bytes"), "{err}");
    let err = gpu.tensor_from_buffer(&buffer(800, wgpu::BufferUsages::VERTEX), 100, 2).unwrap_err();
    assert!(err.to_string().contains("STORAGE usage"), "{err}");
    // The wrong width for the network's 2 inputs.
    let wide = gpu.tensor_from_buffer(&buffer(1200, wgpu::BufferUsages::STORAGE), 100, 3).unwrap();
    assert!(matches!(model.bind_forward(wide), Err(Error::Shape { .. })));
    // A buffer of the app's other device: wgpu's validation, caught in the crate's error scope.
    let foreign = other_device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 800,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let err = model.bind_forward(gpu.tensor_from_buffer(&foreign, 100, 2).unwrap()).unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("device"), "{err}");
    // The CPU backend records nothing.
    let mut cpu: Model = classifier().build(Backend::Cpu, None).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    let err = cpu.record_train_step(&mut encoder, &[0.0, 0.0], &Target::Labels(&[0])).unwrap_err();
    assert!(matches!(err, Error::NeedsGpu { op: "record_train_step" }), "{err}");
    assert!(matches!(cpu.weights_tensor(0), Err(Error::NeedsGpu { op: "weights_tensor" })));
    // Bad batches are refused before anything is recorded.
    let err = model.record_train_step(&mut encoder, &[0.0, f32::NAN], &Target::Labels(&[0])).unwrap_err();
    assert!(matches!(err, Error::NotFinite { .. }), "{err}");
}

/// A soak of `live_boundary`'s loop, headless: 10,000 frames, each recording a training step
/// over the spirals, a loss read and a forward pass over the app's grid buffer into the app's
/// encoder (the example's own network; fewer points and a coarser grid, to keep it short),
/// with two frames in flight as a swapchain allows. After the first frames, the bind groups
/// never change, the pools of upload and read-back buffers stay within their caps (8 upload
/// buffers a model, 4 staging buffers a `Gpu`), and every loss read arrives. (How many frames'
/// buffers are in flight at once, and so how many each pool ends up keeping, depends on when
/// the driver reports each map: GL under parallel tests once kept one more of each after
/// frame 10, which an exact comparison of everything held reported as growth.)
#[test]
fn ten_thousand_frames_of_the_live_loop_hold_everything_flat() {
    let Some((device, queue)) = app_device() else { return };
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let mut model = live_boundary::network().build_gpu(&gpu).unwrap();
    let data = wgpu_nn::data::spirals(20, 3, 0.15, 7).unwrap();
    let grid: Vec<f32> =
        (0..16 * 16).flat_map(|i| [(i % 16) as f32 / 8.0 - 1.0, (i / 16) as f32 / 8.0 - 1.0]).collect();
    let forward = model.bind_forward(gpu.upload(&grid, 16 * 16, 2).unwrap()).unwrap();
    let labels = data.target();

    let held = || gpu.counters();
    let (mut in_flight, mut readings, mut losses) = (None, Vec::new(), Vec::new());
    let mut settled: Option<wgpu_nn::Counters> = None;
    for frame in 0..10_000 {
        let mut encoder = device.create_command_encoder(&Default::default());
        model.record_train_step(&mut encoder, data.inputs(), &labels).unwrap();
        readings.push(model.record_loss(&mut encoder).unwrap());
        forward.record(&mut encoder);
        let submitted = queue.submit([encoder.finish()]);
        // Two frames in flight: wait for the one before this.
        if let Some(previous) = in_flight.replace(submitted) {
            let wait = wgpu::PollType::Wait { submission_index: Some(previous), timeout: None };
            device.poll(wait).unwrap();
        }
        readings.retain_mut(|reading| match reading.poll() {
            Some(loss) => {
                losses.push(loss.unwrap());
                false
            }
            None => true,
        });
        assert!(readings.len() <= 2, "frame {frame}: {} loss reads outstanding", readings.len());
        if frame == 10 || frame % 1000 == 999 {
            // Every read in, so each staging buffer is back in the pool.
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            in_flight = None;
            for mut reading in readings.drain(..) {
                losses.push(reading.poll().expect("a read of finished work").unwrap());
            }
            let now = held();
            let Some(base) = settled else {
                settled = Some(now);
                continue;
            };
            let what = format!("held after {} frames: {now:?}, after 11: {base:?}", frame + 1);
            assert_eq!(now.bind_groups_held, base.bind_groups_held, "{what}");
            // The upload pool held at least this frame's 2 buffers (inputs, 480 bytes, and
            // labels, 240, each rounded up to a power of two) and keeps 8 at most; the staging
            // pool at least one buffer of the loss read's size, and 4 at most.
            assert!(now.buffers_held <= base.buffers_held + 6, "{what}");
            assert!(now.bytes_held <= base.bytes_held + 6 * 512, "{what}");
            assert!(now.staging_bytes_kept <= 4 * base.staging_bytes_kept, "{what}");
        }
    }
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    for mut reading in readings {
        losses.push(reading.poll().expect("the last reads arrived").unwrap());
    }
    assert_eq!(losses.len(), 10_000, "one loss per frame");
    assert!(losses[9_999] < 0.5 * losses[0], "it learned: {} then {}", losses[0], losses[9_999]);
}
