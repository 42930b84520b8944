//! Secrets: the reference a config file names ([`secret::SecretRef`]), the
//! store port ([`store::SecretStore`]) and its adapters — a local file,
//! AWS Secrets Manager — with a cache in front.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cache;
pub mod local;
pub mod secret;
pub mod store;

#[cfg(feature = "aws")]
pub use aws::AwsSecretStore;
pub use cache::CachedSecretStore;
pub use local::{env_name, LocalSecretStore, LocalSecretsError};
pub use secret::{Secret, SecretRef};
pub use store::*;
