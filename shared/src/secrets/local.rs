//! Secrets for one machine: a local file and/or environment variables.
//!
//! File format (YAML or JSON):
//!
//! ```yaml
//! secrets:
//!   relay/webhook: { token: "…", hmac: "…" }   # a JSON-object secret
//!   relay/plain: "…"                           # a plain string secret
//! previous:                                    # optional: rotation
//!   relay/webhook: { token: "…" }
//! ```
//!
//! Environment: `RELAY_SECRET_<ID>` holds a secret string (a JSON object or a
//! plain value) and `RELAY_SECRET_<ID>__PREVIOUS` its previous version, where
//! `<ID>` is the secret id upper-cased with every other character than A–Z and
//! 0–9 turned into `_` (`relay/webhook` → `RELAY_SECRET_RELAY_WEBHOOK`).
//! The environment wins over the file. The file must not be readable by group
//! or others: the store refuses to open it otherwise, naming the fix.

use super::{SecretError, SecretStore, SecretValue, SecretVersions};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum LocalSecretsError {
    #[error("cannot read secrets file {file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secrets file {file} is accessible by group or others (mode {mode:04o}); run `chmod 600 {file}`")]
    Permissions { file: PathBuf, mode: u32 },
    #[error("secrets file {file} is not valid: {detail}")]
    Invalid { file: PathBuf, detail: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    secrets: BTreeMap<String, Entry>,
    #[serde(default)]
    previous: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Plain(String),
    Fields(BTreeMap<String, String>),
}

impl Entry {
    fn into_value(self) -> SecretValue {
        match self {
            Entry::Plain(s) => SecretValue::parse(s),
            Entry::Fields(f) => SecretValue::from_fields(f),
        }
    }
}

pub struct LocalSecretStore {
    file: Option<PathBuf>,
    env: HashMap<String, String>,
    data: RwLock<HashMap<String, Arc<SecretVersions>>>,
}

/// The environment variable name for a secret id.
pub fn env_name(id: &str) -> String {
    let mut name = String::from("RELAY_SECRET_");
    name.extend(id.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name
}

impl LocalSecretStore {
    /// A store over `RELAY_SECRET_*` variables of this process only.
    pub fn from_env() -> Self {
        Self::with_env(std::env::vars().filter(|(k, _)| k.starts_with("RELAY_SECRET_")))
    }

    /// A store over the given variables (tests pass their own).
    pub fn with_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            file: None,
            env: vars.into_iter().collect(),
            data: RwLock::new(HashMap::new()),
        }
    }

    /// A store over a secrets file, overlaid by `RELAY_SECRET_*` variables.
    pub fn open(file: impl AsRef<Path>) -> Result<Self, LocalSecretsError> {
        let mut store = Self::from_env();
        store.file = Some(file.as_ref().to_owned());
        store.reload()?;
        Ok(store)
    }

    /// Same as [`open`](Self::open) with explicit variables instead of the
    /// process environment.
    pub fn open_with_env(
        file: impl AsRef<Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LocalSecretsError> {
        let mut store = Self::with_env(vars);
        store.file = Some(file.as_ref().to_owned());
        store.reload()?;
        Ok(store)
    }

    /// Re-reads the file (for rotation without a restart).
    pub fn reload(&self) -> Result<(), LocalSecretsError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        check_permissions(file)?;
        let text = std::fs::read_to_string(file).map_err(|source| LocalSecretsError::Io {
            file: file.clone(),
            source,
        })?;
        let parsed: FileFormat =
            serde_saphyr::from_str(&text).map_err(|e| LocalSecretsError::Invalid {
                file: file.clone(),
                // serde-saphyr renders a snippet of the offending line; keep only
                // the first line of its message so no value is echoed.
                detail: e.to_string().lines().next().unwrap_or_default().to_owned(),
            })?;
        let mut previous: HashMap<String, SecretValue> = parsed
            .previous
            .into_iter()
            .map(|(k, v)| (k, v.into_value()))
            .collect();
        let data = parsed
            .secrets
            .into_iter()
            .map(|(id, entry)| {
                let versions = SecretVersions {
                    current: entry.into_value(),
                    previous: previous.remove(&id),
                };
                (id, Arc::new(versions))
            })
            .collect();
        *self.data.write().unwrap_or_else(|e| e.into_inner()) = data;
        Ok(())
    }

    fn lookup(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        let var = env_name(id);
        if let Some(current) = self.env.get(&var) {
            return Ok(Arc::new(SecretVersions {
                current: SecretValue::parse(current.clone()),
                previous: self
                    .env
                    .get(&format!("{var}__PREVIOUS"))
                    .map(|p| SecretValue::parse(p.clone())),
            }));
        }
        self.data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| SecretError::NotFound { id: id.to_owned() })
    }
}

#[cfg(unix)]
fn check_permissions(file: &Path) -> Result<(), LocalSecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).map_err(|source| LocalSecretsError::Io {
        file: file.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LocalSecretsError::Permissions {
            file: file.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_file: &Path) -> Result<(), LocalSecretsError> {
    Ok(())
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        self.lookup(id)
    }

    async fn refetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "secrets file reload failed; keeping the loaded secrets");
        }
        self.lookup(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretRef;
    use std::io::Write;

    fn write(mode: u32, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        f
    }

    const FILE: &str = "secrets:\n  relay/webhook: { token: t-new, hmac: h }\n  relay/plain: p\nprevious:\n  relay/webhook: { token: t-old }\n";

    #[tokio::test]
    async fn reads_file_with_previous_versions() {
        let f = write(0o600, FILE);
        let store = LocalSecretStore::open_with_env(f.path(), []).unwrap();
        let t = store
            .resolve(&SecretRef::parse("relay/webhook#token").unwrap())
            .await
            .unwrap();
        assert_eq!(t.current.expose(), "t-new");
        assert_eq!(t.previous.unwrap().expose(), "t-old");
        let p = store
            .resolve(&SecretRef::parse("relay/plain").unwrap())
            .await
            .unwrap();
        assert_eq!(p.current.expose(), "p");
        assert_eq!(
            store.fetch("nope").await.unwrap_err(),
            SecretError::NotFound { id: "nope".into() }
        );
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_file_others_can_read() {
        let f = write(0o644, FILE);
        let err = LocalSecretStore::open_with_env(f.path(), []).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()));
    }

    #[tokio::test]
    async fn environment_overrides_file() {
        let f = write(0o600, FILE);
        let env = [
            (
                env_name("relay/webhook"),
                r#"{"token":"from-env"}"#.to_owned(),
            ),
            (
                format!("{}__PREVIOUS", env_name("relay/webhook")),
                r#"{"token":"env-old"}"#.to_owned(),
            ),
        ];
        assert_eq!(env[0].0, "RELAY_SECRET_RELAY_WEBHOOK");
        let store = LocalSecretStore::open_with_env(f.path(), env).unwrap();
        let t = store
            .resolve(&SecretRef::parse("relay/webhook#token").unwrap())
            .await
            .unwrap();
        assert_eq!(t.current.expose(), "from-env");
        assert_eq!(t.previous.unwrap().expose(), "env-old");
    }

    #[test]
    fn invalid_file_does_not_echo_values() {
        let f = write(0o600, "secrets:\n  a: [supersecretvalue\n");
        let msg = LocalSecretStore::open_with_env(f.path(), [])
            .err()
            .unwrap()
            .to_string();
        assert!(!msg.contains("supersecretvalue"), "{msg}");
    }
}
