//! The one way data comes back from the GPU: a copy into a staging buffer (`MAP_READ`), mapped
//! once the copy has run. [`Gpu::read_async`] awaits it ([`Gpu::read`] blocks on that); a `LossReading` has the app's submit
//! map it and polls. Both take their staging buffers from one small pool per [`Gpu`] and give
//! them back once unmapped, so a loss read every few frames allocates nothing.

use std::sync::Mutex;

use super::Gpu;
use super::context::Locked;
use crate::{Error, Result};

/// Staging buffers kept for reuse, at most this many...
const KEEP: usize = 4;
/// ...and none bigger than this: a rare large read (a whole data set's predictions) should
/// not pin its staging memory for the life of the context.
const KEEP_BYTES: u64 = 4 << 20;

/// The free staging buffers of a [`Gpu`].
#[derive(Debug, Default)]
pub(crate) struct StagingPool {
    free: Mutex<Vec<Locked<wgpu::Buffer>>>,
}

/// A staging buffer on loan from the pool: back to it when dropped, if it is unmapped and
/// small enough (one dropped while a map is pending is let go instead).
#[derive(Debug)]
pub(crate) struct Staging {
    gpu: Gpu,
    buffer: Locked<wgpu::Buffer>,
    /// Bytes this read copies (the buffer may be bigger).
    bytes: u64,
    /// False from a map request until the mapped bytes were taken and the buffer unmapped.
    reusable: bool,
}

impl Gpu {
    /// A staging buffer of at least `bytes`: the smallest free one that fits, or a new one
    /// (sizes rounded up to a power of two, so reads of similar sizes share buffers).
    pub(crate) fn staging(&self, bytes: u64) -> Result<Staging> {
        let reused = {
            let mut free =
                self.staging_pool.free.lock().map_err(|_| Error::Readback("a poisoned lock".into()))?;
            let best =
                free.iter().enumerate().filter(|(_, b)| b.size() >= bytes).min_by_key(|(_, b)| b.size());
            best.map(|(i, _)| i).map(|i| free.swap_remove(i))
        };
        let buffer = match reused {
            Some(buffer) => {
                self.tally.staging_released(buffer.size());
                buffer
            }
            None => Locked::new(
                self.scoped("allocating a read-back buffer", || {
                    self.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("read-back"),
                        size: bytes.next_power_of_two().max(256),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })?,
                &self.serial,
            ),
        };
        Ok(Staging { gpu: self.clone(), buffer, bytes, reusable: true })
    }

    /// Copies `bytes` of `buffer` from byte `offset` on to the host once the work submitted
    /// before this call has finished: the one read every other read goes through. On native
    /// targets it waits inside wgpu's poll (wgpu has no event loop of its own there); in the
    /// browser it awaits the map, which the page's event loop delivers.
    pub(crate) async fn read_buffer_async(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        let mut staging = self.staging(bytes)?;
        let submitted = self.scoped("reading a buffer back", || {
            let mut encoder = self.device().create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, offset, &staging.buffer, 0, bytes);
            self.queue().submit([encoder.finish()])
        })?;
        self.tally.submitted();
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        staging.reusable = false;
        // In a scope too: on a lost device map_async is a validation error, which outside a
        // scope would reach the app's (by default panicking) handler.
        self.scoped("mapping a buffer to read it", || {
            staging
                .buffer
                .slice(..bytes)
                .map_async(wgpu::MapMode::Read, move |result| sender.send(result).unwrap_or(()))
        })?;
        self.poll_until(Some(submitted))?;
        receiver
            .receive()
            .await
            .ok_or_else(|| Error::Readback("the map callback never ran".into()))?
            .map_err(|e| Error::Readback(e.to_string()))?;
        self.check_uncaptured()?;
        staging.take_mapped()
    }
}

impl Staging {
    /// Records the copy of `source`'s first bytes into `encoder`, and has the encoder's
    /// submit map it (for a read the app submits).
    pub(crate) fn record(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        source: &wgpu::Buffer,
        mapped: impl FnOnce(std::result::Result<(), wgpu::BufferAsyncError>) + Send + 'static,
    ) {
        encoder.copy_buffer_to_buffer(source, 0, &self.buffer, 0, self.bytes);
        self.reusable = false;
        encoder.map_buffer_on_submit(&self.buffer, wgpu::MapMode::Read, ..self.bytes, mapped);
    }

    /// The copied bytes, once the map has completed; unmaps, so the buffer can go back.
    pub(crate) fn take_mapped(&mut self) -> Result<Vec<u8>> {
        let serial = self.gpu.serial.clone();
        serial.run(|| self.take_mapped_now())
    }

    fn take_mapped_now(&mut self) -> Result<Vec<u8>> {
        let values = {
            let view = self
                .buffer
                .slice(..self.bytes)
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            view.to_vec()
        };
        self.buffer.unmap();
        self.reusable = true;
        self.gpu.tally.read_back(self.bytes);
        Ok(values)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.reusable || self.buffer.size() > KEEP_BYTES {
            return;
        }
        if let Ok(mut free) = self.gpu.staging_pool.free.lock()
            && free.len() < KEEP
        {
            self.gpu.tally.staging_kept(self.buffer.size());
            free.push(self.buffer.clone());
        }
    }
}
