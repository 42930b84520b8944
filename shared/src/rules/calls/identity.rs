//! The calls of identity rules into Jira: Cloud's REST API (v3) and Data
//! Center's (v2).
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
//!
//! Data Center (`api: v2`) names a person by username, not account id: the
//! lookup is `GET /user/search?username=<email>&includeInactive=true` and
//! keeps the `name` of the exact address; a create sends `name` (the
//! mapped username, else the address), `emailAddress`, `displayName` and
//! `applicationKeys`; a member's groups are read with
//! `GET /user?username=&expand=groups`; membership changes send `{name}` /
//! `username=`. Data Center allows two accounts with one address, so the
//! lookup before a create is what keeps one person one account. A mapped
//! `active` (Data Center 8.3 and later) deactivates or reactivates the
//! account with `PUT /user?username= {active}`, only after a search shows
//! the account in the other state; `active: false` never creates one.
//!
//! `action: delete` correlated by `emailAddress` removes the account
//! (`DELETE /user?accountId=` on Cloud, `?username=` on Data Center) after
//! the same lookup; the connection's `deletes_per_minute` caps it as every
//! delete.
//!
//! Toward ServiceNow, `group_member` finds the user (`sys_user` by the
//! correlated column: `email`, `user_name`, `u_jira_account_id`) and each
//! group by name
//! (`sys_user_group`; a group ServiceNow does not have is a dead letter
//! with its reason), reads the membership (`sys_user_grmember` of that user
//! and group) and creates or deletes only the row that differs.
//!
//! Jira Cloud deactivates through the organization admin API (the
//! connection's `org_admin`: `POST /users/{id}/manage/lifecycle/disable` or
//! `enable` on api.atlassian.com with an organization API key), only after
//! `GET /user/bulk?accountId=` shows the account in the other state.

