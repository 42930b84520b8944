//! The reconciler Lambda's [`WatermarkStore`]: AWS Systems Manager
//! Parameter Store (feature `aws`).
//!
//! One `String` parameter per endpoint, named `<prefix>/<endpoint>` (the
//! template sets the prefix to `/jira-relay/<stage>/reconcile`), whose value
//! is the JSON document
//! `{"watermark": {"since": …, "progress": {…}}, "lease": {"owner": …, "until": …}}`
//! (standard tier, at most 4 KB; a larger document is refused here with its
//! size rather than by SSM). No parameter yet: an empty watermark, no lease.
//!
//! Why Parameter Store and not the alternatives:
//! - **cost**: standard parameters are free (storage and the standard
//!   throughput the sweep needs: a handful of calls every 15 minutes);
//! - **nothing more to own**: no bucket (S3) or table (DynamoDB) with its own
//!   encryption, retention, backup and deletion policy in the template; the
//!   parameters appear on the first sweep;
//! - **least privilege**: the role gets `ssm:GetParameter` and
//!   `ssm:PutParameter` on `parameter/jira-relay/<stage>/reconcile/*` only;
//! - Secrets Manager is for secrets (a watermark is not one) and costs per
//!   secret per month plus per 10 000 calls.
//!
//! DynamoDB would give a real conditional write; S3 has conditional writes
//! too. **SSM has no compare-and-set**: [`SsmStore::try_lock`] reads the
//! parameter, refuses while another owner's lease is unexpired, and
//! otherwise overwrites it with its own lease, so two callers that read at
//! the same moment can both believe they hold it. On AWS the real guarantee
//! that two sweeps never overlap is the function's
//! `ReservedConcurrentExecutions: 1` (one invocation at a time, whether from
//! the schedule or a hand-run `aws lambda invoke`). The lease is a second
//! line for a sweep started elsewhere against the same parameters (nothing
//! else uses them today), and outlives a crashed sweep only until it
//! expires (the Lambda sets it to its invocation's time plus a minute).
//!
//! Errors carry the operation, the parameter name and the SDK error's code
//! (`AccessDeniedException`, `ThrottlingException`, …), never a request or
//! a credential.

use super::store::{StoreError, Watermark, WatermarkStore};
use crate::support::clock::Clock;
use async_trait::async_trait;
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::get_parameter::GetParameterError;
use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use aws_sdk_ssm::Client;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Largest value of a standard-tier parameter (bytes).
pub const MAX_VALUE_BYTES: usize = 4096;

/// What one parameter holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Document {
    #[serde(default)]
    watermark: Watermark,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<Lease>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    owner: String,
    until: jiff::Timestamp,
}

/// Watermarks and leases in SSM parameters under one prefix.
#[derive(Clone)]
pub struct SsmStore {
    client: Client,
    prefix: String,
    clock: Arc<dyn Clock>,
}

impl SsmStore {
    /// A store under `prefix` (e.g. `/jira-relay/prod/reconcile`): it must
    /// start with `/`, must not end with one, and may hold only the
    /// characters SSM allows in a name (`a-zA-Z0-9_.-/`). The clock dates
    /// the leases (a wall clock: leases are compared across processes).
    pub fn new(
        client: Client,
        prefix: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        check_prefix(&prefix)?;
        Ok(Self {
            client,
            prefix,
            clock,
        })
    }

    /// A store from a loaded AWS configuration.
    pub fn from_conf(
        conf: &aws_config::SdkConfig,
        prefix: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        Self::new(Client::new(conf), prefix, clock)
    }

    /// The parameter that holds `endpoint`'s watermark.
    pub fn parameter_name(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.prefix)
    }

    async fn read(&self, endpoint: &str) -> Result<Document, StoreError> {
        let name = self.parameter_name(endpoint);
        let out = self.client.get_parameter().name(&name).send().await;
        match out {
            Ok(o) => {
                let value = o.parameter.and_then(|p| p.value).unwrap_or_default();
                serde_json::from_str(&value).map_err(|e| {
                    StoreError(format!(
                        "SSM parameter {name} is not a watermark document ({e}); \
                         delete it to start from an empty watermark"
                    ))
                })
            }
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), GetParameterError::ParameterNotFound(_)) =>
            {
                Ok(Document::default())
            }
            Err(e) => Err(sdk_error("GetParameter", &name, e)),
        }
    }

    async fn write(&self, endpoint: &str, doc: &Document) -> Result<(), StoreError> {
        let name = self.parameter_name(endpoint);
        let value = serde_json::to_string(doc)
            .map_err(|e| StoreError(format!("cannot encode the watermark of {name}: {e}")))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError(format!(
                "the watermark of {name} is {} bytes; a standard SSM parameter holds {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        self.client
            .put_parameter()
            .name(&name)
            .description(format!(
                "jira-relay reconcile watermark and lease of endpoint {endpoint}"
            ))
            .value(value)
            .r#type(ParameterType::String)
            .tier(ParameterTier::Standard)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| sdk_error("PutParameter", &name, e))?;
        Ok(())
    }
}

fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError(format!(
            "SSM parameter prefix `{prefix}` {why} (e.g. /jira-relay/prod/reconcile)"
        )))
    };
    if !prefix.starts_with('/') || prefix.len() < 2 {
        return bad("must start with `/` and name a path");
    }
    if prefix.ends_with('/') || prefix.contains("//") {
        return bad("must not end with `/` or hold an empty level");
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
    {
        return bad("may hold only a-z, A-Z, 0-9, `_`, `.`, `-` and `/`");
    }
    let first = prefix[1..].to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return bad("must not start with `aws` or `ssm` (reserved by SSM)");
    }
    Ok(())
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    name: &str,
    e: SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
) -> StoreError {
    let detail = match e.code() {
        Some(code) => code.to_owned(),
        None => DisplayErrorContext(&e).to_string(),
    };
    StoreError(format!("SSM {op} {name}: {detail}"))
}

fn lease_until(now: jiff::Timestamp, lease: Duration) -> Result<jiff::Timestamp, StoreError> {
    jiff::SignedDuration::try_from(lease)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .ok_or_else(|| StoreError(format!("lease of {lease:?} is out of range")))
}

#[async_trait]
impl WatermarkStore for SsmStore {
    async fn try_lock(
        &self,
        endpoint: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut doc = self.read(endpoint).await?;
        let now = self.clock.now();
        if let Some(held) = &doc.lease {
            if held.owner != owner && held.until > now {
                return Ok(false);
            }
        }
        doc.lease = Some(Lease {
            owner: owner.to_owned(),
            until: lease_until(now, lease)?,
        });
        self.write(endpoint, &doc).await?;
        Ok(true)
    }

    async fn unlock(&self, endpoint: &str, owner: &str) -> Result<(), StoreError> {
        let mut doc = self.read(endpoint).await?;
        if doc.lease.as_ref().is_some_and(|l| l.owner == owner) {
            doc.lease = None;
            self.write(endpoint, &doc).await?;
        }
        Ok(())
    }

    async fn load(&self, endpoint: &str) -> Result<Watermark, StoreError> {
        Ok(self.read(endpoint).await?.watermark)
    }

    async fn save(&self, endpoint: &str, w: &Watermark) -> Result<(), StoreError> {
        let mut doc = self.read(endpoint).await?;
        doc.watermark = w.clone();
        self.write(endpoint, &doc).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::store::Progress;

    #[test]
    fn prefixes() {
        for ok in ["/jira-relay/prod/reconcile", "/x", "/a.b_c-D/9"] {
            assert!(check_prefix(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/",
            "jira-relay/prod",
            "/jira-relay/",
            "/a//b",
            "/a b",
            "/jira-relay/pröd",
            "/aws/x",
            "/SSM-thing",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn document_shape() {
        let at: jiff::Timestamp = "2026-05-01T10:00:00Z".parse().unwrap();
        let doc = Document {
            watermark: Watermark {
                since: Some(at),
                progress: Some(Progress {
                    started_at: at,
                    from: at,
                    jql: "project = OPS".into(),
                    created_from: Some(at),
                    scanned: 100,
                    last_key: None,
                }),
            },
            lease: Some(Lease {
                owner: "req-1".into(),
                until: at,
            }),
        };
        let json: serde_json::Value = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["lease"]["owner"], "req-1");
        assert_eq!(json["lease"]["until"], "2026-05-01T10:00:00Z");
        assert_eq!(json["watermark"]["since"], "2026-05-01T10:00:00Z");
        assert_eq!(
            json["watermark"]["progress"]["created_from"],
            "2026-05-01T10:00:00Z"
        );
        assert_eq!(serde_json::from_value::<Document>(json).unwrap(), doc);
        // A document without a lease (unlocked) or without anything.
        let empty: Document = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Document::default());
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"watermark":{}}"#
        );
    }

    #[test]
    fn lease_arithmetic() {
        let at: jiff::Timestamp = "2026-05-01T10:00:00Z".parse().unwrap();
        assert_eq!(
            lease_until(at, Duration::from_secs(90))
                .unwrap()
                .to_string(),
            "2026-05-01T10:01:30Z"
        );
        assert!(lease_until(at, Duration::MAX).is_err());
    }
}
