//! Executes a [`Plan`]: the planned requests, in order, through the
//! connectors, with the lookups' results filled into later steps.
//!
//! Semantics (see [`crate::rules::plan`]): rules run in plan order and the steps of
//! a rule in order; a step runs only if its `run_if` holds; a lookup that
//! answers 404 or whose `extract` finds nothing is "not found", and its
//! `on_empty` decides: go on (create), skip the rule, or retry the event
//! later (`wait_for_correlation`). Placeholders `{{step.var}}` are filled from
//! earlier steps' extracts: percent-encoded in paths, verbatim in query
//! values and headers, and as JSON values in bodies.
//!
//! Outcomes: a 2xx for every step that ran is `applied`; 429, 5xx, timeouts
//! and transport errors (after the connector's in-budget retries) and a 401
//! that survives a credential re-read are `retry`; other 4xx answers and
//! mapping errors are `dead`, with a reason that starts with a stable code.
//! A plan holding a rule whose mapping failed is dead before any call is
//! made, so an event is never half applied because of its own mapping.

use super::fill::{fill, lookup_var, step_once, substitute, StepResult};
#[cfg(feature = "http")]
use crate::config::Config;
use crate::links::backend::LinkError;
use crate::links::store::{Links, Pair, Scope};
use crate::outbound::connector::{Budget, Call, CallError, Connector};
#[cfg(feature = "http")]
use crate::outbound::rest::{ConnectorSettings, RestConnector};
use crate::rules::model::Action;
use crate::rules::path::{as_text, Path};
use crate::rules::plan::{
    Decision, Method, OnEmpty, PairBack, Plan, RulePlan, RuleStatus, RunIf, Step,
};
#[cfg(feature = "http")]
use crate::secrets::store::SecretStore;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The connectors of a config, by connection name.
#[derive(Clone, Default)]
pub struct Connectors {
    map: HashMap<String, Arc<dyn Connector>>,
    /// User mapping (`users:`), when the config has it.
    users: Option<Arc<crate::outbound::users::Directory>>,
}

impl Connectors {
    #[cfg(feature = "http")]
    /// One [`RestConnector`] per configured connection, sharing `client`.
    pub fn from_config(
        config: &Config,
        client: reqwest::Client,
        secrets: Arc<dyn SecretStore>,
        settings: ConnectorSettings,
    ) -> Self {
        let mut out = Self::default();
        for c in &config.connections {
            let conn: Arc<dyn Connector> = Arc::new(RestConnector::new(
                c.clone(),
                client.clone(),
                secrets.clone(),
                settings.clone(),
            ));
            // Jira connections resolve field, project, issue type and
            // priority names into the site's ids.
            let conn: Arc<dyn Connector> = match c.kind {
                crate::outbound::connections::ConnectionKind::Jira => {
                    Arc::new(crate::outbound::vocabulary::Vocabulary::new(conn, c))
                }
                _ => conn,
            };
            out.insert(conn);
        }
        if let Some(spec) = &config.users {
            let api = config
                .connection(&spec.jira)
                .map_or("/rest/api/3", |c| c.api.prefix());
            out.users = Some(Arc::new(crate::outbound::users::Directory::new(
                spec.clone(),
                api,
            )));
        }
        out
    }

    /// Maps people with this directory (tests that build connectors by hand).
    pub fn with_users(mut self, users: crate::outbound::users::Directory) -> Self {
        self.users = Some(Arc::new(users));
        self
    }

    /// Replaces the user markers of a call's body (see [`crate::outbound::users`]).
    async fn people(&self, call: &mut Call, budget: &Budget) -> Result<(), CallError> {
        let (Some(users), crate::outbound::connector::CallBody::Json(body)) =
            (&self.users, &mut call.body)
        else {
            return Ok(());
        };
        users
            .resolve_in(body, &|n| self.get(n).cloned(), budget)
            .await
    }

