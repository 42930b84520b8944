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
//!
//! Write-back ([`SecretStore::put`], for rotating OAuth refresh tokens): the
//! file is re-read, the key replaced (or the secret created), and the whole
//! file written to a temporary file in the same directory (mode 0600),
//! flushed to disk and renamed over the original, so a crash leaves either
//! the old or the new file, never half of one. The file is rewritten from
//! its parsed form: **comments and formatting are dropped** (a `.json` file
//! stays JSON, anything else becomes YAML). The version of a secret is a
//! digest of its current value; a put with an expected version compares it
//! under a per-process lock. Two processes writing the same file at once
//! are not serialised (one machine runs one `relay serve`). Secrets set by
//! `RELAY_SECRET_*` variables cannot be written.

use super::store::{SecretError, SecretStore, SecretValue, SecretVersions};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    secrets: BTreeMap<String, Entry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    previous: BTreeMap<String, Entry>,
}

#[derive(Clone, Deserialize, Serialize)]
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
    /// Serialises read-modify-write of the file within this process.
    write: std::sync::Mutex<()>,
}

/// The version of a file secret: a digest of its current value.
fn digest(v: &SecretValue) -> String {
    let d = sha2::Sha256::digest(v.raw.expose().as_bytes());
    hex::encode(&d[..12])
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

/// A parse error's message without any text of the file: serde-saphyr
/// renders a snippet of the offending line after the first line, and serde
/// quotes what it met (``unknown field `…` ``, `invalid type: string "…"`),
/// which in a secrets file may be a secret. Keeps the first line with every
/// quoted part replaced by `…`; the line and column still say where.
fn scrub(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    let mut open: Option<char> = None;
    for ch in first.chars() {
        match open {
            Some(q) if ch == q => {
                out.push('…');
                out.push(ch);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(ch);
                if ch == '`' || ch == '"' {
                    open = Some(ch);
                }
            }
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
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
            write: std::sync::Mutex::new(()),
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

    fn read_file(file: &Path) -> Result<FileFormat, LocalSecretsError> {
        check_permissions(file)?;
        let text = std::fs::read_to_string(file).map_err(|source| LocalSecretsError::Io {
            file: file.to_owned(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| LocalSecretsError::Invalid {
            file: file.to_owned(),
            detail: scrub(&e.to_string()),
        })
    }

    /// Re-reads the file (for rotation without a restart).
    pub fn reload(&self) -> Result<(), LocalSecretsError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let parsed = Self::read_file(file)?;
        let mut previous: HashMap<String, SecretValue> = parsed
            .previous
            .into_iter()
            .map(|(k, v)| (k, v.into_value()))
            .collect();
        let data = parsed
            .secrets
            .into_iter()
            .map(|(id, entry)| {
                let current = entry.into_value();
                let versions = SecretVersions {
                    version: Some(digest(&current)),
                    current,
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
                version: None,
            }));
        }
        self.data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| SecretError::NotFound { id: id.to_owned() })
    }

    fn write_back(
        &self,
        id: &str,
        key: &str,
        value: &str,
        expected: Option<&str>,
    ) -> Result<String, SecretError> {
        let not_writable = |detail: String| SecretError::NotWritable {
            id: id.to_owned(),
            detail,
        };
        let var = env_name(id);
        if self.env.contains_key(&var) {
            return Err(not_writable(format!(
                "it is set by the environment variable {var}"
            )));
        }
        let Some(file) = &self.file else {
            return Err(not_writable("no secrets file is in use".to_owned()));
        };
        let unavailable = |detail: String| SecretError::Unavailable {
            id: id.to_owned(),
            detail,
        };
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut parsed = Self::read_file(file).map_err(|e| unavailable(e.to_string()))?;
        let entry = match parsed.secrets.get(id) {
            None => {
                if expected.is_some() {
                    return Err(SecretError::Conflict { id: id.to_owned() });
                }
                Entry::Fields(BTreeMap::from([(key.to_owned(), value.to_owned())]))
            }
            Some(old) => {
                let old_value = old.clone().into_value();
                if expected.is_some_and(|v| v != digest(&old_value)) {
                    return Err(SecretError::Conflict { id: id.to_owned() });
                }
                match old {
                    Entry::Fields(f) => {
                        let mut f = f.clone();
                        f.insert(key.to_owned(), value.to_owned());
                        Entry::Fields(f)
                    }
                    Entry::Plain(_) => {
                        Entry::Plain(old_value.with_key(key, value).ok_or_else(|| {
                            not_writable("it is a plain value, not a JSON object".to_owned())
                        })?)
                    }
                }
            }
        };
        let version = digest(&entry.clone().into_value());
        parsed.secrets.insert(id.to_owned(), entry);
        let json = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let text = if json {
            serde_json::to_string_pretty(&parsed).map_err(|e| unavailable(e.to_string()))?
        } else {
            serde_saphyr::to_string(&parsed).map_err(|e| unavailable(e.to_string()))?
        };
        replace_file(file, text.as_bytes())
            .map_err(|e| unavailable(format!("cannot write {}: {e}", file.display())))?;
        drop(_guard);
        self.reload().map_err(|e| unavailable(e.to_string()))?;
        Ok(version)
    }
}

/// Writes `bytes` to a temporary file next to `file` (mode 0600), flushes
/// it and renames it over `file`.
pub fn replace_file(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secrets".to_owned());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

    async fn put(
        &self,
        id: &str,
        key: &str,
        value: &str,
        expected_version: Option<&str>,
    ) -> Result<String, SecretError> {
        self.write_back(id, key, value, expected_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::secret::SecretRef;

    #[test]
    fn parse_errors_do_not_echo_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        for text in [
            "hunter2-top-level: 1\nsecrets: {}\n",
            "secrets:\n  a: { token: x }\nprevious: \"hunter2\"\n",
            "secrets:\n  a: { token: hunter2\n",
        ] {
            std::fs::write(&path, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = LocalSecretStore::open_with_env(&path, []).err().unwrap();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("line "), "{shown}");
        }
        assert_eq!(
            scrub("error: line 1 column 1: unknown field `pw`, expected one of `a`\nsnippet pw"),
            "error: line 1 column 1: unknown field `…`, expected one of `…`"
        );
        assert_eq!(
            scrub("invalid type: string \"pw"),
            "invalid type: string \"…"
        );
    }
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

    #[tokio::test]
    async fn put_rewrites_the_file_atomically_keeping_other_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.yaml");
        std::fs::write(&path, FILE).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let store = LocalSecretStore::open_with_env(&path, []).unwrap();
        let v1 = store.fetch("relay/webhook").await.unwrap().version.clone();
        let v2 = store
            .put("relay/webhook", "refresh_token", "rt-1", v1.as_deref())
            .await
            .unwrap();
        // The old version no longer matches.
        assert_eq!(
            store
                .put("relay/webhook", "refresh_token", "rt-x", v1.as_deref())
                .await
                .unwrap_err(),
            SecretError::Conflict {
                id: "relay/webhook".into()
            }
        );
        let now = store.fetch("relay/webhook").await.unwrap();
        assert_eq!(now.version.as_deref(), Some(v2.as_str()));
        // A fresh store reads what was written; the rest is intact.
        let again = LocalSecretStore::open_with_env(&path, []).unwrap();
        let r = |s: &str| SecretRef::parse(s).unwrap();
        assert_eq!(
            again
                .resolve(&r("relay/webhook#refresh_token"))
                .await
                .unwrap()
                .current
                .expose(),
            "rt-1"
        );
        let t = again.resolve(&r("relay/webhook#token")).await.unwrap();
        assert_eq!(t.current.expose(), "t-new");
        assert_eq!(t.previous.unwrap().expose(), "t-old");
        assert_eq!(
            again
                .resolve(&r("relay/plain"))
                .await
                .unwrap()
                .current
                .expose(),
            "p"
        );
        // A new secret is created; a plain one cannot take a key.
        again.put("relay/new", "k", "v", None).await.unwrap();
        assert!(matches!(
            again.put("relay/plain", "k", "v", None).await,
            Err(SecretError::NotWritable { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
        // Environment secrets are read-only.
        let env = LocalSecretStore::with_env([(env_name("a"), "{}".to_owned())]);
        assert!(matches!(
            env.put("a", "k", "v", None).await,
            Err(SecretError::NotWritable { .. })
        ));
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
