//! Secret values and references to them.
//!
//! The configuration never holds a secret: it names one by secret id and key
//! ([`SecretRef`]). The value, once resolved by a secret store (`store.rs`),
//! travels as a [`Secret`], whose `Debug` is redacted and which has no `Display`,
//! so it cannot reach a log line or an error body by accident.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// A secret value. `Debug` prints `Secret([redacted])`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from a secret store.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must use it (a MAC key, a
    /// comparison, an outbound header). Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a secret lives: a secret id (a Secrets Manager name or ARN, or an id in
/// the local secrets file) and, when the secret holds a JSON object, the key.
///
/// In YAML either `{ secret: relay/webhook, key: token }` or the short form
/// `"relay/webhook#token"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SecretRef {
    pub secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl SecretRef {
    pub fn new(secret: impl Into<String>, key: Option<&str>) -> Self {
        Self {
            secret: secret.into(),
            key: key.map(str::to_owned),
        }
    }

    /// Parses the short form `id#key` (or `id` alone).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (id, key) = match s.rsplit_once('#') {
            Some((id, key)) => (id, Some(key)),
            None => (s, None),
        };
        let bad = |what: &str| {
            format!("secret reference `{s}` {what}; write `secret-id#key` or {{ secret: secret-id, key: key }}")
        };
        if id.trim().is_empty() {
            return Err(bad("has an empty secret id"));
        }
        if id.chars().any(char::is_whitespace) {
            return Err(bad("contains whitespace"));
        }
        if let Some(k) = key {
            if k.is_empty() || k.chars().any(char::is_whitespace) {
                return Err(bad("has an empty or blank key"));
            }
        }
        Ok(Self::new(id, key))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}#{}", self.secret, k),
            None => f.write_str(&self.secret),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            secret: String,
            #[serde(default)]
            key: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(String),
            Long(Long),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a secret reference: `secret-id#key` or { secret: secret-id, key: key }",
            )
        })?;
        let parsed = match form {
            Form::Short(s) => SecretRef::parse(&s),
            Form::Long(l) => {
                let short = match &l.key {
                    Some(k) => format!("{}#{k}", l.secret),
                    None => l.secret.clone(),
                };
                SecretRef::parse(&short).map(|_| SecretRef {
                    secret: l.secret,
                    key: l.key,
                })
            }
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn parses_short_form() {
        assert_eq!(
            SecretRef::parse("relay/webhook#token").unwrap(),
            SecretRef::new("relay/webhook", Some("token"))
        );
        assert_eq!(
            SecretRef::parse("plain").unwrap(),
            SecretRef::new("plain", None)
        );
        assert!(SecretRef::parse("#token").is_err());
        assert!(SecretRef::parse("a b#c").is_err());
        assert!(SecretRef::parse("a#").is_err());
    }
}