    pub fn insert(&mut self, c: Arc<dyn Connector>) {
        self.map.insert(c.name().to_owned(), c);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.map.get(name)
    }
}

/// One rule carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedRule {
    pub rule: String,
    pub connection: String,
    pub action: Action,
    /// The target record (ServiceNow number, Jira key), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether this rule created the record (`create`/`upsert` that posted).
    pub created: bool,
    /// Scopes whose record this rule made known (created, found, written
    /// back): events parked for them can be replayed now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paired: Vec<Scope>,
}

/// One rule not carried out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedRule {
    pub rule: String,
    pub reason: String,
}

/// What became of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Applied {
        applied: Vec<AppliedRule>,
        skipped: Vec<SkippedRule>,
    },
    Filtered {
        reason: String,
    },
    NoRule,
    Retry {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none", with = "opt_ms")]
        after: Option<Duration>,
    },
    Dead {
        reason: String,
    },
    /// A rule waits for a record that does not exist yet (an update that
    /// overtook its create): the worker parks the event until `scope` is
    /// paired, instead of holding its queue group.
    Waiting {
        scope: Scope,
        reason: String,
    },
    /// Parked by the worker (see [`Outcome::Waiting`]).
    Parked {
        scope: Scope,
        reason: String,
    },
    /// This change was handled already (within the link store's memory of
    /// deliveries): nothing is applied again.
    Duplicate {
        reason: String,
    },
}

mod opt_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }
}

impl Outcome {
    /// The stable label logs and metrics use.
    pub fn label(&self) -> &'static str {
        match self {
            // Rules matched but every one was skipped: nothing was written.
            Outcome::Applied { applied, skipped } if applied.is_empty() && !skipped.is_empty() => {
                "skipped"
            }
            Outcome::Applied { .. } => "applied",
            Outcome::Filtered { .. } => "filtered",
            Outcome::NoRule => "no_rule",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Parked { .. } => "parked",
            Outcome::Duplicate { .. } => "duplicate",
        }
    }

    /// Why each skipped rule was skipped (`rule `name`: reason; …`), for
    /// the log line; empty when none was.
    pub fn skip_reasons(&self) -> String {
        match self {
            Outcome::Applied { skipped, .. } => skipped
                .iter()
                .map(|s| format!("rule `{}`: {}", s.rule, s.reason))
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Filtered { reason }
            | Outcome::Retry { reason, .. }
            | Outcome::Dead { reason }
            | Outcome::Waiting { reason, .. }
            | Outcome::Parked { reason, .. }
            | Outcome::Duplicate { reason } => Some(reason),
            _ => None,
        }
    }

    /// Any layer's error: back to the queue when retrying can help, to the
    /// dead-letter queue with `<code>: <message>` when it cannot.
    pub fn from_error(e: &dyn crate::support::error::Classified) -> Self {
        match e.class() {
            crate::support::error::Class::Retryable => Outcome::Retry {
                reason: e.reason_line(),
                after: None,
            },
            crate::support::error::Class::Permanent => Outcome::Dead {
                reason: e.reason_line(),
            },
        }
    }

    fn from_call(e: CallError) -> Self {
        match e {
            CallError::Retry { reason, after } => Outcome::Retry { reason, after },
            CallError::Permanent { reason } => Outcome::Dead { reason },
        }
    }
}

/// Why a rule stopped early.
enum RuleEnd {
    Done {
        target: Option<String>,
        created: bool,
        paired: Vec<Scope>,
    },
    Skipped(String),
    Stop(Outcome),
}

