//! The plan: what the rules engine decided for one event, and the exact
//! outbound requests that carry it out.
//!
//! The engine is pure — it never calls anything — so a plan is complete
//! enough for the worker to execute with real HTTP and for `relay dry-run` to
//! print. Each [`Step`] is one request relative to its connection's base URL.
//! Values a step needs from an earlier response (the `sys_id` a lookup found)
//! appear as placeholders `{{step_id.var}}` in `path`, `query` values and any
//! JSON string inside `body`; the worker fills them from the earlier step's
//! `extract`, evaluated with [`crate::rules::path::Path`] syntax on its JSON
//! response. A step runs only if its [`RunIf`] holds; a lookup that answers
//! 404 or extracts nothing is "not found" and its [`OnEmpty`] decides what
//! happens next. The rules of one plan, and the steps of one rule, run in
//! order: a later rule may rely on an earlier one (e.g. a re-key).

pub use super::model::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The outcome for one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub endpoint: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    pub decision: Decision,
    /// One entry per matched rule (per item, for iterating rules), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RulePlan>,
}

/// What happened to the event as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// The endpoint's whitelist dropped it (echo guard).
    Filtered { reason: String },
    /// No rule's `when` matched.
    NoRule,
    /// These rules matched, in order.
    Matched { rules: Vec<String> },
}

/// The plan of one matched rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulePlan {
    pub rule: String,
    pub connection: String,
    pub action: crate::rules::model::Action,
    /// Index of the element, for rules with `iterate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub status: RuleStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Where the rule's lookup finds the target record: the link store is
    /// asked first, the target's correlation field (the `lookup` step) when
    /// the store does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<crate::links::store::Scope>,
    /// Create/upsert rules with `pair_back`: the writes that put the new
    /// record's key into the record the event came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_back: Option<PairBack>,
    /// A comment edit or deletion: the change id the comment's twin was
    /// created for (the link store's item key; the `twin` step finds it by
    /// the comment property when the store does not know it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<String>,
    /// Delete rules: the most deletes the connection takes in one minute
    /// (`deletes_per_minute`); the executor takes a slot before sending the
    /// delete and dead-letters the event with `delete_cap_reached` when none
    /// is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_cap: Option<u32>,
}

/// The pairing written back into the record an event came from, after the
/// rule created (or found) its twin. Placeholders `{{target.key}}` and
/// `{{target.id}}` stand for the twin's key and id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairBack {
    /// The connection that writes to the source system.
    pub connection: String,
    /// The field there that the other direction's rules correlate by.
    pub field: String,
    /// The source record (from the event).
    pub source: crate::links::store::Pair,
    pub steps: Vec<Step>,
}

/// Whether the rule's steps should run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RuleStatus {
    /// Run the steps.
    Ready,
    /// Nothing to do, for the reason given (e.g. no correlation key).
    Skipped { reason: String },
    /// Not yet possible (`wait_for_correlation`): redeliver the event later.
    RetryLater { reason: String },
    /// The mapping failed; permanent for this event (DLQ with this reason).
    Error { message: String },
}

/// One outbound request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Name other steps use in placeholders (`lookup`, `create`, …).
    pub id: String,
    pub method: Method,
    /// Path relative to the connection's base URL, starting with `/`;
    /// segments from payload values are percent-encoded.
    pub path: String,
    /// Query parameters in order, not yet encoded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    /// Extra headers (the connection's auth and fixed headers are added by the worker).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Body::is_none")]
    pub body: Body,
    #[serde(default, skip_serializing_if = "RunIf::is_always")]
    pub run_if: RunIf,
    /// Variables read from this step's JSON response: name → path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, String>,
    /// What to do when `extract` finds nothing; only on lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_empty: Option<OnEmpty>,
    /// Sent through this connection instead of the rule's (Jira Cloud's
    /// organization admin API, another host with its own credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// A look-before-repeat check: runs only when an earlier send of this
    /// rule's write got no answer (its outcome is unknown); otherwise it is
    /// taken as having found nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub check: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A request body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    #[default]
    None,
    Json {
        json: Value,
    },
    /// Fetch `url` with the credentials of connection `via` (the engine has
    /// checked that `url` lies under its base URL; the worker checks again)
    /// and send it: raw bytes with `Content-Type` for ServiceNow, multipart
    /// field `file` for Jira.
    Download {
        via: String,
        url: String,
        file_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        multipart: bool,
    },
}

impl Body {
    fn is_none(&self) -> bool {
        matches!(self, Body::None)
    }
}

/// When a step runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "if", content = "step", rename_all = "snake_case")]
pub enum RunIf {
    #[default]
    Always,
    /// The named lookup found its record.
    Found(String),
    /// The named lookup found nothing.
    NotFound(String),
}

impl RunIf {
    fn is_always(&self) -> bool {
        matches!(self, RunIf::Always)
    }
}

/// What a lookup that found nothing means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEmpty {
    /// Go on; steps with `run_if: not_found` run (create / upsert).
    Continue,
    /// Stop this rule, done (nothing to update).
    Skip,
    /// Stop and redeliver later (`wait_for_correlation`).
    RetryLater,
    /// Stop and dead-letter: what the rule names must exist (a ServiceNow
    /// group a membership rule adds to).
    Fail,
}
