//! AWS Secrets Manager adapter: reads `AWSCURRENT` and `AWSPREVIOUS` of a
//! secret. Wrap it in [`super::cache::CachedSecretStore`]; every fetch is two calls.
//!
//! Write-back ([`SecretStore::put`]): read `AWSCURRENT` (value and
//! `VersionId`), replace the key in its JSON, check that the version read is
//! still `AWSCURRENT` (and, when given, the caller's expected version), then
//! `PutSecretValue` the whole JSON, which becomes the new `AWSCURRENT` (the
//! old one `AWSPREVIOUS`). Secrets Manager has no conditional put, so this is
//! a best-effort compare-and-swap: a writer that puts between our check and
//! our put is overwritten. The window is one round trip (tens of ms); the
//! OAuth refresher that uses this also re-reads and retries on
//! `invalid_grant` (`outbound/oauth3lo.rs`), which covers it.

use super::store::{SecretError, SecretStore, SecretValue, SecretVersions};
use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;
use std::sync::Arc;

#[derive(Clone)]
pub struct AwsSecretStore {
    client: Client,
}

impl AwsSecretStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A store from a loaded AWS configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(conf))
    }

    async fn stage(&self, id: &str, stage: &str) -> Result<Option<SecretValue>, SecretError> {
        Ok(self.staged(id, stage).await?.map(|(v, _)| v))
    }

    /// A stage's value and `VersionId`.
    async fn staged(
        &self,
        id: &str,
        stage: &str,
    ) -> Result<Option<(SecretValue, Option<String>)>, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_stage(stage)
            .send()
            .await;
        match out {
            Ok(o) => match o.secret_string {
                Some(s) => Ok(Some((SecretValue::parse(s), o.version_id))),
                None => Err(SecretError::Unavailable {
                    id: id.to_owned(),
                    detail: "secret has no SecretString (binary secrets are not supported)"
                        .to_owned(),
                }),
            },
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), GetSecretValueError::ResourceNotFoundException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(SecretError::Unavailable {
                id: id.to_owned(),
                detail: match e.code() {
                    Some(code) => code.to_owned(),
                    None => DisplayErrorContext(&e).to_string(),
                },
            }),
        }
    }
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        let (current, version) = self
            .staged(id, "AWSCURRENT")
            .await?
            .ok_or_else(|| SecretError::NotFound { id: id.to_owned() })?;
        let previous = self.stage(id, "AWSPREVIOUS").await?;
        Ok(Arc::new(SecretVersions {
            current,
            previous,
            version,
        }))
    }

    async fn put(
        &self,
        id: &str,
        key: &str,
        value: &str,
        expected_version: Option<&str>,
    ) -> Result<String, SecretError> {
        let not_found = || SecretError::NotFound { id: id.to_owned() };
        let (current, version) = self.staged(id, "AWSCURRENT").await?.ok_or_else(not_found)?;
        let conflict = || SecretError::Conflict { id: id.to_owned() };
        if expected_version.is_some() && expected_version != version.as_deref() {
            return Err(conflict());
        }
        let text = current
            .with_key(key, value)
            .ok_or_else(|| SecretError::NotWritable {
                id: id.to_owned(),
                detail: "it is not a JSON object".to_owned(),
            })?;
        // Best-effort CAS: still the version we read, right before the write.
        let (_, now) = self.staged(id, "AWSCURRENT").await?.ok_or_else(not_found)?;
        if now != version {
            return Err(conflict());
        }
        let out = self
            .client
            .put_secret_value()
            .secret_id(id)
            .secret_string(text)
            .send()
            .await
            .map_err(|e| SecretError::Unavailable {
                id: id.to_owned(),
                detail: match e.code() {
                    Some(code) => code.to_owned(),
                    None => DisplayErrorContext(&e).to_string(),
                },
            })?;
        Ok(out.version_id.unwrap_or_default())
    }
}
