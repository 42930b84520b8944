//! One file per command: its arguments (clap) and its body. What several
//! commands need — loading the config, writing the report, the async runtime,
//! opening an existing queue — is here.

pub mod check;
pub mod console;
pub mod demo;
pub mod dlq;
pub mod dry_run;
pub mod init;
pub mod jira;
pub mod queue;
pub mod reconcile;
pub mod schema;
pub mod serve;
pub mod sync;
pub mod validate;

use shared::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

pub fn load(path: &PathBuf) -> Result<Config, String> {
    Config::load(path).map_err(|e| match e {
        ConfigError::Invalid { .. } => e.to_string(),
        ConfigError::Io { .. } => e.to_string(),
    })
}

/// Writes to stdout; a closed pipe (`relay schema | head`) is not an error.
pub fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Opens an existing embedded queue (operator commands never create one).
pub fn open_queue(dir: &Path) -> Result<shared::queue::EmbeddedQueue, String> {
    let path = dir.join("data").join("queue.db");
    let path = if path.exists() {
        path
    } else {
        dir.join("queue.db")
    };
    if !path.exists() {
        return Err(format!(
            "no queue in {} (pass --data-dir, the folder `relay serve` uses)",
            dir.display()
        ));
    }
    shared::queue::EmbeddedQueue::open(&path, shared::queue::EmbeddedSettings::default())
        .map_err(|e| e.to_string())
}

/// A message body as JSON when it is JSON, else as a string (`dlq show`).
pub fn body_json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| serde_json::Value::String(body.to_owned()))
}

/// Pretty JSON and a newline on stdout.
pub fn emit_json(v: &serde_json::Value) -> Result<(), String> {
    emit(&(serde_json::to_string_pretty(v).map_err(|e| e.to_string())? + "\n"))
}

#[cfg(not(feature = "aws"))]
pub const NO_AWS: &str = "--sqs-url needs a relay built with AWS support: cargo run --release -p relay --features aws -- …";
