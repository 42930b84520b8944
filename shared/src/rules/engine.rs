//! Evaluation: one event in, one [`Plan`] out.
//!
//! Order: the endpoint's whitelist (drop with reason `filtered`), then the
//! rules from that endpoint in file order — event names, conditions, and for
//! `iterate` rules once per array element — each matched rule planned into
//! requests for its connection; `stop: true` on a matched rule ends the walk.
//! Nothing here does I/O: lookups the worker must do are planned as steps
//! whose results later steps reference by placeholder (see [`crate::rules::plan`]).

use super::calls::common::{convert_text, step, Stop};
use super::calls::http::http_steps;
use super::calls::identity::{identity_steps, servicenow_member_steps};
use super::calls::jira::{comment_twin, jira_steps};
use super::calls::servicenow::servicenow_steps;
use super::context::Context;
use super::model::{Action, Condition, Mapping, Rule, Source};
use super::path::{as_text, Path};
use crate::config::model::{Endpoint, SourceKind};
use crate::config::Config;
use crate::intake::envelope::Envelope;
use crate::links::store::{Pair, Scope};
use crate::outbound::connections::{Connection, ConnectionKind};
use crate::rules::plan::{Body, Decision, Method, OnEmpty, PairBack, Plan, RulePlan, RuleStatus};
use crate::support::url::encode_segment;
use serde_json::{json, Map, Value};

/// Why no plan could be made (the event itself is unusable).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no endpoint is named `{0}`")]
    UnknownEndpoint(String),
    #[error("the payload is not a JSON object")]
    NotAnObject,
    #[error("the payload is not valid JSON: {0}")]
    BadJson(String),
}

impl crate::support::error::Classified for PlanError {
    fn class(&self) -> crate::support::error::Class {
        crate::support::error::Class::Permanent
    }
    fn code(&self) -> &'static str {
        match self {
            PlanError::UnknownEndpoint(_) => "config_error",
            _ => "bad_payload",
        }
    }
}

/// Plans a queued envelope (the worker's entry point).
pub fn plan_envelope(config: &Config, env: &Envelope) -> Result<Plan, PlanError> {
    let endpoint = config
        .endpoint(&env.endpoint)
        .ok_or_else(|| PlanError::UnknownEndpoint(env.endpoint.clone()))?;
    let payload = parse_for(config, &endpoint.name, env.payload.get())?;
    plan_event(
        config,
        endpoint,
        &env.event,
        env.event_type.as_deref(),
        &payload,
    )
}

/// Parses a body as the rules of `endpoint` read it: only what they can
/// read is built (see [`crate::rules::projection`]).
pub fn parse_for(config: &Config, endpoint: &str, body: &str) -> Result<Value, PlanError> {
    let parsed = match config.projections.get(endpoint) {
        Some(p) => p.parse(body),
        None => serde_json::from_str(body),
    };
    parsed.map_err(|e| PlanError::BadJson(e.to_string()))
}

/// Plans a raw webhook body that arrived on `endpoint` (what `relay dry-run`
/// does): the event name is read from the payload as the ingress would.
pub fn plan(config: &Config, endpoint: &str, payload: &Value) -> Result<Plan, PlanError> {
    let ep = config
        .endpoint(endpoint)
        .ok_or_else(|| PlanError::UnknownEndpoint(endpoint.to_owned()))?;
    let (event, event_type) = event_names(ep.kind, payload);
    plan_event(config, ep, event, event_type, payload)
}

/// `webhookEvent` + `issue_event_type_name` (Jira) or `event` (ServiceNow).
pub fn event_names(kind: SourceKind, payload: &Value) -> (&str, Option<&str>) {
    let s = |k: &str| payload.get(k).and_then(Value::as_str);
    match kind {
        SourceKind::Jira => (
            s("webhookEvent").unwrap_or("unknown"),
            s("issue_event_type_name"),
        ),
        SourceKind::Servicenow => (s("event").unwrap_or("unknown"), None),
    }
}

