//! The GPU context: adapter and device selection, limits, compiled kernels, and the few calls
//! that submit work or read it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::counters::{Counters, Tally};
use super::dispatch::{Dispatch, Family};
use super::{
    activation, batch_norm, conv, dropout, gather, loss, matmul, mlp, norm, optimizer, pool, reduce, softmax,
};
use crate::{Error, Result};

/// A wgpu device and queue with every kernel of the crate compiled for them.
///
/// Build it with [`Gpu::new`], which picks an adapter the way wgpu's own tools do, or with
/// [`Gpu::from_device`] to share a graphics app's device. Shader modules, bind group layouts
/// and pipelines are created once here and reused by every [`Dispatch`]. Cloning is cheap and
/// shares all of it (a model keeps a clone).
#[derive(Clone)]
pub struct Gpu {
    /// Distinguishes this context's tensors from another's: wgpu panics, rather than
    /// erring, when a resource of one instance meets another's.
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pub(crate) compiled: Arc<Compiled>,
    /// Bound where an entry point declares a binding it does not use: one per binding
    /// slot, so unused read-write slots never alias each other.
    pub(crate) placeholders: Arc<[wgpu::Buffer]>,
    /// Errors wgpu raised outside our error scopes (device loss, uncaptured validation),
    /// reported by the next call that submits or reads instead of panicking.
    uncaptured: Sink,
    pub(crate) tally: Arc<Tally>,
    /// Staging buffers for reads, reused (see `readback.rs`).
    pub(crate) staging_pool: Arc<super::readback::StagingPool>,
    /// Written (4 bytes) to learn whether the device is still there: see `check_device`.
    canary: wgpu::Buffer,
    pub(crate) serial: Serial,
}

/// On a GL adapter, the crate's own calls into wgpu one thread at a time.
///
/// wgpu's GL backend does a submit's work (llvmpipe runs a dispatch inside the call), and
/// waits for the GPU, under one context lock, and panics when a thread waits for that lock
/// more than 6 s ("Could not lock adapter context"): a thread creating a buffer beside
/// another thread's long submit hit it. Threads wait here instead, with no time limit.
/// Re-entrant, as a scoped call may make another. Other backends need no lock: `None`.
#[derive(Clone, Default)]
pub(crate) struct Serial(Option<Arc<parking_lot::ReentrantMutex<()>>>);

impl Serial {
    fn for_backend(backend: wgpu::Backend) -> Serial {
        Serial((backend == wgpu::Backend::Gl).then(Default::default))
    }

    /// Whether this adapter's calls take the lock (GL).
    pub(crate) fn locks(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `f` holding the lock, if this adapter has one.
    pub(crate) fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let _held = self.0.as_ref().map(|lock| lock.lock());
        f()
    }

    /// Runs `f` if the lock is free (or there is none); `None`, without waiting, if another
    /// thread holds it.
    pub(crate) fn try_run<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        match &self.0 {
            None => Some(f()),
            Some(lock) => lock.try_lock().map(|_held| f()),
        }
    }
}

/// A wgpu handle whose drop takes the [`Serial`] lock: on GL, destroying a buffer or a bind
/// group takes wgpu's context lock too, and a drop on one thread beside another thread's long
/// submit reached wgpu's 6 s limit (a `properties` test panicked there). What the crate
/// holds (tensors, labels, bind groups, staging buffers) is held through this.
pub(crate) struct Locked<T> {
    value: std::mem::ManuallyDrop<T>,
    serial: Serial,
}

impl<T> Locked<T> {
    pub(crate) fn new(value: T, serial: &Serial) -> Self {
        Locked { value: std::mem::ManuallyDrop::new(value), serial: serial.clone() }
    }
}

