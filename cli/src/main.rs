//! `relay`: the operator's command.
//!
//! `validate` loads a config exactly as the functions do and prints every
//! problem with file:line; `schema` prints the config's JSON Schema (the file
//! shipped in `schema/`); `dry-run` plans one webhook body through the
//! whitelist and rules and prints the plan — the decision and the exact
//! requests — without any network. `serve` runs the whole relay on this
//! machine (intake, embedded durable queue, worker); `demo` shows it working
//! against sandboxes; `dlq` and `queue` inspect the embedded queue.
#![forbid(unsafe_code)]

mod demo;
mod jira_admin;
mod oauth_login;
mod reconcile;
mod serve;
#[cfg(feature = "aws")]
mod sqs_ops;

use clap::{Parser, Subcommand};
use shared::config::{Config, ConfigError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "relay", version, about = "jira-relay operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file; exit 0 if valid, else print every problem.
    Validate { config: PathBuf },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Plan one webhook body (a JSON file) and print the plan as JSON.
    DryRun {
        #[arg(long)]
        config: PathBuf,
        /// Endpoint the event arrived on; defaults to the only endpoint, or the
        /// first one of the payload's kind.
        #[arg(long)]
        endpoint: Option<String>,
        event: PathBuf,
    },
    /// Run the relay on this machine: HTTP intake, embedded durable queue, worker.
    Serve {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the queue database lives.
        #[arg(long, default_value = ".relay")]
        data_dir: PathBuf,
        /// Local secrets file (chmod 600); `RELAY_SECRET_<ID>` variables override it.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Worker loops (each handles up to 10 issues at a time).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Receives before a message goes to the dead-letter table.
        #[arg(long, default_value_t = 10)]
        max_receives: u32,
        /// Seconds a received message stays invisible; after a crash, unfinished
        /// messages come back after this long.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=43200))]
        visibility_timeout_secs: u64,
        /// Seconds one call to ServiceNow / Jira / an HTTP target may take before it
        /// counts as failed (and is retried).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
        call_timeout_secs: u64,
        /// Milliseconds a write may take to become visible to a lookup (Jira's
        /// search index lags): a create whose answer was lost is not sent again
        /// before this has passed and a lookup still finds nothing. Default:
        /// 30000 for Jira connections, 10000 for the others.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=600_000))]
        settle_ms: Option<u64>,
        /// Hours a handled change is remembered, so a late retry of it (Jira
        /// retries for about 75 minutes) is recognised as a duplicate.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=720))]
        remember_hours: u64,
    },
    /// One reconciliation sweep: find issues whose webhooks never arrived and
    /// queue them for `relay serve`'s workers (or only print them: --dry-run).
    Reconcile {
        #[arg(long)]
        config: PathBuf,
        /// Only this endpoint (default: every endpoint with `reconcile:`).
        #[arg(long)]
        endpoint: Option<String>,
        /// Scan issues updated since then: an RFC 3339 time or a span back from now
        /// (`90m`, `2h`, `7d`); default: the last finished sweep, minus the overlap.
        #[arg(long)]
        since: Option<String>,
        /// Print the drift; enqueue nothing, move no watermark.
        #[arg(long)]
        dry_run: bool,
        /// The queue and watermark database (the same as `relay serve`'s).
        #[arg(long, default_value = ".relay")]
        data_dir: PathBuf,
        /// Local secrets file (chmod 600); `RELAY_SECRET_<ID>` variables override it.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the relay working: sandbox ServiceNow + Jira, example webhooks, the result.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Keep the demo's files here instead of a temporary folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Exit after printing the result instead of staying up.
        #[arg(long)]
        no_wait: bool,
    },
    /// Jira set-up: the admin webhook that feeds the relay.
    Jira {
        #[command(subcommand)]
        command: JiraCommand,
    },
    /// Dead letters: of the embedded queue (`--data-dir`) or an SQS DLQ (`--sqs-url`).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        #[arg(long, default_value = ".relay", global = true)]
        data_dir: PathBuf,
        /// The SQS dead-letter queue URL (stack output DeadLetterQueueUrl); AWS credentials from the usual chain.
        #[arg(long, global = true)]
        sqs_url: Option<String>,
    },
    /// The queue: embedded (`--data-dir`) or SQS (`--sqs-url`).
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        #[arg(long, default_value = ".relay", global = true)]
        data_dir: PathBuf,
        /// The SQS queue URL (stack output EventsQueueUrl or DeadLetterQueueUrl).
        #[arg(long, global = true)]
        sqs_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum JiraCommand {
    /// Register, list or delete the Jira admin webhook (needs Jira admin rights).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
        /// The config: its endpoints give the webhook URL, its connection the Jira site and credentials.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Local secrets file (chmod 600); `RELAY_SECRET_<ID>` variables override it.
        #[arg(long, global = true)]
        secrets: Option<PathBuf>,
        /// The jira connection (site + credentials) to manage webhooks with.
        #[arg(long, default_value = "jira", global = true)]
        connection: String,
    },
    /// OAuth 2.0 (3LO): connect an `oauth_3lo` connection to a Jira site.
    Oauth {
        #[command(subcommand)]
        command: OauthCommand,
    },
}