/// Plans one event whose names are known.
pub fn plan_event(
    config: &Config,
    endpoint: &Endpoint,
    event: &str,
    event_type: Option<&str>,
    payload: &Value,
) -> Result<Plan, PlanError> {
    if !payload.is_object() {
        return Err(PlanError::NotAnObject);
    }
    let mut plan = Plan {
        endpoint: endpoint.name.clone(),
        event: event.to_owned(),
        event_type: event_type.map(str::to_owned),
        decision: Decision::NoRule,
        rules: Vec::new(),
    };
    let mut ctx = Context::new(payload, event, endpoint.kind);
    if let Some(w) = config.whitelist(&endpoint.name) {
        if let Err(reason) = w.check(&ctx) {
            plan.decision = Decision::Filtered { reason };
            return Ok(plan);
        }
    }
    let mut matched: Vec<String> = Vec::new();
    for rule in config.rules.iter().filter(|r| r.from == endpoint.name) {
        if !rule.events.is_empty()
            && !rule
                .events
                .iter()
                .any(|e| e == event || Some(e.as_str()) == event_type)
        {
            continue;
        }
        let Some(conn) = config.connection(&rule.to) else {
            continue; // unreachable: config checks rule.to
        };
        let via = rule
            .download_from
            .as_deref()
            .and_then(|n| config.connection(n));
        let back = rule
            .pair_back
            .as_ref()
            .and_then(|b| config.connection(&b.connection));
        let mut hit = false;
        match &rule.iterate {
            Some(it) => {
                let payload: &Value = payload;
                let items: &[Value] = it
                    .get(payload)
                    .and_then(Value::as_array)
                    .map_or(&[], Vec::as_slice);
                for (i, item) in items.iter().enumerate() {
                    ctx.item = Some(item);
                    if rule.conditions.iter().all(|c| holds(c, &ctx)) {
                        hit = true;
                        plan.rules.push(plan_rule(
                            rule,
                            conn,
                            via,
                            back,
                            endpoint.kind,
                            &ctx,
                            Some(i),
                        ));
                    }
                }
                ctx.item = None;
            }
            None => {
                if rule.conditions.iter().all(|c| holds(c, &ctx)) {
                    hit = true;
                    plan.rules
                        .push(plan_rule(rule, conn, via, back, endpoint.kind, &ctx, None));
                }
            }
        }
        if hit {
            matched.push(rule.name.clone());
            if rule.stop {
                break;
            }
        }
    }
    if !matched.is_empty() {
        plan.decision = Decision::Matched { rules: matched };
    }
    Ok(plan)
}

/// Evaluates one condition.
pub fn holds(c: &Condition, ctx: &Context<'_>) -> bool {
    let text = |p| ctx.get(p).filter(|v| !v.is_null()).map(as_text);
    match c {
        Condition::Equals(p, v) => text(p).as_deref() == Some(v.as_str()),
        Condition::NotEquals(p, v) => text(p).as_deref() != Some(v.as_str()),
        Condition::In(p, vs) => text(p).is_some_and(|t| vs.iter().any(|v| *v == t)),
        Condition::Exists(p, want) => ctx.get(p).is_some_and(|v| !v.is_null()) == *want,
        Condition::Matches(p, re) => text(p).is_some_and(|t| re.is_match(&t)),
        Condition::Changed { field, from, to } => {
            let items = ctx
                .payload
                .get("changelog")
                .and_then(|c| c.get("items"))
                .or_else(|| ctx.payload.get("changes"))
                .and_then(Value::as_array);
            let side = |item: &Value, s: &str, raw: &str| -> String {
                item.get(s)
                    .filter(|v| !v.is_null())
                    .or_else(|| item.get(raw))
                    .map(|v| as_text(v).into_owned())
                    .unwrap_or_default()
            };
            items.into_iter().flatten().any(|item| {
                let named = |k| {
                    item.get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|f| f.eq_ignore_ascii_case(field))
                };
                (named("field") || named("fieldId"))
                    && from
                        .as_ref()
                        .is_none_or(|f| side(item, "fromString", "from").eq_ignore_ascii_case(f))
                    && to
                        .as_ref()
                        .is_none_or(|t| side(item, "toString", "to").eq_ignore_ascii_case(t))
            })
        }
    }
}

fn eval_mapping(m: &Mapping, ctx: &Context<'_>) -> Result<Value, String> {
    let v = match &m.source {
        Source::Path(p) => ctx.get(p).cloned().unwrap_or(Value::Null),
        Source::Template(t) => t.render(ctx)?,
        Source::Const(c) => c.clone(),
    };
    Ok(match &m.table {
        Some(table) => {
            let mapped = match object_keys(&v) {
                // An object (a Jira status, priority, resolution) is looked
                // up by its id, then its name, then its status category:
                // ids and categories are the same in every language.
                Some(keys) => keys
                    .iter()
                    .find_map(|k| table.entries.get(k.as_str()))
                    .or(table.default.as_ref()),
                None => table.lookup((!v.is_null()).then(|| as_text(&v)).as_deref()),
            };
            match mapped {
                Some(mapped) => mapped.clone(),
                None if table.entries.is_empty() => v,
                None => Value::Null,
            }
        }
        None => v,
    })
}

