//! The command line every example shares: `--backend gpu|cpu` and `--json`, flattened into
//! each example's own clap options, and the GPU they choose. Each example compiles this
//! module on its own and uses a part of it.
#![allow(dead_code)]

use wgpu_nn::Gpu;
use wgpu_nn::model::Backend;

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Place {
    /// On the GPU (an error when there is none).
    Gpu,
    /// On the CPU backend.
    Cpu,
}

/// The options every example takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Where to run [default: the GPU, or the CPU with a notice when there is none]
    #[arg(long, value_enum)]
    pub backend: Option<Place>,
    /// End with a line of JSON: the example's results, for scripts
    #[arg(long)]
    pub json: bool,
}

impl Common {
    /// The GPU to run on, or `None` for the CPU: what `--backend` asked for, or by default
    /// the GPU when there is one and the CPU (with a notice) when there is not.
    pub fn gpu(&self) -> Result<Option<Gpu>, String> {
        match self.backend {
            Some(Place::Cpu) => Ok(None),
            Some(Place::Gpu) => Gpu::new().map(Some).map_err(|e| e.to_string()),
            None => Ok(Gpu::new()
                .inspect_err(|e| eprintln!("notice: no GPU, running on the CPU instead ({e})"))
                .ok()),
        }
    }
}

/// The backend a choice of GPU means.
pub fn backend(gpu: Option<&Gpu>) -> Backend {
    if gpu.is_some() { Backend::Gpu } else { Backend::Cpu }
}
