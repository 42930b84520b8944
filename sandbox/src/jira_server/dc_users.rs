//! Users and groups as Jira Data Center's REST API (`/rest/api/2`) has them,
//! switched on by [`super::JiraServer::set_data_center`].
//!
//! Data Center names people by username (`name`; `key` is internal), not by
//! Cloud's account id:
//! - `GET /user/search?username=` matches a username, display name or
//!   e-mail address by prefix; inactive accounts only with
//!   `includeInactive=true`, active ones unless `includeActive=false`;
//! - `GET /user?username=[&expand=groups]`;
//! - `POST /user {name, emailAddress, displayName, password?, applicationKeys?}`:
//!   a second account with the same address is allowed (only the username
//!   is unique), so a client that creates without looking first makes
//!   duplicates;
//! - `PUT /user?username= {active, displayName, emailAddress}` (8.3 and later);
//! - `DELETE /user?username=`;
//! - `POST /group/user?groupname= {name}`, `DELETE /group/user?groupname=&username=`.
//!
//! The Cloud spec the rest of the sandbox is checked against does not
//! describe these; a request in Cloud's dialect (`accountId`, `query`) is a
//! recorded violation and answered as Data Center would.

use super::meta::{group_id, no_group, strings, Account};
use super::{jira_error, lock, Ctx};
use crate::faults::{empty_response, json_response};
use axum::response::Response;
use http::Method;
use serde_json::{json, Value};

/// The answer for a Data Center user or group path; `None` for any other.
pub(super) fn route(ctx: &Ctx<'_>, rest: &[&str], body: Option<&Value>) -> Option<Response> {
    let r = match (&ctx.method, rest) {
        (&Method::GET, ["user", "search"]) => search(ctx),
        (&Method::GET, ["user"]) => get(ctx),
        (&Method::POST, ["user"]) => create(ctx, body),
        (&Method::PUT, ["user"]) => update(ctx, body),
        (&Method::DELETE, ["user"]) => delete(ctx),
        (&Method::POST, ["group", "user"]) => add(ctx, body),
        (&Method::DELETE, ["group", "user"]) => remove(ctx),
        (_, ["user", ..] | ["group", "user"]) => {
            jira_error(405, &["Method not allowed (Data Center)"], json!({}))
        }
        _ => return None,
    };
    Some(r)
}

/// Cloud's parameters are not Data Center's: recorded, as a real server
/// would silently ignore them and answer for the missing `username`.
fn cloud_dialect(ctx: &Ctx<'_>) {
    let wrong: Vec<String> = ["accountId", "query"]
        .iter()
        .filter(|p| ctx.param(p).is_some())
        .map(|p| format!("`{p}` is Jira Cloud's parameter; Data Center takes `username`"))
        .collect();
    if !wrong.is_empty() {
        ctx.violation(wrong);
    }
}

fn user_json(ctx: &Ctx<'_>, a: &Account, groups: Option<Vec<&String>>) -> Value {
    let name = a.name.as_deref().unwrap_or_default();
    let mut v = json!({
        "self": format!("{}/rest/api/2/user?username={name}", ctx.sh.base),
        "key": a.account_id, "name": name, "displayName": a.display_name,
        "active": a.active, "deleted": false, "timeZone": "Europe/London", "locale": "en_UK",
    });
    if let Some(e) = &a.email {
        v["emailAddress"] = Value::String(e.clone());
    }
    if let Some(groups) = groups {
        let items: Vec<Value> = groups
            .iter()
            .map(|g| json!({"name": g, "self": format!("{}/rest/api/2/group?groupname={g}", ctx.sh.base)}))
            .collect();
        v["groups"] = json!({"size": items.len(), "items": items});
        v["expand"] = json!("groups,applicationRoles");
    }
    v
}

fn no_such(name: &str) -> Response {
    let msg = format!("The user named '{name}' does not exist");
    jira_error(404, &[msg.as_str()], json!({}))
}

