//! Certificates the relay obtains itself over ACME (RFC 8555), proving
//! control of each name with TLS-ALPN-01 (RFC 8737) on the listener itself:
//! the CA connects to port 443 of the name offering ALPN `acme-tls/1`, and
//! [`CertStore`] answers that handshake with a certificate carrying the
//! challenge's digest. No port 80, no DNS API.
//!
//! Kept in `<data-dir>/acme/` (each file mode 0600): `account.json` (the
//! account key and URL, for one directory), `cert.pem` + `key.pem` (the
//! certificate and its key) and `names` (the names it was issued for). A
//! restart serves the kept certificate; a new one is ordered when there is
//! none, the names changed, or less than a third of its life is left.
//! Failures are logged and retried with a growing pause (1 min … 1 h) while
//! the previous certificate, if any, stays served.

use super::tls::{self, CertStore};
use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `relay serve --acme-domain …`.
#[derive(Clone, Debug)]
pub struct AcmeOptions {
    /// The names the certificate is for (the first is its subject).
    pub domains: Vec<String>,
    /// The account's contact (`mailto:` is added).
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// A CA certificate (PEM) to trust for the ACME server's own HTTPS, for
    /// a private or test CA; `None`: the public roots.
    pub server_root: Option<PathBuf>,
    /// Where the account and certificate are kept (`<data-dir>/acme`).
    pub dir: PathBuf,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves the kept certificate (if any) now and keeps one current, forever.
pub fn start(
    opts: &AcmeOptions,
    store: Arc<CertStore>,
) -> Result<impl Future<Output = ()>, String> {
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.dir.display()))?;
    let http = http_client(opts.server_root.as_deref())?;
    let kept = Kept::load(&opts.dir, &opts.domains);
    if let Some(k) = &kept {
        store.set(k.key.clone());
        tracing::info!(names = ?opts.domains, "serving the kept ACME certificate");
    } else {
        tracing::info!(names = ?opts.domains, directory = %opts.directory,
            "no ACME certificate yet: ordering one (TLS handshakes fail until it arrives)");
    }
    let opts = opts.clone();
    Ok(async move {
        let mut renew_at = kept.map(|k| k.renew_at).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut pause = Duration::from_secs(60);
        loop {
            let wait = renew_at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(Duration::from_secs(24 * 3600));
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                continue;
            }
            match obtain(&opts, &http, &store).await {
                Ok(k) => {
                    renew_at = k.renew_at;
                    pause = Duration::from_secs(60);
                    store.set(k.key);
                    tracing::info!(names = ?opts.domains, "ACME certificate obtained and served");
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_secs = pause.as_secs(),
                        "ordering the ACME certificate failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(3600));
                }
            }
        }
    })
}

/// A certificate and when to renew it.
struct Kept {
    key: rustls::sign::CertifiedKey,
    renew_at: SystemTime,
}

impl Kept {
    /// The kept certificate, if it is for `names` and loads.
    fn load(dir: &Path, names: &[String]) -> Option<Self> {
        let kept_names = std::fs::read_to_string(dir.join("names")).ok()?;
        if kept_names.trim() != names.join("\n") {
            return None;
        }
        let key = match tls::load_pair(&dir.join("cert.pem"), &dir.join("key.pem")) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "the kept ACME certificate does not load; ordering a new one");
                return None;
            }
        };
        let renew_at = renew_at(key.end_entity_cert().ok()?)?;
        Some(Self { key, renew_at })
    }
}

/// When a third of the certificate's life is left.
fn renew_at(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (from, until) = validity(der)?;
    let life = until.duration_since(from).ok()?;
    Some(until - life / 3)
}

