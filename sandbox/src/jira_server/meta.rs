//! What a Jira site is configured with, as its metadata APIs show it:
//! projects (`/project/{key}`, `/project/search`, `/project/{key}/statuses`),
//! the create screen (`/issue/createmeta/{project}/issuetypes[/{id}]`),
//! fields (`/field`), issue types, priorities, resolutions, statuses,
//! the integration user's permissions (`/mypermissions`) and the workflow
//! behind a project (`/workflowscheme/project`, `/workflow/search` with
//! `expand=transitions`). Shapes as the Jira Cloud platform OpenAPI spec
//! gives them (its examples), so that `relay check --live` and
//! `relay init --discover` read the sandbox as they read a real site.

use super::{jira_error, lock, Ctx, JiraState, Workflow};
use crate::faults::json_response;
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// An id and a name (issue types, priorities, resolutions, custom fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: String,
    pub name: String,
}

fn named(list: &[(&str, &str)]) -> Vec<Named> {
    list.iter()
        .map(|(id, name)| Named {
            id: (*id).into(),
            name: (*name).into(),
        })
        .collect()
}

/// The site's configuration ([`Site::default`]: issue types Task, Bug,
/// Incident, Service Request, Sub-task; priorities Highest…Lowest (1–5);
/// resolutions Done, Won't Do, Duplicate; no custom field; every
/// permission granted).
#[derive(Debug, Clone)]
pub struct Site {
    pub issue_types: Vec<Named>,
    pub priorities: Vec<Named>,
    pub resolutions: Vec<Named>,
    /// Custom text fields (`customfield_N`), on every create screen.
    pub custom_fields: Vec<Named>,
    /// Display names of declared projects (by key).
    pub project_names: BTreeMap<String, String>,
    /// (project key, permission key) the integration user does not have.
    pub denied: BTreeSet<(String, String)>,
    /// Accounts (`/user`, `/user/search`).
    pub users: Vec<Account>,
    /// Groups by name, with their members' account ids (`/group/user`,
    /// `/group/member`, `/user/groups`).
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Application roles (`/applicationrole`): the products an account can
    /// be given (key, name).
    pub products: Vec<Named>,
    /// Users and groups answer as Jira Data Center's `/rest/api/2` does
    /// (usernames, not account ids; see `dc_users`).
    pub data_center: bool,
}

/// A Jira account. `email: None` is an address the user's profile
/// visibility hides, as Jira Cloud does for most accounts: `/user` leaves
/// `emailAddress` out and `/user/search` does not match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub display_name: String,
    pub email: Option<String>,
    /// Products the account has access to (`POST /user` gives them;
    /// Data Center's `applicationKeys`).
    pub products: Vec<String>,
    /// Data Center's username (`name`); Cloud accounts have none.
    pub name: Option<String>,
    /// Data Center can deactivate an account (`PUT /user {active}`).
    pub active: bool,
    /// With a search lag, `/user/search` finds the account only from
    /// this moment (Jira Cloud's user index lags behind a create).
    pub searchable_from: Option<std::time::Instant>,
}

fn account_json(ctx: &Ctx<'_>, a: &Account) -> Value {
    let mut v = json!({
        "accountId": a.account_id, "accountType": "atlassian", "active": a.active,
        "displayName": a.display_name, "timeZone": "Europe/London",
        "self": format!("{}/rest/api/{}/user?accountId={}", ctx.sh.base, ctx.api(), a.account_id),
    });
    if let Some(e) = &a.email {
        v["emailAddress"] = Value::String(e.clone());
    }
    v
}

impl Default for Site {
    fn default() -> Self {
        Site {
            issue_types: named(&[
                ("10001", "Task"),
                ("10002", "Bug"),
                ("10003", "Incident"),
                ("10004", "Service Request"),
                ("10005", "Sub-task"),
            ]),
            priorities: named(&[
                ("1", "Highest"),
                ("2", "High"),
                ("3", "Medium"),
                ("4", "Low"),
                ("5", "Lowest"),
            ]),
            resolutions: named(&[
                ("10000", "Done"),
                ("10001", "Won't Do"),
                ("10002", "Duplicate"),
            ]),
            custom_fields: Vec::new(),
            project_names: BTreeMap::new(),
            denied: BTreeSet::new(),
            users: Vec::new(),
            groups: BTreeMap::new(),
            products: named(&[
                ("jira-software", "Jira Software"),
                ("jira-servicedesk", "Jira Service Management"),
            ]),
            data_center: false,
        }
    }
}

