//! What the worker completes in a Jira payload before the rules see it.
//!
//! - **The issue of a bare comment.** Jira Server sends `comment_created`
//!   with neither `issue` nor `user`; the issue is only in `comment.self`.
//!   It is read (`GET /rest/api/N/issue/{id}`) from the Jira connection of
//!   that site and put into the payload, so that the rules see `issue.key`
//!   and `issue.fields` as in any other event. A 404 leaves the payload as
//!   it is (its rules then skip); a lookup that must be retried retries the
//!   event.
//! - **Field display names.** A rule may read a Jira field by the name
//!   people see (`issue.fields["Customer Impact"]`) where the payload holds
//!   it under the site's id (`customfield_10233`). For the names the rules
//!   of the endpoint read, the field list of the site (`GET /field`, once
//!   per process and connection) gives the id, and the value is copied under
//!   the name. Ids (`summary`, `customfield_10050`) need nothing.
//!
//! "The Jira connection of that site": the one whose host is the host of
//! the payload's `self` URL, else the only Jira connection of the config.

use crate::config::model::SourceKind;
use crate::config::Config;
use crate::intake::envelope::{Envelope, Payload};
use crate::outbound::connections::{Connection, ConnectionKind};
use crate::outbound::connector::{Budget, Call, CallBody, Connector};
use crate::outbound::executor::{Connectors, Outcome};
use crate::rules::calls::jira::is_field_name;
use crate::rules::model::{Condition, Method};
use crate::rules::path::{Path, Segment};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Field lists by connection, read once; the names each endpoint's rules
/// read, worked out once.
#[derive(Default)]
pub struct JiraPayload {
    fields: Mutex<HashMap<String, Vec<(String, String)>>>,
    names: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
}