/// One order: account, authorizations over TLS-ALPN-01, finalize, keep.
async fn obtain(
    opts: &AcmeOptions,
    http: &reqwest::Client,
    store: &CertStore,
) -> Result<Kept, BoxError> {
    let account = account(opts, http).await?;
    let ids: Vec<Identifier> = opts
        .domains
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(n.clone()),
        })
        .collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut answered = Vec::new();
    let mut auths = order.authorizations();
    while let Some(a) = auths.next().await {
        let mut authz = a?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("an authorization is {other:?}").into()),
        }
        let mut challenge = authz
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or("the CA offers no tls-alpn-01 challenge for this name")?;
        let name = challenge.identifier().to_string();
        let digest = challenge.key_authorization().digest();
        let mut params = rcgen::CertificateParams::new(vec![name.clone()])?;
        params.custom_extensions =
            vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let answer = tls::challenge_pair(
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
        let sni = sni_of(&name);
        store.set_challenge(&sni, Some(answer));
        answered.push(sni);
        challenge.set_ready().await?;
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let ready = order.poll_ready(&retry).await;
    for sni in &answered {
        store.set_challenge(sni, None);
    }
    match ready? {
        OrderStatus::Ready => {}
        other => return Err(format!("the order is {other:?}, not ready").into()),
    }
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(opts.domains.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&retry).await?;
    let chain =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let leaf = chain.first().ok_or("the CA sent no certificate")?;
    let renew_at = renew_at(leaf).ok_or("the certificate's validity cannot be read")?;
    let served = tls::pair(
        chain,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        "the ACME key",
    )?;
    keep(&opts.dir.join("key.pem"), key.serialize_pem().as_bytes())?;
    keep(&opts.dir.join("cert.pem"), chain_pem.as_bytes())?;
    keep(&opts.dir.join("names"), opts.domains.join("\n").as_bytes())?;
    Ok(Kept {
        key: served,
        renew_at,
    })
}

/// The account for the directory: the kept one, else a new one (kept).
async fn account(opts: &AcmeOptions, http: &reqwest::Client) -> Result<Account, BoxError> {
    let path = opts.dir.join("account.json");
    if let Ok(json) = std::fs::read(&path) {
        let kept: serde_json::Value = serde_json::from_slice(&json)?;
        if kept["directory"].as_str() == Some(opts.directory.as_str()) {
            let creds: AccountCredentials = serde_json::from_value(kept)?;
            return Ok(Account::builder_with_http(Box::new(Http(http.clone())))
                .from_credentials(creds)
                .await?);
        }
        tracing::info!(directory = %opts.directory, "the kept ACME account is another CA's; making one here");
    }
    let contact = opts.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = Account::builder_with_http(Box::new(Http(http.clone())))
        .create(&new, opts.directory.clone(), None)
        .await?;
    keep(&path, &serde_json::to_vec(&creds)?)?;
    Ok(account)
}

fn keep(path: &Path, bytes: &[u8]) -> Result<(), BoxError> {
    shared::secrets::local::replace_file(path, bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// The SNI a CA's validation sends for a name: the name, or for an IP
/// address its reverse-DNS name (RFC 8738).
fn sni_of(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(IpAddr::V6(v6)) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa"
        }
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// The ACME client's HTTP: the relay's reqwest (rustls, ring).
fn http_client(root: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("jira-relay/", env!("CARGO_PKG_VERSION")));
    if let Some(root) = root {
        let pem = std::fs::read(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", root.display()))?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
    }
    b.build().map_err(|e| e.to_string())
}

struct Http(reqwest::Client);

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let (parts, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let req = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(other)?;
            let rsp = client.execute(req).await.map_err(other)?;
            Ok(BytesResponse::from(http::Response::<reqwest::Body>::from(
                rsp,
            )))
        })
    }
}

/// (notBefore, notAfter) of an X.509 certificate (DER).
fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // the version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (t1, from, rest) = tlv(validity)?;
    let (t2, until, _) = tlv(rest)?;
    Some((time(t1, from)?, time(t2, until)?))
}

/// One DER element: (tag, content, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, 2 + n)
    };
    let content = b.get(head..head.checked_add(len)?)?;
    Some((tag, content, &b[head + len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i16 = s.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i8>().ok();
    let at = jiff::civil::DateTime::new(year, n(0)?, n(2)?, n(4)?, n(6)?, n(8)?, 0).ok()?;
    let ts = at.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(SystemTime::from(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_certificates_validity() {
        let mut p = rcgen::CertificateParams::new(vec!["relay.example.com".into()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2026, 3, 1);
        p.not_after = rcgen::date_time_ymd(2056, 5, 30); // GeneralizedTime after 2049
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let (from, until) = validity(cert.der()).unwrap();
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(from), 1_772_323_200); // 2026-03-01T00:00:00Z
        assert_eq!(secs(until), 2_726_870_400); // 2056-05-30T00:00:00Z
        assert!(validity(&cert.der()[..40]).is_none());
    }

    #[test]
    fn the_sni_of_an_address_is_its_reverse_name() {
        assert_eq!(sni_of("127.0.0.1"), "1.0.0.127.in-addr.arpa");
        assert_eq!(sni_of("Relay.Example.com"), "relay.example.com");
        assert!(sni_of("2001:db8::1").ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert!(sni_of("2001:db8::1").starts_with("1.0.0.0."));
    }
}
