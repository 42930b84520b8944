//! `relay console --aws`: the operator console for a deployed stack, run on
//! the operator's machine with their AWS credentials (the usual chain:
//! `AWS_PROFILE`, `AWS_REGION`, SSO; `AWS_ENDPOINT_URL` for an emulator).
//! On one machine the console is part of `relay serve` (`--console`).
//!
//! What it reads: the stack's events queue (counts) and dead-letter queue
//! (list, show, redrive) over SQS, found by the template's names
//! (`jira-relay-<stage>-events.fifo`, `…-events-dlq.fifo`) or given as URLs;
//! the feed and the conversation from the worker's log lines through
//! CloudWatch Logs Insights, with the record pairs the DynamoDB link store
//! holds (`--links-table`); the config with its dry-run box. Per-connection
//! health, the Lambdas' health and the sweeps are CloudWatch's there (the
//! template's metrics, alarms and dashboard).

use super::runtime;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Serve the console for a deployed stack (the only mode of this command).
    #[arg(long)]
    aws: bool,
    /// The config the stack runs (for the config page and the dry-run box).
    #[arg(long)]
    config: PathBuf,
    /// A local secrets file (chmod 600) with the console's admin credential.
    #[arg(long)]
    secrets: PathBuf,
    /// The secret with the console's `password` (and `username`, default `admin`).
    #[arg(long, default_value = "relay/console")]
    console_secret: String,
    /// The stack's `Stage` parameter: the queues are `jira-relay-<stage>-events.fifo`
    /// and `jira-relay-<stage>-events-dlq.fifo`.
    #[arg(long, required_unless_present_all = ["events_url", "dlq_url"])]
    stage: Option<String>,
    /// The events queue URL (stack output EventsQueueUrl), instead of by stage.
    #[arg(long)]
    events_url: Option<String>,
    /// The dead-letter queue URL (stack output DeadLetterQueueUrl), instead of by stage.
    #[arg(long)]
    dlq_url: Option<String>,
    /// The worker function's log group (default `/aws/lambda/jira-relay-<stage>-worker`).
    #[arg(long)]
    worker_log_group: Option<String>,
    /// The link store's DynamoDB table (stack output LinksTableName): the
    /// conversation view shows the record pairs it holds.
    #[arg(long)]
    links_table: Option<String>,
    /// Hours of logs the feed looks back without a time filter.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=720))]
    feed_hours: u64,
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

pub fn run(a: Args) -> Result<(), String> {
    if !a.aws {
        return Err("relay console serves a deployed stack (--aws); on one machine the console is part of relay serve (--console)".into());
    }
    crate::logs::init();
    runtime()?.block_on(serve(a))
}

#[cfg(feature = "aws")]
async fn serve(a: Args) -> Result<(), String> {
    use crate::console::{auth::Credential, Console};
    use std::sync::Arc;
    let config = Arc::new(super::load(&a.config)?);
    let config_text = std::fs::read_to_string(&a.config)
        .map_err(|e| format!("cannot read {}: {e}", a.config.display()))?;
    let store = crate::serve::open_secrets(Some(&a.secrets))?;
    let credential = Credential::load(&store, &a.console_secret)
        .await?
        .ok_or_else(|| {
            format!(
                "no admin credential: add `{}: {{ password: … }}` to {}",
                a.console_secret,
                a.secrets.display()
            )
        })?;
    let sqs = crate::sqs_ops::Sqs::new().await;
    let group = match (&a.worker_log_group, &a.stage) {
        (Some(g), _) => g.clone(),
        (None, Some(stage)) => format!("/aws/lambda/jira-relay-{stage}-worker"),
        (None, None) => {
            return Err(
                "pass --stage or --worker-log-group (the feed reads the worker's logs)".into(),
            )
        }
    };
    let sdk = shared::support::aws::defaults().load().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let links = a.links_table.as_ref().map(|t| {
        shared::links::Links::new(
            Arc::new(shared::links::dynamo::DynamoBackend::from_conf(
                &sdk,
                t.clone(),
            )),
            shared::links::LinkSettings::default(),
        )
    });
    let name = |suffix: &str| format!("jira-relay-{}-{suffix}", a.stage.as_deref().unwrap_or(""));
    let events = match a.events_url {
        Some(u) => u,
        None => sqs.url_of(&name("events.fifo")).await?,
    };
    let dlq = match a.dlq_url {
        Some(u) => u,
        None => sqs.url_of(&name("events-dlq.fifo")).await?,
    };
    let stage = a.stage.clone().unwrap_or_else(|| "aws".into());
    let console = Arc::new(Console {
        config,
        config_path: a.config.display().to_string(),
        config_text,
        queues: Arc::new(crate::console::aws::SqsQueues { sqs, events, dlq }),
        feed: Some(Arc::new(crate::console::logs::LogsFeed {
            client: logs,
            groups: vec![group],
            window: std::time::Duration::from_secs(a.feed_hours * 3600),
        })),
        no_feed: String::new(),
        links,
        registry: None,
        stage,
        // The reconciler's sweeps are CloudWatch's (its metrics and alarms).
        sweeps: Default::default(),
        refusals: None,
        credential,
        sessions: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "operator console for the stack on http://{addr}  (log in with {}'s credential; Ctrl-C to stop)",
        a.console_secret
    );
    axum::serve(listener, crate::console::router(console))
        .with_graceful_shutdown(crate::serve::signal())
        .await
        .map_err(|e| format!("the console stopped: {e}"))
}

#[cfg(not(feature = "aws"))]
async fn serve(_: Args) -> Result<(), String> {
    Err(super::NO_AWS.replace("--sqs-url", "relay console --aws"))
}