/// The project permissions `/mypermissions` knows, with their names.
const PERMISSIONS: &[(&str, &str, &str)] = &[
    ("10", "CREATE_ISSUES", "Create Issues"),
    ("12", "EDIT_ISSUES", "Edit Issues"),
    ("15", "ADD_COMMENTS", "Add Comments"),
    ("19", "CREATE_ATTACHMENTS", "Create Attachments"),
    ("46", "TRANSITION_ISSUES", "Transition Issues"),
    ("16", "DELETE_ISSUES", "Delete Issues"),
    ("10", "BROWSE_PROJECTS", "Browse Projects"),
    ("0", "ADMINISTER", "Administer Jira"),
];

/// System fields on every create screen: (id, name, required, schema type).
const SYSTEM_CREATE_FIELDS: &[(&str, &str, bool, &str)] = &[
    ("summary", "Summary", true, "string"),
    ("issuetype", "Issue Type", true, "issuetype"),
    ("project", "Project", true, "project"),
    ("description", "Description", false, "string"),
    ("priority", "Priority", false, "priority"),
    ("labels", "Labels", false, "array"),
    ("assignee", "Assignee", false, "user"),
    ("reporter", "Reporter", false, "user"),
    ("environment", "Environment", false, "string"),
    ("duedate", "Due date", false, "date"),
    ("components", "Components", false, "array"),
];

/// System fields that exist but are not on the create screen.
const SYSTEM_OTHER_FIELDS: &[(&str, &str, &str)] = &[
    ("status", "Status", "status"),
    ("resolution", "Resolution", "resolution"),
    ("created", "Created", "datetime"),
    ("updated", "Updated", "datetime"),
    ("comment", "Comment", "comments-page"),
    ("attachment", "Attachment", "array"),
];

/// Whether `key` looks like a field id (`summary`, `fixVersions`,
/// `customfield_10050`) rather than a display name (`Customer Impact`).
fn id_like(key: &str) -> bool {
    let mut b = key.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The `fields` keys of a create or edit that Jira would refuse, with
/// Jira's message: a display name instead of an id (Jira takes ids only),
/// or a `customfield_N` the site does not have (when it declares any).
pub(super) fn unknown_fields(
    site: &Site,
    fields: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    let declared = |k: &str| site.custom_fields.iter().any(|f| f.id == k);
    fields
        .keys()
        .filter(|k| {
            !id_like(k)
                || (k.starts_with("customfield_") && !site.custom_fields.is_empty() && !declared(k))
        })
        .map(|k| {
            (
                k.clone(),
                Value::String(format!(
                    "Field '{k}' cannot be set. It is not on the appropriate screen, or unknown."
                )),
            )
        })
        .collect()
}

/// Completes references as Jira stores them: a priority or issue type
/// given by id gets its name, one given by name its id.
pub(super) fn complete_refs(site: &Site, fields: &mut serde_json::Map<String, Value>) {
    for (field, list) in [
        ("priority", &site.priorities),
        ("issuetype", &site.issue_types),
    ] {
        let Some(r) = fields.get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        let hit = match (
            r.get("id").and_then(Value::as_str),
            r.get("name").and_then(Value::as_str),
        ) {
            (Some(id), _) => list.iter().find(|n| n.id == id),
            (None, Some(name)) => list.iter().find(|n| n.name == name),
            _ => None,
        };
        if let Some(n) = hit {
            r.insert("id".into(), Value::String(n.id.clone()));
            r.insert("name".into(), Value::String(n.name.clone()));
        }
    }
}

/// A JQL field as search knows it: a custom field's display name (any
/// case, quoted or not) stands for its `customfield_N`.
pub(super) fn jql_field(site: &Site, field: &str) -> String {
    site.custom_fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(field))
        .map_or_else(|| field.to_owned(), |f| f.id.clone())
}

const WORKFLOW_SCHEME_ID: u64 = 10100;

pub(super) fn category(workflow: &Workflow, status: &str) -> Value {
    if status == workflow.initial {
        json!({"id": 2, "key": "new", "name": "To Do", "colorName": "blue-gray"})
    } else if ["Resolved", "Closed", "Done"].contains(&status) {
        json!({"id": 3, "key": "done", "name": "Done", "colorName": "green"})
    } else {
        json!({"id": 4, "key": "indeterminate", "name": "In Progress", "colorName": "yellow"})
    }
}