/// What [`execute`] works with besides the plan.
pub struct Exec<'a> {
    pub connectors: &'a Connectors,
    /// Pairs, uncertain writes and item twins (see [`crate::links`]).
    pub links: &'a Links,
    pub budget: &'a Budget,
    /// The change the event stands for (its deduplication id): marks the
    /// writes it makes, so a repeat can recognise them.
    pub change: &'a str,
    /// The event is the creation of its source record, straight from the
    /// webhook, on the queue's first receive. A create rule then skips its
    /// correlation lookup when the link store knows no twin: the key is
    /// new, and the create is marked in the store before it is sent (the
    /// same mark a lost answer leaves), so any later attempt — after a
    /// crash, a timeout, a lost answer — sees the mark and looks up first.
    pub first_sight: bool,
}

fn store_down(e: LinkError) -> Outcome {
    Outcome::from_error(&e)
}

/// Runs a plan.
pub async fn execute(plan: &Plan, ex: &Exec<'_>) -> Outcome {
    match &plan.decision {
        Decision::Filtered { reason } => {
            return Outcome::Filtered {
                reason: reason.clone(),
            }
        }
        Decision::NoRule => return Outcome::NoRule,
        Decision::Matched { .. } => {}
    }
    // A mapping error anywhere: nothing is applied.
    for r in &plan.rules {
        if let RuleStatus::Error { message } = &r.status {
            // Messages that carry their own code (`attachment_url_not_allowed: …`) keep it.
            let coded = message.split_once(": ").is_some_and(|(code, _)| {
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            return Outcome::Dead {
                reason: if coded {
                    format!("{message} (rule `{}`)", r.rule)
                } else {
                    format!("mapping_error: rule `{}`: {message}", r.rule)
                },
            };
        }
    }
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for r in &plan.rules {
        match &r.status {
            RuleStatus::Ready => {}
            RuleStatus::Skipped { reason } => {
                skipped.push(SkippedRule {
                    rule: r.rule.clone(),
                    reason: reason.clone(),
                });
                continue;
            }
            RuleStatus::RetryLater { reason } => {
                return Outcome::Retry {
                    reason: format!("not_correlated: rule `{}`: {reason}", r.rule),
                    after: None,
                }
            }
            RuleStatus::Error { .. } => unreachable!("checked above"),
        }
        let Some(conn) = ex.connectors.get(&r.connection) else {
            return Outcome::Dead {
                reason: format!(
                    "config_error: rule `{}` writes to unknown connection `{}`",
                    r.rule, r.connection
                ),
            };
        };
        match run_rule(r, conn, ex).await {
            RuleEnd::Done {
                target,
                created,
                paired,
            } => {
                tracing::info!(rule = %r.rule, action = ?r.action, connection = %r.connection,
                    target = target.as_deref().unwrap_or(""), created, "rule applied");
                applied.push(AppliedRule {
                    rule: r.rule.clone(),
                    connection: r.connection.clone(),
                    action: r.action,
                    target,
                    created,
                    paired,
                });
            }
            RuleEnd::Skipped(reason) => {
                tracing::info!(rule = %r.rule, reason = %reason, "rule skipped");
                skipped.push(SkippedRule {
                    rule: r.rule.clone(),
                    reason,
                });
            }
            RuleEnd::Stop(o) => return o,
        }
    }
    Outcome::Applied { applied, skipped }
}

/// The record a step's variables name: id (`sys_id`, `id`) and key (`number`, `key`).
fn pair_of(vars: &HashMap<String, Value>) -> Option<Pair> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| vars.get(*n))
            .map(|v| as_text(v).into_owned())
            .filter(|s| !s.is_empty())
    };
    let pair = Pair {
        id: get(&["sys_id", "id"]),
        key: get(&["number", "key"]),
    };
    (pair.id.is_some() || pair.key.is_some()).then_some(pair)
}

/// A lookup answered from the store: the step's extract names filled from the pair.
fn result_from_pair(step: &Step, pair: &Pair) -> StepResult {
    let mut r = StepResult::default();
    for var in step.extract.keys() {
        let v = match var.as_str() {
            "sys_id" | "id" => pair.id.clone(),
            "number" | "key" => pair.key.clone(),
            _ => None,
        };
        if let Some(v) = v {
            r.vars.insert(var.clone(), Value::String(v));
        }
    }
    r.found = step.extract.keys().all(|k| r.vars.contains_key(k));
    r
}