impl<T> std::ops::Deref for Locked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Clone> Clone for Locked<T> {
    fn clone(&self) -> Self {
        Locked::new(T::clone(&self.value), &self.serial)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Locked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> Drop for Locked<T> {
    fn drop(&mut self) {
        // SAFETY: the value is dropped once, here, and never used after.
        self.serial.clone().run(|| unsafe { std::mem::ManuallyDrop::drop(&mut self.value) });
    }
}

/// The most storage bindings any kernel has.
pub(crate) const MAX_STORAGE_BINDINGS: usize = 7;

/// The op families of one [`Family`] each, registered once: each name is a module of `gpu/`
/// whose `family(device)` builds its pipelines from its own WGSL file. A new family is its
/// module (declared in `gpu/mod.rs`), its shader, and its name here.
macro_rules! families {
    ($($name:ident),* $(,)?) => {
        pub(crate) struct Families {
            $(pub(crate) $name: Family,)*
        }

        impl Families {
            fn new(device: &wgpu::Device) -> Families {
                Families { $($name: $name::family(device),)* }
            }
        }
    };
}

families!(activation, batch_norm, conv, pool, softmax, norm, reduce, loss, gather);

/// Every compiled kernel: the families above (through `Deref`), and the ones whose modules
/// build several layouts or choose by adapter.
pub(crate) struct Compiled {
    families: Families,
    pub(crate) matmul: Family,
    /// With the subgroups' width, only on adapters whose subgroups have one fixed width of 8 to
    /// 64 lanes; see `shaders/matmul_subgroup.wgsl`.
    pub(crate) matmul_subgroup: Option<(Family, u32)>,
    /// The subgroup A·B reading its operands through textures (`shaders/matmul_texture.wgsl`),
    /// made on first use: only large products on llvmpipe take it.
    pub(crate) matmul_texture: std::sync::OnceLock<Family>,
    /// Workgroup-memory tiles, for real GPUs; see `shaders/matmul_tiled.wgsl`.
    pub(crate) matmul_tiled: Family,
    /// What `MatmulKernel::Auto` runs on this adapter.
    pub(crate) auto_matmul: matmul::MatmulKernel,
    pub(crate) optimizer: optimizer::OptimizerKernels,
    /// A narrow MLP's fused training step (two layouts).
    pub(crate) mlp: mlp::MlpKernels,
    pub(crate) dropout: dropout::DropoutKernels,
}

impl std::ops::Deref for Compiled {
    type Target = Families;

    fn deref(&self) -> &Families {
        &self.families
    }
}

impl Gpu {
    /// Picks an adapter honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`,
    /// and opens a device with the adapter's real limits. Blocks: for native programs (in the
    /// browser it is [`Error::WouldBlock`]; use [`Gpu::new_async`]).
    ///
    /// Fails with [`Error::NoAdapter`] when wgpu finds none, saying how to get one, and with
    /// [`Error::Unsupported`] for an adapter without compute shaders.
    pub fn new() -> Result<Gpu> {
        crate::blocking::refuse_on_web("Gpu::new")?;
        crate::blocking::wait("Gpu::new", Self::new_async())
    }

    /// [`Gpu::new`] without blocking, on every target: in the browser it asks
    /// `navigator.gpu` for WebGPU (the environment variables are native only). Needs no
    /// particular executor.
    pub async fn new_async() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = wgpu::util::initialize_adapter_from_env_or_default(&instance, None)
            .await
            .map_err(|e| Error::NoAdapter { detail: no_adapter_detail(&e.to_string()) })?;
        check_compute(&adapter.get_info(), adapter.get_downlevel_capabilities().flags)?;
        // Ask for everything the adapter can do: the defaults cap storage bindings at 128 MiB
        // and buffers at 256 MiB, far below what real GPUs (and a full MNIST) need.
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-nn"),
                // Subgroups let the matmul kernels share loads across lanes (see matmul.rs).
                required_features: adapter.features() & wgpu::Features::SUBGROUP,
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await?;
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| keep_first(&sink, e.to_string())));
        let sink = uncaptured.clone();
        device.set_device_lost_callback(move |reason, message| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                keep_first(&sink, format!("device lost ({reason:?}): {message}"));
            }
        });
        Self::build(device, queue, adapter.get_info(), uncaptured)
    }

    /// Uses a device and queue the caller already has (a graphics app's, say). The crate's
    /// kernels are compiled for it; the app's error handlers are left alone, and errors in
    /// the crate's own calls come back through error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Gpu> {
        let info = device.adapter_info();
        Self::build(device, queue, info, Arc::new(Mutex::new(None)))
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        uncaptured: Sink,
    ) -> Result<Gpu> {
        let limits = device.limits();
        let serial = Serial::for_backend(info.backend);
        let (compiled, placeholders, canary) =
            scoped(&device, &uncaptured, &serial, "building the kernels", || {
                let matmul_subgroup = matmul::subgroup_family(&device, &info);
                let compiled = Compiled {
                    families: Families::new(&device),
                    matmul: matmul::family(&device),
                    auto_matmul: matmul::auto_kernel(&info, &limits, matmul_subgroup.is_some()),
                    matmul_subgroup,
                    matmul_texture: std::sync::OnceLock::new(),
                    matmul_tiled: matmul::tiled_family(&device),
                    optimizer: optimizer::kernels(&device),
                    mlp: mlp::kernels(&device, &info),
                    dropout: dropout::kernels(&device),
                };
                // As large as any fixed-size binding a kernel declares (the settings row's 56
                // bytes), should a driver check an unused binding's size too.
                let placeholder = |_| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("placeholder"),
                        size: 64,
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                };
                let canary = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("canary"),
                    size: 4,
                    usage: wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (compiled, (0..MAX_STORAGE_BINDINGS).map(placeholder).collect::<Vec<_>>(), canary)
            })?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Gpu {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            info,
            limits,
            compiled: Arc::new(compiled),
            placeholders: placeholders.into(),
            uncaptured,
            tally: Arc::default(),
            staging_pool: Arc::default(),
            canary,
            serial,
        })
    }

    /// The device the kernels run on (the app's, for [`Gpu::from_device`]): create encoders
    /// with it to record [`Dispatch`]es into.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue the crate submits to and writes through.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Runs `f` in turn with the crate's own calls on this device. On a GL adapter wgpu does a
    /// submit's work under one context lock and panics when another thread waits for that lock
    /// over 6 s, which an app's own call (a buffer, a submit, a frame) beside one of the
    /// crate's long submits can do. The crate's calls take turns under a lock of their own that
    /// waits without a limit: an app that shares the device across threads wraps its device
    /// and queue calls in this to wait there too. On other backends it just runs `f`.
    /// Re-entrant: `f` may call the crate.
    pub fn serialized<T>(&self, f: impl FnOnce() -> T) -> T {
        self.serial.run(f)
    }

    /// The adapter's name, backend and driver.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was opened with (the adapter's own, for [`Gpu::new`]).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// A one-line description such as `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    /// Browsers may leave the name empty (Chromium does): then it says so.
    pub fn adapter_name(&self) -> String {
        let name =
            if self.info.name.is_empty() { "an adapter the browser leaves unnamed" } else { &self.info.name };
        format!("{name} ({:?}, {:?})", self.info.backend, self.info.device_type)
    }

    /// Records `dispatches`, in order, into one compute pass of `encoder` (a few passes, when
    /// a dispatch copies its operands into textures first: large products on llvmpipe).
    /// Nothing is submitted, polled or mapped, so an app can record into its own per-frame
    /// encoder. A dispatch bound on another `Gpu` is an error, and nothing is recorded.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) -> Result<()> {
        self.check_dispatches("record", dispatches)?;
        self.record_checked(encoder, dispatches);
        Ok(())
    }

    /// A dispatch bound on another `Gpu` (another device) would be a wgpu panic when recorded.
    fn check_dispatches(&self, op: &str, dispatches: &[&Dispatch]) -> Result<()> {
        match dispatches.iter().find(|d| d.owner() != self.id()) {
            Some(d) => Err(Error::Gpu {
                context: op.into(),
                message: format!(
                    "the dispatch {} was bound on another Gpu context (another device)",
                    d.label()
                ),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn record_checked(&self, encoder: &mut wgpu::CommandEncoder, mut dispatches: &[&Dispatch]) {
        let mut first = true;
        loop {
            // Every dispatch up to the next staged one in one pass; that one in its own. (An
            // empty list still gets its one pass, as it always has.)
            let plain = dispatches.iter().position(|d| d.staged().is_some()).unwrap_or(dispatches.len());
            if plain > 0 || (first && dispatches.is_empty()) {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("wgpu-nn"),
                    timestamp_writes: None,
                });
                for dispatch in &dispatches[..plain] {
                    dispatch.record(&mut pass);
                }
            }
            let Some((staged, rest)) = dispatches[plain..].split_first() else { break };
            staged.staged().expect("found above").record(encoder);
            dispatches = rest;
            first = false;
        }
    }

    /// Records `dispatches` into one encoder and submits it once. Does not wait: later reads
    /// wait for exactly the work they depend on.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<wgpu::SubmissionIndex> {
        self.check_dispatches("run", dispatches)?;
        self.check_uncaptured()?;
        self.tally.submitted();
        self.scoped("running kernels", || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            self.record_checked(&mut encoder, dispatches);
            self.queue.submit([encoder.finish()])
        })
    }

    /// Submits, kernel launches, bytes moved, maps and memory held so far (see [`Counters`]).
    pub fn counters(&self) -> Counters {
        self.tally.snapshot()
    }

    /// Blocks until all submitted work has finished (benchmarks time submit plus this wait).
    /// For native programs; in the browser it is [`Error::WouldBlock`] (use
    /// [`Gpu::wait_async`]).
    pub fn wait(&self) -> Result<()> {
        crate::blocking::refuse_on_web("wait")?;
        crate::blocking::wait("wait", self.wait_async())
    }

    /// Finishes when all work submitted before the call has finished, on every target.
    pub async fn wait_async(&self) -> Result<()> {
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        self.queue.on_submitted_work_done(move || sender.send(()).unwrap_or(()));
        self.poll_until(None)?;
        receiver.receive().await.ok_or_else(|| Error::Readback("the GPU never finished".into()))?;
        self.check_uncaptured()
    }

    /// On native targets, waits in wgpu's poll until `submission` (else everything submitted)
    /// has finished and its callbacks have run. In the browser wgpu's poll does nothing: the
    /// page's event loop runs the callbacks, and the caller awaits them.
    pub(crate) fn poll_until(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let wait = wgpu::PollType::Wait { submission_index: submission, timeout: None };
        self.serial.run(|| self.device.poll(wait)).map_err(|e| Error::Readback(e.to_string()))?;
        Ok(())
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes, turning anything
    /// wgpu reports into an [`Error::Gpu`] that names `context`.
    pub(crate) fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        scoped(&self.device, &self.uncaptured, &self.serial, context, f)
    }

    /// An error if the device is lost. wgpu reports a lost device to its lost callback only
    /// (the app's, for a device it lent us), and makes most calls quiet no-ops: new buffers
    /// come out invalid and fail later, an app's submit then fails in the app's handler. A
    /// queue write through `write_buffer_with` is one call that says so at once (it returns
    /// `None`), so the calls that record into an app's encoder check with it first.
    pub(crate) fn check_device(&self, op: &str) -> Result<()> {
        let size = wgpu::BufferSize::new(4).expect("4 is not 0");
        let view = self.scoped(op, || self.queue.write_buffer_with(&self.canary, 0, size))?;
        match view {
            Some(mut view) => {
                view.copy_from_slice(&[0; 4]);
                Ok(())
            }
            None => Err(Error::Gpu { context: op.into(), message: "the device is lost".into() }),
        }
    }

    pub(crate) fn check_uncaptured(&self) -> Result<()> {
        match self.uncaptured.lock().map(|mut e| e.take()) {
            Ok(Some(message)) => Err(Error::Gpu { context: "an earlier GPU call".into(), message }),
            _ => Ok(()),
        }
    }

    /// Fails with [`Error::BufferTooLarge`] when `bytes` exceeds a buffer or storage binding limit.
    pub(crate) fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        // A tensor is bound as storage, so the binding limit is named when both are passed
        // (SwiftShader's two limits are equal, 1 GiB), else the smaller one.
        let mut checks = [
            (self.limits.max_storage_buffer_binding_size, "max_storage_buffer_binding_size"),
            (self.limits.max_buffer_size, "max_buffer_size"),
        ];
        checks.sort_by_key(|&(limit, _)| limit);
        for (limit, limit_name) in checks {
            if bytes > limit {
                return Err(Error::BufferTooLarge { what: what.to_string(), size: bytes, limit, limit_name });
            }
        }
        Ok(())
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn max_workgroups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }
}

