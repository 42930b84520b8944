//! What the three Lambda functions share: their settings, read from the
//! environment and checked once ([`Settings`]); log and metrics set-up; the
//! configuration; and the AWS adapters built from them ([`Host`]). Each
//! function's `main` composes these with its handler.
//!
//! Environment (every function reads the same names; each needs a subset):
//! - `RELAY_CONFIG`: the config file (default `/opt/relay.yaml`, the config layer),
//!   plus whatever `${NAME}` the config interpolates.
//! - `RELAY_QUEUE_URL`: the FIFO queue (ingress and reconciler send to it; the
//!   worker delays redeliveries on it).
//! - `RELAY_DLQ_URL`: the dead-letter FIFO queue the worker writes to.
//! - `RELAY_MAX_RECEIVE_COUNT`: the queue's redrive `maxReceiveCount`; on that
//!   receive a retryable failure is dead-lettered with its reason.
//! - `RELAY_CALL_TIMEOUT_MS` (default 10000), `RELAY_MAX_ATTACHMENT_BYTES`
//!   (default 20 MiB), `RELAY_PARALLEL_GROUPS` (default 10, a whole batch: each
//!   connection's adaptive concurrency limit decides how many calls run).
//! - `RELAY_LINKS_TABLE`: the link store's DynamoDB table (the template's
//!   `LinksTable`; required when deployed). **Unset, the worker logs a loud
//!   warning and keeps its links in memory**: record pairs, deliveries seen and
//!   parked events then last only as long as one Lambda instance.
//! - `RELAY_SEEN_TTL_SECONDS` (default 7200): how long a delivery is recognised
//!   as seen (Jira retries for about 75 minutes); `RELAY_PARK_SECONDS` (default
//!   86400): how long an event waits for its record before it is dead-lettered.
//! - `RELAY_WATERMARK_PREFIX`: the reconciler's SSM parameter path
//!   (e.g. `/jira-relay/prod/reconcile`).
//! - What Lambda sets itself: `AWS_REGION` and the execution role's
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` (the
//!   SDK reads nothing else: no profile files, no metadata endpoints), and
//!   `AWS_ENDPOINT_URL` when set (a local emulator).
#![forbid(unsafe_code)]

use shared::config::Config;
use shared::links::dynamo::DynamoBackend;
use shared::links::{LinkSettings, Links, MemoryBackend};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::{http_client, ConnectorSettings};
use shared::queue::{SqsInbox, SqsQueue};
use shared::reconcile::SsmStore;
use shared::secrets::{AwsSecretStore, CachedSecretStore};
use shared::support::clock::{Clock, SystemClock};
use shared::worker::BatchSettings;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A function that cannot start: the log line names the reason.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Config(#[from] shared::config::ConfigError),
    #[error("{0}")]
    Adapter(String),
}

/// Every function's settings, read from the environment and checked once.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config_path: PathBuf,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub links_table: Option<String>,
    pub watermark_prefix: Option<String>,
    pub connector: ConnectorSettings,
    pub batch: BatchSettings,
    pub links: LinkSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, StartError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (the environment, or a map in tests).
    /// Every value that is set but wrong is reported, not only the first.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, StartError> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut problems = Vec::new();
        let mut num = |name: &str, min: u64| -> Option<u64> {
            let v = var(name)?;
            match v.parse::<u64>() {
                Ok(n) if n >= min => Some(n),
                Ok(_) => {
                    problems.push(format!("{name}={v}: give at least {min}"));
                    None
                }
                Err(_) => {
                    problems.push(format!("{name}=`{v}` is not a whole number"));
                    None
                }
            }
        };
        let mut connector = ConnectorSettings::default();
        let mut batch = BatchSettings::default();
        let mut links = LinkSettings::default();
        if let Some(ms) = num("RELAY_CALL_TIMEOUT_MS", 1) {
            connector.call_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = num("RELAY_MAX_ATTACHMENT_BYTES", 0) {
            connector.max_attachment_bytes = n;
        }
        if let Some(n) = num("RELAY_PARALLEL_GROUPS", 1) {
            batch.parallel_groups = n as usize;
        }
        batch.max_receive_count = num("RELAY_MAX_RECEIVE_COUNT", 1).map(|n| n as u32);
        if let Some(s) = num("RELAY_SEEN_TTL_SECONDS", 1) {
            links.seen_for = Duration::from_secs(s);
        }
        if let Some(s) = num("RELAY_PARK_SECONDS", 1) {
            links.park_for = Duration::from_secs(s);
        }
        if !problems.is_empty() {
            return Err(StartError::Settings(problems.join("; ")));
        }
        Ok(Self {
            config_path: var("RELAY_CONFIG")
                .unwrap_or_else(|| "/opt/relay.yaml".into())
                .into(),
            queue_url: var("RELAY_QUEUE_URL"),
            dlq_url: var("RELAY_DLQ_URL"),
            links_table: var("RELAY_LINKS_TABLE"),
            watermark_prefix: var("RELAY_WATERMARK_PREFIX"),
            connector,
            batch,
            links,
        })
    }
}

fn cannot_start(function: &str, e: &StartError) {
    tracing::error!(error = %e, "the {function} cannot start");
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, StartError> {
    value
        .as_deref()
        .ok_or_else(|| StartError::Settings(format!("{name} is not set")))
}

/// One function's composition root: settings, config and AWS clients, built
/// once per execution environment (so the HTTP pool, the cached secrets and
/// OAuth tokens live across invocations).
pub struct Host {
    pub settings: Settings,
    pub config: Arc<Config>,
    pub sdk: shared::support::aws::SdkConfig,
    pub secrets: Arc<CachedSecretStore<AwsSecretStore>>,
    pub clock: Arc<dyn Clock>,
    function: &'static str,
}

impl Host {
    /// Logs (JSON lines), metrics (EMF), settings, config and the SDK. A
    /// failure is logged as "the `<function>` cannot start" with its reason.
    pub async fn start(function: &'static str) -> Result<Self, StartError> {
        shared::support::telemetry::init_json();
        shared::support::metrics::install_from_env();
        let host = Self::build(function).await;
        host.inspect_err(|e| cannot_start(function, e))
    }

    async fn build(function: &'static str) -> Result<Self, StartError> {
        let settings = Settings::from_env()?;
        let config = Config::load(&settings.config_path)?;
        let sdk = shared::support::aws::lambda_sdk_config(|name| std::env::var(name).ok())
            .map_err(StartError::Settings)?;
        let secrets = Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&sdk)));
        Ok(Self {
            settings,
            config: Arc::new(config),
            sdk,
            secrets,
            clock: Arc::new(SystemClock),
            function,
        })
    }

    /// `r`, logged as the reason the function cannot start when it failed.
    fn needed<T>(&self, r: Result<T, StartError>) -> Result<T, StartError> {
        r.inspect_err(|e| cannot_start(self.function, e))
    }

    /// A connector per configured connection, over one HTTP client.
    pub fn connectors(&self) -> Connectors {
        Connectors::from_config(
            &self.config,
            http_client(),
            self.secrets.clone(),
            self.settings.connector.clone(),
        )
    }

    /// The FIFO queue (`RELAY_QUEUE_URL`).
    pub fn queue(&self) -> Result<SqsQueue, StartError> {
        let url = self.needed(required(&self.settings.queue_url, "RELAY_QUEUE_URL"))?;
        Ok(SqsQueue::from_conf(&self.sdk, url.to_owned()))
    }

    /// The worker's side of the queue: delays on `RELAY_QUEUE_URL`, dead
    /// letters to `RELAY_DLQ_URL`.
    pub fn inbox(&self) -> Result<SqsInbox, StartError> {
        let queue = self.needed(required(&self.settings.queue_url, "RELAY_QUEUE_URL"))?;
        let dlq = self.needed(required(&self.settings.dlq_url, "RELAY_DLQ_URL"))?;
        Ok(SqsInbox::from_conf(
            &self.sdk,
            queue.to_owned(),
            dlq.to_owned(),
        ))
    }

    /// The link store: DynamoDB (`RELAY_LINKS_TABLE`), else in memory with a
    /// loud warning.
    pub fn links(&self) -> Links {
        let settings = self.settings.links.clone();
        match &self.settings.links_table {
            Some(table) => {
                tracing::info!(table = %table, "link store: DynamoDB");
                Links::new(
                    Arc::new(DynamoBackend::from_conf(&self.sdk, table.clone())),
                    settings,
                )
            }
            None => {
                tracing::warn!(
                    "RELAY_LINKS_TABLE is not set: the link store is IN MEMORY. Pairs, deliveries \
                     seen and parked events are lost with this instance and not shared with the \
                     others. Deployed, the template sets it to the LinksTable."
                );
                Links::new(Arc::new(MemoryBackend::default()), settings)
            }
        }
    }

    /// The reconciler's watermarks in SSM (`RELAY_WATERMARK_PREFIX`).
    pub fn watermarks(&self) -> Result<SsmStore, StartError> {
        let prefix = self.needed(required(
            &self.settings.watermark_prefix,
            "RELAY_WATERMARK_PREFIX",
        ))?;
        self.needed(
            SsmStore::from_conf(&self.sdk, prefix.to_owned(), self.clock.clone())
                .map_err(|e| StartError::Adapter(e.to_string())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, StartError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_vars(|n| map.get(n).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = read(&[]).unwrap();
        assert_eq!(s.config_path, PathBuf::from("/opt/relay.yaml"));
        assert_eq!(s.queue_url, None);
        assert_eq!(s.connector.call_timeout, Duration::from_secs(10));
        assert_eq!(s.connector.max_attachment_bytes, 20 * 1024 * 1024);
        assert_eq!(s.batch.parallel_groups, 10);
        assert_eq!(s.batch.max_receive_count, None);
        assert_eq!(s.links.seen_for, Duration::from_secs(7200));
        assert_eq!(s.links.park_for, Duration::from_secs(86_400));
        assert!(required(&s.queue_url, "RELAY_QUEUE_URL")
            .unwrap_err()
            .to_string()
            .contains("RELAY_QUEUE_URL is not set"));
    }

    #[test]
    fn values_are_read_once_into_one_place() {
        let s = read(&[
            ("RELAY_CONFIG", "/tmp/r.yaml"),
            ("RELAY_QUEUE_URL", "http://q"),
            ("RELAY_DLQ_URL", "http://d"),
            ("RELAY_CALL_TIMEOUT_MS", "2500"),
            ("RELAY_MAX_ATTACHMENT_BYTES", "1024"),
            ("RELAY_PARALLEL_GROUPS", "2"),
            ("RELAY_MAX_RECEIVE_COUNT", "5"),
            ("RELAY_SEEN_TTL_SECONDS", "60"),
            ("RELAY_PARK_SECONDS", "120"),
            ("RELAY_LINKS_TABLE", "links"),
            ("RELAY_WATERMARK_PREFIX", "/p"),
        ])
        .unwrap();
        assert_eq!(s.config_path, PathBuf::from("/tmp/r.yaml"));
        assert_eq!(s.connector.call_timeout, Duration::from_millis(2500));
        assert_eq!(s.connector.max_attachment_bytes, 1024);
        assert_eq!(s.batch.parallel_groups, 2);
        assert_eq!(s.batch.max_receive_count, Some(5));
        assert_eq!(s.links.seen_for, Duration::from_secs(60));
        assert_eq!(s.links.park_for, Duration::from_secs(120));
        assert_eq!(s.links_table.as_deref(), Some("links"));
        assert_eq!(s.watermark_prefix.as_deref(), Some("/p"));
    }

    #[test]
    fn every_wrong_value_is_named() {
        let e = read(&[
            ("RELAY_CALL_TIMEOUT_MS", "ten"),
            ("RELAY_SEEN_TTL_SECONDS", "0"),
            ("RELAY_PARALLEL_GROUPS", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("RELAY_CALL_TIMEOUT_MS=`ten` is not a whole number"),
            "{e}"
        );
        assert!(
            e.contains("RELAY_SEEN_TTL_SECONDS=0: give at least 1"),
            "{e}"
        );
        assert!(
            e.contains("RELAY_PARALLEL_GROUPS=0: give at least 1"),
            "{e}"
        );
    }
}
