//! Evaluation: one event in, one [`Plan`] out.
//!
//! Order: the endpoint's whitelist (drop with reason `filtered`), then the
//! rules from that endpoint in file order — event names, conditions, and for
//! `iterate` rules once per array element — each matched rule planned into
//! requests for its connection; `stop: true` on a matched rule ends the walk.
//! Nothing here does I/O: lookups the worker must do are planned as steps
//! whose results later steps reference by placeholder (see [`crate::rules::plan`]).

use super::context::Context;
use super::model::{Action, Condition, Mapping, Rule, Source};
use super::path::{as_text, Path, Segment};
use crate::config::model::{Endpoint, SourceKind};
use crate::config::Config;
use crate::intake::envelope::Envelope;
use crate::links::store::{Pair, Scope};
use crate::outbound::connections::{Connection, ConnectionKind, JiraApi};
use crate::rules::plan::{
    Body, Decision, Method, OnEmpty, PairBack, Plan, RulePlan, RuleStatus, RunIf, Step,
};
use crate::support::url::encode_segment;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

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

/// Plans a queued envelope (the worker's entry point).
pub fn plan_envelope(config: &Config, env: &Envelope) -> Result<Plan, PlanError> {
    let payload: Value =
        serde_json::from_str(env.payload.get()).map_err(|e| PlanError::BadJson(e.to_string()))?;
    let endpoint = config
        .endpoint(&env.endpoint)
        .ok_or_else(|| PlanError::UnknownEndpoint(env.endpoint.clone()))?;
    plan_event(
        config,
        endpoint,
        &env.event,
        env.event_type.as_deref(),
        &payload,
    )
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
            let key = (!v.is_null()).then(|| as_text(&v));
            match table.lookup(key.as_deref()) {
                Some(mapped) => mapped.clone(),
                None if table.entries.is_empty() => v,
                None => Value::Null,
            }
        }
        None => v,
    })
}