fn statuses(ctx: &Ctx<'_>, st: &JiraState) -> Vec<Value> {
    st.workflow
        .statuses
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "name": s.name,
                "description": "",
                "self": format!("{}/rest/api/{}/status/{}", ctx.sh.base, ctx.api(), s.id),
                "statusCategory": category(&st.workflow, &s.name),
                "scope": {"type": "GLOBAL"},
            })
        })
        .collect()
}

/// A project by key or id: declared, or made by an issue created in it.
fn find_project(st: &JiraState, key_or_id: &str) -> Option<(String, String)> {
    let up = key_or_id.to_ascii_uppercase();
    st.projects
        .iter()
        .find(|(k, (id, _))| **k == up || id == key_or_id)
        .map(|(k, (id, _))| (k.clone(), id.clone()))
}

fn issue_type_json(ctx: &Ctx<'_>, t: &Named) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "description": "",
        "subtask": t.name == "Sub-task",
        "iconUrl": format!("{}/images/icons/issuetypes/{}.png", ctx.sh.base, t.id),
        "self": format!("{}/rest/api/{}/issuetype/{}", ctx.sh.base, ctx.api(), t.id),
    })
}

fn project_json(ctx: &Ctx<'_>, st: &JiraState, key: &str, id: &str) -> Value {
    let name = st
        .site
        .project_names
        .get(key)
        .cloned()
        .unwrap_or_else(|| key.to_string());
    json!({
        "id": id,
        "key": key,
        "name": name,
        "self": format!("{}/rest/api/{}/project/{id}", ctx.sh.base, ctx.api()),
        "projectTypeKey": "service_desk",
        "simplified": false,
        "style": "classic",
        "isPrivate": false,
        "issueTypes": st.site.issue_types.iter().map(|t| issue_type_json(ctx, t)).collect::<Vec<_>>(),
    })
}

fn no_project(key: &str) -> Response {
    jira_error(
        404,
        &[&format!("No project could be found with key '{key}'.")],
        json!({}),
    )
}

fn page(ctx: &Ctx<'_>, items: Vec<Value>, field: &str) -> Value {
    let start: usize = ctx
        .param("startAt")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let max: usize = ctx
        .param("maxResults")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
        .clamp(1, 200);
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip(start).take(max).collect();
    let mut out = json!({"startAt": start, "maxResults": max, "total": total});
    out[field] = Value::Array(slice);
    out
}

fn create_field(
    ctx: &Ctx<'_>,
    st: &JiraState,
    id: &str,
    name: &str,
    required: bool,
    ty: &str,
) -> Value {
    let mut f = json!({
        "fieldId": id,
        "key": id,
        "name": name,
        "required": required,
        "hasDefaultValue": id == "priority",
        "operations": if ty == "array" { json!(["add", "set", "remove"]) } else { json!(["set"]) },
        "schema": {"type": ty, "system": id},
    });
    if id == "priority" {
        f["allowedValues"] = st
            .site
            .priorities
            .iter()
            .map(|p| {
                json!({"id": p.id, "name": p.name,
                       "self": format!("{}/rest/api/{}/priority/{}", ctx.sh.base, ctx.api(), p.id)})
            })
            .collect();
        f["schema"] = json!({"type": "priority", "system": "priority"});
    }
    f
}

fn custom_schema(f: &Named) -> Value {
    json!({
        "type": "string",
        "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
        "customId": f.id.trim_start_matches("customfield_").parse::<u64>().unwrap_or(0),
    })
}

