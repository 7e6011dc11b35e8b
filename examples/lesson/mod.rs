//! What every lesson example shares: `--backend gpu|cpu`, `--json`, a readable log, and a
//! last stdout line of JSON (`example`, `backend`, `adapter`, `losses`, `seconds`, plus the
//! lesson's own results) that scripts can rely on.

use std::time::Instant;

use serde_json::{Value, json};
use wgpu_nn::Gpu;
use wgpu_nn::model::{Backend, Model, ModelConfig};

#[path = "../cli/mod.rs"]
mod cli;

/// A lesson's command line: only what every example takes.
#[derive(clap::Parser)]
struct Options {
    #[command(flatten)]
    common: cli::Common,
}

pub struct Lesson {
    name: &'static str,
    pub backend: Backend,
    gpu: Option<Gpu>,
    json: bool,
    start: Instant,
    losses: Vec<f32>,
}

impl Lesson {
    /// Reads the command line (`--backend`, `--json`, `--help`; anything else is an error
    /// that clap explains); the GPU by default, the CPU with a notice when there is none.
    pub fn from_args(name: &'static str) -> Result<Lesson, String> {
        use clap::{CommandFactory, FromArgMatches};
        let command =
            Options::command().name(name).about(format!("The {name} lesson, on the GPU or the CPU."));
        let options = Options::from_arg_matches(&command.get_matches()).map_err(|e| e.to_string())?;
        let gpu = options.common.gpu()?;
        let backend = cli::backend(gpu.as_ref());
        Ok(Lesson {
            name,
            backend,
            gpu,
            json: options.common.json,
            start: Instant::now(),
            losses: Vec::new(),
        })
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
            "backend": self.backend.name(),
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