/// Fields whose Jira v3 value must be ADF.
const ADF_FIELDS: &[&str] = &[
    "body",
    "fields.description",
    "fields.environment",
    "update.comment.add.body",
];

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
    let not_found = if matches!(rule.action, Action::Create | Action::Upsert) {
        OnEmpty::Continue
    } else if rule.wait_for_correlation {
        OnEmpty::RetryLater
    } else {
        OnEmpty::Skip
    };
    let result = match conn.kind {
        ConnectionKind::Servicenow => {
            servicenow_steps(rule, conn, via, key.as_deref(), fields, not_found)
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
            let mut patch = step(
                "pair_back",
                Method::Patch,
                format!("/api/now/table/{}/{}", back.table, encode_segment(&sys_id)),
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

/// Text ⇄ ADF to suit the target: v3 rich-text fields get ADF, v2 gets wiki
/// markup, ServiceNow and HTTP get plain text for an ADF value. Jira
/// `fields.labels` given as text becomes an array of its words.
fn convert_text(conn: &Connection, target: &str, v: Value) -> Value {
    let rich = ADF_FIELDS.contains(&target);
    match conn.kind {
        // Jira labels are an array of words; a templated string becomes one.
        ConnectionKind::Jira if target == "fields.labels" => match v {
            Value::String(s) => Value::Array(
                s.split_whitespace()
                    .map(|w| Value::String(w.to_owned()))
                    .collect(),
            ),
            other => other,
        },
        ConnectionKind::Jira if rich && conn.api == JiraApi::V3 => match v {
            Value::String(s) => crate::rules::adf::from_text(&s),
            other => other,
        },
        ConnectionKind::Jira if crate::rules::adf::is_adf(&v) => {
            Value::String(crate::rules::adf::to_wiki(&v))
        }
        ConnectionKind::Servicenow if crate::rules::adf::is_adf(&v) => {
            Value::String(crate::rules::adf::to_text(&v))
        }
        _ => v,
    }
}

fn take(fields: &mut Vec<(String, Value)>, name: &str) -> Option<Value> {
    let i = fields.iter().position(|(t, _)| t == name)?;
    Some(fields.remove(i).1)
}

fn text_of(v: &Value) -> String {
    as_text(v).into_owned()
}

/// Why a rule's steps could not be planned.
enum Stop {
    /// The mapping or the event is unusable for this rule (permanent).
    Error(String),
    /// Nothing to do for this event, for the reason given.
    Skip(String),
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Stop::Error(s)
    }
}

impl From<&str> for Stop {
    fn from(s: &str) -> Self {
        Stop::Error(s.to_owned())
    }
}

/// Why an attachment is not fetched: the URL is missing from the event. The
/// rule is skipped with this reason. (A URL outside the `download_from`
/// connection is an error, not a skip: see `download`.)
struct SkipDownload(String);

fn download(
    fields: &mut Vec<(String, Value)>,
    via: Option<&Connection>,
    multipart: bool,
) -> Result<Result<Body, SkipDownload>, String> {
    let via = via.ok_or("attach rules need `download_from`")?;
    let Some(url) = take(fields, "url").map(|u| text_of(&u)) else {
        return Ok(Err(SkipDownload(
            "the attachment `url` has no value in this event".into(),
        )));
    };
    // A URL elsewhere would send the connection's credentials there: the
    // event is dead with a reason (the worker checks again before fetching).
    if !crate::support::url::url_is_under(&url, &via.base_url) {
        return Err(format!(
            "attachment_url_not_allowed: `{url}` is not under {} (connection `{}`); not fetched",
            via.base_url, via.name
        ));
    }
    let file_name =
        take(fields, "file_name").map_or_else(|| "attachment".to_owned(), |v| text_of(&v));
    Ok(Ok(Body::Download {
        via: via.name.clone(),
        url,
        file_name,
        content_type: take(fields, "content_type").map(|v| text_of(&v)),
        multipart,
    }))
}

fn step(id: &str, method: Method, path: String) -> Step {
    Step {
        id: id.to_owned(),
        method,
        path,
        query: Vec::new(),
        headers: BTreeMap::new(),
        body: Body::None,
        run_if: RunIf::Always,
        extract: BTreeMap::new(),
        on_empty: None,
        check: false,
    }
}

fn servicenow_steps(
    rule: &Rule,
    conn: &Connection,
    via: Option<&Connection>,
    key: Option<&str>,
    mut fields: Vec<(String, Value)>,
    not_found: OnEmpty,
) -> Result<Vec<Step>, Stop> {
    let table = rule.table.as_deref().unwrap_or(&conn.table);
    let base = format!("/api/now/table/{table}");
    let corr_field = rule
        .correlate
        .as_ref()
        .map_or("correlation_id", |c| c.field.as_str());
    let key = key.ok_or("ServiceNow rules need a correlation key")?;
    let mut lookup = step("lookup", Method::Get, base.clone());
    lookup.query = vec![
        (
            "sysparm_query".into(),
            format!("{corr_field}={}", key.replace('^', "^^")),
        ),
        ("sysparm_fields".into(), "sys_id,number".into()),
        ("sysparm_limit".into(), "1".into()),
    ];
    lookup
        .extract
        .insert("sys_id".into(), "result[0].sys_id".into());
    lookup
        .extract
        .insert("number".into(), "result[0].number".into());
    lookup.on_empty = Some(not_found);
    let mut steps = vec![lookup];
    let record = format!("{base}/{{{{lookup.sys_id}}}}");
    let flat =
        |fields: Vec<(String, Value)>| -> Value { Value::Object(fields.into_iter().collect()) };
    match rule.action {
        Action::Create | Action::Upsert => {
            if !fields.iter().any(|(t, _)| t == corr_field) {
                fields.push((corr_field.to_owned(), Value::String(key.to_owned())));
            }
            // Who keeps this record in step, shown on the ServiceNow form.
            if corr_field == "correlation_id"
                && !fields.iter().any(|(t, _)| t == "correlation_display")
            {
                fields.push((
                    "correlation_display".into(),
                    Value::String("jira-relay".into()),
                ));
            }
            let body = flat(fields);
            if rule.action == Action::Upsert {
                let mut patch = step("update", Method::Patch, record);
                patch.run_if = RunIf::Found("lookup".into());
                patch.body = Body::Json { json: body.clone() };
                steps.push(patch);
            }
            let mut post = step("create", Method::Post, base);
            post.run_if = RunIf::NotFound("lookup".into());
            post.body = Body::Json { json: body };
            post.extract.insert("sys_id".into(), "result.sys_id".into());
            post.extract.insert("number".into(), "result.number".into());
            steps.push(post);
        }
        Action::Update | Action::Comment | Action::Transition => {
            if fields.is_empty() {
                return Err("nothing to update: every mapped field is empty in this event".into());
            }
            let mut patch = step("update", Method::Patch, record);
            patch.run_if = RunIf::Found("lookup".into());
            // A journal entry has no idempotency key: if the event comes back
            // after the entry was written but before the queue heard of it
            // (a crash, a lost acknowledgement), the same text would be
            // added twice. So a comment is written only if the record has no
            // entry of that field with exactly that text yet.
            let journal: Vec<(&str, String)> = fields
                .iter()
                .filter(|(t, _)| t == "comments" || t == "work_notes")
                .map(|(t, v)| (t.as_str(), text_of(v)))
                .collect();
            if rule.action == Action::Comment {
                if let [(field, text)] = journal.as_slice() {
                    let mut seen = step(
                        "seen",
                        Method::Get,
                        "/api/now/table/sys_journal_field".into(),
                    );
                    seen.run_if = RunIf::Found("lookup".into());
                    seen.query = vec![
                        (
                            "sysparm_query".into(),
                            format!(
                                "element_id={{{{lookup.sys_id}}}}^element={field}^value={}",
                                text.replace('^', "^^")
                            ),
                        ),
                        ("sysparm_fields".into(), "sys_id".into()),
                        ("sysparm_limit".into(), "1".into()),
                    ];
                    seen.extract
                        .insert("entry".into(), "result[0].sys_id".into());
                    seen.on_empty = Some(OnEmpty::Continue);
                    steps.push(seen);
                    patch.run_if = RunIf::NotFound("seen".into());
                }
            }
            patch.body = Body::Json { json: flat(fields) };
            steps.push(patch);
        }
        Action::Attach => {
            let size = take(&mut fields, "size").map(|v| text_of(&v));
            let body = download(&mut fields, via, false)?.map_err(|s| Stop::Skip(s.0))?;
            let file_name = match &body {
                Body::Download { file_name, .. } => file_name.clone(),
                _ => String::new(),
            };
            let mut post = step("attach", Method::Post, "/api/now/attachment/file".into());
            post.run_if = RunIf::Found("lookup".into());
            // With the size mapped, an attachment of the same name and size
            // already on the record is this one, written before a crash or a
            // lost acknowledgement: not uploaded again.
            if let Some(size) = size.filter(|s| s.parse::<u64>().is_ok()) {
                let mut seen = step("seen", Method::Get, "/api/now/attachment".into());
                seen.run_if = RunIf::Found("lookup".into());
                seen.query = vec![
                    (
                        "sysparm_query".into(),
                        format!(
                            "table_sys_id={{{{lookup.sys_id}}}}^file_name={}^size_bytes={size}",
                            file_name.replace('^', "^^")
                        ),
                    ),
                    ("sysparm_limit".into(), "1".into()),
                ];
                seen.extract
                    .insert("attachment".into(), "result[0].sys_id".into());
                seen.on_empty = Some(OnEmpty::Continue);
                steps.push(seen);
                post.run_if = RunIf::NotFound("seen".into());
            }
            post.query = vec![
                ("table_name".into(), table.to_owned()),
                ("table_sys_id".into(), "{{lookup.sys_id}}".into()),
                ("file_name".into(), file_name),
            ];
            post.body = body;
            steps.push(post);
        }
        Action::Delete => {
            let mut del = step("delete", Method::Delete, record);
            del.run_if = RunIf::Found("lookup".into());
            steps.push(del);
        }
    }
    Ok(steps)
}

/// Sets `a.b.c` in a JSON object. `update.<field>.<op>[.<sub>]` becomes Jira's
/// update form `{"update": {"<field>": [{"<op>": value or {"<sub>": value}}]}}`.
fn set_nested(root: &mut Map<String, Value>, target: &str, value: Value) {
    let parts: Vec<&str> = target.split('.').collect();
    if parts.len() >= 3 && parts[0] == "update" {
        let inner = if parts.len() > 3 {
            let mut m = Map::new();
            set_nested(&mut m, &parts[3..].join("."), value);
            Value::Object(m)
        } else {
            value
        };
        let update = root.entry("update").or_insert_with(|| json!({}));
        if let Some(u) = update.as_object_mut() {
            let ops = u.entry(parts[1]).or_insert_with(|| json!([]));
            if let Some(arr) = ops.as_array_mut() {
                arr.push(json!({ parts[2]: inner }));
            }
        }
        return;
    }
    let mut cur = root;
    for p in &parts[..parts.len() - 1] {
        let entry = cur.entry(*p).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        cur = match entry.as_object_mut() {
            Some(m) => m,
            None => return,
        };
    }
    cur.insert(parts[parts.len() - 1].to_owned(), value);
}

fn nested(fields: Vec<(String, Value)>) -> Value {
    let mut root = Map::new();
    for (t, v) in fields {
        set_nested(&mut root, &t, v);
    }
    Value::Object(root)
}

fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A Jira comment edit or deletion to carry to a Jira target: (`updated` |
/// `deleted`, the change id its twin was created for).
fn comment_twin(rule: &Rule, ctx: &Context<'_>) -> Option<(&'static str, String)> {
    if rule.action != Action::Comment {
        return None;
    }
    let what = match ctx.event.as_str()? {
        "comment_updated" => "updated",
        "comment_deleted" => "deleted",
        _ => return None,
    };
    let id = |p: &str| {
        Path::parse(p)
            .ok()
            .and_then(|p| ctx.get(&p).map(|v| as_text(v).into_owned()))
            .filter(|s| !s.is_empty())
    };
    let (issue, comment) = (id("issue.id")?, id("comment.id")?);
    Some((what, format!("issue:{issue}:comment:{comment}:created")))
}

fn jira_steps(
    rule: &Rule,
    conn: &Connection,
    via: Option<&Connection>,
    key: Option<&str>,
    mut fields: Vec<(String, Value)>,
    not_found: OnEmpty,
    twin: Option<(&'static str, String)>,
) -> Result<Vec<Step>, Stop> {
    let api = conn.api.prefix();
    let corr = rule.correlate.as_ref().map(|c| c.field.as_str());
    let mut steps = Vec::new();
    // Where the target issue is: its key directly, or a search.
    let issue_ref = match (corr, key) {
        // Upsert must know whether the issue exists: read it (404 = not found).
        (Some("key"), Some(k)) if rule.action == Action::Upsert => {
            let mut lookup = step(
                "lookup",
                Method::Get,
                format!("{api}/issue/{}", encode_segment(k)),
            );
            lookup.query = vec![("fields".into(), "key".into())];
            lookup.extract.insert("key".into(), "key".into());
            lookup.on_empty = Some(OnEmpty::Continue);
            steps.push(lookup);
            Some("{{lookup.key}}".to_owned())
        }
        (Some("key"), Some(k)) => Some(encode_segment(k)),
        (Some(field), Some(k)) => {
            let jql = match field.strip_prefix("customfield_") {
                Some(n) => format!("cf[{n}] ~ {}", jql_string(k)),
                None if field == "labels" => format!("labels = {}", jql_string(k)),
                None => format!("{} = {}", jql_string(field), jql_string(k)),
            };
            let path = match conn.api {
                JiraApi::V3 => format!("{api}/search/jql"),
                JiraApi::V2 => format!("{api}/search"),
            };
            let mut lookup = step("lookup", Method::Get, path);
            lookup.query = vec![
                ("jql".into(), jql),
                ("fields".into(), "key".into()),
                ("maxResults".into(), "1".into()),
            ];
            lookup.extract.insert("key".into(), "issues[0].key".into());
            lookup.on_empty = Some(not_found);
            steps.push(lookup);
            Some("{{lookup.key}}".to_owned())
        }
        _ => None,
    };
    let has_lookup = !steps.is_empty();
    let found = |s: &mut Step| {
        if has_lookup {
            s.run_if = RunIf::Found("lookup".into());
        }
    };
    let need_ref = || {
        issue_ref
            .clone()
            .ok_or_else(|| "this action needs the target issue; add `correlate`".to_owned())
    };
    match rule.action {
        Action::Create | Action::Upsert => {
            if let (Some(field), Some(k)) = (corr, key) {
                if field.starts_with("customfield_")
                    && !fields
                        .iter()
                        .any(|(t, _)| t.strip_prefix("fields.") == Some(field))
                {
                    fields.push((format!("fields.{field}"), Value::String(k.to_owned())));
                }
            }
            // Back-references on the new issue: an issue property with the
            // correlation key (and any `property.*` values), and a remote link
            // when `remotelink.url` is mapped.
            let mut property = Map::new();
            if let (Some(k), Some(field)) = (key, corr) {
                if field != "key" {
                    property.insert("key".into(), Value::String(k.to_owned()));
                }
            }
            while let Some(i) = fields.iter().position(|(t, _)| t.starts_with("property.")) {
                let (t, v) = fields.remove(i);
                property.insert(t["property.".len()..].to_owned(), v);
            }
            let link_url = take(&mut fields, "remotelink.url");
            let link_title = take(&mut fields, "remotelink.title");
            let body = nested(fields);
            if rule.action == Action::Upsert {
                let r = need_ref()?;
                let mut put = step("update", Method::Put, format!("{api}/issue/{r}"));
                found(&mut put);
                put.body = Body::Json { json: body.clone() };
                steps.push(put);
            }
            let mut post = step("create", Method::Post, format!("{api}/issue"));
            if has_lookup {
                post.run_if = RunIf::NotFound("lookup".into());
            }
            post.body = Body::Json { json: body };
            post.extract.insert("key".into(), "key".into());
            post.extract.insert("id".into(), "id".into());
            let after_create = post.run_if.clone();
            steps.push(post);
            if !property.is_empty() {
                let mut put = step(
                    "property",
                    Method::Put,
                    format!("{api}/issue/{{{{create.key}}}}/properties/jira-relay"),
                );
                put.run_if = after_create.clone();
                put.body = Body::Json {
                    json: Value::Object(property),
                };
                steps.push(put);
            }
            if let Some(url) = link_url {
                let url = text_of(&url);
                let title = link_title.map_or_else(|| url.clone(), |t| text_of(&t));
                let mut link = step(
                    "remotelink",
                    Method::Post,
                    format!("{api}/issue/{{{{create.key}}}}/remotelink"),
                );
                link.run_if = after_create;
                let global = key.map_or_else(|| url.clone(), |k| format!("jira-relay:{k}"));
                link.body = Body::Json {
                    json: json!({ "globalId": global, "object": { "url": url, "title": title } }),
                };
                steps.push(link);
            }
        }
        Action::Update => {
            let r = need_ref()?;
            if fields.is_empty() {
                return Err("nothing to update: every mapped field is empty in this event".into());
            }
            let mut put = step("update", Method::Put, format!("{api}/issue/{r}"));
            found(&mut put);
            put.body = Body::Json {
                json: nested(fields),
            };
            steps.push(put);
        }
        Action::Comment if twin.is_some() => {
            // An edit or deletion follows the twin: from the link store, or
            // found by the `jira-relay` property it was created with.
            let r = need_ref()?;
            let (what, created) = twin.unwrap_or_default();
            let mut find = step("twin", Method::Get, format!("{api}/issue/{r}/comment"));
            found(&mut find);
            find.query = vec![
                ("expand".into(), "properties".into()),
                ("maxResults".into(), "100".into()),
            ];
            find.extract.insert(
                "id".into(),
                format!("comments[properties.0.value.change={created}].id"),
            );
            find.on_empty = Some(OnEmpty::Skip);
            steps.push(find);
            let path = format!("{api}/issue/{r}/comment/{{{{twin.id}}}}");
            let mut s = if what == "deleted" {
                step("delete_comment", Method::Delete, path)
            } else {
                let mut put = step("edit_comment", Method::Put, path);
                put.body = Body::Json {
                    json: nested(fields),
                };
                put
            };
            s.run_if = RunIf::Found("twin".into());
            steps.push(s);
        }
        Action::Comment => {
            let r = need_ref()?;
            // The comment carries the change it comes from as an entity
            // property, so that after a lost answer the relay can see
            // whether it was written before sending it again.
            let mut seen = step("seen", Method::Get, format!("{api}/issue/{r}/comment"));
            found(&mut seen);
            seen.query = vec![
                ("expand".into(), "properties".into()),
                ("orderBy".into(), "-created".into()),
                ("maxResults".into(), "100".into()),
            ];
            seen.extract.insert(
                "entry".into(),
                "comments[properties.0.value.change={{event.change}}].id".into(),
            );
            seen.on_empty = Some(OnEmpty::Continue);
            seen.check = true;
            steps.push(seen);
            let mut post = step("comment", Method::Post, format!("{api}/issue/{r}/comment"));
            post.run_if = RunIf::NotFound("seen".into());
            let mut body = nested(fields);
            if let Some(m) = body.as_object_mut() {
                m.insert(
                    "properties".into(),
                    json!([{ "key": "jira-relay", "value": { "change": "{{event.change}}" } }]),
                );
            }
            post.body = Body::Json { json: body };
            post.extract.insert("id".into(), "id".into());
            steps.push(post);
        }
        Action::Transition => {
            let r = need_ref()?;
            let by_id = take(&mut fields, "transition.id");
            let by_name = take(&mut fields, "transition.name");
            let id = match (by_id, by_name) {
                (Some(id), _) => text_of(&id),
                (None, Some(name)) => {
                    let mut get = step(
                        "transitions",
                        Method::Get,
                        format!("{api}/issue/{r}/transitions"),
                    );
                    found(&mut get);
                    let name = text_of(&name);
                    let filter = super::path::Path::parse(&format!(
                        "transitions[name=\"{}\"].id",
                        name.replace(']', "")
                    ));
                    let extract = match filter {
                        Ok(p) if matches!(p.segments().get(1), Some(Segment::Filter { .. })) => {
                            p.to_string()
                        }
                        _ => {
                            return Err(Stop::Error(format!(
                                "transition name `{name}` cannot be looked up"
                            )))
                        }
                    };
                    get.extract.insert("id".into(), extract);
                    get.on_empty = Some(OnEmpty::Skip);
                    steps.push(get);
                    "{{transitions.id}}".to_owned()
                }
                (None, None) => return Err("the transition name has no value in this event".into()),
            };
            let mut body = nested(fields);
            if let Some(m) = body.as_object_mut() {
                m.insert("transition".into(), json!({ "id": id }));
            }
            let mut post = step(
                "transition",
                Method::Post,
                format!("{api}/issue/{r}/transitions"),
            );
            found(&mut post);
            post.body = Body::Json { json: body };
            steps.push(post);
        }
        Action::Attach => {
            let r = need_ref()?;
            let mut post = step(
                "attach",
                Method::Post,
                format!("{api}/issue/{r}/attachments"),
            );
            found(&mut post);
            post.headers
                .insert("X-Atlassian-Token".into(), "no-check".into());
            post.body = download(&mut fields, via, true)?.map_err(|s| Stop::Skip(s.0))?;
            if let Body::Download { file_name, .. } = &post.body {
                // After a lost answer: a file of that name on the issue is
                // the upload that was not answered.
                let mut seen = step("seen", Method::Get, format!("{api}/issue/{r}"));
                found(&mut seen);
                seen.query = vec![("fields".into(), "attachment".into())];
                seen.extract.insert(
                    "entry".into(),
                    format!(
                        "fields.attachment[filename={}].id",
                        file_name.replace(']', "")
                    ),
                );
                seen.on_empty = Some(OnEmpty::Continue);
                seen.check = true;
                steps.push(seen);
                post.run_if = RunIf::NotFound("seen".into());
            }
            post.extract.insert("id".into(), "[0].id".into());
            steps.push(post);
        }
        Action::Delete => {
            let r = need_ref()?;
            let mut del = step("delete", Method::Delete, format!("{api}/issue/{r}"));
            found(&mut del);
            steps.push(del);
        }
    }
    Ok(steps)
}

fn http_steps(
    rule: &Rule,
    ctx: &Context<'_>,
    fields: Vec<(String, Value)>,
) -> Result<Vec<Step>, Stop> {
    let req = rule.request.as_ref().ok_or("http rules need `request`")?;
    let raw = req.path.render(ctx)?;
    let raw = as_text(&raw);
    let path: String = raw
        .split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/");
    let mut s = step("request", req.method, path);
    if !fields.is_empty() {
        s.body = Body::Json {
            json: nested(fields),
        };
    }
    Ok(vec![s])
}

#[cfg(test)]
mod tests {
    use super::*;

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
