//! Names at runtime: what a Jira connection's calls name the way people
//! see them is turned into the ids the site uses, just before the call.
//!
//! A config may map into `fields.Customer Impact` (a field's display name),
//! `fields.project.name`, `fields.issuetype.name` and `fields.priority.name`.
//! Jira's write APIs take field ids only and projects by key or id, and ids
//! differ from site to site (a custom field is `customfield_10050` on the
//! test site and `customfield_10233` in production), so [`Vocabulary`]
//! wraps the connection's connector and, for a call whose JSON body has
//! `fields` or `update`:
//!
//! - renames a key that is not an id (anything but `summary`, `fixVersions`,
//!   `customfield_10050`…: a capital, a space) to the id of the one field
//!   of that name (`GET /field`, any case); two fields of one name, or none,
//!   is a permanent error that names them;
//! - `project: {name}` → `{key}` (`GET /project/search?query=`), `issuetype:
//!   {name}` → `{id}` (the project's create metadata), `priority: {name}` →
//!   `{id}` (`GET /priority`);
//! - caches what it read for the connector's life; a 400 whose `errors`
//!   name a field the call sent (the field was recreated under a new id, or
//!   a lowercase name was taken for an id) drops the field cache, resolves
//!   again and sends once more if that changed anything.
//!
//! Calls that name nothing (every existing config) pass through untouched
//! and cost no extra request.

use crate::outbound::connections::Connection;
use crate::outbound::connector::{Budget, Call, CallBody, CallError, Connector, Reply};
use crate::rules::model::Method;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

pub use crate::rules::calls::jira::is_field_name;

#[derive(Clone, Debug)]
struct IdName {
    id: String,
    name: String,
}

#[derive(Default)]
struct Catalog {
    fields: Option<Vec<IdName>>,
    /// `Some(None)`: the site would not list them.
    priorities: Option<Option<Vec<IdName>>>,
    /// Project display name (lowercase) → key.
    projects: HashMap<String, String>,
    /// Project key → its issue types (`None`: the site would not list them).
    issue_types: HashMap<String, Option<Vec<IdName>>>,
}

/// A Jira connector that resolves names (see the module docs).
pub struct Vocabulary {
    inner: Arc<dyn Connector>,
    api: &'static str,
    cache: Mutex<Catalog>,
}

impl Vocabulary {
    pub fn new(inner: Arc<dyn Connector>, conn: &Connection) -> Self {
        Self {
            inner,
            api: conn.api.prefix(),
            cache: Mutex::new(Catalog::default()),
        }
    }

    async fn get(
        &self,
        path: String,
        query: Vec<(String, String)>,
        budget: &Budget,
    ) -> Result<Value, CallError> {
        let call = Call {
            method: Method::Get,
            path: path.clone(),
            query,
            headers: Vec::new(),
            body: CallBody::None,
            once: false,
        };
        let reply = self.inner.call(&call, budget).await?;
        match (reply.is_success(), reply.json) {
            (true, Some(v)) => Ok(v),
            _ => Err(CallError::permanent(format!(
                "names_unresolved: {} answered {} to GET {path} ({}), so the names in the config cannot be turned into ids",
                self.inner.name(),
                reply.status,
                reply.error.unwrap_or_default()
            ))),
        }
    }

    async fn fields(&self, cat: &mut Catalog, budget: &Budget) -> Result<Vec<IdName>, CallError> {
        if let Some(f) = &cat.fields {
            return Ok(f.clone());
        }
        let v = self
            .get(format!("{}/field", self.api), Vec::new(), budget)
            .await?;
        let list = id_names(&v, "id");
        cat.fields = Some(list.clone());
        Ok(list)
    }

