//! The configuration's vocabulary: endpoints, how callers authenticate, limits,
//! and the names every feature shares. It imports nothing of the features;
//! each feature reads and checks its own part of the file (see the folder's
//! `mod.rs` for the whole).

use crate::secrets::secret::SecretRef;
use serde::{Deserialize, Serialize};

/// Default for `limits.max_body_bytes`: a webhook of this size still fits SQS's
/// classic 256 KiB message limit once wrapped in the envelope.
pub const DEFAULT_MAX_BODY_BYTES: usize = 250_000;
/// Upper bound for `limits.max_body_bytes`: SQS's 1 MiB maximum less room for the
/// envelope header and message attributes.
pub const MAX_BODY_BYTES_CEILING: usize = 1_048_576 - 8_192;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted webhook body in bytes; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// An inbound webhook endpoint: `POST /webhooks/{name}`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub kind: SourceKind,
    pub stage: Stage,
    pub auth: EndpointAuth,
}

/// Which system calls an endpoint; decides how its payloads are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Jira,
    Servicenow,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Jira => "jira",
            SourceKind::Servicenow => "servicenow",
        }
    }
}

/// Jira and ServiceNow integrations keep test and production apart by URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Test,
    Prod,
}

/// How a caller proves who it is. Every configured method is checked; with
/// `require: any` one passing method is enough (useful while moving a sender
/// from one method to another).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAuth {
    /// Shared token in the `?token=` query parameter (Jira admin webhooks cannot
    /// send headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// HMAC-SHA256 key for `X-Hub-Signature: sha256=<hex>` over the raw body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<SecretRef>,
    /// `Authorization: Basic` (ServiceNow REST messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<SecretRef>,
    #[serde(default)]
    pub require: Require,
}

impl EndpointAuth {
    /// Number of configured methods.
    pub fn method_count(&self) -> usize {
        usize::from(self.token.is_some())
            + usize::from(self.hmac.is_some())
            + usize::from(self.basic.is_some())
            + usize::from(self.bearer.is_some())
    }

    /// Every secret this endpoint reads.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        let mut refs = Vec::new();
        refs.extend(self.token.as_ref());
        refs.extend(self.hmac.as_ref());
        if let Some(b) = &self.basic {
            refs.push(&b.username);
            refs.push(&b.password);
        }
        refs.extend(self.bearer.as_ref());
        refs
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: SecretRef,
    pub password: SecretRef,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    #[default]
    All,
    Any,
}

/// True for a valid endpoint name: a lowercase URL path segment.
pub fn is_valid_endpoint_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}
