//! The calls a rule makes into Jira's REST API (v2 and v3): create, update,
//! transition, comment (with the twin's property), attach, JQL lookups.

use crate::outbound::connections::{Connection, JiraApi};
use crate::rules::context::Context;
use crate::rules::model::{Action, Rule};
use crate::rules::path::{as_text, Path, Segment};
use crate::rules::plan::{Body, Method, OnEmpty, RunIf, Step};
use crate::support::url::encode_segment;
use serde_json::{json, Map, Value};

use super::common::*;

/// Whether a Jira field reference is a display name (`ServiceNow Number`)
/// rather than an id (`customfield_10050`, `labels`); names are turned into
/// ids by the connection when the call is made.
pub fn is_field_name(key: &str) -> bool {
    let mut b = key.bytes();
    !(b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_'))
}

pub(crate) fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A Jira comment edit or deletion to carry to a Jira target: (`updated` |
/// `deleted`, the change id its twin was created for).
pub(crate) fn comment_twin(rule: &Rule, ctx: &Context<'_>) -> Option<(&'static str, String)> {
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

pub(crate) fn jira_steps(
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
                // A custom field by its display name: JQL takes the name.
                None if is_field_name(field) => {
                    format!("{} ~ {}", jql_string(field), jql_string(k))
                }
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
                if (field.starts_with("customfield_") || is_field_name(field))
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
            // `internal: true`: a Jira Service Management internal comment
            // (the `sd.public.comment` property), which JSM never shows or
            // mails to the customer.
            let internal = take(&mut fields, "internal").is_some_and(|v| truthy(&v));
            let mut body = nested(fields);
            if let Some(m) = body.as_object_mut() {
                let mut props =
                    vec![json!({ "key": "jira-relay", "value": { "change": "{{event.change}}" } })];
                if internal {
                    props
                        .push(json!({ "key": "sd.public.comment", "value": { "internal": true } }));
                }
                m.insert("properties".into(), Value::Array(props));
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
                    let filter = crate::rules::path::Path::parse(&format!(
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
        Action::User | Action::GroupMember => {
            // Planned by `calls::identity` (the engine sends them there).
            return Err(Stop::Error(
                "an identity action has no issue to act on".to_owned(),
            ));
        }
        Action::Delete => {
            let r = need_ref()?;
            let mut del = step("delete", Method::Delete, format!("{api}/issue/{r}"));
            if rule.delete_subtasks {
                del.query = vec![("deleteSubtasks".into(), "true".into())];
            }
            found(&mut del);
            steps.push(del);
        }
    }
    Ok(steps)
}
