//! `relay dlq`: dead letters of the embedded queue (`--data-dir`) or of an
//! SQS dead-letter queue (`--sqs-url`): list, show, redrive.

use super::{body_json, emit, emit_json, open_queue, runtime};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DlqCommand,
    #[arg(long, default_value = ".relay", global = true)]
    data_dir: PathBuf,
    /// The SQS dead-letter queue URL (stack output DeadLetterQueueUrl); AWS credentials from the usual chain.
    #[arg(long, global = true)]
    sqs_url: Option<String>,
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter with its reason and envelope.
    Show { id: String },
    /// Put dead letters back on the queue (after fixing the cause).
    Redrive {
        #[arg(long, conflicts_with = "id")]
        all: bool,
        id: Option<String>,
        /// With `--sqs-url`: the queue to move them to (stack output EventsQueueUrl).
        #[arg(long)]
        to: Option<String>,
    },
}

pub fn run(a: Args) -> Result<(), String> {
    match a.sqs_url {
        Some(url) => sqs(a.command, url),
        None => runtime()?.block_on(embedded(a.command, a.data_dir)),
    }
}

/// `--all` or one id: what a redrive moves (`None`: all).
fn redrive_which(all: bool, id: Option<&str>) -> Result<Option<&str>, String> {
    if !all && id.is_none() {
        return Err("name a dead letter id, or pass --all".into());
    }
    Ok(id)
}

fn redriven(n: usize) -> Result<(), String> {
    emit(&format!("{n} message(s) back on the queue\n"))
}

async fn embedded(command: DlqCommand, data_dir: PathBuf) -> Result<(), String> {
    let q = open_queue(&data_dir)?;
    match command {
        DlqCommand::List { limit } => {
            let list = q.dead_list(limit).await.map_err(|e| e.to_string())?;
            let mut out = String::new();
            for d in &list {
                out.push_str(&format!(
                    "{}  {}  group {}  receives {}  {}\n",
                    d.id, d.dead_at, d.group_id, d.receive_count, d.reason
                ));
            }
            out.push_str(&format!("{} dead letter(s)\n", list.len()));
            emit(&out)
        }
        DlqCommand::Show { id } => {
            let d = q
                .dead_get(&id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no dead letter {id}"))?;
            emit_json(&serde_json::json!({
                "id": d.id, "group_id": d.group_id, "dedup_id": d.dedup_id,
                "reason": d.reason, "receive_count": d.receive_count,
                "enqueued_at": d.enqueued_at.to_string(), "dead_at": d.dead_at.to_string(),
                "envelope": body_json(&d.body),
            }))
        }
        DlqCommand::Redrive { all, id, .. } => {
            let which = redrive_which(all, id.as_deref())?;
            redriven(q.redrive(which).await.map_err(|e| e.to_string())?)
        }
    }
}

#[cfg(feature = "aws")]
fn sqs(command: DlqCommand, url: String) -> Result<(), String> {
    runtime()?.block_on(async {
        let sqs = crate::sqs_ops::Sqs::new().await;
        match command {
            DlqCommand::List { limit } => {
                let list = sqs.list(&url, limit).await?;
                let mut out: String = list
                    .iter()
                    .map(|d| {
                        format!(
                            "{}  group {}  receives {}  {}\n",
                            d.id, d.group, d.receive_count, d.reason
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "{} dead letter(s) listed (a FIFO queue shows one per issue at a time)\n",
                    list.len()
                ));
                emit(&out)
            }
            DlqCommand::Show { id } => {
                let d = sqs.show(&url, &id).await?;
                emit_json(
                    &serde_json::json!({"id": d.id, "group_id": d.group, "reason": d.reason,
                    "receive_count": d.receive_count, "envelope": body_json(&d.body)}),
                )
            }
            DlqCommand::Redrive { all, id, to } => {
                let to = to.ok_or("pass --to <events queue URL> (stack output EventsQueueUrl)")?;
                let which = redrive_which(all, id.as_deref())?;
                redriven(sqs.redrive(&url, &to, which).await?)
            }
        }
    })
}

#[cfg(not(feature = "aws"))]
fn sqs(_: DlqCommand, _: String) -> Result<(), String> {
    Err(super::NO_AWS.into())
}
