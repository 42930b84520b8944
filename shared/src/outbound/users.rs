//! User mapping: a Jira account ⇄ a ServiceNow `sys_user`.
//!
//! A mapping with `user: true` (`assigned_to: { path: issue.fields.assignee,
//! user: true }`) plans a marker, `{"$user": {"to": "servicenow", "from":
//! <the source value>}}`, that the executor replaces just before the call
//! with the target system's id for that person (a `sys_user` sys_id, a Jira
//! accountId). The config's `users:` section says how:
//!
//! Jira → ServiceNow
//! 1. `pairs` (Jira accountId → ServiceNow `user_name`), the explicit table:
//!    Jira Cloud hides most e-mail addresses, so this is often the only way;
//! 2. the e-mail address: from the payload's user object, else `GET
//!    /rest/api/3/user?accountId=` on the Jira connection; then `sys_user`
//!    by `email` (active users);
//! 3. `default.servicenow` (a `user_name`).
//!
//! ServiceNow → Jira
//! 1. the `sys_user` record (by sys_id, or by `user_name` when the value is
//!    not a sys_id) for its `user_name` and `email`;
//! 2. `pairs` read backwards (`user_name` → accountId);
//! 3. `GET /rest/api/3/user/search?query=<email>`, the account whose
//!    visible address is that one;
//! 4. `default.jira` (an accountId).
//!
//! A person no step finds is logged (`user not mapped`, with what was tried)
//! and the field is left out of the write: a miss never dead-letters the
//! event. Answers are cached for the process's life, misses included, so one
//! unknown person costs its lookups once. Lookups that must be retried (429,
//! 5xx) retry the event as any call does.

use crate::outbound::connector::{Budget, Call, CallBody, CallError, Connector};
use crate::rules::model::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::config::users::{UserDefaults, UsersSpec};
pub use crate::rules::calls::common::{user_marker as marker, USER_MARKER as MARKER};

/// Resolves user markers against the live systems (see the module docs).
pub struct Directory {
    spec: UsersSpec,
    /// The Jira connection's API prefix (`/rest/api/3` or `/2`).
    jira_api: &'static str,
    /// (to, source id) → the target id, or `None` for a known miss.
    cache: Mutex<HashMap<(String, String), Option<String>>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("jira", &self.spec.jira)
            .field("servicenow", &self.spec.servicenow)
            .finish_non_exhaustive()
    }
}

/// One person as the source sent them.
#[derive(Debug, Default)]
struct Person {
    /// accountId (Jira) or sys_id / user_name (ServiceNow).
    id: String,
    email: Option<String>,
}

fn person(from: &Value) -> Option<Person> {
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match from {
        Value::String(x) if !x.is_empty() => Some(Person {
            id: x.clone(),
            email: None,
        }),
        Value::Object(o) => {
            let id = ["accountId", "value", "sys_id", "name", "key"]
                .iter()
                .find_map(|k| o.get(*k).and_then(s))?;
            Some(Person {
                id,
                email: o.get("emailAddress").or_else(|| o.get("email")).and_then(s),
            })
        }
        _ => None,
    }
}

/// Whether a body holds a user marker (without serialising it: this runs
/// for every call when `users:` is configured).
fn has_marker(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.contains_key(MARKER) || o.values().any(has_marker),
        Value::Array(a) => a.iter().any(has_marker),
        _ => false,
    }
}

fn is_sys_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn quote(s: &str) -> String {
    // Encoded-query values end at `^`; a value holding one cannot be asked for.
    s.replace('^', "")
}

/// Resolves through the connectors of the config.
pub type Lookup<'a> = &'a (dyn Fn(&str) -> Option<Arc<dyn Connector>> + Sync);