/// What wgpu said when it found no adapter, and where to look next.
fn no_adapter_detail(said: &str) -> String {
    if cfg!(target_arch = "wasm32") {
        format!(
            "{said}; this browser offers no WebGPU adapter: it needs navigator.gpu (Chrome or \
             Edge 113+, Safari 26+, Firefox 141+ on Windows; headless Chromium needs \
             --enable-unsafe-webgpu)"
        )
    } else {
        format!("{said}; WGPU_BACKEND={}", std::env::var("WGPU_BACKEND").unwrap_or_default())
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.adapter_name()).finish_non_exhaustive()
    }
}

/// The first error wgpu reported outside the crate's scopes (or, in the browser, inside them).
type Sink = Arc<Mutex<Option<String>>>;

fn keep_first(sink: &Mutex<Option<String>>, message: String) {
    if let Ok(mut slot) = sink.lock() {
        slot.get_or_insert(message);
    }
}

/// Runs `f` (holding the GL lock, if any) inside validation, out-of-memory and internal error
/// scopes. On native targets wgpu reports a scope's errors by the time it is popped, so the
/// call that made them returns them. In the browser a popped scope resolves later, on the
/// page's event loop: its first error is kept in `sink`, and the next call that submits or
/// reads returns it (as one that wgpu raised outside any scope would be).
fn scoped<T>(
    device: &wgpu::Device,
    sink: &Sink,
    serial: &Serial,
    context: &str,
    f: impl FnOnce() -> T,
) -> Result<T> {
    let _held = serial.0.as_ref().map(|lock| lock.lock());
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let value = f();
    // Scopes pop innermost first.
    let pops = [internal.pop(), memory.pop(), validation.pop()];
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = sink;
        match pops.into_iter().find_map(pollster::block_on) {
            None => Ok(value),
            Some(e) => Err(Error::Gpu { context: context.to_string(), message: e.to_string() }),
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let (sink, context) = (sink.clone(), context.to_string());
        wasm_bindgen_futures::spawn_local(async move {
            for pop in pops {
                if let Some(e) = pop.await {
                    keep_first(&sink, format!("while {context}: {e}"));
                }
            }
        });
        Ok(value)
    }
}

/// GL ES 3.0 and WebGL2 adapters have no compute shaders: [`Error::Unsupported`] now, naming
/// what is missing, not a validation error from the first kernel.
fn check_compute(info: &wgpu::AdapterInfo, flags: wgpu::DownlevelFlags) -> Result<()> {
    if flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS) {
        return Ok(());
    }
    Err(Error::Unsupported {
        adapter: format!("{} ({:?})", info.name, info.backend),
        missing: "compute shaders (WebGL2 and GL ES 3.0 have none; use WebGPU, Vulkan, Metal, DX12 \
                  or GL 4.3+, or the CPU backend)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_without_compute_shaders_is_refused_by_name() {
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::IntegratedGpu, wgpu::Backend::Gl);
        info.name = "WebGL2".into();
        let webgl2 = wgpu::DownlevelCapabilities::default().flags - wgpu::DownlevelFlags::COMPUTE_SHADERS;
        let err = check_compute(&info, webgl2).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(
            err.to_string().contains("WebGL2 (Gl)") && err.to_string().contains("compute shaders"),
            "{err}"
        );
        check_compute(&info, wgpu::DownlevelFlags::all()).unwrap();
    }
}
