//! What every lesson example shares: `--backend gpu|cpu`, `--json`, a readable log, and a
//! last stdout line of JSON (`example`, `backend`, `adapter`, `losses`, `seconds`, plus the
//! lesson's own results) that scripts can rely on.

use std::time::Instant;

use serde_json::{Value, json};
use wgpu_nn::Gpu;
use wgpu_nn::model::{Backend, Model, ModelConfig};

pub struct Lesson {
    name: &'static str,
    pub backend: Backend,
    gpu: Option<Gpu>,
    json: bool,
    start: Instant,
    losses: Vec<f32>,
}

impl Lesson {
    /// Reads the command line; the GPU by default, the CPU with a notice when there is none.
    pub fn from_args(name: &'static str) -> Result<Lesson, String> {
        use lexopt::prelude::*;
        let mut backend = None;
        let mut json = false;
        let mut parser = lexopt::Parser::from_env();
        while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
            match arg {
                Long("backend") => {
                    let value = parser.value().map_err(|e| e.to_string())?;
                    backend = Some(match value.to_str() {
                        Some("gpu") => Backend::Gpu,
                        Some("cpu") => Backend::Cpu,
                        _ => return Err(format!("--backend takes gpu or cpu, not {value:?}")),
                    });
                }
                Long("json") => json = true,
                Long("help") | Short('h') => {
                    println!("usage: cargo run --release --example {name} -- [--backend gpu|cpu] [--json]");
                    std::process::exit(0);
                }
                other => return Err(other.unexpected().to_string()),
            }
        }
        let gpu = match backend {
            Some(Backend::Cpu) => None,
            Some(Backend::Gpu) => Some(Gpu::new().map_err(|e| e.to_string())?),
            None => match Gpu::new() {
                Ok(gpu) => Some(gpu),
                Err(e) => {
                    eprintln!("notice: no GPU, running on the CPU instead ({e})");
                    None
                }
            },
        };
        let backend = if gpu.is_some() { Backend::Gpu } else { Backend::Cpu };
        Ok(Lesson { name, backend, gpu, json, start: Instant::now(), losses: Vec::new() })
    }

    pub fn adapter(&self) -> String {
        self.gpu.as_ref().map_or_else(|| "cpu".to_string(), Gpu::adapter_name)
    }

    pub fn build(&self, config: &ModelConfig) -> wgpu_nn::Result<Model> {
        config.build(self.backend, self.gpu.as_ref())
    }

    /// Prints a line of the lesson's log.
    pub fn say(&self, line: impl std::fmt::Display) {
        println!("{line}");
    }

    /// Prints and records a loss for the JSON report.
    pub fn loss(&mut self, label: impl std::fmt::Display, value: f32) {
        self.say(format!("{label}: {value}"));
        self.losses.push(value);
    }

    /// Prints the lesson's results and, with `--json`, the report as the last line.
    pub fn finish(self, results: Value) {
        let seconds = self.start.elapsed().as_secs_f64();
        let mut report = json!({
            "example": self.name,
            "backend": match self.backend { Backend::Gpu => "gpu", Backend::Cpu => "cpu" },
            "adapter": self.adapter(),
            "losses": self.losses,
            "seconds": seconds,
        });
        if let (Some(report), Some(results)) = (report.as_object_mut(), results.as_object()) {
            report.extend(results.clone());
        }
        println!("done in {seconds:.3} s on {}", self.adapter());
        if self.json {
            println!("{report}");
        }
    }
}

/// Runs a lesson's `main` body, printing an error instead of panicking.
pub fn run(name: &'static str, body: impl FnOnce(&mut Lesson) -> wgpu_nn::Result<Value>) {
    let mut lesson = match Lesson::from_args(name) {
        Ok(lesson) => lesson,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    };
    match body(&mut lesson) {
        Ok(results) => lesson.finish(results),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}