/// The metadata GET routes; `None` for a path that is not one of them.
pub(super) fn get(ctx: &Ctx<'_>, rest: &[&str]) -> Option<Response> {
    let st = lock(&ctx.sh.state);
    let resp = match rest {
        ["project", "search"] => {
            let mut all: Vec<Value> = st
                .projects
                .iter()
                .map(|(k, (id, _))| project_json(ctx, &st, k, id))
                .collect();
            if let Some(q) = ctx.param("query") {
                let q = q.to_lowercase();
                all.retain(|p| {
                    p["key"].as_str().unwrap_or("").to_lowercase().contains(&q)
                        || p["name"].as_str().unwrap_or("").to_lowercase().contains(&q)
                });
            }
            let mut out = page(ctx, all, "values");
            let (start, max, total) = (
                out["startAt"].as_u64().unwrap_or(0),
                out["maxResults"].as_u64().unwrap_or(50),
                out["total"].as_u64().unwrap_or(0),
            );
            out["isLast"] = Value::Bool(start + max >= total);
            json_response(200, &out)
        }
        ["project", p] => match find_project(&st, p) {
            Some((k, id)) => json_response(200, &project_json(ctx, &st, &k, &id)),
            None => no_project(p),
        },
        ["project", p, "statuses"] => match find_project(&st, p) {
            Some(_) => {
                let statuses = statuses(ctx, &st);
                let list: Vec<Value> = st
                    .site
                    .issue_types
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "name": t.name, "subtask": t.name == "Sub-task",
                            "self": format!("{}/rest/api/{}/issuetype/{}", ctx.sh.base, ctx.api(), t.id),
                            "statuses": statuses,
                        })
                    })
                    .collect();
                json_response(200, &Value::Array(list))
            }
            None => no_project(p),
        },
        ["issue", "createmeta", p, "issuetypes"] => match find_project(&st, p) {
            Some(_) => {
                let types: Vec<Value> = st
                    .site
                    .issue_types
                    .iter()
                    .map(|t| issue_type_json(ctx, t))
                    .collect();
                json_response(200, &page(ctx, types, "issueTypes"))
            }
            None => no_project(p),
        },
        ["issue", "createmeta", p, "issuetypes", type_id] => {
            if find_project(&st, p).is_none() {
                return Some(no_project(p));
            }
            if !st.site.issue_types.iter().any(|t| t.id == *type_id) {
                return Some(jira_error(
                    404,
                    &[&format!(
                        "The issue type with id '{type_id}' does not exist or is not valid for this project."
                    )],
                    json!({}),
                ));
            }
            let mut fields: Vec<Value> = SYSTEM_CREATE_FIELDS
                .iter()
                .map(|(id, name, req, ty)| create_field(ctx, &st, id, name, *req, ty))
                .collect();
            for f in &st.site.custom_fields {
                fields.push(json!({
                    "fieldId": f.id, "key": f.id, "name": f.name, "required": false,
                    "hasDefaultValue": false, "operations": ["set"], "schema": custom_schema(f),
                }));
            }
            json_response(200, &page(ctx, fields, "fields"))
        }
        ["field"] => {
            let mut list: Vec<Value> = Vec::new();
            let sys = SYSTEM_CREATE_FIELDS
                .iter()
                .map(|(id, name, _, ty)| (*id, *name, *ty))
                .chain(SYSTEM_OTHER_FIELDS.iter().copied());
            for (id, name, ty) in sys {
                list.push(json!({
                    "id": id, "key": id, "name": name, "custom": false, "orderable": true,
                    "navigable": true, "searchable": true, "clauseNames": [id],
                    "schema": {"type": ty, "system": id},
                }));
            }
            for f in &st.site.custom_fields {
                let n = f.id.trim_start_matches("customfield_");
                list.push(json!({
                    "id": f.id, "key": f.id, "name": f.name, "custom": true, "orderable": true,
                    "navigable": true, "searchable": true,
                    "clauseNames": [format!("cf[{n}]"), f.name],
                    "schema": custom_schema(f),
                }));
            }
            json_response(200, &Value::Array(list))
        }
        ["user"] => {
            let id = ctx.param("accountId").unwrap_or_default();
            match st.site.users.iter().find(|a| a.account_id == id) {
                Some(a) => json_response(200, &account_json(ctx, a)),
                None => jira_error(
                    404,
                    &["Specified user does not exist or you do not have required permissions"],
                    json!({}),
                ),
            }
        }
        ["user", "bulk"] => {
            let ids: Vec<&str> = ctx
                .query
                .iter()
                .filter(|(k, _)| k == "accountId")
                .map(|(_, v)| v.as_str())
                .collect();
            let values: Vec<Value> = st
                .site
                .users
                .iter()
                .filter(|a| ids.contains(&a.account_id.as_str()))
                .map(|a| account_json(ctx, a))
                .collect();
            let n = values.len();
            json_response(
                200,
                &json!({"isLast": true, "maxResults": 10, "startAt": 0, "total": n, "values": values}),
            )
        }
        ["user", "groups"] => {
            let id = ctx.param("accountId").unwrap_or_default();
            if !st.site.users.iter().any(|a| a.account_id == id) {
                return Some(no_user());
            }
            let list: Vec<Value> = st
                .site
                .groups
                .iter()
                .filter(|(_, m)| m.contains(id))
                .map(|(name, _)| group_ref(ctx, name))
                .collect();
            json_response(200, &Value::Array(list))
        }
        ["applicationrole"] => {
            let roles: Vec<Value> = st
                .site
                .products
                .iter()
                .map(|p| {
                    let users = format!("{}-users", p.id);
                    json!({"key": p.id, "name": p.name, "groups": [users], "defaultGroups": [users],
                           "selectedByDefault": false, "defined": false, "numberOfSeats": 10,
                           "remainingSeats": 5, "userCount": 5, "userCountDescription": "users",
                           "hasUnlimitedSeats": false, "platform": false})
                })
                .collect();
            json_response(200, &Value::Array(roles))
        }
        ["groups", "picker"] => {
            let q = ctx.param("query").unwrap_or_default().to_lowercase();
            let max = ctx
                .param("maxResults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(20);
            let hits: Vec<&String> = st
                .site
                .groups
                .keys()
                .filter(|g| g.to_lowercase().contains(&q))
                .collect();
            let groups: Vec<Value> = hits
                .iter()
                .take(max)
                .map(|g| json!({"name": g, "groupId": group_id(g), "html": g, "labels": []}))
                .collect();
            let header = format!("Showing {} of {} matching groups", groups.len(), hits.len());
            json_response(200, &json!({"groups": groups, "header": header, "total": hits.len()}))
        }
        ["group", "member"] => {
            let name = ctx.param("groupname").unwrap_or_default();
            let Some(members) = st.site.groups.get(name) else {
                return Some(no_group());
            };
            let values: Vec<Value> = st
                .site
                .users
                .iter()
                .filter(|a| members.contains(&a.account_id))
                .map(|a| account_json(ctx, a))
                .collect();
            let n = values.len();
            json_response(
                200,
                &json!({"isLast": true, "maxResults": 50, "startAt": 0, "total": n, "values": values}),
            )
        }
        ["user", "search"] => {
            let q = ctx.param("query").unwrap_or_default().to_lowercase();
            let now = std::time::Instant::now();
            let hits: Vec<Value> = st
                .site
                .users
                .iter()
                .filter(|a| a.searchable_from.is_none_or(|t| t <= now))
                .filter(|a| {
                    !q.is_empty()
                        && (a.display_name.to_lowercase().starts_with(&q)
                            || a.email.as_deref().is_some_and(|e| e.to_lowercase() == q))
                })
                .map(|a| account_json(ctx, a))
                .collect();
            json_response(200, &Value::Array(hits))
        }
        ["issuetype"] => json_response(
            200,
            &Value::Array(st.site.issue_types.iter().map(|t| issue_type_json(ctx, t)).collect()),
        ),
        ["priority"] => json_response(
            200,
            &Value::Array(
                st.site
                    .priorities
                    .iter()
                    .map(|p| {
                        json!({"id": p.id, "name": p.name, "description": "", "statusColor": "#cccccc",
                               "self": format!("{}/rest/api/{}/priority/{}", ctx.sh.base, ctx.api(), p.id)})
                    })
                    .collect(),
            ),
        ),
        ["resolution"] => json_response(
            200,
            &Value::Array(
                st.site
                    .resolutions
                    .iter()
                    .map(|r| {
                        json!({"id": r.id, "name": r.name, "description": "",
                               "self": format!("{}/rest/api/{}/resolution/{}", ctx.sh.base, ctx.api(), r.id)})
                    })
                    .collect(),
            ),
        ),
        ["status"] => json_response(200, &Value::Array(statuses(ctx, &st))),
        ["mypermissions"] => {
            let wanted: Vec<&str> = ctx
                .param("permissions")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            if wanted.is_empty() {
                return Some(jira_error(
                    400,
                    &["The 'permissions' query parameter is required."],
                    json!({}),
                ));
            }
            let project = match ctx.param("projectKey").or(ctx.param("projectId")) {
                Some(p) => match find_project(&st, p) {
                    Some((k, _)) => Some(k),
                    None => return Some(no_project(p)),
                },
                None => None,
            };
            let mut perms = serde_json::Map::new();
            for w in wanted {
                let Some((id, key, name)) = PERMISSIONS.iter().find(|(_, k, _)| *k == w) else {
                    return Some(jira_error(
                        400,
                        &[&format!("Unrecognized permission key: {w}")],
                        json!({}),
                    ));
                };
                // A global permission (ADMINISTER) is denied under the
                // project "" and holds in every project.
                let global = *key == "ADMINISTER";
                let on = if global { None } else { project.as_ref() };
                let have = !st
                    .site
                    .denied
                    .contains(&(on.cloned().unwrap_or_default(), key.to_string()));
                perms.insert(
                    key.to_string(),
                    json!({"id": id, "key": key, "name": name, "type": if global { "GLOBAL" } else { "PROJECT" },
                           "description": format!("Ability to {}.", name.to_lowercase()),
                           "havePermission": have}),
                );
            }
            json_response(200, &json!({"permissions": perms}))
        }
        ["workflowscheme", "project"] => {
            let ids: Vec<String> = ctx
                .query
                .iter()
                .filter(|(k, _)| k == "projectId")
                .flat_map(|(_, v)| v.split(','))
                .map(|s| s.trim().to_string())
                .filter(|id| st.projects.values().any(|(pid, _)| pid == id))
                .collect();
            let values = if ids.is_empty() {
                json!([])
            } else {
                json!([{
                    "projectIds": ids,
                    "workflowScheme": {
                        "id": WORKFLOW_SCHEME_ID,
                        "name": "Sandbox workflow scheme",
                        "description": "",
                        "defaultWorkflow": st.workflow.name,
                        "issueTypeMappings": {},
                        "self": format!("{}/rest/api/{}/workflowscheme/{WORKFLOW_SCHEME_ID}", ctx.sh.base, ctx.api()),
                    }
                }])
            };
            json_response(200, &json!({"values": values}))
        }
        ["workflow", "search"] => {
            let wf = &st.workflow;
            let names: Vec<&str> = ctx
                .query
                .iter()
                .filter(|(k, _)| k == "workflowName")
                .flat_map(|(_, v)| v.split(','))
                .collect();
            let expand = ctx.param("expand").unwrap_or("");
            let mut values = Vec::new();
            if names.is_empty() || names.contains(&wf.name.as_str()) {
                let id_of = |name: &str| {
                    wf.statuses
                        .iter()
                        .find(|s| s.name == name)
                        .map(|s| s.id.clone())
                        .unwrap_or_default()
                };
                let mut v = json!({
                    "id": {"name": wf.name, "entityId": "5ed312c5-0000-4a78-a1f6-8ff7f307d063"},
                    "description": "The sandbox's workflow",
                    "isDefault": false,
                });
                if expand.contains("transitions") {
                    v["transitions"] = wf
                        .transitions
                        .iter()
                        .map(|t| {
                            let from: Vec<String> = wf
                                .statuses
                                .iter()
                                .filter(|s| s.name != t.to)
                                .map(|s| s.id.clone())
                                .collect();
                            json!({"id": t.id, "name": t.name, "description": "", "from": from,
                                   "to": id_of(&t.to), "type": "directed"})
                        })
                        .collect();
                }
                if expand.contains("statuses") {
                    v["statuses"] = wf
                        .statuses
                        .iter()
                        .map(|s| json!({"id": s.id, "name": s.name}))
                        .collect();
                }
                values.push(v);
            }
            let total = values.len();
            json_response(
                200,
                &json!({"isLast": true, "maxResults": 50, "startAt": 0, "total": total, "values": values}),
            )
        }
        _ => return None,
    };
    Some(resp)
}

