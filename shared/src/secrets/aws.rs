//! AWS Secrets Manager adapter: reads `AWSCURRENT` and `AWSPREVIOUS` of a
//! secret. Wrap it in [`super::CachedSecretStore`]; every fetch is two calls.

use super::{SecretError, SecretStore, SecretValue, SecretVersions};
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
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_stage(stage)
            .send()
            .await;
        match out {
            Ok(o) => match o.secret_string {
                Some(s) => Ok(Some(SecretValue::parse(s))),
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
        let current = self
            .stage(id, "AWSCURRENT")
            .await?
            .ok_or_else(|| SecretError::NotFound { id: id.to_owned() })?;
        let previous = self.stage(id, "AWSPREVIOUS").await?;
        Ok(Arc::new(SecretVersions { current, previous }))
    }
}
