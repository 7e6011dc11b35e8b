//! What the crate has asked of the GPU: submits, traffic, maps, and the memory it holds.
//! Tests use these to hold the crate to its contract (for example, training steps that are
//! never asked for their loss read nothing back); users can print them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`crate::Gpu`]'s counters, from [`crate::Gpu::counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Command buffers submitted (kernels and copies alike).
    pub submits: u64,
    /// Bytes copied from the host into GPU buffers.
    pub bytes_uploaded: u64,
    /// Bytes copied back to the host.
    pub bytes_read_back: u64,
    /// Buffers mapped for reading.
    pub maps: u64,
    /// Bytes of GPU buffers the crate holds now (tensors and kernel parameter blocks), and of
    /// the textures a large product on llvmpipe copies its operands into.
    pub bytes_held: u64,
    /// How many such buffers (and textures) are alive now.
    pub buffers_held: u64,
    /// Bind groups alive now (one per kernel launch bound into a [`crate::Dispatch`]; two for
    /// a product that also reads through textures).
    pub bind_groups_held: u64,
    /// Bytes of read-back (staging) buffers kept for reuse: at most 4 buffers of 4 MiB.
    pub staging_bytes_kept: u64,
    /// Kernel launches recorded (`dispatch_workgroups` calls), in the crate's compute passes
    /// or an app's: on small networks the launches, not the arithmetic, set a step's time.
    pub dispatches: u64,
}

#[derive(Default)]
pub(crate) struct Tally {
    submits: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_read_back: AtomicU64,
    maps: AtomicU64,
    bytes_held: AtomicU64,
    buffers_held: AtomicU64,
    bind_groups_held: AtomicU64,
    staging_bytes_kept: AtomicU64,
    dispatches: AtomicU64,
}

impl Tally {
    pub(crate) fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            submits: get(&self.submits),
            bytes_uploaded: get(&self.bytes_uploaded),
            bytes_read_back: get(&self.bytes_read_back),
            maps: get(&self.maps),
            bytes_held: get(&self.bytes_held),
            buffers_held: get(&self.buffers_held),
            bind_groups_held: get(&self.bind_groups_held),
            staging_bytes_kept: get(&self.staging_bytes_kept),
            dispatches: get(&self.dispatches),
        }
    }

    pub(crate) fn submitted(&self) {
        self.submits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn uploaded(&self, bytes: u64) {
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn staging_kept(&self, bytes: u64) {
        self.staging_bytes_kept.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn staging_released(&self, bytes: u64) {
        self.staging_bytes_kept.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(crate) fn read_back(&self, bytes: u64) {
        self.maps.fetch_add(1, Ordering::Relaxed);
        self.bytes_read_back.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Counts a buffer (and its bind group, if it is a launch's parameter block) as held for as
/// long as this lives.
#[derive(Debug)]
pub(crate) struct Held {
    tally: Arc<Tally>,
    bytes: u64,
    bind_groups: u64,
}

impl Held {
    pub(crate) fn new(tally: &Arc<Tally>, bytes: u64) -> Held {
        tally.bytes_held.fetch_add(bytes, Ordering::Relaxed);
        tally.buffers_held.fetch_add(1, Ordering::Relaxed);
        Held { tally: tally.clone(), bytes, bind_groups: 0 }
    }

    /// Counts one recorded launch of the kernel this parameter block belongs to.
    pub(crate) fn launched(&self) {
        self.tally.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// A launch's parameter buffer of `bytes` and the bind group that binds it.
    pub(crate) fn launch(tally: &Arc<Tally>, bytes: u64) -> Held {
        tally.bind_groups_held.fetch_add(1, Ordering::Relaxed);
        let mut held = Held::new(tally, bytes);
        held.bind_groups = 1;
        held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.tally.bytes_held.fetch_sub(self.bytes, Ordering::Relaxed);
        self.tally.buffers_held.fetch_sub(1, Ordering::Relaxed);
        self.tally.bind_groups_held.fetch_sub(self.bind_groups, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}
