//! The secret-store port: where webhook tokens, HMAC keys and outbound
//! credentials come from.
//!
//! A store answers with the current version of a secret and, when one exists,
//! the previous one, so that a credential can be rotated without downtime: the
//! ingress accepts both while senders move over. Adapters: AWS Secrets Manager
//! (`AWSCURRENT` + `AWSPREVIOUS`, feature `aws`), a local file/environment store
//! for one-machine use, and a TTL cache that wraps either.
//!
//! Most secrets are only read. A rotating credential (the OAuth 2.0 3LO
//! refresh token, which the outbound OAuth refresher rotates) is also written back
//! with [`SecretStore::put`]: one key of a JSON-object secret is replaced,
//! the other keys kept, optionally only if the secret is still at the
//! version the caller read (compare-and-swap; how strict depends on the
//! store, see each adapter).

use crate::secrets::secret::{Secret, SecretRef};
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One version of a secret: the raw string and, when it is a JSON object of
/// strings, its fields.
#[derive(Clone)]
pub struct SecretValue {
    pub(crate) raw: Secret,
    fields: Option<HashMap<String, Secret>>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.fields.iter().flat_map(|m| m.keys()).collect();
        f.debug_struct("SecretValue")
            .field("raw", &self.raw)
            .field("keys", &keys)
            .finish()
    }
}

impl SecretValue {
    /// Reads a secret string: a JSON object's string (and number/bool) members
    /// become addressable fields; anything else is a plain value.
    pub fn parse(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let fields = match serde_json::from_str::<serde_json::Value>(&raw) {
            Ok(serde_json::Value::Object(map)) => Some(
                map.into_iter()
                    .filter_map(|(k, v)| {
                        let s = match v {
                            serde_json::Value::String(s) => s,
                            serde_json::Value::Number(n) => n.to_string(),
                            serde_json::Value::Bool(b) => b.to_string(),
                            _ => return None,
                        };
                        Some((k, Secret::new(s)))
                    })
                    .collect(),
            ),
            _ => None,
        };
        Self {
            raw: Secret::new(raw),
            fields,
        }
    }

    /// Builds a value from key/value pairs (a JSON object secret).
    pub fn from_fields<K: Into<String>, V: Into<String>>(
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, Secret> = fields
            .into_iter()
            .map(|(k, v)| (k.into(), Secret::new(v)))
            .collect();
        let json: serde_json::Map<String, serde_json::Value> = map
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().to_owned())))
            .collect();
        Self {
            raw: Secret::new(serde_json::Value::Object(json).to_string()),
            fields: Some(map),
        }
    }

    /// The value for `key`, or the whole secret when `key` is `None`.
    pub fn get(&self, key: Option<&str>) -> Option<&Secret> {
        match key {
            None => Some(&self.raw),
            Some(k) => self.fields.as_ref()?.get(k),
        }
    }
}

impl SecretValue {
    /// The JSON text of this value with `key` set to `value` (other members
    /// kept as they are). `None` when the value is not a JSON object.
    pub(crate) fn with_key(&self, key: &str, value: &str) -> Option<String> {
        let mut map = match serde_json::from_str::<serde_json::Value>(self.raw.expose()) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return None,
        };
        map.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
        Some(serde_json::Value::Object(map).to_string())
    }
}

/// What a store returns for one secret id.
#[derive(Clone, Debug)]
pub struct SecretVersions {
    pub current: SecretValue,
    pub previous: Option<SecretValue>,
    /// An opaque version of `current` (Secrets Manager's `VersionId`; for
    /// the local file a digest of the value), for [`SecretStore::put`]'s
    /// compare-and-swap. `None` when the store has no notion of it (the
    /// environment).
    pub version: Option<String>,
}

/// The values a [`SecretRef`] resolves to: current, and previous if the
/// previous version has that key too.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub current: Secret,
    pub previous: Option<Secret>,
}

impl Resolved {
    /// Current first, then previous.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }
}

impl SecretVersions {
    pub fn resolve(&self, r: &SecretRef) -> Result<Resolved, SecretError> {
        let key = r.key.as_deref();
        let current = self
            .current
            .get(key)
            .cloned()
            .ok_or_else(|| SecretError::KeyMissing {
                id: r.secret.clone(),
                key: key.unwrap_or_default().to_owned(),
            })?;
        let previous = self
            .previous
            .as_ref()
            .and_then(|p| p.get(key))
            .filter(|p| *p != &current)
            .cloned();
        Ok(Resolved { current, previous })
    }
}

