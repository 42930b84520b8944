//! Executes a [`Plan`]: the planned requests, in order, through the
//! connectors, with the lookups' results filled into later steps.
//!
//! Semantics (see [`crate::plan`]): rules run in plan order and the steps of
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

use crate::config::Config;
use crate::connector::{
    Budget, Call, CallBody, CallError, Connector, ConnectorSettings, FileSource, RestConnector,
};
use crate::plan::{Body, Decision, OnEmpty, Plan, RuleStatus, RunIf, Step};
use crate::rules::path::{as_text, Path};
use crate::rules::Action;
use crate::secrets::SecretStore;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The connectors of a config, by connection name.
#[derive(Clone, Default)]
pub struct Connectors {
    map: HashMap<String, Arc<dyn Connector>>,
}

impl Connectors {
    /// One [`RestConnector`] per configured connection, sharing `client`.
    pub fn from_config(
        config: &Config,
        client: reqwest::Client,
        secrets: Arc<dyn SecretStore>,
        settings: ConnectorSettings,
    ) -> Self {
        let mut out = Self::default();
        for c in &config.connections {
            let conn =
                RestConnector::new(c.clone(), client.clone(), secrets.clone(), settings.clone());
            out.insert(Arc::new(conn));
        }
        out
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
            | Outcome::Dead { reason } => Some(reason),
            _ => None,
        }
    }

    fn from_call(e: CallError) -> Self {
        match e {
            CallError::Retry { reason, after } => Outcome::Retry { reason, after },
            CallError::Permanent { reason } => Outcome::Dead { reason },
        }
    }
}

/// What a step left for later steps.
#[derive(Default)]
struct StepResult {
    found: bool,
    vars: HashMap<String, Value>,
}

/// Why a rule stopped early.
enum RuleEnd {
    Done {
        target: Option<String>,
        created: bool,
    },
    Skipped(String),
    Stop(Outcome),
}