/// Writes whose twins the store keeps (Jira comments and uploads): the
/// redelivered event finds the twin instead of writing again.
fn item_twin(step: &Step, conn: &Arc<dyn Connector>) -> bool {
    conn.kind() == crate::outbound::connections::ConnectionKind::Jira
        && matches!(step.id.as_str(), "comment" | "attach")
}

async fn run_rule(rp: &RulePlan, conn: &Arc<dyn Connector>, ex: &Exec<'_>) -> RuleEnd {
    let rule = rp.rule.as_str();
    let mut results: HashMap<String, StepResult> = HashMap::new();
    // What marks this rule's writes as coming from this change: the change
    // id, and the element for rules that iterate (one comment per item).
    let marker = match rp.item {
        Some(i) => format!("{}#{i}", ex.change),
        None => ex.change.to_owned(),
    };
    let mut event = StepResult::default();
    event
        .vars
        .insert("change".into(), Value::String(marker.clone()));
    results.insert("event".into(), event);
    // One uncertain-write marker per rule application.
    let what = format!("{}#{rule}#{}", ex.change, rp.item.unwrap_or(0));
    let has_once = rp.steps.iter().any(step_once);
    let unsure_since = if has_once {
        match ex.links.uncertain_since(&what).await {
            Ok(t) => t,
            Err(e) => return RuleEnd::Stop(store_down(e)),
        }
    } else {
        None
    };
    let mut target = None;
    let mut created = false;
    let mut from_store = false;
    // The lookup was skipped (see `Exec::first_sight`): the create is
    // marked in the store right before it is sent (`marked`).
    let mut unlooked = false;
    let mut marked = false;
    let mut record: Option<Pair> = None;
    let mut paired = Vec::new();
    for step in &rp.steps {
        let runs = match &step.run_if {
            RunIf::Always => true,
            RunIf::Found(s) => results.get(s.as_str()).is_some_and(|r| r.found),
            RunIf::NotFound(s) => results.get(s.as_str()).is_some_and(|r| !r.found),
        };
        if !runs {
            continue;
        }
        // A check runs only after a write whose answer was lost.
        if step.check && unsure_since.is_none() {
            results.insert(step.id.clone(), StepResult::default());
            continue;
        }
        if step.id == "lookup" {
            if let Some(scope) = &rp.link {
                match ex.links.record(scope).await {
                    Ok(Some(pair)) => {
                        let r = result_from_pair(step, &pair);
                        if r.found {
                            from_store = true;
                            record = Some(pair.clone());
                            if let Some(k) = pair.key.or(pair.id) {
                                target = Some(k);
                            }
                            results.insert(step.id.clone(), r);
                            continue;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return RuleEnd::Stop(store_down(e)),
                }
                if ex.first_sight
                    && unsure_since.is_none()
                    && has_once
                    && step.on_empty.is_some()
                    && matches!(rp.action, Action::Create | Action::Upsert)
                {
                    unlooked = true;
                    results.insert(step.id.clone(), StepResult::default());
                    continue;
                }
            }
        }
        if step.id == "twin" {
            if let Some(created) = &rp.twin {
                match ex.links.item(conn.name(), created).await {
                    Ok(Some(twin)) => {
                        results.insert(step.id.clone(), StepResult::found_id(twin));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return RuleEnd::Stop(store_down(e)),
                }
            }
        }
        let once = step_once(step);
        if once && item_twin(step, conn) {
            match ex.links.item(conn.name(), &marker).await {
                Ok(Some(twin)) => {
                    tracing::info!(rule, step = %step.id, twin = %twin, "already written (twin in the link store)");
                    results.insert(step.id.clone(), StepResult::found_id(twin));
                    continue;
                }
                Ok(None) => {}
                Err(e) => return RuleEnd::Stop(store_down(e)),
            }
        }
        if once {
            if let Some(since) = unsure_since {
                let waited = ex.links.now_millis().saturating_sub(since).max(0) as u64;
                let settle = conn.settle();
                if Duration::from_millis(waited) < settle {
                    let left = settle - Duration::from_millis(waited);
                    return RuleEnd::Stop(Outcome::Retry {
                        reason: format!(
                            "outcome_unknown: rule `{rule}` step `{}`: an earlier send got no answer and `{}` does not show it yet; not sent again before {} ms have passed",
                            step.id,
                            conn.name(),
                            settle.as_millis()
                        ),
                        after: Some(left),
                    });
                }
            }
        }
        let mut call = match fill(step, &results, &|via| ex.connectors.get(via).cloned()) {
            Ok(c) => c,
            Err(e) => {
                return RuleEnd::Stop(Outcome::Dead {
                    reason: format!("mapping_error: rule `{rule}` step `{}`: {e}", step.id),
                })
            }
        };
        if let Err(e) = ex.connectors.people(&mut call, ex.budget).await {
            return RuleEnd::Stop(Outcome::from_call(e));
        }
        if let (Some(cap), Method::Delete) = (rp.delete_cap, step.method) {
            match ex.links.take_delete_slot(conn.name(), &what, cap).await {
                Ok(true) => {}
                Ok(false) => {
                    crate::support::metrics::count(
                        "DeleteCapReached",
                        &[("Connection", conn.name())],
                    );
                    tracing::warn!(
                        rule,
                        connection = conn.name(),
                        cap,
                        target = target.as_deref().unwrap_or(""),
                        "delete not sent: the connection's deletes_per_minute is used up"
                    );
                    return RuleEnd::Stop(Outcome::Dead {
                        reason: format!(
                            "delete_cap_reached: rule `{rule}`: `{}` has deleted {cap} records this minute (deletes_per_minute: {cap}); {} was not deleted",
                            conn.name(),
                            target.as_deref().unwrap_or("the record")
                        ),
                    });
                }
                Err(e) => return RuleEnd::Stop(store_down(e)),
            }
        }
        if unlooked && once && !marked {
            if let Err(e) = ex.links.mark_uncertain(&what).await {
                return RuleEnd::Stop(store_down(e));
            }
            marked = true;
        }
        // A step sent elsewhere (the organization admin API) goes through
        // that connection's connector and credentials.
        let sender = match &step.via {
            None => conn.clone(),
            Some(via) => match ex.connectors.get(via) {
                Some(c) => c.clone(),
                None => {
                    return RuleEnd::Stop(Outcome::Dead {
                        reason: format!(
                            "mapping_error: rule `{rule}` step `{}`: no connection `{via}` to send it through",
                            step.id
                        ),
                    })
                }
            },
        };
        let reply = match sender.call(&call, ex.budget).await {
            Ok(r) => r,
            Err(CallError::Retry { reason, after })
                if once && reason.starts_with("outcome_unknown") =>
            {
                if let Err(e) = ex.links.mark_uncertain(&what).await {
                    tracing::warn!(rule, error = %e, "could not mark the unanswered write");
                }
                let settle = conn.settle();
                return RuleEnd::Stop(Outcome::Retry {
                    reason: format!(
                        "{reason} (rule `{rule}` step `{}`: looked up again before any new send)",
                        step.id
                    ),
                    after: Some(after.map_or(settle, |a| a.max(settle))),
                });
            }
            Err(e) => {
                // Refused, never sent, or not handled (429/503): nothing
                // was written, so the mark made before sending goes.
                if marked {
                    if let Err(e) = ex.links.clear_uncertain(&what).await {
                        tracing::warn!(rule, error = %e, "could not clear the create's mark");
                    }
                }
                return RuleEnd::Stop(Outcome::from_call(e));
            }
        };
        let lookup = step.on_empty.is_some();
        let mut result = StepResult::default();
        if reply.is_success() {
            let json = reply.json.as_ref().unwrap_or(&Value::Null);
            for (var, path) in &step.extract {
                let path = if path.contains("{{") {
                    match substitute(path, &|n| {
                        lookup_var(&results, n).map(|v| as_text(v).into_owned())
                    }) {
                        Ok(p) => p,
                        Err(_) => continue,
                    }
                } else {
                    path.clone()
                };
                let Ok(p) = Path::parse(&path) else { continue };
                if let Some(v) = p.get(json).filter(|v| !is_empty(v)) {
                    result.vars.insert(var.clone(), v.clone());
                }
            }
            result.found = !lookup || step.extract.keys().all(|k| result.vars.contains_key(k));
        } else if lookup && reply.status == 404 {
            result.found = false;
        } else if step.method == Method::Delete && reply.status == 404 && !from_store {
            // Deleting what is gone already: done (a redelivered deletion).
            result.found = true;
        } else if reply.status == 404 && from_store {
            // The store named a record the target no longer has: forget it
            // and look it up again on redelivery.
            if let Some(scope) = &rp.link {
                if let Err(e) = ex.links.unpair(scope).await {
                    return RuleEnd::Stop(store_down(e));
                }
            }
            return RuleEnd::Stop(Outcome::Retry {
                reason: format!(
                    "stale_link: `{}` has no record {} any more; looking it up again",
                    conn.name(),
                    target.as_deref().unwrap_or("")
                ),
                after: None,
            });
        } else {
            if marked {
                if let Err(e) = ex.links.clear_uncertain(&what).await {
                    tracing::warn!(rule, error = %e, "could not clear the create's mark");
                }
            }
            return RuleEnd::Stop(rejected(&reply, conn.name(), &call));
        }
        if once && item_twin(step, conn) {
            if let Some(id) = result.vars.get("id") {
                if let Err(e) = ex.links.pair_item(conn.name(), &marker, &as_text(id)).await {
                    tracing::warn!(rule, error = %e, "could not store the written item's twin");
                }
            }
        }
        for k in ["number", "key", "sys_id", "id"] {
            if let Some(v) = result.vars.get(k) {
                if step.id == "create" || (step.id == "lookup" && target.is_none()) {
                    target = Some(as_text(v).into_owned());
                }
                break;
            }
        }
        if step.id == "create" {
            created = true;
        }
        // The record is known now: remember the pair (a create, or a lookup
        // that found what the store did not know).
        if (step.id == "create" || (step.id == "lookup" && result.found)) && rp.link.is_some() {
            if let (Some(scope), Some(pair)) = (&rp.link, pair_of(&result.vars)) {
                if let Err(e) = ex.links.pair(scope, &pair).await {
                    return RuleEnd::Stop(store_down(e));
                }
                paired.push(scope.clone());
                record = Some(pair);
            }
        } else if step.id == "create" {
            record = pair_of(&result.vars);
        }
        if lookup && !result.found {
            match step.on_empty.as_ref().unwrap_or(&OnEmpty::Continue) {
                OnEmpty::Continue => {}
                OnEmpty::Skip => {
                    return RuleEnd::Skipped(format!(
                        "step `{}` found nothing on `{}`",
                        step.id,
                        conn.name()
                    ))
                }
                OnEmpty::Fail => {
                    let what: Vec<String> =
                        step.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    return RuleEnd::Stop(Outcome::Dead {
                        reason: format!(
                            "not_found: rule `{rule}` step `{}`: `{}` has nothing at {}?{}",
                            step.id,
                            conn.name(),
                            step.path,
                            what.join("&")
                        ),
                    });
                }
                OnEmpty::RetryLater => {
                    let reason = format!(
                        "not_correlated: rule `{rule}`: `{}` has no record for this event yet",
                        conn.name()
                    );
                    return RuleEnd::Stop(match &rp.link {
                        Some(scope) => Outcome::Waiting {
                            scope: scope.clone(),
                            reason,
                        },
                        None => Outcome::Retry {
                            reason,
                            after: None,
                        },
                    });
                }
            }
        }
        results.insert(step.id.clone(), result);
    }
    if unsure_since.is_some() || marked {
        if let Err(e) = ex.links.clear_uncertain(&what).await {
            tracing::warn!(rule, error = %e, "could not clear the unanswered-write mark");
        }
    }
    if let (Some(pb), Some(twin)) = (&rp.pair_back, &record) {
        match write_back(rule, pb, twin, ex).await {
            Ok(Some(scope)) => paired.push(scope),
            Ok(None) => {}
            Err(o) => return RuleEnd::Stop(o),
        }
    }
    if from_store {
        if let Some(scope) = &rp.link {
            paired.push(scope.clone());
        }
    }
    RuleEnd::Done {
        target,
        created,
        paired,
    }
}

/// Writes the twin's key into the source record, unless the store says it
/// was done already; then remembers the reverse pair.
async fn write_back(
    rule: &str,
    pb: &PairBack,
    twin: &Pair,
    ex: &Exec<'_>,
) -> Result<Option<Scope>, Outcome> {
    let Some(key) = twin.key.clone().or_else(|| twin.id.clone()) else {
        return Ok(None);
    };
    let reverse = Scope::new(&pb.connection, &pb.field, &key);
    match ex.links.record(&reverse).await {
        Ok(Some(p)) if p == pb.source => return Ok(Some(reverse)),
        Ok(_) => {}
        Err(e) => return Err(store_down(e)),
    }
    let Some(back) = ex.connectors.get(&pb.connection) else {
        return Err(Outcome::Dead {
            reason: format!(
                "config_error: rule `{rule}` writes the pairing back through unknown connection `{}`",
                pb.connection
            ),
        });
    };
    let mut results: HashMap<String, StepResult> = HashMap::new();
    let mut t = StepResult {
        found: true,
        ..Default::default()
    };
    t.vars.insert("key".into(), Value::String(key.clone()));
    t.vars.insert(
        "id".into(),
        Value::String(twin.id.clone().unwrap_or_else(|| key.clone())),
    );
    results.insert("target".into(), t);
    for step in &pb.steps {
        let call = fill(step, &results, &|via| ex.connectors.get(via).cloned()).map_err(|e| {
            Outcome::Dead {
                reason: format!("mapping_error: rule `{rule}` step `{}`: {e}", step.id),
            }
        })?;
        let reply = back
            .call(&call, ex.budget)
            .await
            .map_err(Outcome::from_call)?;
        if !reply.is_success() {
            return Err(rejected(&reply, back.name(), &call));
        }
    }
    tracing::info!(rule, connection = %pb.connection, field = %pb.field, twin = %key, "pairing written back");
    ex.links
        .pair(&reverse, &pb.source)
        .await
        .map_err(store_down)?;
    Ok(Some(reverse))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The outcome of a 4xx (or a 3xx that was not followed) from the target.
fn rejected(reply: &crate::outbound::connector::Reply, conn: &str, call: &Call) -> Outcome {
    let summary = reply.error.as_deref().unwrap_or("");
    let what = format!(
        "{} from {conn} on {:?} {}: {summary}",
        reply.status, call.method, call.path
    );
    match reply.status {
        401 => Outcome::Retry {
            reason: format!("target_unauthorized: {what}"),
            after: None,
        },
        403 => Outcome::Dead {
            reason: format!("target_forbidden: {what}"),
        },
        404 => Outcome::Dead {
            reason: format!("target_not_found: {what}"),
        },
        _ => Outcome::Dead {
            reason: format!("target_rejected: {what}"),
        },
    }
}