/// Why a secret could not be had. Messages name the secret id and key, never a
/// value.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The secret does not exist (a configuration mistake).
    #[error("secret `{id}` does not exist")]
    NotFound { id: String },
    /// The secret exists but has no such key (a configuration mistake).
    #[error("secret `{id}` has no key `{key}`")]
    KeyMissing { id: String, key: String },
    /// The store could not be reached or refused (transient or permissions).
    #[error("secret store unavailable for `{id}`: {detail}")]
    Unavailable { id: String, detail: String },
    /// A write-back is not possible here (read-only store, a secret set by an
    /// environment variable, a secret that is not a JSON object).
    #[error("secret `{id}` cannot be written: {detail}")]
    NotWritable { id: String, detail: String },
    /// A write-back lost a race: the secret is no longer at the version the
    /// writer read. Re-read and decide again.
    #[error("secret `{id}` changed since it was read (version conflict)")]
    Conflict { id: String },
}

impl SecretError {
    /// A short, stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => "secret_missing",
            SecretError::KeyMissing { .. } => "secret_key_missing",
            SecretError::Unavailable { .. } => "secrets_unavailable",
            SecretError::NotWritable { .. } => "secret_not_writable",
            SecretError::Conflict { .. } => "secret_version_conflict",
        }
    }
}

impl crate::support::error::Classified for SecretError {
    /// A store that is down or busy may answer later; a secret or key that
    /// does not exist, or cannot be written, will not appear by waiting.
    fn class(&self) -> crate::support::error::Class {
        match self {
            SecretError::Unavailable { .. } | SecretError::Conflict { .. } => {
                crate::support::error::Class::Retryable
            }
            _ => crate::support::error::Class::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        self.reason()
    }
}

/// The port. Implementations must be cheap to call repeatedly: wrap a remote
/// store in [`CachedSecretStore`].
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Current and previous version of the secret `id`.
    async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError>;

    /// Like [`fetch`](Self::fetch) but bypassing caches where the store allows
    /// it: called after a credential was refused, in case it was just rotated.
    async fn refetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        self.fetch(id).await
    }

    /// The newest value the store has, bypassing every cache and refetch
    /// limit: called when a rotating credential was refused, because another
    /// process may have rotated it a moment ago. Callers must bound how
    /// often they ask (once per refused credential).
    async fn fetch_latest(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        self.refetch(id).await
    }

    /// Fetches and resolves one reference.
    async fn resolve(&self, r: &SecretRef) -> Result<Resolved, SecretError> {
        self.fetch(&r.secret).await?.resolve(r)
    }

    /// Writes `value` under `key` of the JSON-object secret `id`, keeping its
    /// other keys. With `expected_version`, only if the secret is still at
    /// that [`SecretVersions::version`] (else [`SecretError::Conflict`]).
    /// Returns the new version. Stores that cannot write say so.
    async fn put(
        &self,
        id: &str,
        key: &str,
        value: &str,
        expected_version: Option<&str>,
    ) -> Result<String, SecretError> {
        let _ = (key, value, expected_version);
        Err(SecretError::NotWritable {
            id: id.to_owned(),
            detail: "this secret store is read-only".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secret_fields_and_plain_values() {
        let v = SecretValue::parse(r#"{"token":"abc","n":5,"nested":{"x":1}}"#);
        assert_eq!(v.get(Some("token")).unwrap().expose(), "abc");
        assert_eq!(v.get(Some("n")).unwrap().expose(), "5");
        assert!(v.get(Some("nested")).is_none());
        let p = SecretValue::parse("just-a-token");
        assert_eq!(p.get(None).unwrap().expose(), "just-a-token");
        assert!(p.get(Some("token")).is_none());
        assert!(!format!("{v:?}").contains("abc"));
        let w = SecretValue::parse(v.with_key("token", "new").unwrap());
        assert_eq!(w.get(Some("token")).unwrap().expose(), "new");
        assert_eq!(w.get(Some("n")).unwrap().expose(), "5");
        assert!(p.with_key("token", "x").is_none());
    }

    #[test]
    fn resolve_current_and_previous() {
        let versions = SecretVersions {
            current: SecretValue::from_fields([("token", "new"), ("hmac", "h")]),
            previous: Some(SecretValue::from_fields([("token", "old")])),
            version: None,
        };
        let t = versions
            .resolve(&SecretRef::new("s", Some("token")))
            .unwrap();
        assert_eq!(t.current.expose(), "new");
        assert_eq!(t.previous.unwrap().expose(), "old");
        let h = versions
            .resolve(&SecretRef::new("s", Some("hmac")))
            .unwrap();
        assert!(h.previous.is_none());
        assert_eq!(
            versions
                .resolve(&SecretRef::new("s", Some("nope")))
                .unwrap_err(),
            SecretError::KeyMissing {
                id: "s".into(),
                key: "nope".into()
            }
        );
    }
}
