//! `relay serve`: the whole relay in one process on one machine.
//!
//! The same ingress router as the Lambda (HTTP intake → authenticate →
//! envelope) writes into the embedded durable queue (SQLite, SQS FIFO
//! semantics; see `shared::queue::EmbeddedQueue`), and the poll loops of
//! `shared::queue::poller` run the same worker core as the Lambda on it:
//! per-group order, groups in parallel, retries with growing delays, dead
//! letters with their reason. This file composes them.
//!
//! Shutdown (SIGINT / SIGTERM): intake answers 503 with `Retry-After` at
//! once (Jira retries), the worker loops take no new batch, in-flight batches
//! get up to [`DRAIN`] to finish, anything still in flight after that is
//! released back to the queue (and would come back after the visibility
//! timeout even if the process died), then the process exits 0.

use crate::console::auth::Credential;
use axum::response::IntoResponse;
use shared::config::{Config, SourceKind};
use shared::intake::router::{app, IngressState};
use shared::journal::sqlite::{JournalSettings, SqliteJournal};
use shared::links::{sqlite::SqliteBackend, LinkSettings, Links};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings};
use shared::queue::poller::{BatchHandler, Poller};
use shared::queue::{EmbeddedQueue, EmbeddedSettings, InMessage, Inbox};
use shared::secrets::{CachedSecretStore, LocalSecretStore, SecretStore};
use shared::support::clock::SystemClock;
use shared::support::metrics::Sink;
use shared::support::prometheus::Registry;
use shared::worker::{BatchSettings, Worker};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long in-flight batches get to finish on shutdown.
pub const DRAIN: Duration = Duration::from_secs(20);

/// How long the link store's writes pause before its log is checkpointed
/// (shorter than the 100 ms between webhooks of a quiet stream).
const LINK_CHECKPOINT_QUIET: Duration = Duration::from_millis(20);
/// ... once this many writes (a few pages each) are in its log: about a
/// tenth of SQLite's own mark, some 15 webhooks' worth.
const LINK_CHECKPOINT_WRITES: u64 = 64;

/// What `relay serve` is given.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub config: PathBuf,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The local secrets file (`chmod 600`); `None`: `RELAY_SECRET_*` only.
    pub secrets: Option<PathBuf>,
    /// Worker loops (each handles a batch of up to 10 groups at a time).
    pub workers: usize,
    /// Receives before a message is dead-lettered.
    pub max_receives: u32,
    /// How long a received message stays invisible to other loops.
    pub visibility_timeout: Duration,
    /// The longest a single call to ServiceNow / Jira / HTTP may take.
    pub call_timeout: Duration,
    /// [`shared::outbound::Connector::settle`] for every connection (`None`: by kind).
    pub settle: Option<Duration>,
    /// How long the link store (`<data-dir>/links.sqlite`) keeps what.
    pub links: LinkSettings,
    /// The delivery journal's retention and size bound (`<data-dir>/journal.sqlite`).
    pub journal: JournalSettings,
    /// Where the operator console listens (`None`: off).
    pub console: Option<SocketAddr>,
    /// The secret holding the console's admin credential (`password`, `username`).
    pub console_secret: String,
    /// The webhook listener's timeouts and connection cap.
    pub listener: crate::listener::Limits,
    /// Its rate limits and trusted proxies (the endpoints are filled in from
    /// the config).
    pub guard: crate::listener::guard::GuardSettings,
    /// HTTPS on the webhook listener; `None`: plain HTTP.
    pub tls: Option<crate::listener::tls::TlsOptions>,
    /// With TLS: a plain-HTTP request gets a 308 to `https://` (else a 400).
    pub redirect_http: bool,
}

impl ServeOptions {
    pub fn new(config: PathBuf, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            config,
            listen,
            data_dir,
            secrets: None,
            workers: 8,
            max_receives: 10,
            visibility_timeout: Duration::from_secs(60),
            call_timeout: ConnectorSettings::default().call_timeout,
            settle: None,
            links: LinkSettings::default(),
            journal: JournalSettings::default(),
            console: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            console_secret: "relay/console".to_owned(),
            listener: crate::listener::Limits::default(),
            guard: Default::default(),
            tls: None,
            redirect_http: false,
        }
    }
}