impl Directory {
    pub fn new(spec: UsersSpec, jira_api: &'static str) -> Self {
        Self {
            spec,
            jira_api,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces every marker in `body`: with the id found, or by leaving
    /// the field out (a miss, logged). Errors are retryable lookups only.
    pub async fn resolve_in(
        &self,
        body: &mut Value,
        connectors: Lookup<'_>,
        budget: &Budget,
    ) -> Result<(), CallError> {
        if !has_marker(body) {
            return Ok(());
        }
        self.walk(body, connectors, budget).await?;
        Ok(())
    }

    /// Returns whether `v` should be removed from its parent (a miss, or an
    /// object emptied by misses).
    fn walk<'a>(
        &'a self,
        v: &'a mut Value,
        connectors: Lookup<'a>,
        budget: &'a Budget,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, CallError>> + Send + 'a>>
    {
        Box::pin(async move {
            let Some(obj) = v.as_object_mut() else {
                return Ok(false);
            };
            if let Some(m) = obj.get(MARKER).cloned() {
                let found = self.resolve(&m, connectors, budget).await?;
                return Ok(match found {
                    Some(id) => {
                        *v = Value::String(id);
                        false
                    }
                    None => true,
                });
            }
            let mut gone = Vec::new();
            let had = obj.len();
            for (k, child) in obj.iter_mut() {
                if child.is_object() && self.walk(child, connectors, budget).await? {
                    gone.push(k.clone());
                }
            }
            for k in &gone {
                obj.remove(k);
            }
            Ok(!gone.is_empty() && obj.is_empty() && had > 0)
        })
    }

    async fn resolve(
        &self,
        marker: &Value,
        connectors: Lookup<'_>,
        budget: &Budget,
    ) -> Result<Option<String>, CallError> {
        let to = marker["to"].as_str().unwrap_or("servicenow").to_owned();
        let Some(p) = person(&marker["from"]) else {
            return Ok(None);
        };
        let key = (to.clone(), p.id.clone());
        if let Some(hit) = self
            .cache
            .lock()
            .map(|c| c.get(&key).cloned())
            .unwrap_or_default()
        {
            return Ok(hit);
        }
        let mut tried = Vec::new();
        let found = if to == "jira" {
            self.to_jira(&p, connectors, budget, &mut tried).await?
        } else {
            self.to_servicenow(&p, connectors, budget, &mut tried)
                .await?
        };
        if found.is_none() {
            tracing::warn!(
                user = %p.id,
                to = %to,
                tried = %tried.join("; "),
                "user not mapped: the field is left out of the write"
            );
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, found.clone());
        }
        Ok(found)
    }

    fn conn(&self, name: &str, connectors: Lookup<'_>) -> Result<Arc<dyn Connector>, CallError> {
        connectors(name).ok_or_else(|| {
            CallError::permanent(format!(
                "config_error: users names connection `{name}`, which does not exist"
            ))
        })
    }

    async fn get(
        conn: &Arc<dyn Connector>,
        path: String,
        query: Vec<(String, String)>,
        budget: &Budget,
    ) -> Result<Option<Value>, CallError> {
        let call = Call {
            method: Method::Get,
            path,
            query,
            headers: Vec::new(),
            body: CallBody::None,
            once: false,
        };
        let reply = conn.call(&call, budget).await?;
        Ok(reply.is_success().then_some(reply.json).flatten())
    }

    /// A `sys_user` by an encoded query: (sys_id, user_name, email).
    async fn sys_user(
        &self,
        query: String,
        connectors: Lookup<'_>,
        budget: &Budget,
    ) -> Result<Option<(String, String, String)>, CallError> {
        let sn = self.conn(&self.spec.servicenow, connectors)?;
        let v = Self::get(
            &sn,
            "/api/now/table/sys_user".into(),
            vec![
                ("sysparm_query".into(), query),
                ("sysparm_fields".into(), "sys_id,user_name,email".into()),
                ("sysparm_limit".into(), "1".into()),
            ],
            budget,
        )
        .await?;
        let rec = v.as_ref().and_then(|v| v["result"].get(0)).cloned();
        Ok(rec.and_then(|r| {
            let t = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            let id = t("sys_id");
            (!id.is_empty()).then(|| (id, t("user_name"), t("email")))
        }))
    }

    /// The sys_id of the `sys_user` with this `user_name`.
    async fn by_user_name(
        &self,
        name: &str,
        connectors: Lookup<'_>,
        budget: &Budget,
    ) -> Result<Option<String>, CallError> {
        let q = format!("user_name={}", quote(name));
        Ok(self
            .sys_user(q, connectors, budget)
            .await?
            .map(|(id, ..)| id))
    }

    async fn to_servicenow(
        &self,
        p: &Person,
        connectors: Lookup<'_>,
        budget: &Budget,
        tried: &mut Vec<String>,
    ) -> Result<Option<String>, CallError> {
        if let Some(name) = self.spec.pairs.get(&p.id) {
            if let Some(id) = self.by_user_name(name, connectors, budget).await? {
                return Ok(Some(id));
            }
            tried.push(format!("pairs: {name} is not a sys_user"));
        } else {
            tried.push("pairs: not listed".into());
        }
        let mut email = p.email.clone();
        if email.is_none() {
            let jira = self.conn(&self.spec.jira, connectors)?;
            let api = self.jira_api;
            let v = Self::get(
                &jira,
                format!("{api}/user"),
                vec![("accountId".into(), p.id.clone())],
                budget,
            )
            .await?;
            email = v
                .as_ref()
                .and_then(|u| u["emailAddress"].as_str())
                .filter(|e| !e.is_empty())
                .map(str::to_owned);
        }
        match email {
            Some(e) => {
                let q = format!("email={}^active=true", quote(&e));
                if let Some((id, ..)) = self.sys_user(q, connectors, budget).await? {
                    return Ok(Some(id));
                }
                tried.push(format!("email: no active sys_user has {e}"));
            }
            None => tried.push("email: Jira does not show this account's address".into()),
        }
        if let Some(name) = &self.spec.default.servicenow {
            if let Some(id) = self.by_user_name(name, connectors, budget).await? {
                tracing::info!(user = %p.id, default = %name, "user mapped to the default");
                return Ok(Some(id));
            }
            tried.push(format!("default: {name} is not a sys_user"));
        }
        Ok(None)
    }

    async fn to_jira(
        &self,
        p: &Person,
        connectors: Lookup<'_>,
        budget: &Budget,
        tried: &mut Vec<String>,
    ) -> Result<Option<String>, CallError> {
        let q = if is_sys_id(&p.id) {
            format!("sys_id={}", p.id)
        } else {
            format!("user_name={}", quote(&p.id))
        };
        let user = self.sys_user(q, connectors, budget).await?;
        let (name, email) = match &user {
            Some((_, n, e)) => (n.clone(), Some(e.clone()).filter(|e| !e.is_empty())),
            None => {
                tried.push("sys_user: not found".into());
                (p.id.clone(), p.email.clone())
            }
        };
        if let Some((account, _)) = self.spec.pairs.iter().find(|(_, n)| **n == name) {
            return Ok(Some(account.clone()));
        }
        tried.push(format!("pairs: {name} not listed"));
        if let Some(e) = email {
            let jira = self.conn(&self.spec.jira, connectors)?;
            let api = self.jira_api;
            let v = Self::get(
                &jira,
                format!("{api}/user/search"),
                vec![("query".into(), e.clone())],
                budget,
            )
            .await?;
            let hit = v
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|u| {
                    u["emailAddress"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&e))
                })
                .and_then(|u| u["accountId"].as_str());
            if let Some(a) = hit {
                return Ok(Some(a.to_owned()));
            }
            tried.push(format!("email: no Jira account shows {e}"));
        } else {
            tried.push("email: the sys_user has none".into());
        }
        if let Some(a) = &self.spec.default.jira {
            tracing::info!(user = %p.id, default = %a, "user mapped to the default");
            return Ok(Some(a.clone()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn people_are_read_from_jira_users_and_servicenow_values() {
        let p = person(&json!({"accountId": "712020:a", "emailAddress": "a@x.org"})).unwrap();
        assert_eq!(
            (p.id.as_str(), p.email.as_deref()),
            ("712020:a", Some("a@x.org"))
        );
        let p =
            person(&json!({"value": "6816f79cc0a8016401c5a33be04be441", "display_value": "Abel"}))
                .unwrap();
        assert!(is_sys_id(&p.id));
        assert!(person(&json!("")).is_none());
        assert!(person(&Value::Null).is_none());
        assert_eq!(person(&json!("beth.anglin")).unwrap().id, "beth.anglin");
    }
}
