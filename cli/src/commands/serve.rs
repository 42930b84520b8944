//! `relay serve`: the whole relay on this machine until SIGINT / SIGTERM.

use super::runtime;
use crate::listener::acme::AcmeOptions;
use crate::listener::guard::{GuardSettings, Rate};
use crate::listener::tls::TlsOptions;
use crate::serve::{self, ServeOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
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
    /// Seconds a client may take to send a request's head on the webhook
    /// listener (a new connection, or the next request on a kept-alive one);
    /// slower clients are disconnected.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    header_timeout_secs: u64,
    /// Connections the webhook listener serves at once; more are closed on
    /// accept, before any byte is read. Keep it below the process's
    /// file-descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Seconds a request's body may take to arrive after its head; a slower
    /// body is answered 408.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_secs: u64,
    /// Seconds a connection may move no byte either way before it is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout_secs: u64,
    /// Requests per second one client address may send to the webhook
    /// listener, sustained (0: no limit); beyond it and its burst the answer
    /// is 429 with Retry-After, which Jira retries. IPv6 clients count per /64.
    #[arg(long, default_value_t = 50)]
    client_rate: u32,
    /// Requests one client address may send at once above its rate.
    #[arg(long, default_value_t = 200)]
    client_burst: u32,
    /// Requests per second one endpoint accepts from everyone together (0: no limit).
    #[arg(long, default_value_t = 500)]
    endpoint_rate: u32,
    /// Requests one endpoint accepts at once above its rate.
    #[arg(long, default_value_t = 1000)]
    endpoint_burst: u32,
    /// A reverse proxy or load balancer in front (an address or a CIDR like
    /// 10.0.0.0/8; repeat for more): only from these is `X-Forwarded-For`
    /// believed for the per-client rate.
    #[arg(long = "trusted-proxy", value_parser = parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this certificate chain (PEM; e.g. certbot's
    /// fullchain.pem). Checked for changes every --tls-reload-secs.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; e.g. certbot's privkey.pem).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between checks of the certificate files for a renewal.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    tls_reload_secs: u64,
    /// With TLS: answer plain HTTP with a 308 redirect to https:// instead
    /// of a 400.
    #[arg(long)]
    redirect_http: bool,
    /// Serve HTTPS with a certificate for this name obtained over ACME
    /// (TLS-ALPN-01 on this listener: the CA must reach port 443 of the name).
    /// Repeat for more names. Kept and renewed in <data-dir>/acme. Using it
    /// agrees to the CA's terms of service.
    #[arg(long = "acme-domain", conflicts_with_all = ["tls_cert", "tls_key"])]
    acme_domains: Vec<String>,
    /// The contact address the CA may write to about the certificate.
    #[arg(long, requires = "acme_domains")]
    acme_email: Option<String>,
    /// The ACME directory (default: Let's Encrypt's production CA).
    #[arg(long, default_value = crate::listener::acme::LETS_ENCRYPT)]
    acme_directory: String,
    /// A CA certificate (PEM) to trust for the ACME server's own HTTPS (a
    /// private or test CA such as Pebble); default: the public roots.
    #[arg(long, requires = "acme_domains")]
    acme_server_root: Option<PathBuf>,
    /// Worker loops (each handles up to 10 issues at a time).
    #[arg(long, default_value_t = 8)]
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
    /// Where the operator console listens, or `off`. It needs the admin
    /// credential in the secrets file (`--console-secret`); without it the
    /// console stays off and the banner says so.
    #[arg(long, default_value = "127.0.0.1:8081", value_parser = parse_console)]
    console: ConsoleAt,
    /// The secret with the console's `password` (and `username`, default `admin`).
    #[arg(long, default_value = "relay/console")]
    console_secret: String,
    /// Days the delivery journal (`<data-dir>/journal.sqlite`) keeps a row.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    journal_days: u64,
    /// The most rows the delivery journal keeps (the oldest go first).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    journal_max_rows: u64,
}

/// `--console`: an address, or `off`.
#[derive(Clone, Debug)]
pub struct ConsoleAt(pub Option<std::net::SocketAddr>);

fn parse_console(s: &str) -> Result<ConsoleAt, String> {
    if s == "off" {
        return Ok(ConsoleAt(None));
    }
    s.parse()
        .map(|a| ConsoleAt(Some(a)))
        .map_err(|e| format!("`{s}`: {e} (an address like 127.0.0.1:8081, or `off`)"))
}

/// `--trusted-proxy`: an address (one host) or a network.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}`: not an address or a network like 10.0.0.0/8"))
}

pub fn run(a: Args) -> Result<(), String> {
    let data_dir = a.data_dir.clone();
    let mut opts = ServeOptions::new(a.config, a.listen, a.data_dir);
    opts.settle = a.settle_ms.map(Duration::from_millis);
    opts.links.seen_for = Duration::from_secs(a.remember_hours * 3600);
    opts.call_timeout = Duration::from_secs(a.call_timeout_secs);
    opts.secrets = a.secrets;
    opts.workers = a.workers;
    opts.listener = crate::listener::Limits {
        header_timeout: Duration::from_secs(a.header_timeout_secs),
        body_timeout: Duration::from_secs(a.body_timeout_secs),
        idle_timeout: Duration::from_secs(a.idle_timeout_secs),
        max_connections: a.max_connections as usize,
    };
    opts.guard = GuardSettings {
        per_client: Rate::new(a.client_rate, a.client_burst),
        per_endpoint: Rate::new(a.endpoint_rate, a.endpoint_burst),
        trusted_proxies: a.trusted_proxies,
        endpoints: Vec::new(),
    };
    if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
        opts.tls = Some(TlsOptions::Files {
            cert,
            key,
            reload_every: Duration::from_secs(a.tls_reload_secs),
        });
    }
    if !a.acme_domains.is_empty() {
        opts.tls = Some(TlsOptions::Acme(AcmeOptions {
            domains: a.acme_domains,
            email: a.acme_email,
            directory: a.acme_directory,
            server_root: a.acme_server_root,
            dir: data_dir.join("acme"),
        }));
    }
    if a.redirect_http && opts.tls.is_none() {
        return Err(
            "--redirect-http needs HTTPS (--tls-cert and --tls-key, or --acme-domain)".into(),
        );
    }
    opts.redirect_http = a.redirect_http;
    opts.max_receives = a.max_receives;
    opts.visibility_timeout = Duration::from_secs(a.visibility_timeout_secs);
    opts.console = a.console.0;
    opts.console_secret = a.console_secret;
    opts.journal.retention = Duration::from_secs(a.journal_days * 24 * 3600);
    opts.journal.max_rows = a.journal_max_rows;
    crate::logs::init();
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