/// Whether the integration user may do `permission` in `project`.
pub(super) fn allowed(st: &JiraState, project: &str, permission: &str) -> bool {
    !st.site
        .denied
        .contains(&(project.to_ascii_uppercase(), permission.to_string()))
}

pub(super) fn no_user() -> Response {
    jira_error(
        404,
        &["Specified user does not exist or you do not have required permissions"],
        json!({}),
    )
}

pub(super) fn no_group() -> Response {
    jira_error(404, &["Specified group does not exist."], json!({}))
}

/// A stable id for a group name (FNV-1a), in the UUID-like form Jira uses.
pub(super) fn group_id(name: &str) -> String {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        (h >> 48) & 0xffff,
        h & 0xffff_ffff_ffff
    )
}

fn group_ref(ctx: &Ctx<'_>, name: &str) -> Value {
    json!({"name": name, "groupId": group_id(name),
           "self": format!("{}/rest/api/{}/group?groupId={}", ctx.sh.base, ctx.api(), group_id(name))})
}

/// `POST /user {emailAddress, displayName, products}`: a new account, or
/// the existing one of that address (201 when it has Jira access, else 400).
pub(super) fn create_user(ctx: &Ctx<'_>, body: Option<Value>) -> Response {
    let body = body.unwrap_or(Value::Null);
    let Some(email) = body["emailAddress"].as_str().filter(|e| e.contains('@')) else {
        return jira_error(
            400,
            &[],
            json!({"emailAddress": "You must specify an email address."}),
        );
    };
    let mut st = lock(&ctx.sh.state);
    let known = st.site.users.iter().find(|a| {
        a.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
    });
    // As the spec says: an existing account with Jira access is answered
    // 201, one without access 400.
    if let Some(a) = known {
        if a.products.is_empty() {
            return jira_error(
                400,
                &["The user exists but does not have access to Jira."],
                json!({}),
            );
        }
        return json_response(201, &account_json(ctx, a));
    }
    let account = Account {
        account_id: format!("712020:{}", group_id(&email.to_ascii_lowercase())),
        display_name: body["displayName"].as_str().map_or_else(
            || email.split('@').next().unwrap_or(email).to_owned(),
            str::to_owned,
        ),
        email: Some(email.to_owned()),
        products: strings(&body["products"]),
        name: None,
        active: true,
        searchable_from: (!st.search_lag.is_zero())
            .then(|| std::time::Instant::now() + st.search_lag),
    };
    let v = account_json(ctx, &account);
    st.site.users.push(account);
    json_response(201, &v)
}

