//! `relay queue stats`: the embedded queue's counts and the parked events
//! (`--data-dir`), or an SQS queue's (`--sqs-url`).

use super::{emit, open_queue, runtime};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: QueueCommand,
    #[arg(long, default_value = ".relay", global = true)]
    data_dir: PathBuf,
    /// The SQS queue URL (stack output EventsQueueUrl or DeadLetterQueueUrl).
    #[arg(long, global = true)]
    sqs_url: Option<String>,
}

#[derive(clap::Subcommand)]
enum QueueCommand {
    /// Counts: visible, in flight, delayed, dead, groups, oldest age.
    Stats,
}

pub fn run(a: Args) -> Result<(), String> {
    let QueueCommand::Stats = a.command;
    match a.sqs_url {
        Some(url) => sqs_stats(url),
        None => runtime()?.block_on(stats(&a.data_dir)),
    }
}

async fn stats(data_dir: &Path) -> Result<(), String> {
    let q = open_queue(data_dir)?;
    let s = q.stats().await.map_err(|e| e.to_string())?;
    // Events parked in the link store (waiting for their record, or in line
    // behind one whose replay must be retried).
    let links = shared::links::Links::new(
        std::sync::Arc::new(
            shared::links::sqlite::SqliteBackend::open(data_dir).map_err(|e| e.to_string())?,
        ),
        shared::links::LinkSettings::default(),
    );
    let parked = links
        .all_parked(100_000)
        .await
        .map_err(|e| e.to_string())?
        .len();
    emit(&format!(
        "visible {}  in_flight {}  delayed {}  dead {}  groups {}  oldest {}  parked {parked}\n",
        s.visible,
        s.in_flight,
        s.delayed,
        s.dead,
        s.groups,
        s.oldest_age
            .map_or_else(|| "-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
    ))
}

#[cfg(feature = "aws")]
fn sqs_stats(url: String) -> Result<(), String> {
    runtime()?.block_on(async { emit(&crate::sqs_ops::Sqs::new().await.stats(&url).await?) })
}

#[cfg(not(feature = "aws"))]
fn sqs_stats(_: String) -> Result<(), String> {
    Err(super::NO_AWS.into())
}
