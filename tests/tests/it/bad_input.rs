//! The bad-input matrix: every row of `tests/data/bad-input.yaml` run and
//! checked, and `docs/bad-input.md` kept in agreement with it.
//!
//! Ingress rows go through the ingress router twice: in-process
//! (`oneshot`) and over a real socket (`axum::serve` + reqwest). Worker rows
//! are posted to the ingress (202, queued once), then handed to
//! `Worker::run_batch` with a `MemoryInbox`, writing into the sandbox
//! ServiceNow and Jira servers. For each row the test checks the status or
//! outcome, that the reason was logged (tracing output captured), that
//! nothing panicked, and that nothing was lost: an accepted request is on
//! the queue exactly once, a refused one is not, a worker failure is either
//! reported for redelivery or in the dead letters with its reason.
//!
//! Payloads are derived from the real fixtures at test time (mutated
//! copies); the fixtures themselves stay in `../shared/fixtures`.
//!
//! This file holds the table, its rendering and the secret stores the rows
//! share; `ingress` and `worker` run the rows of each stage.

mod ingress;
mod worker;

use async_trait::async_trait;
use relay_tests::servicenow_server::{DEFAULT_PASSWORD, DEFAULT_USER};
use serde::Deserialize;
use serde_json::json;
use shared::secrets::{LocalSecretStore, SecretError, SecretStore, SecretVersions};
use std::sync::Arc;

const TOKEN: &str = "matrix-token-3e7c";
const TOKEN_OLD: &str = "matrix-token-old-51aa";
const HMAC_KEY: &str = "matrix-hmac-90f1";

// ---------------------------------------------------------------------------
// The table

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stage {
    Ingress,
    Worker,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Expect {
    Status(u16),
    Outcome(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Fate {
    Queued,
    Refused,
    Applied,
    Filtered,
    Skipped,
    DeadLetter,
    Redelivered,
    Parked,
}

impl Fate {
    fn label(self) -> &'static str {
        match self {
            Fate::Queued => "queued once",
            Fate::Refused => "not queued",
            Fate::Applied => "applied",
            Fate::Filtered => "filtered (logged, acknowledged)",
            Fate::Skipped => "every rule skipped (reasons logged, acknowledged)",
            Fate::DeadLetter => "dead letter with its reason",
            Fate::Redelivered => "redelivered by the queue",
            Fate::Parked => "parked in the link store (not holding its queue group); replayed right after its create, dead-lettered `never_correlated` after 24 h",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    stage: Stage,
    input: String,
    expect: Expect,
    logged: String,
    fate: Fate,
}

impl Row {
    /// `field=value` of the `logged` column.
    fn logged(&self) -> (&str, &str) {
        self.logged
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: `logged` must be field=value", self.id))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    rows: Vec<Row>,
}

const TABLE: &str = "tests/data/bad-input.yaml";
const DOC: &str = "docs/bad-input.md";

fn table() -> Vec<Row> {
    let text = std::fs::read_to_string(relay_tests::repo_path(TABLE)).unwrap();
    let t: Table = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{TABLE}: {e}"));
    let mut ids: Vec<&str> = t.rows.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "{TABLE}: duplicate ids");
    for r in &t.rows {
        match (&r.stage, &r.expect, r.fate) {
            (Stage::Ingress, Expect::Status(_), Fate::Queued | Fate::Refused) => {}
            (Stage::Worker, Expect::Outcome(_), f)
                if !matches!(f, Fate::Queued | Fate::Refused) => {}
            _ => panic!("{TABLE}: row {} mixes ingress and worker columns", r.id),
        }
        r.logged();
    }
    t.rows
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown document rendered from the table.
fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "# Bad input: what the relay does with it\n\n\
         Generated from `tests/data/bad-input.yaml` by `tests/tests/it/bad_input.rs`, which\n\
         runs every row; do not edit by hand (`RELAY_BLESS=1 cargo test -p relay-tests --test it\n\
         bad_input::doc` rewrites it). Every row also checks that nothing panicked and that\n\
         nothing was lost: an accepted call is on the queue exactly once, a refused one is not,\n\
         a message the worker cannot apply is redelivered or in the dead letters with its\n\
         reason. Callers only ever see a short fixed message (`{\"error\": …}`); the reason\n\
         is in the log line (`reason` field), and for the worker in the dead letter too.\n\n\
         ## Intake (`POST /webhooks/{endpoint}`)\n\n\
         Checked in-process and over a real socket. 503 answers carry `Retry-After`\n\
         (Jira retries 5xx, never 4xx).\n\n\
         | case | input | status | logged | fate |\n|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.stage == Stage::Ingress) {
        let Expect::Status(s) = &r.expect else {
            unreachable!()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            r.id,
            cell(&r.input),
            s,
            r.logged,
            r.fate.label()
        ));
    }
    out.push_str(
        "\n## Worker (a queued message)\n\n\
         Posted through the intake (202, queued once), then one `Worker::run_batch` against\n\
         the sandbox ServiceNow and Jira servers. The `reason` is the start of the reason in\n\
         the `processed` log line and in the dead letter.\n\n\
         | case | input | outcome | logged | fate |\n|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.stage == Stage::Worker) {
        let Expect::Outcome(o) = &r.expect else {
            unreachable!()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            r.id,
            cell(&r.input),
            o,
            r.logged,
            r.fate.label()
        ));
    }
    out
}

#[test]
fn doc_agrees_with_the_table() {
    // given the table, rendered
    let rendered = render(&table());
    // when the document is read (rewritten first under RELAY_BLESS)
    let path = relay_tests::repo_path(DOC);
    if std::env::var_os("RELAY_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    // then it is the rendering
    assert!(
        doc == rendered,
        "{DOC} does not match {TABLE}; regenerate it with \
         `RELAY_BLESS=1 cargo test -p relay-tests --test it bad_input::doc`"
    );
}

/// A JSON object nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}{}", "{\"a\":".repeat(depth), "1", "}".repeat(depth))
}

// ---------------------------------------------------------------------------
// Secret stores for the rows that need them

fn good_store() -> LocalSecretStore {
    LocalSecretStore::with_env([
        (
            "RELAY_SECRET_RELAY_WEBHOOK".to_owned(),
            json!({"token": TOKEN, "hmac": HMAC_KEY, "sn_user": "snow.sender", "sn_pass": "sender-pw-8"})
                .to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_WEBHOOK__PREVIOUS".to_owned(),
            json!({"token": TOKEN_OLD}).to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_SERVICENOW".to_owned(),
            json!({"username": DEFAULT_USER, "password": DEFAULT_PASSWORD}).to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_JIRA".to_owned(),
            json!({"email": relay_tests::jira_server::DEFAULT_EMAIL,
                   "api_token": relay_tests::jira_server::DEFAULT_API_TOKEN})
            .to_string(),
        ),
    ])
}

/// A secret store that cannot be reached.
struct DownStore;

#[async_trait]
impl SecretStore for DownStore {
    async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        Err(SecretError::Unavailable {
            id: id.to_owned(),
            detail: "connection refused".to_owned(),
        })
    }
}