/// A running relay.
pub struct Running {
    pub addr: SocketAddr,
    /// `https` when the webhook listener speaks TLS, else `http`.
    pub scheme: &'static str,
    pub queue: EmbeddedQueue,
    pub config: Arc<Config>,
    /// The console's address, or why it is off.
    pub console: Result<SocketAddr, String>,
    console_server: Option<(tokio::task::JoinHandle<()>, Arc<Notify>)>,
    /// The reconciliation loop, when the config has `reconcile:` sections.
    sweeper: Option<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    draining: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    poller: Poller<EmbeddedQueue>,
    server: tokio::task::JoinHandle<()>,
    server_stop: Arc<Notify>,
}

/// What `/health` checks: the queue takes writes, every worker loop runs,
/// the relay is not shutting down.
pub struct Health {
    queue: EmbeddedQueue,
    workers: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// (alive, started) worker loops.
    pub fn workers(&self) -> (usize, usize) {
        let w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        (w.iter().filter(|h| !h.is_finished()).count(), w.len())
    }

    pub async fn check(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting_down: the relay is stopping".into());
        }
        let (alive, all) = self.workers();
        if alive < all {
            return Err(format!(
                "workers_stopped: {} of {all} worker loops have stopped",
                all - alive
            ));
        }
        self.queue
            .probe_writable(Duration::from_millis(500))
            .await
            .map_err(|e| format!("queue_unwritable: {e}"))
    }
}

/// `/health`'s answer: 200 `{"status":"ok"}` or 503 with the reason.
pub fn health_answer(r: Result<(), String>) -> axum::response::Response {
    match r {
        Ok(()) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(reason) => {
            tracing::warn!(status = 503, reason = %reason, "health check failed");
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "reason": reason})),
            )
                .into_response()
        }
    }
}

/// The webhook port's `GET /health` answers the truth too (the Lambda's
/// router answers 200 when it runs; here there is a queue and loops to ask).
async fn true_health(
    axum::extract::State(health): axum::extract::State<Arc<Health>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path() == "/health" && req.method() == http::Method::GET {
        return health_answer(health.check().await);
    }
    next.run(req).await
}

static REGISTRY: std::sync::OnceLock<Arc<Registry>> = std::sync::OnceLock::new();

/// The process's Prometheus registry, installed as the metrics sink once.
fn registry(stage: &str) -> Arc<Registry> {
    REGISTRY
        .get_or_init(|| {
            let r = Arc::new(Registry::new());
            shared::support::metrics::install("JiraRelay", stage, Sink::Recorder(r.clone()));
            r
        })
        .clone()
}

/// The worker as the poll loops see it.
struct WorkerHandler(Arc<Worker>);

#[async_trait::async_trait]
impl BatchHandler for WorkerHandler {
    async fn handle(&self, inbox: &dyn Inbox, msgs: &[InMessage], within: Duration) -> Vec<String> {
        let budget = Budget::from_now(within);
        self.0.run_batch(inbox, msgs, &budget).await.failed
    }

    /// The park's upkeep (replays, expiry).
    async fn idle(&self, queue: &dyn Inbox) {
        self.0
            .maybe_replay_parked(queue, &Budget::from_now(Duration::from_secs(20)))
            .await;
    }
}

/// Opens the secrets: the file (refused unless `chmod 600`) overlaid by
/// `RELAY_SECRET_*`, or the environment alone.
pub fn open_secrets(file: Option<&Path>) -> Result<LocalSecretStore, String> {
    match file {
        Some(f) => LocalSecretStore::open(f).map_err(|e| e.to_string()),
        None => Ok(LocalSecretStore::from_env()),
    }
}

/// [`open_secrets`] behind the cache the long-running commands use. A
/// refused credential re-reads the file at most once a second (reading a
/// local file costs nothing, and a password rotated a moment after the last
/// read must not keep every event failing for the store's default 5 s).
pub fn open_cached_secrets(
    file: Option<&Path>,
) -> Result<CachedSecretStore<LocalSecretStore>, String> {
    Ok(CachedSecretStore::new(open_secrets(file)?).min_refetch(Duration::from_secs(1)))
}

/// Opens (creating the folder and the file if needed) the queue of the data
/// directory: `<data-dir>/queue.db`, shared by `relay serve` and `relay reconcile`.
pub fn open_data_queue(
    data_dir: &Path,
    settings: EmbeddedSettings,
) -> Result<EmbeddedQueue, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    EmbeddedQueue::open(&data_dir.join("queue.db"), settings)
        .map_err(|e| format!("cannot open the queue in {}: {e}", data_dir.display()))
}

