//! The blocking forms of the calls that wait for the GPU, as thin wrappers over their `async`
//! forms: one read-back path on every target.
//!
//! On native targets a blocking call runs its future to the end on the calling thread
//! (`pollster`); the future itself waits for the GPU inside wgpu's `poll`, which is how wgpu
//! delivers map callbacks there. In the browser nothing may block: the page's event loop is
//! what delivers a map, and a thread that waited for it would wait forever. There a blocking
//! call is [`Error::WouldBlock`] before it starts anything, unless its answer needs no GPU
//! (the CPU backend's), which it then returns at once.

use std::future::Future;
use std::pin::Pin;

use crate::{Error, Result};

/// A backend's answer that may wait for the GPU. Boxed because the model's backends are
/// trait objects; `Send` on native targets, so the async calls (all but `train_epoch_async`,
/// which borrows the caller's progress callback) can be spawned on any multi-threaded
/// executor.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;
/// In the browser, where wgpu's futures are JavaScript promises, only `'a`.
#[cfg(target_arch = "wasm32")]
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + 'a>>;

/// An answer already there (the CPU backend's), as a [`Pending`].
pub(crate) fn ready<'a, T: Send + 'a>(value: Result<T>) -> Pending<'a, T> {
    Box::pin(std::future::ready(value))
}

/// Runs `future` to its end on this thread: `op`'s blocking form.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn wait<T>(_op: &'static str, future: impl Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(future)
}

/// In the browser: `future`'s answer if it has one without waiting (a CPU model's), else
/// [`Error::WouldBlock`]. Callers whose future would start GPU work before it waits refuse
/// first with [`refuse_on_web`], so nothing is left half done.
#[cfg(target_arch = "wasm32")]
pub(crate) fn wait<T>(op: &'static str, future: impl Future<Output = Result<T>>) -> Result<T> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => Err(Error::WouldBlock { op }),
    }
}

/// [`Error::WouldBlock`] in the browser, for a blocking call that would have to wait for the
/// GPU; nothing on native targets.
pub(crate) fn refuse_on_web(op: &'static str) -> Result<()> {
    if cfg!(target_arch = "wasm32") { Err(Error::WouldBlock { op }) } else { Ok(()) }
}