/// Runs a plan. `max_attachment_bytes` caps a single transferred file.
pub async fn execute(
    plan: &Plan,
    connectors: &Connectors,
    budget: &Budget,
    max_attachment_bytes: u64,
) -> Outcome {
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
        let Some(conn) = connectors.get(&r.connection) else {
            return Outcome::Dead {
                reason: format!(
                    "config_error: rule `{}` writes to unknown connection `{}`",
                    r.rule, r.connection
                ),
            };
        };
        match run_rule(
            &r.rule,
            &r.steps,
            conn,
            connectors,
            budget,
            max_attachment_bytes,
        )
        .await
        {
            RuleEnd::Done { target, created } => {
                tracing::info!(rule = %r.rule, action = ?r.action, connection = %r.connection,
                    target = target.as_deref().unwrap_or(""), created, "rule applied");
                applied.push(AppliedRule {
                    rule: r.rule.clone(),
                    connection: r.connection.clone(),
                    action: r.action,
                    target,
                    created,
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

async fn run_rule(
    rule: &str,
    steps: &[Step],
    conn: &Arc<dyn Connector>,
    connectors: &Connectors,
    budget: &Budget,
    max_attachment_bytes: u64,
) -> RuleEnd {
    let mut results: HashMap<&str, StepResult> = HashMap::new();
    let mut target = None;
    let mut created = false;
    for step in steps {
        let runs = match &step.run_if {
            RunIf::Always => true,
            RunIf::Found(s) => results.get(s.as_str()).is_some_and(|r| r.found),
            RunIf::NotFound(s) => results.get(s.as_str()).is_some_and(|r| !r.found),
        };
        if !runs {
            continue;
        }
        let call = match fill(step, &results, connectors, max_attachment_bytes) {
            Ok(c) => c,
            Err(e) => {
                return RuleEnd::Stop(Outcome::Dead {
                    reason: format!("mapping_error: rule `{rule}` step `{}`: {e}", step.id),
                })
            }
        };
        let reply = match conn.call(&call, budget).await {
            Ok(r) => r,
            Err(e) => return RuleEnd::Stop(Outcome::from_call(e)),
        };
        let lookup = step.on_empty.is_some();
        let mut result = StepResult::default();
        if reply.is_success() {
            let json = reply.json.as_ref().unwrap_or(&Value::Null);
            for (var, path) in &step.extract {
                let Ok(p) = Path::parse(path) else { continue };
                if let Some(v) = p.get(json).filter(|v| !is_empty(v)) {
                    result.vars.insert(var.clone(), v.clone());
                }
            }
            result.found = !lookup || step.extract.keys().all(|k| result.vars.contains_key(k));
        } else if lookup && reply.status == 404 {
            result.found = false;
        } else {
            return RuleEnd::Stop(rejected(&reply, conn.name(), &call));
        }
        for k in ["number", "key", "sys_id", "id"] {
            if let Some(v) = result.vars.get(k) {
                if target.is_none() || step.id == "create" {
                    target = Some(as_text(v).into_owned());
                }
                break;
            }
        }
        if step.id == "create" {
            created = true;
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
                OnEmpty::RetryLater => {
                    return RuleEnd::Stop(Outcome::Retry {
                        reason: format!(
                            "not_correlated: rule `{rule}`: `{}` has no record for this event yet",
                            conn.name()
                        ),
                        after: None,
                    })
                }
            }
        }
        results.insert(&step.id, result);
    }
    RuleEnd::Done { target, created }
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
fn rejected(reply: &crate::connector::Reply, conn: &str, call: &Call) -> Outcome {
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

/// Fills a step's placeholders and turns it into a [`Call`].
fn fill(
    step: &Step,
    results: &HashMap<&str, StepResult>,
    connectors: &Connectors,
    _max_attachment_bytes: u64,
) -> Result<Call, String> {
    let lookup = |name: &str| -> Result<&Value, String> {
        let (s, var) = name
            .split_once('.')
            .ok_or_else(|| format!("placeholder `{{{{{name}}}}}` names no step variable"))?;
        results
            .get(s)
            .and_then(|r| r.vars.get(var))
            .ok_or_else(|| format!("`{{{{{name}}}}}` has no value (step `{s}` gave none)"))
    };
    let path = substitute(&step.path, &|n| {
        lookup(n).map(|v| crate::rules::engine::encode_segment(&as_text(v)))
    })?;
    let text = |s: &str| substitute(s, &|n| lookup(n).map(|v| as_text(v).into_owned()));
    let query = step
        .query
        .iter()
        .map(|(k, v)| Ok((k.clone(), text(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let headers = step
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), text(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let body = match &step.body {
        Body::None => CallBody::None,
        Body::Json { json } => CallBody::Json(fill_json(json, &lookup)?),
        Body::Download {
            via,
            url,
            file_name,
            content_type,
            multipart,
        } => {
            let source = connectors
                .get(via)
                .ok_or_else(|| format!("attachments come from unknown connection `{via}`"))?;
            CallBody::File(FileSource {
                source: source.clone(),
                url: text(url)?,
                file_name: text(file_name)?,
                content_type: content_type.as_deref().map(text).transpose()?,
                multipart: *multipart,
            })
        }
    };
    Ok(Call {
        method: step.method,
        path,
        query,
        headers,
        body,
    })
}

fn fill_json<'a>(
    v: &Value,
    lookup: &dyn Fn(&str) -> Result<&'a Value, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("{{") => {
            let t = s.trim();
            // A whole-string placeholder keeps the value's JSON type.
            if let Some(name) = t
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|n| !n.contains("{{") && !n.contains("}}"))
            {
                lookup(name.trim())?.clone()
            } else {
                Value::String(substitute(s, &|n| {
                    lookup(n).map(|v| as_text(v).into_owned())
                })?)
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| fill_json(x, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), fill_json(x, lookup)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Replaces each `{{name}}` in `s` with `f(name)`.
fn substitute(s: &str, f: &dyn Fn(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&f(rest[start + 2..start + 2 + len].trim())?);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders() {
        let f = |n: &str| -> Result<String, String> {
            match n {
                "lookup.sys_id" => Ok("abc".into()),
                _ => Err(format!("no {n}")),
            }
        };
        assert_eq!(
            substitute("/api/now/table/incident/{{lookup.sys_id}}", &f).unwrap(),
            "/api/now/table/incident/abc"
        );
        assert_eq!(substitute("{{ lookup.sys_id }}-x", &f).unwrap(), "abc-x");
        assert_eq!(substitute("plain", &f).unwrap(), "plain");
        assert_eq!(substitute("open {{ only", &f).unwrap(), "open {{ only");
        assert!(substitute("{{create.key}}", &f).is_err());
    }

    #[test]
    fn json_placeholders_keep_types() {
        let id = json!(31);
        let key = json!("SUP-1");
        let lookup = |n: &str| -> Result<&Value, String> {
            match n {
                "transitions.id" => Ok(&id),
                "create.key" => Ok(&key),
                _ => Err(n.to_owned()),
            }
        };
        let body = json!({"transition": {"id": "{{transitions.id}}"}, "note": "see {{create.key}}", "n": 1});
        assert_eq!(
            fill_json(&body, &lookup).unwrap(),
            json!({"transition": {"id": 31}, "note": "see SUP-1", "n": 1})
        );
    }
}