fn flag(ctx: &Ctx<'_>, name: &str, default: bool) -> bool {
    ctx.param(name)
        .map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

fn search(ctx: &Ctx<'_>) -> Response {
    cloud_dialect(ctx);
    let Some(q) = ctx.param("username").map(str::to_lowercase) else {
        return jira_error(
            400,
            &["The username query parameter was not provided"],
            json!({}),
        );
    };
    let (active, inactive) = (
        flag(ctx, "includeActive", true),
        flag(ctx, "includeInactive", false),
    );
    let max = ctx
        .param("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(50);
    let st = lock(&ctx.sh.state);
    let hits: Vec<Value> = st
        .site
        .users
        .iter()
        .filter(|a| a.name.is_some() && if a.active { active } else { inactive })
        .filter(|a| {
            [
                a.name.as_deref(),
                Some(a.display_name.as_str()),
                a.email.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|s| s.to_lowercase().starts_with(&q))
        })
        .take(max)
        .map(|a| user_json(ctx, a, None))
        .collect();
    json_response(200, &Value::Array(hits))
}

fn username(ctx: &Ctx<'_>) -> Result<String, Box<Response>> {
    cloud_dialect(ctx);
    ctx.param("username").map(str::to_owned).ok_or_else(|| {
        Box::new(jira_error(
            404,
            &["The user named 'null' does not exist"],
            json!({}),
        ))
    })
}

fn get(ctx: &Ctx<'_>) -> Response {
    let name = match username(ctx) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let expand_groups = ctx
        .param("expand")
        .is_some_and(|e| e.split(',').any(|x| x.trim() == "groups"));
    let st = lock(&ctx.sh.state);
    let Some(a) = find(&st.site.users, &name) else {
        return no_such(&name);
    };
    let groups = expand_groups.then(|| {
        st.site
            .groups
            .iter()
            .filter(|(_, m)| m.contains(&a.account_id))
            .map(|(g, _)| g)
            .collect()
    });
    json_response(200, &user_json(ctx, a, groups))
}

/// Whether the account has this username (Data Center compares them
/// without case).
fn is_named(a: &Account, name: &str) -> bool {
    a.name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

fn find<'a>(users: &'a [Account], name: &str) -> Option<&'a Account> {
    users.iter().find(|a| is_named(a, name))
}

fn create(ctx: &Ctx<'_>, body: Option<&Value>) -> Response {
    let body = body.cloned().unwrap_or(Value::Null);
    if body.get("products").is_some() {
        ctx.violation(vec![
            "`products` is Jira Cloud's; Data Center takes `applicationKeys`".into(),
        ]);
    }
    let text = |k: &str| body[k].as_str().filter(|s| !s.trim().is_empty());
    let mut errors = serde_json::Map::new();
    if text("name").is_none() {
        errors.insert("username".into(), json!("You must specify a username."));
    }
    if !text("emailAddress").is_some_and(|e| e.contains('@')) {
        errors.insert(
            "email".into(),
            json!("You must specify a valid email address."),
        );
    }
    if text("displayName").is_none() {
        errors.insert("fullname".into(), json!("You must specify a full name."));
    }
    if !errors.is_empty() {
        return jira_error(400, &[], Value::Object(errors));
    }
    let name = text("name").unwrap_or_default().to_owned();
    let mut st = lock(&ctx.sh.state);
    if find(&st.site.users, &name).is_some() {
        return jira_error(
            400,
            &[],
            json!({"username": "A user with that username already exists."}),
        );
    }
    let n = st.site.users.len();
    let account = Account {
        account_id: format!("JIRAUSER{}", 10100 + n),
        display_name: text("displayName").unwrap_or_default().to_owned(),
        email: text("emailAddress").map(str::to_owned),
        products: strings(&body["applicationKeys"]),
        name: Some(name),
        active: true,
        searchable_from: None,
    };
    let v = user_json(ctx, &account, None);
    st.site.users.push(account);
    json_response(201, &v)
}

fn update(ctx: &Ctx<'_>, body: Option<&Value>) -> Response {
    let name = match username(ctx) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let body = body.cloned().unwrap_or(Value::Null);
    let mut st = lock(&ctx.sh.state);
    let Some(a) = st.site.users.iter_mut().find(|a| is_named(a, &name)) else {
        return no_such(&name);
    };
    if let Some(active) = body.get("active") {
        let Some(active) = active.as_bool() else {
            return jira_error(400, &[], json!({"active": "must be true or false"}));
        };
        a.active = active;
    }
    if let Some(d) = body["displayName"].as_str() {
        a.display_name = d.to_owned();
    }
    if let Some(e) = body["emailAddress"].as_str() {
        a.email = Some(e.to_owned());
    }
    let a = a.clone();
    json_response(200, &user_json(ctx, &a, None))
}

fn delete(ctx: &Ctx<'_>) -> Response {
    let name = match username(ctx) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let mut st = lock(&ctx.sh.state);
    let Some(id) = find(&st.site.users, &name).map(|a| a.account_id.clone()) else {
        return no_such(&name);
    };
    st.site.users.retain(|a| a.account_id != id);
    for m in st.site.groups.values_mut() {
        m.remove(&id);
    }
    empty_response(204)
}

fn group_and_user(ctx: &Ctx<'_>, name: &str) -> Result<(String, String), Box<Response>> {
    let group = ctx.param("groupname").unwrap_or_default().to_owned();
    let st = lock(&ctx.sh.state);
    let Some(a) = find(&st.site.users, name) else {
        return Err(Box::new(no_such(name)));
    };
    if !st.site.groups.contains_key(&group) {
        return Err(Box::new(no_group()));
    }
    Ok((group, a.account_id.clone()))
}

fn add(ctx: &Ctx<'_>, body: Option<&Value>) -> Response {
    cloud_dialect(ctx);
    if body.and_then(|b| b.get("accountId")).is_some() {
        ctx.violation(vec![
            "`accountId` is Jira Cloud's; Data Center adds `{\"name\": <username>}`".into(),
        ]);
    }
    let Some(name) = body.and_then(|b| b["name"].as_str()).map(str::to_owned) else {
        return jira_error(400, &["You must specify a user name."], json!({}));
    };
    let (group, id) = match group_and_user(ctx, &name) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut st = lock(&ctx.sh.state);
    let members = st.site.groups.entry(group.clone()).or_default();
    if !members.insert(id) {
        let msg = format!("Cannot add user. User is already a member of '{group}'");
        return jira_error(400, &[msg.as_str()], json!({}));
    }
    json_response(
        201,
        &json!({"name": group, "groupId": group_id(&group),
                "self": format!("{}/rest/api/2/group?groupname={group}", ctx.sh.base)}),
    )
}

fn remove(ctx: &Ctx<'_>) -> Response {
    let name = match username(ctx) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let (group, id) = match group_and_user(ctx, &name) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut st = lock(&ctx.sh.state);
    let members = st.site.groups.entry(group.clone()).or_default();
    if !members.remove(&id) {
        let msg = format!("Cannot remove user. User is not a member of '{group}'");
        return jira_error(400, &[msg.as_str()], json!({}));
    }
    empty_response(200)
}
