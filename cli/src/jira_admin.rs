//! `relay jira webhook register|list|delete`: the Jira admin webhook that
//! feeds the relay, managed through Jira's webhook REST API
//! (`/rest/webhooks/1.0/webhook`, admin permission), with the credentials of
//! a `jira` connection from the config.
//!
//! `register` builds the URL from `--public-url` and the endpoint's name; an
//! endpoint with `token` auth gets `?token=<value>` (Jira has no other way to
//! carry it), one with `hmac` auth gets the key as the webhook's `secret`
//! (Jira Cloud then signs with `X-Hub-Signature`). What is printed shows the
//! secret's name in place of its value.

use serde_json::{json, Value};
use shared::config::Config;
use shared::outbound::connections::ConnectionKind;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, Call, CallBody, Connector, ConnectorSettings, RestConnector};
use shared::rules::plan::Method;
use shared::secrets::SecretStore;
use std::sync::Arc;
use std::time::Duration;

const PATH: &str = "/rest/webhooks/1.0/webhook";

/// The events the relay's rules use.
pub const EVENTS: &[&str] = &[
    "jira:issue_created",
    "jira:issue_updated",
    "jira:issue_deleted",
    "comment_created",
    "comment_updated",
    "comment_deleted",
    "attachment_created",
    "attachment_deleted",
];

/// Jira's user and group events: registered only for an endpoint whose
/// rules take them.
pub const USER_EVENTS: &[&str] = &[
    "user_created",
    "user_updated",
    "user_deleted",
    "group_created",
    "group_deleted",
];

pub struct JiraAdmin {
    config: Config,
    secrets: Arc<dyn SecretStore>,
    conn: RestConnector,
}

impl JiraAdmin {
    pub fn new(
        config: Config,
        secrets: Arc<dyn SecretStore>,
        connection: &str,
    ) -> Result<Self, String> {
        let c = config
            .connection(connection)
            .ok_or_else(|| format!("the config has no connection `{connection}`"))?;
        if c.kind != ConnectionKind::Jira {
            return Err(format!(
                "connection `{connection}` is not a jira connection"
            ));
        }
        let conn = RestConnector::new(
            c.clone(),
            http_client(),
            secrets.clone(),
            ConnectorSettings::default(),
        );
        Ok(Self {
            config,
            secrets,
            conn,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
    ) -> Result<Option<Value>, String> {
        let call = Call {
            method,
            once: false,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: body.map_or(CallBody::None, CallBody::Json),
        };
        let reply = self
            .conn
            .call(&call, &Budget::from_now(Duration::from_secs(60)))
            .await
            .map_err(|e| e.to_string())?;
        if !reply.is_success() {
            return Err(format!(
                "Jira answered {}: {}",
                reply.status,
                reply.error.unwrap_or_default()
            ));
        }
        Ok(reply.json)
    }

    /// Registers the webhook; returns it as Jira shows it, secrets masked.
    pub async fn register(
        &self,
        endpoint: &str,
        public_url: &str,
        jql: Option<&str>,
        name: Option<&str>,
    ) -> Result<Value, String> {
        let ep = self
            .config
            .endpoint(endpoint)
            .ok_or_else(|| format!("the config has no endpoint `{endpoint}`"))?;
        let base = public_url.trim_end_matches('/');
        if !base.starts_with("https://")
            && !base.starts_with("http://127.0.0.1")
            && !base.starts_with("http://localhost")
        {
            return Err(format!("--public-url `{public_url}` must be https"));
        }
        let mut url = format!("{base}/webhooks/{endpoint}");
        let mut mask = None;
        if let Some(t) = &ep.auth.token {
            let v = self.secrets.resolve(t).await.map_err(|e| e.to_string())?;
            url.push_str("?token=");
            url.push_str(v.current.expose());
            mask = Some((v.current.expose().to_owned(), format!("<{}>", describe(t))));
        }
        // Jira's user and group events too, when a rule of this endpoint takes them
        // (docs/identity.md).
        let mut events: Vec<&str> = EVENTS.to_vec();
        for e in USER_EVENTS {
            if self
                .config
                .rules
                .iter()
                .any(|r| r.from == endpoint && r.events.iter().any(|x| x == e))
            {
                events.push(e);
            }
        }
        let mut body = json!({
            "name": name.unwrap_or(&format!("jira-relay {endpoint}")),
            "url": url,
            "events": events,
            "filters": {"issue-related-events-section": jql.unwrap_or("")},
            "excludeBody": false,
        });
        if let Some(h) = &ep.auth.hmac {
            let v = self.secrets.resolve(h).await.map_err(|e| e.to_string())?;
            body["secret"] = Value::String(v.current.expose().to_owned());
        }
        let created = self
            .call(Method::Post, PATH.to_owned(), Some(body))
            .await?
            .unwrap_or(Value::Null);
        Ok(masked(created, mask.as_ref()))
    }

    /// The registered admin webhooks, token values masked.
    pub async fn list(&self) -> Result<Vec<Value>, String> {
        let v = self.call(Method::Get, PATH.to_owned(), None).await?;
        let mut masks = Vec::new();
        for ep in &self.config.endpoints {
            if let Some(t) = &ep.auth.token {
                if let Ok(v) = self.secrets.resolve(t).await {
                    masks.push((v.current.expose().to_owned(), format!("<{}>", describe(t))));
                    if let Some(p) = v.previous {
                        masks.push((
                            p.expose().to_owned(),
                            format!("<{} (previous)>", describe(t)),
                        ));
                    }
                }
            }
        }
        Ok(match v {
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|w| masks.iter().fold(w, |w, m| masked(w, Some(m))))
                .collect(),
            _ => Vec::new(),
        })
    }

    pub async fn delete(&self, id: &str) -> Result<(), String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{id}` is not a webhook id (the number at the end of its `self` URL)"
            ));
        }
        self.call(Method::Delete, format!("{PATH}/{id}"), None)
            .await?;
        Ok(())
    }
}

fn describe(r: &shared::secrets::secret::SecretRef) -> String {
    match &r.key {
        Some(k) => format!("{}#{k}", r.secret),
        None => r.secret.clone(),
    }
}

/// Replaces a secret value wherever it appears in string values.
fn masked(v: Value, mask: Option<&(String, String)>) -> Value {
    let Some((secret, name)) = mask else { return v };
    if secret.is_empty() {
        return v;
    }
    match v {
        Value::String(s) => Value::String(s.replace(secret.as_str(), name)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| masked(x, mask)).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, x)| (k, masked(x, mask))).collect())
        }
        other => other,
    }
}

/// The webhook id at the end of its `self` URL.
pub fn webhook_id(w: &Value) -> String {
    w.get("self")
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or("?")
        .to_owned()
}

/// One line per webhook for `list`.
pub fn line(w: &Value) -> String {
    format!(
        "{}  {}  {}  events: {}  jql: {}",
        webhook_id(w),
        w.get("name").and_then(Value::as_str).unwrap_or(""),
        w.get("url").and_then(Value::as_str).unwrap_or(""),
        w.get("events")
            .and_then(Value::as_array)
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
        w.pointer("/filters/issue-related-events-section")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("(all issues)")
    )
}