use crate::outbound::connections::{Connection, JiraApi};
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
    let dc = conn.api == JiraApi::V2;
    // How a query names the account: Data Center by username, Cloud by id.
    let id_param = if dc { "username" } else { "accountId" };
    let email = email.filter(|e| e.contains('@')).ok_or_else(|| {
        Stop::Skip("the event has no e-mail address to find the account by".into())
    })?;
    let exact = format!("[emailAddress={}]", filter_value(email));
    // Data Center: a search by username/address, inactive accounts too (a
    // returning joiner is reactivated, not created twice); `None`: Cloud.
    let dc_search = |id: &str, active: bool, inactive: bool| {
        let mut s = step(id, Method::Get, format!("{api}/user/search"));
        s.query = vec![
            ("username".into(), email.to_owned()),
            ("includeActive".into(), active.to_string()),
            ("includeInactive".into(), inactive.to_string()),
            ("maxResults".into(), "50".into()),
        ];
        s.extract.insert("id".into(), format!("{exact}.name"));
        s
    };
    let mut steps = Vec::new();
    let mut lookup = if dc {
        dc_search("lookup", true, true)
    } else {
        let mut l = step("lookup", Method::Get, format!("{api}/user/search"));
        l.query = vec![
            ("query".into(), email.to_owned()),
            ("maxResults".into(), "50".into()),
        ];
        l.extract.insert("id".into(), format!("{exact}.accountId"));
        l
    };
    lookup.on_empty = Some(not_found);
    match rule.action {
        Action::User => {
            let active = take(&mut fields, "active")
                .filter(|v| !v.is_null())
                .map(|v| truthy(&v));
            if active.is_some() && !dc && conn.org_admin.is_none() {
                return Err(Stop::Error(
                    "`active` on Jira Cloud needs the connection's `org_admin` (the organization admin API)".into(),
                ));
            }
            let mut body = Map::new();
            if dc {
                let name = take(&mut fields, "name")
                    .map(|v| text_of(&v))
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| email.to_owned());
                body.insert("name".into(), Value::String(name));
            }
            body.insert("emailAddress".into(), Value::String(email.to_owned()));
            let name = take(&mut fields, "displayName")
                .filter(|v| !v.is_null())
                .map(|v| text_of(&v));
            match name {
                Some(n) => {
                    body.insert("displayName".into(), Value::String(n));
                }
                // Data Center requires a full name.
                None if dc => {
                    let local = email.split('@').next().unwrap_or(email);
                    body.insert("displayName".into(), Value::String(local.to_owned()));
                }
                None => {}
            }
            // Jira Cloud requires the list; an empty one creates the
            // account without product access.
            let products = take(&mut fields, "products").map(texts).unwrap_or_default();
            let key = if dc { "applicationKeys" } else { "products" };
            body.insert(key.into(), json!(products));
            if active == Some(false) {
                // A leaver with no account: nothing to create or change.
                lookup.on_empty = Some(OnEmpty::Skip);
            }
            steps.push(lookup);
            if active != Some(false) {
                let mut create = step("create", Method::Post, format!("{api}/user"));
                create.run_if = RunIf::NotFound("lookup".into());
                create.body = Body::Json {
                    json: Value::Object(body),
                };
                let id = if dc { "name" } else { "accountId" };
                create.extract.insert("id".into(), id.into());
                steps.push(create);
            }
            if let Some(active) = active {
                // Changed only when the account shows the other state.
                let mut state = if dc {
                    dc_search("state", !active, active)
                } else {
                    let mut s = step("state", Method::Get, format!("{api}/user/bulk"));
                    s.query = vec![("accountId".into(), "{{lookup.id}}".into())];
                    s.extract
                        .insert("id".into(), format!("values[active={}].accountId", !active));
                    s
                };
                state.on_empty = Some(OnEmpty::Continue);
                state.run_if = RunIf::Found("lookup".into());
                steps.push(state);
                let mut change = if dc {
                    let mut c = step("activate", Method::Put, format!("{api}/user"));
                    c.query = vec![("username".into(), "{{lookup.id}}".into())];
                    c.body = Body::Json {
                        json: json!({ "active": active }),
                    };
                    c
                } else {
                    // The organization admin API, on its own host.
                    let verb = if active { "enable" } else { "disable" };
                    let mut c = step(
                        "activate",
                        Method::Post,
                        format!("/users/{{{{lookup.id}}}}/manage/lifecycle/{verb}"),
                    );
                    c.via = conn.org_admin.clone();
                    if !active {
                        c.body = Body::Json {
                            json: json!({"message": "Deactivated by jira-relay: the person left"}),
                        };
                    }
                    c
                };
                change.run_if = RunIf::Found("state".into());
                steps.push(change);
            }
        }
        Action::GroupMember => {
            steps.push(lookup);
            let groups = take(&mut fields, "group").map(texts).unwrap_or_default();
            if groups.is_empty() {
                return Err(Stop::Skip(
                    "no Jira group is mapped for this event".to_owned(),
                ));
            }
            let member = take(&mut fields, "member").is_none_or(|v| truthy(&v));
            for (i, group) in groups.iter().enumerate() {
                let seen_id = format!("member{i}");
                let mut seen = if dc {
                    let mut s = step(&seen_id, Method::Get, format!("{api}/user"));
                    s.query = vec![
                        ("username".into(), "{{lookup.id}}".into()),
                        ("expand".into(), "groups".into()),
                    ];
                    s.extract.insert(
                        "name".into(),
                        format!("groups.items[name={}].name", filter_value(group)),
                    );
                    s
                } else {
                    let mut s = step(&seen_id, Method::Get, format!("{api}/user/groups"));
                    s.query = vec![("accountId".into(), "{{lookup.id}}".into())];
                    s.extract.insert(
                        "name".into(),
                        format!("[name={}].name", filter_value(group)),
                    );
                    s
                };
                seen.on_empty = Some(OnEmpty::Continue);
                seen.run_if = RunIf::Found("lookup".into());
                steps.push(seen);
                let who = if dc { "name" } else { "accountId" };
                let change = if member {
                    let mut add = step(
                        &format!("add{i}"),
                        Method::Post,
                        format!("{api}/group/user"),
                    );
                    add.query = vec![("groupname".into(), group.clone())];
                    add.body = Body::Json {
                        json: json!({ who: "{{lookup.id}}" }),
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
                        (id_param.into(), "{{lookup.id}}".into()),
                    ];
                    remove.run_if = RunIf::Found(seen_id);
                    remove
                };
                steps.push(change);
            }
        }
        Action::Delete => {
            // The account leaves the site (Cloud) or the directory (Data
            // Center); guarded by the connection's deletes_per_minute as
            // every delete. Nothing found: nothing to delete.
            lookup.on_empty = Some(OnEmpty::Skip);
            steps.push(lookup);
            let mut del = step("delete", Method::Delete, format!("{api}/user"));
            del.query = vec![(id_param.into(), "{{lookup.id}}".into())];
            del.run_if = RunIf::Found("lookup".into());
            steps.push(del);
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

/// `group_member` toward ServiceNow: the user's membership of each mapped
/// group (`sys_user_grmember`), read first and changed only when it differs.
pub(crate) fn servicenow_member_steps(
    rule: &Rule,
    key: Option<&str>,
    mut fields: Vec<(String, Value)>,
    not_found: OnEmpty,
) -> Result<Vec<Step>, Stop> {
    let key = key
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| Stop::Skip("the event names no ServiceNow user to find".into()))?;
    let field = rule
        .correlate
        .as_ref()
        .map_or("email", |c| c.field.as_str());
    let table = |t: &str| format!("/api/now/table/{t}");
    let one = |id: &str, t: &str, query: String| {
        let mut s = step(id, Method::Get, table(t));
        s.query = vec![
            ("sysparm_query".into(), query),
            ("sysparm_fields".into(), "sys_id".into()),
            ("sysparm_limit".into(), "1".into()),
        ];
        s.extract.insert("id".into(), "result[0].sys_id".into());
        s
    };
    // ServiceNow's encoded queries end a condition at `^`.
    let clean = |v: &str| v.replace('^', "");
    let mut person = one("person", "sys_user", format!("{field}={}", clean(key)));
    person.on_empty = Some(not_found);
    let mut steps = vec![person];
    let groups = take(&mut fields, "group").map(texts).unwrap_or_default();
    if groups.is_empty() {
        return Err(Stop::Skip(
            "no ServiceNow group is mapped for this event".to_owned(),
        ));
    }
    let member = take(&mut fields, "member").is_none_or(|v| truthy(&v));
    if let Some((extra, _)) = fields.first() {
        return Err(Stop::Error(format!(
            "action `group_member` has no field `{extra}`"
        )));
    }
    for (i, group) in groups.iter().enumerate() {
        let gid = format!("group{i}");
        let mut g = one(&gid, "sys_user_group", format!("name={}", clean(group)));
        g.on_empty = Some(OnEmpty::Fail);
        steps.push(g);
        let seen_id = format!("member{i}");
        let mut seen = one(
            &seen_id,
            "sys_user_grmember",
            format!("user={{{{person.id}}}}^group={{{{{gid}.id}}}}"),
        );
        seen.on_empty = Some(OnEmpty::Continue);
        steps.push(seen);
        let change = if member {
            let mut add = step(&format!("add{i}"), Method::Post, table("sys_user_grmember"));
            add.body = Body::Json {
                json: json!({"user": "{{person.id}}", "group": format!("{{{{{gid}.id}}}}")}),
            };
            add.extract.insert("id".into(), "result.sys_id".into());
            add.run_if = RunIf::NotFound(seen_id);
            add
        } else {
            let mut remove = step(
                &format!("remove{i}"),
                Method::Delete,
                format!("{}/{{{{{seen_id}.id}}}}", table("sys_user_grmember")),
            );
            remove.run_if = RunIf::Found(seen_id);
            remove
        };
        steps.push(change);
    }
    Ok(steps)
}
