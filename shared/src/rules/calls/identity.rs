//! The calls of identity rules into Jira Cloud's REST API (v3).
//!
//! Both actions first find the person's account by the e-mail address the
//! rule correlates by: the link store is asked first (the executor answers a
//! `lookup` step from it), then `GET /user/search?query=<email>`, keeping only
//! an account whose `emailAddress` is exactly that address (the search also
//! matches display names).
//!
//! - `action: user` creates the account when none is found
//!   (`POST /user {emailAddress, displayName, products}`). A create whose
//!   answer was lost is looked up again before any new send, as any create.
//! - `action: group_member` reads the account's groups (`GET /user/groups`)
//!   before each change, and adds (`POST /group/user`) only when the account
//!   is not a member and removes (`DELETE /group/user`) only when it is: a
//!   redelivery, or a retry after a lost answer, changes nothing twice, and
//!   Jira's 400 for "already a member" never happens. An account not found
//!   waits (`wait_for_correlation`) for the rule that creates it.

use crate::outbound::connections::Connection;
use crate::rules::model::{Action, Rule};
use crate::rules::plan::{Body, Method, OnEmpty, RunIf, Step};
use serde_json::{json, Map, Value};

use super::common::*;

/// A value for a `[field=value]` path filter (it cannot hold `]`).
fn filter_value(s: &str) -> String {
    s.replace(']', "")
}

/// A mapped value as a list of non-empty texts (a string or an array).
fn texts(v: Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(text_of).filter(|s| !s.is_empty()).collect(),
        Value::Null => Vec::new(),
        other => Some(text_of(&other))
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    }
}

pub(crate) fn identity_steps(
    rule: &Rule,
    conn: &Connection,
    email: Option<&str>,
    mut fields: Vec<(String, Value)>,
    not_found: OnEmpty,
) -> Result<Vec<Step>, Stop> {
    let api = conn.api.prefix();
    let email = email.filter(|e| e.contains('@')).ok_or_else(|| {
        Stop::Skip("the event has no e-mail address to find the account by".into())
    })?;
    let mut steps = Vec::new();
    let mut lookup = step("lookup", Method::Get, format!("{api}/user/search"));
    lookup.query = vec![
        ("query".into(), email.to_owned()),
        ("maxResults".into(), "50".into()),
    ];
    lookup.extract.insert(
        "id".into(),
        format!("[emailAddress={}].accountId", filter_value(email)),
    );
    lookup.on_empty = Some(not_found);
    steps.push(lookup);
    match rule.action {
        Action::User => {
            let mut body = Map::new();
            body.insert("emailAddress".into(), Value::String(email.to_owned()));
            if let Some(name) = take(&mut fields, "displayName").filter(|v| !v.is_null()) {
                body.insert("displayName".into(), Value::String(text_of(&name)));
            }
            // Jira requires the list; an empty one creates the account
            // without product access.
            let products = take(&mut fields, "products").map(texts).unwrap_or_default();
            body.insert("products".into(), json!(products));
            let mut create = step("create", Method::Post, format!("{api}/user"));
            create.run_if = RunIf::NotFound("lookup".into());
            create.body = Body::Json {
                json: Value::Object(body),
            };
            create.extract.insert("id".into(), "accountId".into());
            steps.push(create);
        }
        Action::GroupMember => {
            let groups = take(&mut fields, "group").map(texts).unwrap_or_default();
            if groups.is_empty() {
                return Err(Stop::Skip(
                    "no Jira group is mapped for this event".to_owned(),
                ));
            }
            let member = take(&mut fields, "member").is_none_or(|v| truthy(&v));
            for (i, group) in groups.iter().enumerate() {
                let seen_id = format!("member{i}");
                let mut seen = step(&seen_id, Method::Get, format!("{api}/user/groups"));
                seen.query = vec![("accountId".into(), "{{lookup.id}}".into())];
                seen.extract.insert(
                    "name".into(),
                    format!("[name={}].name", filter_value(group)),
                );
                seen.on_empty = Some(OnEmpty::Continue);
                seen.run_if = RunIf::Found("lookup".into());
                steps.push(seen);
                let change = if member {
                    let mut add = step(
                        &format!("add{i}"),
                        Method::Post,
                        format!("{api}/group/user"),
                    );
                    add.query = vec![("groupname".into(), group.clone())];
                    add.body = Body::Json {
                        json: json!({"accountId": "{{lookup.id}}"}),
                    };
                    add.run_if = RunIf::NotFound(seen_id);
                    add
                } else {
                    let mut remove = step(
                        &format!("remove{i}"),
                        Method::Delete,
                        format!("{api}/group/user"),
                    );
                    remove.query = vec![
                        ("groupname".into(), group.clone()),
                        ("accountId".into(), "{{lookup.id}}".into()),
                    ];
                    remove.run_if = RunIf::Found(seen_id);
                    remove
                };
                steps.push(change);
            }
        }
        _ => {
            return Err(Stop::Error(
                "not an identity action (see calls::jira)".to_owned(),
            ))
        }
    }
    if let Some((extra, _)) = fields.first() {
        return Err(Stop::Error(format!(
            "action `{}` has no field `{extra}`",
            serde_json::to_value(rule.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    Ok(steps)
}