/// The `issue.fields.<name>` display names the rules of `endpoint` read.
pub fn field_names(config: &Config, endpoint: &str) -> BTreeSet<String> {
    let mut paths: Vec<&Path> = Vec::new();
    for r in config.rules.iter().filter(|r| r.from == endpoint) {
        for (_, m) in &r.map {
            paths.extend(m.source.paths());
        }
        paths.extend(r.conditions.iter().filter_map(Condition::path));
        if let Some(c) = &r.correlate {
            paths.extend(c.key.paths());
        }
    }
    paths
        .into_iter()
        .filter_map(|p| match p.segments() {
            [Segment::Key(i), Segment::Key(f), Segment::Key(name), ..]
                if i == "issue" && f == "fields" && is_field_name(name) =>
            {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

fn host(u: &str) -> Option<String> {
    url::Url::parse(u)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// The Jira connection of the site a payload URL points into.
fn site<'c>(
    config: &'c Config,
    connectors: &Connectors,
    url: Option<&str>,
) -> Option<(&'c Connection, Arc<dyn Connector>)> {
    let jiras: Vec<&Connection> = config
        .connections
        .iter()
        .filter(|c| c.kind == ConnectionKind::Jira)
        .collect();
    let wanted = url.and_then(host);
    let conn = jiras
        .iter()
        .find(|c| wanted.is_some() && host(&c.base_url) == wanted)
        .or(if jiras.len() == 1 {
            jiras.first()
        } else {
            None
        })?;
    Some((conn, connectors.get(&conn.name)?.clone()))
}

fn get(conn: &Connection, path: String) -> Call {
    Call {
        method: Method::Get,
        path: format!("{}{path}", conn.api.prefix()),
        query: Vec::new(),
        headers: Vec::new(),
        body: CallBody::None,
        once: false,
    }
}

impl JiraPayload {
    /// The envelope with its payload completed (see the module docs).
    pub async fn prepare(
        &self,
        config: &Config,
        connectors: &Connectors,
        env: Envelope,
        budget: &Budget,
    ) -> Result<Envelope, Outcome> {
        if env.source != SourceKind::Jira {
            return Ok(env);
        }
        let names = self.names(config, &env.endpoint);
        // Parsing the body is most of what an event costs the worker: only
        // an event that may be a bare Server comment, or whose rules read
        // fields by name, is parsed here.
        if names.is_empty() && !env.event.starts_with("comment_") {
            return Ok(env);
        }
        let Ok(mut payload) = serde_json::from_str::<Value>(env.payload.get()) else {
            return Ok(env);
        };
        let bare = !payload.get("issue").is_some_and(Value::is_object)
            && payload["comment"]["self"].is_string();
        if !bare && names.is_empty() {
            return Ok(env);
        }
        let url = payload["comment"]["self"]
            .as_str()
            .or_else(|| payload["issue"]["self"].as_str())
            .map(str::to_owned);
        let Some((conn, connector)) = site(config, connectors, url.as_deref()) else {
            tracing::warn!(endpoint = %env.endpoint, "the payload needs a Jira lookup, and no Jira connection of that site is configured");
            return Ok(env);
        };
        let mut changed = false;
        if bare {
            if let Some(id) = env.source_id.clone() {
                let path = format!("/issue/{}", crate::support::url::encode_segment(&id));
                let reply = connector
                    .call(&get(conn, path), budget)
                    .await
                    .map_err(|e| Outcome::from_error(&e))?;
                match reply.json {
                    Some(issue) if reply.is_success() => {
                        tracing::info!(issue = %id, key = issue["key"].as_str().unwrap_or(""), "the event's issue read from Jira");
                        payload["issue"] = issue;
                        changed = true;
                    }
                    _ => {
                        tracing::warn!(issue = %id, status = reply.status, "the event's issue could not be read from Jira; its rules see no issue");
                    }
                }
            }
        }
        if !names.is_empty() && payload["issue"]["fields"].is_object() {
            let fields = self.fields(conn, &connector, budget).await?;
            for name in names.iter() {
                let ids: Vec<&str> = fields
                    .iter()
                    .filter(|(_, n)| n.eq_ignore_ascii_case(name))
                    .map(|(id, _)| id.as_str())
                    .collect();
                match ids.as_slice() {
                    [id] => {
                        let v = payload["issue"]["fields"][*id].clone();
                        payload["issue"]["fields"][name.as_str()] = v;
                        changed = true;
                    }
                    [] => {
                        tracing::warn!(connection = %conn.name, field = %name, "a rule reads a Jira field by a name the site does not have")
                    }
                    many => {
                        tracing::warn!(connection = %conn.name, field = %name, ids = ?many, "a rule reads a Jira field by a name that several fields have; use the id")
                    }
                }
            }
        }
        if !changed {
            return Ok(env);
        }
        Ok(Envelope {
            source_key: payload["issue"]["key"]
                .as_str()
                .map(str::to_owned)
                .or(env.source_key.clone()),
            payload: Payload::of(&payload),
            ..env
        })
    }

    /// [`field_names`] of `endpoint`, worked out once.
    fn names(&self, config: &Config, endpoint: &str) -> Arc<BTreeSet<String>> {
        let Ok(mut m) = self.names.lock() else {
            return Arc::new(field_names(config, endpoint));
        };
        m.entry(endpoint.to_owned())
            .or_insert_with(|| Arc::new(field_names(config, endpoint)))
            .clone()
    }

    /// The site's (id, name) field list, read once per connection.
    async fn fields(
        &self,
        conn: &Connection,
        connector: &Arc<dyn Connector>,
        budget: &Budget,
    ) -> Result<Vec<(String, String)>, Outcome> {
        if let Some(f) = self
            .fields
            .lock()
            .ok()
            .and_then(|m| m.get(&conn.name).cloned())
        {
            return Ok(f);
        }
        let reply = connector
            .call(&get(conn, "/field".into()), budget)
            .await
            .map_err(|e| Outcome::from_error(&e))?;
        let list: Vec<(String, String)> = match reply.json {
            Some(Value::Array(a)) if reply.is_success() => a
                .iter()
                .filter_map(|f| {
                    Some((f["id"].as_str()?.to_owned(), f["name"].as_str()?.to_owned()))
                })
                .collect(),
            _ => {
                tracing::warn!(connection = %conn.name, status = reply.status, "the site's fields could not be read; fields named by name stay empty");
                return Ok(Vec::new());
            }
        };
        if let Ok(mut m) = self.fields.lock() {
            m.insert(conn.name.clone(), list.clone());
        }
        Ok(list)
    }
}