/// The strings of a JSON array (nothing for anything else).
pub(super) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `DELETE /user?accountId=`: the account leaves the site (and its groups).
pub(super) fn delete_user(ctx: &Ctx<'_>) -> Response {
    let id = ctx.param("accountId").unwrap_or_default().to_owned();
    let mut st = lock(&ctx.sh.state);
    let before = st.site.users.len();
    st.site.users.retain(|a| a.account_id != id);
    if st.site.users.len() == before {
        return no_user();
    }
    for m in st.site.groups.values_mut() {
        m.remove(&id);
    }
    crate::faults::empty_response(204)
}

/// `POST /group/user?groupname= {accountId}`.
pub(super) fn add_to_group(ctx: &Ctx<'_>, body: Option<Value>) -> Response {
    let name = ctx.param("groupname").unwrap_or_default().to_owned();
    let id = body
        .as_ref()
        .and_then(|b| b["accountId"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mut st = lock(&ctx.sh.state);
    if !st.site.users.iter().any(|a| a.account_id == id) {
        return no_user();
    }
    let Some(members) = st.site.groups.get_mut(&name) else {
        return no_group();
    };
    if !members.insert(id) {
        let msg = format!("Cannot add user. User is already a member of '{name}'");
        return jira_error(400, &[msg.as_str()], json!({}));
    }
    let mut v = group_ref(ctx, &name);
    v["users"] = json!({"size": members.len(), "items": [], "max-results": 50, "start-index": 0, "end-index": 0});
    v["expand"] = json!("users");
    json_response(201, &v)
}

/// `DELETE /group/user?groupname=&accountId=`.
pub(super) fn remove_from_group(ctx: &Ctx<'_>) -> Response {
    let name = ctx.param("groupname").unwrap_or_default().to_owned();
    let id = ctx.param("accountId").unwrap_or_default().to_owned();
    let mut st = lock(&ctx.sh.state);
    if !st.site.users.iter().any(|a| a.account_id == id) {
        return no_user();
    }
    let Some(members) = st.site.groups.get_mut(&name) else {
        return no_group();
    };
    if !members.remove(&id) {
        let msg = format!("Cannot remove user. User is not a member of '{name}'");
        return jira_error(400, &[msg.as_str()], json!({}));
    }
    crate::faults::empty_response(200)
}