    async fn field_id(
        &self,
        cat: &mut Catalog,
        name: &str,
        budget: &Budget,
    ) -> Result<String, CallError> {
        let fields = self.fields(cat, budget).await?;
        if fields.iter().any(|f| f.id == name) {
            return Ok(name.to_owned());
        }
        let hits: Vec<&IdName> = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .collect();
        match hits.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(CallError::permanent(format!(
                "unknown_field: {} has no field named `{name}` (GET {}/field); check the spelling, or map to the field's id",
                self.inner.name(),
                self.api
            ))),
            many => Err(CallError::permanent(format!(
                "ambiguous_field: {} has {} fields named `{name}` ({}); map to the id of the one meant",
                self.inner.name(),
                many.len(),
                many.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    async fn project_key(
        &self,
        cat: &mut Catalog,
        name: &str,
        budget: &Budget,
    ) -> Result<String, CallError> {
        let lower = name.to_lowercase();
        if let Some(k) = cat.projects.get(&lower) {
            return Ok(k.clone());
        }
        let v = self
            .get(
                format!("{}/project/search", self.api),
                vec![
                    ("query".into(), name.to_owned()),
                    ("maxResults".into(), "50".into()),
                ],
                budget,
            )
            .await?;
        let hit = v["values"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase() == lower)
            })
            .and_then(|p| p["key"].as_str());
        match hit {
            Some(k) => {
                cat.projects.insert(lower, k.to_owned());
                Ok(k.to_owned())
            }
            None => Err(CallError::permanent(format!(
                "unknown_project: {} has no project named `{name}` that the integration user can see; map `fields.project.key` instead",
                self.inner.name()
            ))),
        }
    }

    async fn issue_type_id(
        &self,
        cat: &mut Catalog,
        project: Option<&str>,
        name: &str,
        budget: &Budget,
    ) -> Result<String, CallError> {
        let scope = project.unwrap_or("").to_owned();
        if !cat.issue_types.contains_key(&scope) {
            let (path, at) = match project {
                Some(p) => (
                    format!(
                        "{}/issue/createmeta/{}/issuetypes",
                        self.api,
                        crate::support::url::encode_segment(p)
                    ),
                    "issueTypes",
                ),
                None => (format!("{}/issuetype", self.api), ""),
            };
            let query = vec![("maxResults".into(), "200".into())];
            let list = match self.get(path, query, budget).await {
                Ok(v) if at.is_empty() => Some(id_names(&v, "id")),
                Ok(v) => Some(id_names(&v[at], "id")),
                Err(e) if unreadable(&e) => None,
                Err(e) => return Err(e),
            };
            cat.issue_types.insert(scope.clone(), list);
        }
        let Some(list) = &cat.issue_types[&scope] else {
            return Err(CallError::permanent(
                "names_unresolved: the site did not list its issue types",
            ));
        };
        pick(list, name).ok_or_else(|| {
            CallError::permanent(format!(
                "unknown_issue_type: {} has no issue type `{name}`{} (it has: {})",
                self.inner.name(),
                project
                    .map(|p| format!(" in project {p}"))
                    .unwrap_or_default(),
                names(list)
            ))
        })
    }

    async fn priority_id(
        &self,
        cat: &mut Catalog,
        name: &str,
        budget: &Budget,
    ) -> Result<String, CallError> {
        if cat.priorities.is_none() {
            let path = format!("{}/priority", self.api);
            cat.priorities = match self.get(path, Vec::new(), budget).await {
                Ok(v) => Some(Some(id_names(&v, "id"))),
                Err(e) if unreadable(&e) => Some(None),
                Err(e) => return Err(e),
            };
        }
        let Some(Some(list)) = &cat.priorities else {
            return Err(CallError::permanent(
                "names_unresolved: the site did not list its priorities",
            ));
        };
        pick(list, name).ok_or_else(|| {
            CallError::permanent(format!(
                "unknown_priority: {} has no priority `{name}` (it has: {})",
                self.inner.name(),
                names(list)
            ))
        })
    }

    /// The body with names turned into ids; `None` when it names nothing.
    async fn resolve(
        &self,
        body: &Value,
        force: &[String],
        budget: &Budget,
    ) -> Result<Option<Value>, CallError> {
        if !needs_resolving(body, force) {
            return Ok(None);
        }
        let mut cat = self.cache.lock().await;
        let mut out = body.clone();
        if let Some(update) = out.get_mut("update").and_then(Value::as_object_mut) {
            self.rename(&mut cat, update, force, budget).await?;
        }
        if let Some(fields) = out.get_mut("fields").and_then(Value::as_object_mut) {
            self.rename(&mut cat, fields, force, budget).await?;
            if let Some(name) = fields
                .get("project")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
            {
                let key = self.project_key(&mut cat, &name, budget).await?;
                fields.insert("project".into(), serde_json::json!({ "key": key }));
            }
            let project = fields
                .get("project")
                .and_then(|p| p.get("key"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            // Jira takes issue types and priorities by name too: when the
            // list cannot be read (a site that hides it), the name is sent
            // as it is and Jira judges it.
            if let Some(name) = ref_name(fields, "issuetype") {
                let id = self
                    .issue_type_id(&mut cat, project.as_deref(), &name, budget)
                    .await;
                if let Some(id) = soft(id)? {
                    fields.insert("issuetype".into(), serde_json::json!({ "id": id }));
                }
            }
            if let Some(name) = ref_name(fields, "priority") {
                let id = self.priority_id(&mut cat, &name, budget).await;
                if let Some(id) = soft(id)? {
                    fields.insert("priority".into(), serde_json::json!({ "id": id }));
                }
            }
        }
        Ok(Some(out))
    }

    /// Renames the keys of `fields` or `update` that are names (or that
    /// the site refused) to field ids.
    async fn rename(
        &self,
        cat: &mut Catalog,
        map: &mut Map<String, Value>,
        force: &[String],
        budget: &Budget,
    ) -> Result<(), CallError> {
        let mut renamed = Map::new();
        for (k, v) in std::mem::take(map) {
            let k = if is_field_name(&k) || force.contains(&k) {
                self.field_id(cat, &k, budget).await?
            } else {
                k
            };
            renamed.insert(k, v);
        }
        *map = renamed;
        Ok(())
    }
}

/// The site answered a list request with a refusal (not a retry).
fn unreadable(e: &CallError) -> bool {
    matches!(e, CallError::Permanent { reason } if reason.starts_with("names_unresolved:"))
}

/// A lookup whose list could not be read is no answer (`None`); a list
/// without the name, and anything to retry, stay errors.
fn soft(r: Result<String, CallError>) -> Result<Option<String>, CallError> {
    match r {
        Ok(id) => Ok(Some(id)),
        Err(e) if unreadable(&e) => {
            tracing::debug!(reason = %e, "sending the name as it is");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `{"name": X}` without an id: the name to resolve.
fn ref_name(fields: &Map<String, Value>, field: &str) -> Option<String> {
    let r = fields.get(field)?.as_object()?;
    if r.contains_key("id") {
        return None;
    }
    r.get("name").and_then(Value::as_str).map(str::to_owned)
}

fn needs_resolving(body: &Value, force: &[String]) -> bool {
    let keys = |k: &str| {
        body.get(k)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
    };
    let named = |k: &String| is_field_name(k) || force.contains(k);
    let fields = body.get("fields").and_then(Value::as_object);
    keys("fields").any(named)
        || keys("update").any(named)
        || fields.is_some_and(|f| {
            f.get("project").and_then(|p| p.get("name")).is_some()
                || ref_name(f, "issuetype").is_some()
                || ref_name(f, "priority").is_some()
        })
}

fn id_names(v: &Value, id: &str) -> Vec<IdName> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| {
            Some(IdName {
                id: x[id].as_str()?.to_owned(),
                name: x["name"].as_str()?.to_owned(),
            })
        })
        .collect()
}

/// By name, any case; an exact match wins over a case-insensitive one.
fn pick(list: &[IdName], name: &str) -> Option<String> {
    list.iter()
        .find(|x| x.name == name)
        .or_else(|| list.iter().find(|x| x.name.eq_ignore_ascii_case(name)))
        .map(|x| x.id.clone())
}

fn names(list: &[IdName]) -> String {
    list.iter()
        .map(|x| x.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys of `fields`/`update` that a 400 answer's `errors` names.
fn refused_keys(reply: &Reply, sent: &Value) -> Vec<String> {
    let Some(errors) = reply
        .json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    errors
        .keys()
        .filter(|k| {
            ["fields", "update"]
                .iter()
                .any(|s| sent.get(*s).and_then(|m| m.get(k.as_str())).is_some())
        })
        .cloned()
        .collect()
}

#[async_trait]
impl Connector for Vocabulary {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> crate::outbound::connections::ConnectionKind {
        self.inner.kind()
    }
    fn base_url(&self) -> &str {
        self.inner.base_url()
    }
    fn settle(&self) -> std::time::Duration {
        self.inner.settle()
    }

    async fn call(&self, call: &Call, budget: &Budget) -> Result<Reply, CallError> {
        let CallBody::Json(body) = &call.body else {
            return self.inner.call(call, budget).await;
        };
        let sent = match self.resolve(body, &[], budget).await? {
            Some(b) => b,
            None => body.clone(),
        };
        let mut first = call.clone();
        first.body = CallBody::Json(sent.clone());
        let reply = self.inner.call(&first, budget).await?;
        if reply.status != 400 {
            return Ok(reply);
        }
        let refused = refused_keys(&reply, &sent);
        if refused.is_empty() {
            return Ok(reply);
        }
        // The site refused a field: its id may have changed (or a name was
        // taken for an id). Read the fields again and retry if that helps.
        self.cache.lock().await.fields = None;
        let force: Vec<String> = body
            .get("fields")
            .and_then(Value::as_object)
            .into_iter()
            .chain(body.get("update").and_then(Value::as_object))
            .flat_map(|m| m.keys())
            .filter(|k| !is_field_name(k) && refused.contains(k))
            .cloned()
            .collect();
        let again = match self.resolve(body, &force, budget).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(reply),
            Err(e) => {
                tracing::warn!(connection = %self.inner.name(), reason = %e, "field names could not be resolved again after a 400");
                return Ok(reply);
            }
        };
        if again == sent {
            return Ok(reply);
        }
        tracing::info!(connection = %self.inner.name(), fields = ?refused, "Jira refused a field id; resolved the names again and resending");
        let mut second = call.clone();
        second.body = CallBody::Json(again);
        self.inner.call(&second, budget).await
    }

    #[cfg(feature = "http")]
    async fn download(
        &self,
        url: &str,
        max_bytes: u64,
        budget: &Budget,
    ) -> Result<crate::outbound::connector::Download, CallError> {
        self.inner.download(url, max_bytes, budget).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_told_apart() {
        for id in ["summary", "fixVersions", "customfield_10050", "duedate"] {
            assert!(!is_field_name(id), "{id}");
        }
        for name in ["Customer Impact", "Severity", "Due date", "sla-breach", ""] {
            assert!(is_field_name(name), "{name}");
        }
    }

    #[test]
    fn picks_exact_before_any_case() {
        let l = vec![
            IdName {
                id: "1".into(),
                name: "high".into(),
            },
            IdName {
                id: "2".into(),
                name: "High".into(),
            },
        ];
        assert_eq!(pick(&l, "High").as_deref(), Some("2"));
        assert_eq!(pick(&l, "HIGH").as_deref(), Some("1"));
        assert_eq!(pick(&l, "Low"), None);
    }
}
