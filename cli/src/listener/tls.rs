//! HTTPS for the public listener: rustls (TLS 1.2 and 1.3 only, the `ring`
//! provider), ALPN `h2` and `http/1.1`, and a certificate that can change
//! while the relay runs:
//!
//! - from files (`--tls-cert`, `--tls-key`, PEM): the files are checked
//!   every `reload_every` and, when they changed (a certbot or lego
//!   renewal), loaded again; new connections get the new certificate, open
//!   ones keep theirs. A pair that does not load (half-written, key not
//!   matching) is logged and the previous certificate stays;
//! - from ACME (`super::acme`), which puts what it obtains here and answers
//!   TLS-ALPN-01 challenges through [`CertStore::set_challenge`].

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A TLS-configured listener's state.
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// A server config around `certs`.
    pub fn new(certs: Arc<CertStore>) -> Result<Arc<Self>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Ok(Arc::new(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate served, and the TLS-ALPN-01 answers pending.
#[derive(Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("has_certificate", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl CertStore {
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `key` to new connections from now on.
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
    }

    /// Answers TLS-ALPN-01 handshakes for the SNI `name` with `key` (`None`: stop).
    pub fn set_challenge(&self, name: &str, key: Option<CertifiedKey>) {
        let mut c = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => c.insert(name.to_ascii_lowercase(), Arc::new(k)),
            None => c.remove(&name.to_ascii_lowercase()),
        };
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            let c = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
            return c.get(&name).cloned();
        }
        self.current()
    }
}

/// Reads a certificate chain and its private key (PEM) into what rustls
/// serves; refuses a key that is not the certificate's.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", cert.display()));
    }
    // The key's bytes never reach an error message: only its path does.
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: no private key could be read ({e})", key.display()))?;
    pair(chain, der, &key.display().to_string())
}

/// A chain and its key (DER) as rustls serves them.
pub fn pair(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_name: &str,
) -> Result<CertifiedKey, String> {
    let ck = unchecked(chain, key, key_name)?;
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(e) => Err(format!("{key_name} is not the certificate's key ({e})")),
    }
}

/// Where the listener's certificate comes from (`relay serve --tls-cert …`).
#[derive(Clone, Debug)]
pub enum TlsOptions {
    /// PEM files, checked for changes every `reload_every`.
    Files {
        cert: PathBuf,
        key: PathBuf,
        reload_every: Duration,
    },
    /// Obtained and renewed over ACME.
    Acme(super::acme::AcmeOptions),
}

impl TlsOptions {
    /// Loads the first certificate and starts what keeps it current.
    pub async fn start(&self) -> Result<(Arc<Tls>, tokio::task::JoinHandle<()>), String> {
        let store = Arc::new(CertStore::default());
        match self {
            TlsOptions::Files {
                cert,
                key,
                reload_every,
            } => {
                let files = Files {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                files.load_into(&store)?;
                let tls = Tls::new(store.clone())?;
                let task = tokio::spawn(files.watch(store, *reload_every));
                Ok((tls, task))
            }
            TlsOptions::Acme(acme) => {
                let keeper = super::acme::start(acme, store.clone())?;
                let tls = Tls::new(store)?;
                Ok((tls, tokio::spawn(keeper)))
            }
        }
    }
}

/// A TLS-ALPN-01 answer as rustls serves it. Not checked against its key
/// (rustls's check parses the certificate, and refuses the critical
/// acmeIdentifier extension the answer must carry): it was made here.
pub fn challenge_pair(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    unchecked(vec![cert], key, "the challenge key")
}

/// A chain and the signer of its key, not checked against each other.
fn unchecked(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_name: &str,
) -> Result<CertifiedKey, String> {
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{key_name}: the private key is not usable ({e})"))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// The certificate files and when they were last seen to change.
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

impl Files {
    fn stamp(&self) -> Stamp {
        let c = std::fs::metadata(&self.cert).ok()?;
        let k = std::fs::metadata(&self.key).ok()?;
        Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
    }

    /// Loads the pair into `store` now (at start: an error stops the relay).
    pub fn load_into(&self, store: &CertStore) -> Result<(), String> {
        store.set(load_pair(&self.cert, &self.key)?);
        Ok(())
    }

    /// Checks the files every `every` and loads them again when they change.
    pub async fn watch(self, store: Arc<CertStore>, every: Duration) {
        let mut seen = self.stamp();
        loop {
            tokio::time::sleep(every).await;
            let now = self.stamp();
            if now == seen {
                continue;
            }
            seen = now;
            match load_pair(&self.cert, &self.key) {
                Ok(k) => {
                    store.set(k);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "the changed TLS certificate files do not load; still serving the previous certificate"
                ),
            }
        }
    }
}