/// Starts intake and workers; returns once the listener is bound.
pub async fn start(opts: &ServeOptions) -> Result<Running, String> {
    let config = Arc::new(Config::load(&opts.config).map_err(|e| e.to_string())?);
    let secrets: Arc<dyn SecretStore> = Arc::new(open_cached_secrets(opts.secrets.as_deref())?);
    // Every secret the config names must resolve now, not at the first webhook.
    check_secrets(&config, &*secrets).await?;
    let queue = open_data_queue(
        &opts.data_dir,
        EmbeddedSettings {
            visibility_timeout: opts.visibility_timeout,
            max_receive_count: opts.max_receives,
            ..EmbeddedSettings::default()
        },
    )?;
    let stage = std::env::var("RELAY_STAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    let registry = registry(&stage);
    let poller = Poller::new(queue.clone());
    let draining = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Health {
        queue: queue.clone(),
        workers: std::sync::Mutex::new(Vec::new()),
        draining: draining.clone(),
    });
    let router = app(IngressState {
        config: config.clone(),
        secrets: secrets.clone(),
        queue: Arc::new(poller.sender()),
        clock: Arc::new(SystemClock),
    })
    .layer(axum::middleware::from_fn_with_state(
        draining.clone(),
        refuse_when_draining,
    ))
    .layer(axum::middleware::from_fn_with_state(
        health.clone(),
        true_health,
    ));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server_stop = Arc::new(Notify::new());
    let stopped = server_stop.clone();
    let (tls, cert_task) = match &opts.tls {
        Some(t) => {
            let (tls, task) = t.start().await?;
            (Some(tls), Some(task))
        }
        None => (None, None),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut guard = opts.guard.clone();
    guard.endpoints = config.endpoints.iter().map(|e| e.name.clone()).collect();
    let settings = crate::listener::Settings {
        limits: opts.listener.clone(),
        guard,
        tls,
        redirect_http: opts.redirect_http,
    };
    let refusals = crate::listener::Refusals::default();
    let board = refusals.clone();

    let connectors = Connectors::from_config(
        &config,
        http_client(),
        secrets.clone(),
        ConnectorSettings {
            call_timeout: opts.call_timeout,
            settle: opts.settle,
            ..ConnectorSettings::default()
        },
    );
    let link_store = Arc::new(SqliteBackend::open(&opts.data_dir).map_err(|e| e.to_string())?);
    // Its log is checkpointed in the pauses between writes, not by the write
    // that crosses SQLite's mark (a worker's, before its call).
    link_store
        .spawn_quiet_checkpoints(LINK_CHECKPOINT_QUIET, LINK_CHECKPOINT_WRITES)
        .map_err(|e| e.to_string())?;
    let links = Links::new(link_store, opts.links.clone());
    // The journal is a record, not the source of truth: without it the
    // relay runs on (the console says so).
    let journal = match SqliteJournal::open(&opts.data_dir, opts.journal.clone()) {
        Ok(j) => Some(Arc::new(j)),
        Err(e) => {
            tracing::error!(error = %e, "the delivery journal cannot be opened; running without it");
            None
        }
    };
    let worker = Worker::new(
        config.clone(),
        connectors,
        BatchSettings {
            // On the last receive a retryable failure is dead-lettered with its reason.
            max_receive_count: Some(opts.max_receives),
            ..BatchSettings::default()
        },
    )
    .with_links(links.clone());
    let worker = Arc::new(match &journal {
        Some(j) => worker.with_journal(j.clone()),
        None => worker,
    });
    let (stop, _) = watch::channel(false);
    let sweeps = crate::reconcile::SweepBoard::default();
    let sweeper = if config.reconcile.is_empty() && config.reconcile_users.is_empty() {
        None
    } else {
        let reconciler = crate::reconcile::reconciler(
            config.clone(),
            secrets.clone(),
            Arc::new(poller.sender()),
            &opts.data_dir,
            opts.call_timeout,
        )?;
        // One owner per data directory: a restarted relay takes its own
        // unexpired lease back instead of waiting it out.
        let owner = format!("relay serve {}", opts.data_dir.display());
        Some(tokio::spawn(crate::reconcile::serve_loop(
            Arc::new(reconciler),
            config.clone(),
            owner,
            sweeps.clone(),
            stop.subscribe(),
        )))
    };
    let handler: Arc<dyn BatchHandler> = Arc::new(WorkerHandler(worker));
    let workers: Vec<tokio::task::JoinHandle<()>> = (0..opts.workers.max(1))
        .map(|_| poller.spawn(handler.clone(), stop.subscribe()))
        .collect();
    *health.workers.lock().unwrap_or_else(|e| e.into_inner()) =
        workers.iter().map(|w| w.abort_handle()).collect();
    let (console, console_server) = start_console(
        opts,
        ConsoleParts {
            config: config.clone(),
            secrets: secrets.clone(),
            queue: queue.clone(),
            journal,
            links,
            registry,
            stage,
            health,
            sweeps,
            refusals: board,
        },
    )
    .await?;
    // Webhooks are served last: once /health answers, every listener the
    // relay was asked for (the console's too) is bound and serving.
    let server = tokio::spawn(async move {
        let shutdown = async move { stopped.notified().await };
        crate::listener::serve(
            listener,
            router,
            settings,
            refusals,
            shutdown,
            Duration::from_secs(5),
        )
        .await;
        if let Some(t) = cert_task {
            t.abort();
        }
    });
    Ok(Running {
        addr,
        scheme,
        console,
        console_server,
        queue,
        config,
        sweeper,
        stop,
        draining,
        workers,
        poller,
        server,
        server_stop,
    })
}

struct ConsoleParts {
    config: Arc<Config>,
    secrets: Arc<dyn SecretStore>,
    queue: EmbeddedQueue,
    journal: Option<Arc<SqliteJournal>>,
    links: Links,
    registry: Arc<Registry>,
    stage: String,
    health: Arc<Health>,
    sweeps: crate::reconcile::SweepBoard,
    refusals: crate::listener::Refusals,
}

type ConsoleServer = Option<(tokio::task::JoinHandle<()>, Arc<Notify>)>;

/// Starts the console on its own listener when it is asked for and the
/// admin credential exists; otherwise says why it is off.
async fn start_console(
    opts: &ServeOptions,
    p: ConsoleParts,
) -> Result<(Result<SocketAddr, String>, ConsoleServer), String> {
    let Some(at) = opts.console else {
        return Ok((Err("off (--console off)".into()), None));
    };
    let Some(credential) = Credential::load(&*p.secrets, &opts.console_secret).await? else {
        return Ok((
            Err(format!(
                "off: no admin credential (add `{}: {{ password: … }}` to the secrets file)",
                opts.console_secret
            )),
            None,
        ));
    };
    if opts.listen.port() != 0 && at == opts.listen {
        return Err(format!(
            "the console cannot share the webhook listener {at}; pick another --console address"
        ));
    }
    let config_text = std::fs::read_to_string(&opts.config)
        .map_err(|e| format!("cannot read {}: {e}", opts.config.display()))?;
    let console = Arc::new(crate::console::Console {
        config: p.config,
        config_path: opts.config.display().to_string(),
        config_text,
        queues: Arc::new(crate::console::source::LocalQueues {
            queue: p.queue,
            health: p.health,
        }),
        no_feed: "The delivery journal could not be opened (see the log); the feed is empty."
            .into(),
        feed: p.journal.map(|j| {
            Arc::new(crate::console::source::JournalFeed(j))
                as Arc<dyn crate::console::source::Deliveries>
        }),
        links: Some(p.links),
        registry: Some(p.registry),
        stage: p.stage,
        sweeps: p.sweeps,
        refusals: Some(p.refusals),
        credential,
        sessions: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| format!("cannot listen on {at} for the console: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let app = crate::console::router(console);
    let server = tokio::spawn(async move {
        let shutdown = async move { stopped.notified().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the console stopped");
        }
    });
    Ok((Ok(addr), Some((server, stop))))
}

async fn check_secrets(config: &Config, secrets: &dyn SecretStore) -> Result<(), String> {
    let mut refs = Vec::new();
    for e in &config.endpoints {
        refs.extend(e.auth.secret_refs());
    }
    for c in &config.connections {
        refs.extend(c.auth.secret_refs());
    }
    let mut problems = Vec::new();
    for r in refs {
        match secrets.fetch(&r.secret).await {
            Ok(v) => {
                if let Err(e) = v.resolve(r) {
                    problems.push(e.to_string());
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems.sort();
    problems.dedup();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the config names secrets that cannot be read:\n  {}\n(fix: add them to the secrets file or set RELAY_SECRET_<ID>; see examples/secrets.example.yaml)",
            problems.join("\n  ")
        ))
    }
}

async fn refuse_when_draining(
    axum::extract::State(draining): axum::extract::State<Arc<AtomicBool>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if draining.load(Ordering::Relaxed) && req.uri().path().starts_with("/webhooks/") {
        tracing::warn!(status = 503, reason = "shutting_down", path = %req.uri().path(), "refused");
        return (
            http::StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, "30")],
            axum::Json(serde_json::json!({"error": "shutting_down", "message": "the relay is shutting down; retry later"})),
        )
            .into_response();
    }
    next.run(req).await
}

impl Running {
    /// Stops: intake 503, workers drain (up to `drain`), in-flight released,
    /// HTTP closed.
    pub async fn shutdown(self, drain: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + drain;
        if let Some(s) = self.sweeper {
            // A sweep stopped mid-page resumes from its stored progress.
            let abort = s.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), s)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for w in self.workers {
            let abort = w.abort_handle();
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                abort.abort();
            }
        }
        let released = self.poller.release_in_flight().await;
        if released > 0 {
            tracing::warn!(released, "released unfinished messages back to the queue");
        }
        self.server_stop.notify_waiters();
        let _ = self.server.await;
        if let Some((server, stop)) = self.console_server {
            stop.notify_waiters();
            let _ = server.await;
        }
    }

    /// Webhook URLs to paste into Jira / the ServiceNow business rule, with
    /// placeholders for the credentials (never their values).
    pub fn banner(&self) -> String {
        let mut out = format!(
            "jira-relay serving on {}://{}  (health: /health)\n",
            self.scheme, self.addr
        );
        match &self.console {
            Ok(a) => out.push_str(&format!(
                "operator console on http://{a}  (log in with the secrets file's console credential; metrics: /metrics)\n"
            )),
            Err(why) => out.push_str(&format!("operator console {why}\n")),
        }
        for e in &self.config.endpoints {
            let url = format!("{}://{}/webhooks/{}", self.scheme, self.addr, e.name);
            let a = &e.auth;
            let mut how = Vec::new();
            if let Some(t) = &a.token {
                how.push(format!(
                    "{url}?token=<{}{}>",
                    t.secret,
                    t.key
                        .as_deref()
                        .map(|k| format!("#{k}"))
                        .unwrap_or_default()
                ));
            }
            if let Some(h) = &a.hmac {
                how.push(format!(
                    "{url}  signed: X-Hub-Signature with <{}#{}>",
                    h.secret,
                    h.key.as_deref().unwrap_or("")
                ));
            }
            if let Some(b) = &a.basic {
                how.push(format!("{url}  Basic auth <{}>", b.username.secret));
            }
            if let Some(b) = &a.bearer {
                how.push(format!("{url}  Bearer <{}>", b.secret));
            }
            let kind = match e.kind {
                SourceKind::Jira => "Jira webhook",
                SourceKind::Servicenow => "ServiceNow business rule",
            };
            out.push_str(&format!(
                "  {} ({kind}, {}):\n",
                e.name,
                match e.stage {
                    shared::config::Stage::Test => "test",
                    shared::config::Stage::Prod => "prod",
                }
            ));
            for h in how {
                out.push_str(&format!("    {h}\n"));
            }
            if let Some(r) = self.config.reconcile.get(&e.name) {
                out.push_str(&format!(
                    "    reconciled every {}s: {} (relay reconcile --dry-run shows the drift)\n",
                    r.every.as_secs(),
                    r.jql
                ));
            }
        }
        out
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn intake_answers_503_while_draining() {
        use tower::ServiceExt;
        let draining = Arc::new(AtomicBool::new(false));
        let router = axum::Router::new()
            .route(
                "/webhooks/{e}",
                axum::routing::post(|| async { "accepted" }),
            )
            .route("/health", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                draining.clone(),
                refuse_when_draining,
            ));
        let call = |path: &str, method: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = router
            .clone()
            .oneshot(call("/webhooks/jira", "POST"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        draining.store(true, Ordering::Relaxed);
        let r = router
            .clone()
            .oneshot(call("/webhooks/jira", "POST"))
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "30");
        // Health still answers (the process is alive, just not taking work).
        let r = router.oneshot(call("/health", "GET")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
}
