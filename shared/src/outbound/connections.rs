//! Outbound connections: the systems the relay writes to.
//!
//! A connection names a base URL (every planned request is relative to it,
//! and the worker never calls anything outside it), the API flavour, and the
//! credentials by [`SecretRef`] plus the auth kind. The calls themselves live
//! in the worker; this module is the typed config and its checks.

use crate::config::problem::problem;
use crate::config::problem::Problem;
pub use crate::outbound::concurrency::Concurrency;
use crate::secrets::secret::SecretRef;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::collections::HashSet;

/// What kind of system a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    Servicenow,
    Jira,
    Http,
}

/// Jira REST API version: v3 (Cloud, ADF bodies) or v2 (Server/DC, wiki markup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JiraApi {
    #[default]
    V3,
    V2,
}

impl JiraApi {
    pub fn prefix(self) -> &'static str {
        match self {
            JiraApi::V3 => "/rest/api/3",
            JiraApi::V2 => "/rest/api/2",
        }
    }
}

/// How the relay authenticates to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// Jira Cloud: Basic with account email + API token.
    EmailToken,
    /// Personal access token as `Authorization: Bearer` (Jira DC PAT, HTTP APIs).
    Bearer,
    /// Basic with user name + password (ServiceNow integration user, Jira Server).
    Basic,
    /// OAuth 2.0 client credentials grant.
    Oauth2,
    /// Atlassian OAuth 2.0 authorization code (3LO): access tokens by refresh,
    /// the rotating refresh token written back to the secret store.
    #[serde(rename = "oauth_3lo")]
    Oauth3lo,
}