#[derive(Subcommand)]
enum OauthCommand {
    /// Consent in the browser, then store the refresh token in the connection's secret.
    Login {
        /// The jira connection with auth kind `oauth_3lo`.
        #[arg(long, default_value = "jira")]
        connection: String,
        /// The relay's config file.
        #[arg(long)]
        config: PathBuf,
        /// Local secrets file (chmod 600) to read the client from and write the refresh token to.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Use AWS Secrets Manager (credentials from the usual chain) instead of a local file.
        #[arg(long, conflicts_with = "secrets")]
        secrets_manager: bool,
        /// Port of the redirect URI http://127.0.0.1:PORT/callback (registered in the app).
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// Only print the authorize URL; do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Register the relay's webhook: all issue, comment and attachment events.
    Register {
        /// Where Jira reaches the relay, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod
        #[arg(long)]
        public_url: String,
        /// The relay endpoint the webhook posts to.
        #[arg(long, default_value = "jira")]
        endpoint: String,
        /// Only issues matching this JQL (e.g. "project = SUP").
        #[arg(long)]
        jql: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List the site's admin webhooks (token values masked).
    List,
    /// Delete an admin webhook by id.
    Delete { id: String },
}

#[derive(Subcommand)]
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

#[derive(Subcommand)]
enum QueueCommand {
    /// Counts: visible, in flight, delayed, dead, groups, oldest age.
    Stats,
}

fn load(path: &PathBuf) -> Result<Config, String> {
    Config::load(path).map_err(|e| match e {
        ConfigError::Invalid { .. } => e.to_string(),
        ConfigError::Io { .. } => e.to_string(),
    })
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            secrets,
            workers,
            max_receives,
            visibility_timeout_secs,
            call_timeout_secs,
            settle_ms,
            remember_hours,
        } => {
            let mut opts = serve::ServeOptions::new(config, listen, data_dir);
            opts.settle = settle_ms.map(std::time::Duration::from_millis);
            opts.links.seen_for = std::time::Duration::from_secs(remember_hours * 3600);
            opts.call_timeout = std::time::Duration::from_secs(call_timeout_secs);
            opts.secrets = secrets;
            opts.workers = workers;
            opts.max_receives = max_receives;
            opts.visibility_timeout = std::time::Duration::from_secs(visibility_timeout_secs);
            init_logs();
            runtime()?.block_on(async {
                let running = serve::start(&opts).await?;
                eprint!("{}", running.banner());
                serve::signal().await;
                tracing::info!("shutting down: intake closed, draining in-flight messages");
                running.shutdown(serve::DRAIN).await;
                tracing::info!("stopped");
                Ok(())
            })
        }
        Command::Reconcile {
            config,
            endpoint,
            since,
            dry_run,
            data_dir,
            secrets,
            json,
        } => {
            let c = std::sync::Arc::new(load(&config)?);
            if c.reconcile.is_empty() {
                return Err(format!(
                    "{}: no endpoint has a `reconcile:` section (see docs/reconcile.md)",
                    config.display()
                ));
            }
            if let Some(e) = &endpoint {
                if !c.reconcile.contains_key(e) {
                    return Err(format!("endpoint `{e}` has no `reconcile:` section"));
                }
            }
            let since = since.as_deref().map(reconcile::parse_since).transpose()?;
            init_logs_stderr();
            runtime()?.block_on(async {
                let secrets: std::sync::Arc<dyn shared::secrets::SecretStore> =
                    std::sync::Arc::new(shared::secrets::CachedSecretStore::new(
                        serve::open_secrets(secrets.as_deref())?,
                    ));
                std::fs::create_dir_all(&data_dir)
                    .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
                let queue = shared::queue::EmbeddedQueue::open(
                    &data_dir.join("queue.db"),
                    shared::queue::EmbeddedSettings::default(),
                )
                .map_err(|e| format!("cannot open the queue in {}: {e}", data_dir.display()))?;
                let r = reconcile::reconciler(
                    c,
                    secrets,
                    std::sync::Arc::new(queue),
                    &data_dir,
                    std::time::Duration::from_secs(10),
                )?;
                let results = reconcile::run_once(&r, endpoint, since, dry_run).await;
                if json {
                    let v: Vec<serde_json::Value> = results
                        .iter()
                        .map(|r| match &r.outcome {
                            Ok(rep) => serde_json::json!({"endpoint": r.endpoint, "report": rep}),
                            Err(e) => {
                                serde_json::json!({"endpoint": r.endpoint, "error": e.to_string()})
                            }
                        })
                        .collect();
                    emit(&format!("{}\n", serde_json::Value::Array(v)))?;
                } else {
                    emit(&reconcile::render(&results))?;
                }
                let failed = results.iter().any(|r| match &r.outcome {
                    Ok(rep) => !rep.complete,
                    Err(_) => true,
                });
                if failed {
                    Err("the sweep did not finish (see above); run it again to resume".into())
                } else {
                    Ok(())
                }
            })
        }
        Command::Demo {
            listen,
            data_dir,
            no_wait,
        } => {
            init_logs();
            let report = runtime()?.block_on(demo::run(listen, data_dir, !no_wait))?;
            if report.incident.is_none() {
                return Err("the demo did not produce its incident".into());
            }
            Ok(())
        }
        Command::Jira {
            command:
                JiraCommand::Webhook {
                    command,
                    config,
                    secrets,
                    connection,
                },
        } => runtime()?.block_on(async {
            let config = config.ok_or("pass --config (the relay's config file)")?;
            let c = load(&config)?;
            let store: std::sync::Arc<dyn shared::secrets::SecretStore> =
                std::sync::Arc::new(serve::open_secrets(secrets.as_deref())?);
            let admin = jira_admin::JiraAdmin::new(c, store, &connection)?;
            match command {
                WebhookCommand::Register {
                    public_url,
                    endpoint,
                    jql,
                    name,
                } => {
                    let w = admin
                        .register(&endpoint, &public_url, jql.as_deref(), name.as_deref())
                        .await?;
                    emit(&format!("registered {}\n", jira_admin::line(&w)))
                }
                WebhookCommand::List => {
                    let list = admin.list().await?;
                    let mut out: String = list.iter().map(|w| jira_admin::line(w) + "\n").collect();
                    out.push_str(&format!("{} webhook(s)\n", list.len()));
                    emit(&out)
                }
                WebhookCommand::Delete { id } => {
                    admin.delete(&id).await?;
                    emit(&format!("deleted webhook {id}\n"))
                }
            }
        }),
        Command::Jira {
            command:
                JiraCommand::Oauth {
                    command:
                        OauthCommand::Login {
                            connection,
                            config,
                            secrets,
                            secrets_manager,
                            port,
                            no_browser,
                        },
                },
        } => runtime()?.block_on(async {
            let c = load(&config)?;
            let store = oauth_login::open_store(secrets.as_deref(), secrets_manager).await?;
            let opts = oauth_login::Login {
                connection,
                port,
                open_browser: !no_browser,
            };
            let report = oauth_login::run(&c, store, &opts).await?;
            emit(&report)
        }),
        Command::Dlq {
            command,
            sqs_url: Some(url),
            ..
        } => sqs_dlq(command, url),
        Command::Queue {
            command: QueueCommand::Stats,
            sqs_url: Some(url),
            ..
        } => sqs_stats(url),
        Command::Dlq {
            command, data_dir, ..
        } => runtime()?.block_on(async {
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
                    let body: serde_json::Value = serde_json::from_str(&d.body)
                        .unwrap_or(serde_json::Value::String(d.body.clone()));
                    let v = serde_json::json!({
                        "id": d.id, "group_id": d.group_id, "dedup_id": d.dedup_id,
                        "reason": d.reason, "receive_count": d.receive_count,
                        "enqueued_at": d.enqueued_at.to_string(), "dead_at": d.dead_at.to_string(),
                        "envelope": body,
                    });
                    emit(&(serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n"))
                }
                DlqCommand::Redrive { all, id, .. } => {
                    if !all && id.is_none() {
                        return Err("name a dead letter id, or pass --all".into());
                    }
                    let n = q.redrive(id.as_deref()).await.map_err(|e| e.to_string())?;
                    emit(&format!("{n} message(s) back on the queue\n"))
                }
            }
        }),
        Command::Queue {
            command, data_dir, ..
        } => runtime()?.block_on(async {
            let q = open_queue(&data_dir)?;
            match command {
                QueueCommand::Stats => {
                    let s = q.stats().await.map_err(|e| e.to_string())?;
                    // Events parked in the link store (waiting for their record,
                    // or in line behind one whose replay must be retried).
                    let links = shared::links::Links::new(
                        std::sync::Arc::new(
                            shared::links::sqlite::SqliteBackend::open(&data_dir)
                                .map_err(|e| e.to_string())?,
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
            }
        }),
        Command::Validate { config } => {
            let c = load(&config)?;
            emit(&format!(
                "{}: valid ({} endpoints, {} connections, {} rules)\n",
                config.display(),
                c.endpoints.len(),
                c.connections.len(),
                c.rules.len()
            ))
        }
        Command::Schema => emit(&shared::config::schema::config_schema_text()),
        Command::DryRun {
            config,
            endpoint,
            event,
        } => {
            let c = load(&config)?;
            let body = std::fs::read(&event)
                .map_err(|e| format!("cannot read {}: {e}", event.display()))?;
            let payload: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("{}: not JSON: {e}", event.display()))?;
            let endpoint = match endpoint {
                Some(e) => e,
                None => pick_endpoint(&c, &payload)?,
            };
            let plan = shared::rules::plan(&c, &endpoint, &payload).map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?;
            emit(&(json + "\n"))
        }
    }
}

/// Writes to stdout; a closed pipe (`relay schema | head`) is not an error.
fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

/// The only endpoint, or the only one of the payload's apparent kind
/// (`webhookEvent` means Jira).
fn pick_endpoint(c: &Config, payload: &serde_json::Value) -> Result<String, String> {
    if let [only] = c.endpoints.as_slice() {
        return Ok(only.name.clone());
    }
    let kind = if payload.get("webhookEvent").is_some() {
        shared::config::SourceKind::Jira
    } else {
        shared::config::SourceKind::Servicenow
    };
    let of_kind: Vec<&str> = c
        .endpoints
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.name.as_str())
        .collect();
    match of_kind.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(format!(
            "several endpoints could take this event; pass --endpoint (one of: {})",
            c.endpoints
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(feature = "aws")]
fn sqs_dlq(command: DlqCommand, url: String) -> Result<(), String> {
    runtime()?.block_on(async {
        let sqs = sqs_ops::Sqs::new().await;
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
                let body: serde_json::Value = serde_json::from_str(&d.body)
                    .unwrap_or(serde_json::Value::String(d.body.clone()));
                let v = serde_json::json!({"id": d.id, "group_id": d.group, "reason": d.reason,
                    "receive_count": d.receive_count, "envelope": body});
                emit(&(serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n"))
            }
            DlqCommand::Redrive { all, id, to } => {
                let to = to.ok_or("pass --to <events queue URL> (stack output EventsQueueUrl)")?;
                if !all && id.is_none() {
                    return Err("name a dead letter id, or pass --all".into());
                }
                let n = sqs.redrive(&url, &to, id.as_deref()).await?;
                emit(&format!("{n} message(s) back on the queue\n"))
            }
        }
    })
}

#[cfg(feature = "aws")]
fn sqs_stats(url: String) -> Result<(), String> {
    runtime()?.block_on(async { emit(&sqs_ops::Sqs::new().await.stats(&url).await?) })
}

#[cfg(not(feature = "aws"))]
fn sqs_dlq(_: DlqCommand, _: String) -> Result<(), String> {
    Err(NO_AWS.into())
}

#[cfg(not(feature = "aws"))]
fn sqs_stats(_: String) -> Result<(), String> {
    Err(NO_AWS.into())
}

#[cfg(not(feature = "aws"))]
const NO_AWS: &str = "--sqs-url needs a relay built with AWS support: cargo run --release -p relay --features aws -- …";

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Opens an existing embedded queue (operator commands never create one).
fn open_queue(dir: &std::path::Path) -> Result<shared::queue::EmbeddedQueue, String> {
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

/// Human-readable lines on an interactive terminal, JSON lines otherwise
/// (journald, files, CloudWatch-like collectors). `RUST_LOG` sets the level.
/// Logs on stderr whatever stderr is, so stdout carries only the report
/// (`relay reconcile --json | jq`).
fn init_logs_stderr() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        init_logs();
    } else {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init();
    }
}

fn init_logs() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        // One line per delivery (the worker's outcome line) plus warnings.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,relay::delivery=info"));
        let _ = tracing_subscriber::fmt()
            .compact()
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init();
    } else {
        shared::support::telemetry::init_json();
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