/// The keys a value table tries for an object value: `id`, `key`,
/// `value`, `name`, `statusCategory.key`; `None` for a scalar.
fn object_keys(v: &Value) -> Option<Vec<String>> {
    let o = v.as_object()?;
    let mut keys: Vec<String> = ["id", "key", "value", "name"]
        .iter()
        .filter_map(|k| {
            o.get(*k)
                .filter(|x| !x.is_null())
                .map(|x| as_text(x).into_owned())
        })
        .collect();
    if let Some(c) = o
        .get("statusCategory")
        .and_then(|c| c.get("key"))
        .and_then(Value::as_str)
    {
        keys.push(c.to_owned());
    }
    Some(keys)
}

/// A Jira delete rule correlated by e-mail address removes the account.
fn deletes_an_account(rule: &Rule) -> bool {
    rule.action == Action::Delete
        && rule
            .correlate
            .as_ref()
            .is_some_and(|c| c.field == "emailAddress")
}

fn plan_rule(
    rule: &Rule,
    conn: &Connection,
    via: Option<&Connection>,
    back: Option<&Connection>,
    source: SourceKind,
    ctx: &Context<'_>,
    item: Option<usize>,
) -> RulePlan {
    let mut rp = RulePlan {
        rule: rule.name.clone(),
        connection: conn.name.clone(),
        action: rule.action,
        item,
        status: RuleStatus::Ready,
        steps: Vec::new(),
        link: None,
        pair_back: None,
        twin: None,
        delete_cap: (rule.action == Action::Delete).then_some(conn.deletes_per_minute),
    };
    let mut fields: Vec<(String, Value)> = Vec::with_capacity(rule.map.len());
    for (target, m) in &rule.map {
        match eval_mapping(m, ctx) {
            Ok(Value::Null) if m.required => {
                rp.status = RuleStatus::Error {
                    message: format!("required field `{target}` has no value in this event"),
                };
                return rp;
            }
            Ok(Value::Null) => {}
            Ok(v) if m.user => fields.push((
                target.clone(),
                super::calls::common::user_marker(conn.kind, v),
            )),
            Ok(v) => fields.push((target.clone(), convert_text(conn, target, v))),
            Err(e) => {
                rp.status = RuleStatus::Error {
                    message: format!("mapping `{target}`: {e}"),
                };
                return rp;
            }
        }
    }
    let key = match &rule.correlate {
        Some(c) => match c.key.render(ctx) {
            Ok(v) if !v.is_null() && !as_text(&v).is_empty() => Some(as_text(&v).into_owned()),
            Ok(_) => None,
            Err(e) => {
                rp.status = RuleStatus::Error {
                    message: format!("correlation key: {e}"),
                };
                return rp;
            }
        },
        None => None,
    };
    // A key absent from the event will not appear on redelivery, so this is
    // a skip even with `wait_for_correlation` (which waits for the *target*).
    if rule.correlate.is_some() && key.is_none() {
        rp.status = RuleStatus::Skipped {
            reason: "the correlation key is missing from this event".to_owned(),
        };
        return rp;
    }
    let not_found = if matches!(rule.action, Action::Create | Action::Upsert | Action::User) {
        OnEmpty::Continue
    } else if rule.wait_for_correlation {
        OnEmpty::RetryLater
    } else {
        OnEmpty::Skip
    };
    let result = match conn.kind {
        ConnectionKind::Servicenow if rule.action == Action::GroupMember => {
            servicenow_member_steps(rule, key.as_deref(), fields, not_found)
        }
        ConnectionKind::Servicenow => {
            servicenow_steps(rule, conn, via, key.as_deref(), fields, not_found)
        }
        // An account, not an issue: identity rules, and a delete found by
        // e-mail address.
        ConnectionKind::Jira if rule.action.is_identity() || deletes_an_account(rule) => {
            identity_steps(rule, conn, key.as_deref(), fields, not_found)
        }
        ConnectionKind::Jira => {
            let twin = comment_twin(rule, ctx);
            if let Some((_, t)) = &twin {
                rp.twin = Some(t.clone());
            }
            jira_steps(rule, conn, via, key.as_deref(), fields, not_found, twin)
        }
        ConnectionKind::Http => http_steps(rule, ctx, fields),
    };
    match result {
        Ok(steps) => rp.steps = steps,
        Err(Stop::Error(message)) => rp.status = RuleStatus::Error { message },
        Err(Stop::Skip(reason)) => rp.status = RuleStatus::Skipped { reason },
    }
    if let (Some(c), Some(k)) = (&rule.correlate, key.as_deref()) {
        rp.link = match conn.kind {
            ConnectionKind::Servicenow => Some(Scope::new(&conn.name, &c.field, k)),
            // Correlated by the issue key itself: the key is the record.
            ConnectionKind::Jira if c.field != "key" => Some(Scope::new(&conn.name, &c.field, k)),
            _ => None,
        };
    }
    if let (Some(pb), Some(back)) = (&rule.pair_back, back) {
        if rp.status == RuleStatus::Ready {
            match pair_back_plan(pb, back, source, ctx) {
                Ok(p) => rp.pair_back = Some(p),
                Err(message) => rp.status = RuleStatus::Error { message },
            }
        }
    }
    rp
}