/// Credentials by reference, as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAuth {
    pub kind: AuthKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// `oauth_3lo`: the rotating refresh token (written back on each refresh,
    /// so it must name a key of a JSON-object secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<SecretRef>,
    /// OAuth 2.0 token endpoint (not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// `oauth_3lo`: the scopes `relay jira oauth login` asks consent for
    /// (default `read:jira-work write:jira-work`; `offline_access` is always added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl ConnectionAuth {
    /// Which fields the auth kind needs and which it must not have; a list of
    /// (field, message, fix) problems.
    pub fn problems(&self) -> Vec<(String, String)> {
        let present = [
            ("email", self.email.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("token", self.token.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("refresh_token", self.refresh_token.is_some()),
            ("token_url", self.token_url.is_some()),
            ("scopes", self.scopes.is_some()),
        ];
        let needed: &[&str] = match self.kind {
            AuthKind::EmailToken => &["email", "token"],
            AuthKind::Bearer => &["token"],
            AuthKind::Basic => &["username", "password"],
            AuthKind::Oauth2 => &["client_id", "client_secret", "token_url"],
            AuthKind::Oauth3lo => &["client_id", "client_secret", "refresh_token", "token_url"],
        };
        let optional: &[&str] = match self.kind {
            AuthKind::Oauth3lo => &["scopes"],
            _ => &[],
        };
        let kind = serde_json::to_value(self.kind).ok();
        let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("?");
        let mut out = Vec::new();
        for (name, has) in present {
            if needed.contains(&name) && !has {
                out.push((
                    name.to_owned(),
                    format!("auth kind `{kind}` needs `{name}`"),
                ));
            } else if !needed.contains(&name) && !optional.contains(&name) && has {
                out.push((
                    name.to_owned(),
                    format!("auth kind `{kind}` does not use `{name}`"),
                ));
            }
        }
        if let Some(url) = &self.token_url {
            // https, or plain http on loopback (local token servers in tests).
            if let Err(e) = check_base_url(url) {
                out.push(("token_url".to_owned(), e));
            }
        }
        if let Some(r) = &self.refresh_token {
            if r.key.is_none() {
                out.push((
                    "refresh_token".to_owned(),
                    "the refresh token rotates and is written back: name a key of a JSON secret (`id#refresh_token`)".to_owned(),
                ));
            }
        }
        if let Some(scopes) = &self.scopes {
            if scopes
                .iter()
                .any(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                out.push((
                    "scopes".to_owned(),
                    "a scope is empty or contains a space; list one scope per item".to_owned(),
                ));
            }
        }
        out
    }

    /// Every secret this connection reads.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        [
            &self.email,
            &self.username,
            &self.password,
            &self.token,
            &self.client_id,
            &self.client_secret,
            &self.refresh_token,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A typed, checked outbound connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub name: String,
    pub kind: ConnectionKind,
    /// Scheme, host and optional path prefix, without a trailing `/`.
    pub base_url: String,
    /// Jira only.
    pub api: JiraApi,
    /// ServiceNow only: the default table (`incident`).
    pub table: String,
    /// HTTP only: fixed headers sent with every request.
    pub headers: BTreeMap<String, String>,
    pub auth: ConnectionAuth,
    /// Calls in flight at once: the ceiling, and whether to adapt below it.
    pub concurrency: Concurrency,
    /// The most records `action: delete` rules may delete through this
    /// connection in one minute; the next is dead-lettered with reason
    /// `delete_cap_reached` (a misfiring rule cannot delete in bulk).
    pub deletes_per_minute: u32,
    /// Jira Cloud only: the `http` connection to the Atlassian organization
    /// admin API (`https://api.atlassian.com`, an organization API key as
    /// its bearer token) through which `user` rules deactivate and
    /// reactivate accounts (`map.active`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_admin: Option<String>,
}

/// `deletes_per_minute` when the file does not say.
pub const DEFAULT_DELETES_PER_MINUTE: u32 = 10;
/// The highest `deletes_per_minute` accepted.
pub const MAX_DELETES_PER_MINUTE: u32 = 1000;

/// The highest `concurrency.max` accepted.
pub const MAX_CONCURRENCY: u32 = 1000;

/// Checks a base URL: https (http only for loopback, for local tests), no
/// query or fragment. Returns it without a trailing `/`.
pub fn check_base_url(url: &str) -> Result<String, String> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        let host = r.split(['/', ':']).next().unwrap_or("");
        if host != "localhost" && host != "127.0.0.1" && host != "[::1]" {
            return Err(format!(
                "`{url}` is not https (plain http is allowed only for localhost)"
            ));
        }
        r
    } else {
        return Err(format!("`{url}` is not an https URL"));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no host"));
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "`{url}` has a query or fragment; give only the base"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A connection as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionSpec {
    name: Spanned<String>,
    kind: ConnectionKind,
    base_url: Spanned<String>,
    #[serde(default)]
    api: Option<Spanned<JiraApi>>,
    #[serde(default)]
    table: Option<Spanned<String>>,
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, String>>>,
    auth: Spanned<ConnectionAuth>,
    #[serde(default)]
    concurrency: Option<Spanned<Concurrency>>,
    #[serde(default)]
    deletes_per_minute: Option<Spanned<u32>>,
    #[serde(default)]
    org_admin: Option<Spanned<String>>,
}

/// Checks the `connections` section; problems carry the YAML line.
pub(crate) fn check_connections(
    raw: Vec<Spanned<ConnectionSpec>>,
    problems: &mut Vec<Problem>,
) -> Vec<Connection> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut orgs = Vec::new();
    for (i, spanned) in raw.into_iter().enumerate() {
        let c = spanned.value;
        let at = |f: &str| format!("connections[{i}].{f}");
        let name = c.name.value.clone();
        if !crate::config::model::is_valid_endpoint_name(&name) {
            problems.push(problem(
                &c.name,
                at("name"),
                format!("`{name}` is not a valid connection name"),
                "use 1–64 lowercase letters, digits, `-` or `_`",
            ));
        }
        if !seen.insert(name.clone()) {
            problems.push(problem(
                &c.name,
                at("name"),
                format!("connection `{name}` is defined twice"),
                "give every connection a unique name",
            ));
        }
        let base_url = match check_base_url(&c.base_url.value) {
            Ok(u) => u,
            Err(e) => {
                problems.push(problem(
                    &c.base_url,
                    at("base_url"),
                    e,
                    "e.g. `https://example.service-now.com` or `https://example.atlassian.net`",
                ));
                String::new()
            }
        };
        if let (Some(api), false) = (&c.api, c.kind == ConnectionKind::Jira) {
            problems.push(problem(
                api,
                at("api"),
                "`api` applies only to jira connections",
                "remove it",
            ));
        }
        if let (Some(t), false) = (&c.table, c.kind == ConnectionKind::Servicenow) {
            problems.push(problem(
                t,
                at("table"),
                "`table` applies only to servicenow connections",
                "remove it",
            ));
        }
        if let Some(t) = &c.table {
            if t.value.is_empty()
                || !t
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                problems.push(problem(
                    t,
                    at("table"),
                    format!("`{}` is not a ServiceNow table name", t.value),
                    "e.g. `incident`",
                ));
            }
        }
        if let (Some(h), false) = (&c.headers, c.kind == ConnectionKind::Http) {
            problems.push(problem(
                h,
                at("headers"),
                "`headers` applies only to http connections",
                "remove it",
            ));
        }
        if let Some(h) = &c.headers {
            for k in h.value.keys() {
                if k.eq_ignore_ascii_case("authorization") {
                    problems.push(problem(
                        h,
                        at("headers"),
                        "`Authorization` must not be written in the file",
                        "use `auth` with a secret reference",
                    ));
                }
            }
        }
        for (field, msg) in c.auth.value.problems() {
            problems.push(problem(&c.auth, at(&format!("auth.{field}")), msg, "email_token: email+token; bearer: token; basic: username+password; oauth2: client_id+client_secret+token_url; oauth_3lo: client_id+client_secret+refresh_token+token_url (+ optional scopes)"));
        }
        if let Some(c) = &c.concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&c.value.max) {
                problems.push(problem(
                    c,
                    at("concurrency.max"),
                    format!(
                        "`{}` calls at once is outside 1–{MAX_CONCURRENCY}",
                        c.value.max
                    ),
                    "give the target's limit for one client (ServiceNow: the API_INT semaphore's threads; default 64, adaptive below it)",
                ));
            }
        }
        if let Some(d) = &c.deletes_per_minute {
            if d.value > MAX_DELETES_PER_MINUTE {
                problems.push(problem(
                    d,
                    at("deletes_per_minute"),
                    format!(
                        "`{}` deletes a minute is over {MAX_DELETES_PER_MINUTE}",
                        d.value
                    ),
                    "the cap stops a misfiring rule from deleting in bulk: give the most a minute should ever see (default 10; 0 refuses every delete)",
                ));
            }
        }
        out.push(Connection {
            name,
            kind: c.kind,
            base_url,
            api: c.api.map(|a| a.value).unwrap_or_default(),
            table: c.table.map_or_else(|| "incident".to_owned(), |t| t.value),
            headers: c.headers.map(|h| h.value).unwrap_or_default(),
            auth: c.auth.value,
            concurrency: c.concurrency.map(|c| c.value).unwrap_or_default(),
            deletes_per_minute: c
                .deletes_per_minute
                .map_or(DEFAULT_DELETES_PER_MINUTE, |d| d.value),
            org_admin: c.org_admin.as_ref().map(|o| o.value.clone()),
        });
        if let Some(org) = c.org_admin {
            orgs.push((i, org));
        }
    }
    // `org_admin` names an `http` connection, on a Jira Cloud one (every
    // connection is in `out`, at its index).
    for (i, org) in orgs {
        let target = out.iter().find(|c| c.name == org.value);
        let cloud = out[i].kind == ConnectionKind::Jira && out[i].api == JiraApi::V3;
        let why = if !cloud {
            Some("`org_admin` is for Jira Cloud connections (`kind: jira`, `api: v3`)".to_owned())
        } else {
            match target {
                None => Some(format!("no connection is named `{}`", org.value)),
                Some(t) if t.kind != ConnectionKind::Http => Some(format!(
                    "connection `{}` is not an `http` connection",
                    org.value
                )),
                Some(_) => None,
            }
        };
        if let Some(why) = why {
            problems.push(problem(
                &org,
                format!("connections[{i}].org_admin"),
                why,
                "name an `http` connection with `base_url: https://api.atlassian.com` and an organization API key as its bearer token (docs/identity.md)",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base_url("https://x.service-now.com/").unwrap(),
            "https://x.service-now.com"
        );
        assert!(check_base_url("http://localhost:8080").is_ok());
        assert!(check_base_url("http://x.example").is_err());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://").is_err());
        assert!(check_base_url("https://x.example?a=1").is_err());
    }

    #[test]
    fn auth_kinds_need_their_fields() {
        let a = ConnectionAuth {
            kind: AuthKind::EmailToken,
            email: Some(SecretRef::new("j", Some("email"))),
            username: None,
            password: Some(SecretRef::new("j", Some("p"))),
            token: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
            token_url: None,
            scopes: None,
        };
        let p = a.problems();
        assert!(
            p.iter().any(|(f, m)| f == "token" && m.contains("needs")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|(f, m)| f == "password" && m.contains("does not use")),
            "{p:?}"
        );
    }

    #[test]
    fn oauth_3lo_needs_a_keyed_refresh_token() {
        let yaml = "kind: oauth_3lo\nclient_id: j#client_id\nclient_secret: j#client_secret\nrefresh_token: j#refresh_token\ntoken_url: https://auth.atlassian.com/oauth/token\nscopes: [read:jira-work]\n";
        let a: ConnectionAuth = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(a.kind, AuthKind::Oauth3lo);
        assert!(a.problems().is_empty(), "{:?}", a.problems());
        assert_eq!(a.secret_refs().len(), 3);
        let mut b = a.clone();
        b.refresh_token = None;
        assert!(b.problems().iter().any(|(f, _)| f == "refresh_token"));
        let mut c = a.clone();
        c.refresh_token = Some(SecretRef::new("j", None));
        assert!(c
            .problems()
            .iter()
            .any(|(f, m)| f == "refresh_token" && m.contains("key")));
        let mut d = a;
        d.kind = AuthKind::Oauth2;
        assert!(d.problems().iter().any(|(f, _)| f == "scopes"));
    }
}
