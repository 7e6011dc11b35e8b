//! The one way data goes into an app's encoder: a copy from a host-written upload buffer
//! (`MAP_WRITE`), recorded in the encoder, so two batches recorded in one frame each land
//! before their own step (a queue write would land both before the submit). Like wgpu's
//! `StagingBelt`, buffers come back for reuse once the submit that used them is done; unlike
//! it, nothing here panics when a device is lost: a buffer that cannot be mapped is an
//! error, and one whose map failed is let go instead of reused.

use std::sync::{Arc, Mutex};

use super::Gpu;
use super::context::Locked;
use super::counters::Held;
use crate::{Error, Result};

/// Upload buffers kept for reuse per pool: a step uploads two (inputs and targets), and a
/// frame may record a few steps.
const KEEP: usize = 8;

/// A buffer, mapped for writing, that no one is using.
#[derive(Debug)]
struct Free {
    buffer: Locked<wgpu::Buffer>,
    _held: Held,
}

/// A model's upload buffers: those free (mapped) now, and those the GPU gives back when done.
#[derive(Debug, Default)]
pub(crate) struct Uploads {
    free: Vec<Free>,
    returned: Arc<Mutex<Vec<Free>>>,
}

impl Uploads {
    /// Records into `encoder` a copy of `bytes` into `target` from the host, staged in an
    /// upload buffer that comes back once `encoder`'s submit has run.
    pub(crate) fn write(
        &mut self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::Buffer,
        bytes: &[u8],
    ) -> Result<()> {
        let context = "uploading a batch into the app's encoder";
        // Copies move whole 4-byte words; batches are f32 and u32, never empty.
        let size = bytes.len() as u64;
        if let Ok(mut returned) = self.returned.lock() {
            self.free.append(&mut returned);
        }
        let reused = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, f)| f.buffer.size() >= size)
            .min_by_key(|(_, f)| f.buffer.size());
        let free = match reused.map(|(i, _)| i) {
            Some(i) => self.free.swap_remove(i),
            None => {
                let buffer = gpu.scoped(context, || {
                    gpu.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("upload"),
                        size: size.next_power_of_two().max(256),
                        usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: true,
                    })
                })?;
                let _held = Held::new(&gpu.tally, buffer.size());
                Free { buffer: Locked::new(buffer, &gpu.serial), _held }
            }
        };
        gpu.scoped(context, || -> Result<()> {
            let gpu_error =
                |e: wgpu::MapRangeError| Error::Gpu { context: context.into(), message: e.to_string() };
            free.buffer.slice(..size).get_mapped_range_mut().map_err(gpu_error)?.copy_from_slice(bytes);
            free.buffer.unmap();
            encoder.copy_buffer_to_buffer(&free.buffer, 0, target, 0, size);
            Ok(())
        })??;
        gpu.tally.uploaded(size);
        let (buffer, returned) = (free.buffer.clone(), self.returned.clone());
        encoder.map_buffer_on_submit(&buffer, wgpu::MapMode::Write, .., move |mapped| {
            // A failed map (a lost device) lets the buffer go rather than reuse it unmapped.
            if let (Ok(()), Ok(mut returned)) = (mapped, returned.lock())
                && returned.len() < KEEP
            {
                returned.push(free);
            }
        });
        Ok(())
    }
}