/// The writes that put the twin's key into the source record: ServiceNow
/// `PATCH` of the record's field (and `correlation_display`), Jira `PUT` of
/// the issue's field plus the `jira-relay` issue property.
fn pair_back_plan(
    pb: &crate::rules::model::PairBackRule,
    back: &Connection,
    source: SourceKind,
    ctx: &Context<'_>,
) -> Result<PairBack, String> {
    let text = |path: &str| {
        Path::parse(path)
            .ok()
            .and_then(|p| ctx.get(&p).map(|v| as_text(v).into_owned()))
            .filter(|s| !s.is_empty())
    };
    let target_key = Value::String("{{target.key}}".into());
    match (back.kind, source) {
        (ConnectionKind::Servicenow, SourceKind::Servicenow) => {
            let sys_id = text("sys_id").ok_or(
                "pair_back_impossible: the event has no `sys_id`, so the new record's key cannot be written back",
            )?;
            let mut body = Map::new();
            body.insert(pb.field.clone(), target_key);
            if pb.field == "correlation_id" {
                body.insert(
                    "correlation_display".into(),
                    Value::String("jira-relay".into()),
                );
            }
            // The record's table: ServiceNow events are named after it
            // (`change_request.created`); else the connection's table.
            let table = ctx
                .event
                .as_str()
                .and_then(|e| e.split_once('.'))
                .map(|(t, _)| t)
                .filter(|t| {
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
                .unwrap_or(&back.table);
            let mut patch = step(
                "pair_back",
                Method::Patch,
                format!("/api/now/table/{table}/{}", encode_segment(&sys_id)),
            );
            patch.query = vec![("sysparm_fields".into(), "sys_id".into())];
            patch.body = Body::Json {
                json: Value::Object(body),
            };
            Ok(PairBack {
                connection: back.name.clone(),
                field: pb.field.clone(),
                source: Pair {
                    id: Some(sys_id),
                    key: text("number"),
                },
                steps: vec![patch],
            })
        }
        (ConnectionKind::Jira, SourceKind::Jira) => {
            let key = text("issue.key").ok_or(
                "pair_back_impossible: the event has no `issue.key`, so the new record's key cannot be written back",
            )?;
            let api = back.api.prefix();
            let issue = format!("{api}/issue/{}", encode_segment(&key));
            let mut put = step("pair_back", Method::Put, issue.clone());
            put.body = Body::Json {
                json: json!({ "fields": { pb.field.clone(): "{{target.key}}" } }),
            };
            let mut prop = step(
                "pair_back_property",
                Method::Put,
                format!("{issue}/properties/jira-relay"),
            );
            prop.body = Body::Json {
                json: json!({ "paired": { "key": "{{target.key}}", "id": "{{target.id}}" } }),
            };
            Ok(PairBack {
                connection: back.name.clone(),
                field: pb.field.clone(),
                source: Pair {
                    id: text("issue.id"),
                    key: Some(key),
                },
                steps: vec![put, prop],
            })
        }
        _ => Err(
            "config_error: `pair_back` names a connection of another kind than the event's source"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::calls::common::nested;
    use crate::rules::plan::RunIf;

    #[test]
    fn nested_targets_and_update_form() {
        let v = nested(
            [
                ("fields.project.key", json!("SUP")),
                ("fields.summary", json!("x")),
                ("update.comment.add.body", json!("hi")),
                ("update.labels.add", json!("relay")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        );
        assert_eq!(
            v,
            json!({"fields": {"project": {"key": "SUP"}, "summary": "x"},
                   "update": {"comment": [{"add": {"body": "hi"}}], "labels": [{"add": "relay"}]}})
        );
    }

    const CONFIG: &str = "\
version: 1
endpoints:
  - name: jira
    kind: jira
    stage: test
    auth: { token: relay/webhook#token }
    whitelist: actor.id!=integration
connections:
  - name: snow
    kind: servicenow
    base_url: https://example.service-now.com
    auth: { kind: basic, username: s#u, password: s#p }
rules:
  - name: comment
    from: jira
    when: { events: [comment_created] }
    to: snow
    action: comment
    correlate: { key: issue.key }
    map:
      work_notes: \"{{ comment.body | text }}\"
";

    #[test]
    fn envelope_and_raw_payload_plan_alike() {
        let config = Config::from_yaml(CONFIG, "t.yaml", |_| None).unwrap();
        let body = br#"{"webhookEvent":"comment_created","issue":{"key":"SUP-7"},
            "comment":{"body":"hello","author":{"accountId":"u1"}}}"#;
        let env = Envelope::build(
            "jira",
            SourceKind::Jira,
            body,
            &crate::intake::envelope::DeliveryHeaders::default(),
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let from_env = plan_envelope(&config, &env).unwrap();
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(from_env, plan(&config, "jira", &payload).unwrap());
        let steps = &from_env.rules[0].steps;
        assert_eq!(steps[0].query[0].1, "correlation_id=SUP-7");
        // The same journal text already on the record: not written again.
        assert_eq!(steps[1].id, "seen");
        assert_eq!(
            steps[1].query[0].1,
            "element_id={{lookup.sys_id}}^element=work_notes^value=hello"
        );
        assert_eq!(steps[2].run_if, RunIf::NotFound("seen".into()));
        assert_eq!(
            steps[2].body,
            Body::Json {
                json: json!({"work_notes": "hello"})
            }
        );

        let echo: Value = serde_json::from_str(
            r#"{"webhookEvent":"comment_created","comment":{"author":{"accountId":"integration"}}}"#,
        )
        .unwrap();
        let p = plan(&config, "jira", &echo).unwrap();
        assert!(matches!(p.decision, Decision::Filtered { .. }), "{p:?}");
        assert_eq!(
            plan(&config, "nope", &echo).unwrap_err(),
            PlanError::UnknownEndpoint("nope".into())
        );
    }

    #[test]
    fn jira_upsert_by_key_reads_the_issue_first() {
        let yaml = "\
version: 1
endpoints:
  - { name: jira, kind: jira, stage: test, auth: { token: w#t } }
connections:
  - name: dc
    kind: jira
    base_url: https://jira.example.com
    api: v2
    auth: { kind: bearer, token: dc#pat }
rules:
  - name: mirror
    from: jira
    to: dc
    action: upsert
    correlate: { key: issue.key }
    map: { fields.summary: issue.fields.summary }
";
        let config = Config::from_yaml(yaml, "t.yaml", |_| None).unwrap();
        let p = json!({"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-1", "fields": {"summary": "s"}}});
        let steps = &plan(&config, "jira", &p).unwrap().rules[0].steps;
        let shape: Vec<(&str, Method, &str, &RunIf)> = steps
            .iter()
            .map(|s| (s.id.as_str(), s.method, s.path.as_str(), &s.run_if))
            .collect();
        assert_eq!(
            shape,
            [
                (
                    "lookup",
                    Method::Get,
                    "/rest/api/2/issue/OPS-1",
                    &RunIf::Always
                ),
                (
                    "update",
                    Method::Put,
                    "/rest/api/2/issue/{{lookup.key}}",
                    &RunIf::Found("lookup".into())
                ),
                (
                    "create",
                    Method::Post,
                    "/rest/api/2/issue",
                    &RunIf::NotFound("lookup".into())
                ),
            ]
        );
    }
}
