//! Authenticating a webhook call.
//!
//! Checks the methods an endpoint configures — URL token, HMAC-SHA256 body
//! signature, HTTP Basic, Bearer — against the current and the previous
//! version of each secret (rotation without downtime). Every comparison is
//! constant-time and both versions are always compared, so timing tells an
//! attacker nothing about which part was wrong. An [`Authenticated`] value can
//! only be made here: it is the one thing the ingress may enqueue.

use crate::config::model::{Endpoint, Require, SourceKind};
use crate::secrets::secret::{Secret, SecretRef};
use crate::secrets::store::{Resolved, SecretError, SecretStore};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// A request whose credentials were checked. Fields are private: only
/// [`authenticate`] makes one.
#[derive(Debug)]
pub struct Authenticated {
    endpoint: String,
    kind: SourceKind,
    body: Bytes,
    /// Method that passed first (for logs).
    method: &'static str,
}

impl Authenticated {
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    pub fn kind(&self) -> SourceKind {
        self.kind
    }
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    pub fn method(&self) -> &'static str {
        self.method
    }
}

/// Why a call was refused. `reason()` goes to the log; the caller only ever
/// sees a fixed message.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials ({0})")]
    Missing(&'static str),
    #[error("credentials refused ({0})")]
    Refused(&'static str),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing(r) | AuthError::Refused(r) => r,
            AuthError::Secret(e) => e.reason(),
        }
    }
}

/// What the request offers.
pub struct Credentials<'a> {
    /// The `token` query parameter.
    pub token: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl<'a> Credentials<'a> {
    /// Reads the `token` parameter from a raw query string.
    pub fn token_from_query(query: Option<&'a str>) -> Option<String> {
        form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    }
}

/// Constant-time equality of two strings of any lengths: compares their
/// SHA-256 digests.
pub fn ct_eq_str(a: &str, b: &str) -> bool {
    let da = Sha256::digest(a.as_bytes());
    let db = Sha256::digest(b.as_bytes());
    da.ct_eq(&db).into()
}

/// True if `offered` equals any version, comparing against all of them.
fn matches_any(offered: &str, versions: &Resolved) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for v in versions.iter() {
        ok |= subtle::Choice::from(u8::from(ct_eq_str(offered, v.expose())));
    }
    ok.into()
}

/// Parses `sha256=<64 hex>` into the 32-byte MAC.
fn parse_signature(value: &str) -> Option<[u8; 32]> {
    let hex_part = value.trim().strip_prefix("sha256=")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

fn hmac_matches(key: &Secret, body: &[u8], sig: &[u8; 32]) -> bool {
    let mut mac =
        HmacSha256::new_from_slice(key.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(sig).is_ok()
}

fn authorization<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The result of one method: `Ok(true)` passed, `Err` missing/refused.
type Check = Result<&'static str, AuthError>;

async fn check_token(store: &dyn SecretStore, r: &SecretRef, c: &Credentials<'_>) -> Check {
    let versions = store.resolve(r).await?;
    let offered = c.token.ok_or(AuthError::Missing("missing_token"))?;
    if matches_any(offered, &versions) {
        Ok("token")
    } else {
        Err(AuthError::Refused("bad_token"))
    }
}

async fn check_hmac(store: &dyn SecretStore, r: &SecretRef, c: &Credentials<'_>) -> Check {
    let versions = store.resolve(r).await?;
    let header = c
        .headers
        .get("x-hub-signature")
        .or_else(|| c.headers.get("x-hub-signature-256"))
        .ok_or(AuthError::Missing("missing_signature"))?;
    let sig = header
        .to_str()
        .ok()
        .and_then(parse_signature)
        .ok_or(AuthError::Refused("malformed_signature"))?;
    let mut ok = subtle::Choice::from(0u8);
    for key in versions.iter() {
        ok |= subtle::Choice::from(u8::from(hmac_matches(key, c.body, &sig)));
    }
    if bool::from(ok) {
        Ok("hmac")
    } else {
        Err(AuthError::Refused("bad_signature"))
    }
}

async fn check_basic(
    store: &dyn SecretStore,
    user: &SecretRef,
    pass: &SecretRef,
    c: &Credentials<'_>,
) -> Check {
    let users = store.resolve(user).await?;
    let passwords = store.resolve(pass).await?;
    let encoded = authorization(c.headers, "basic").ok_or(AuthError::Missing("missing_basic"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(AuthError::Refused("malformed_basic"))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or(AuthError::Refused("malformed_basic"))?;
    // Both always compared.
    let ok = matches_any(u, &users) & matches_any(p, &passwords);
    if ok {
        Ok("basic")
    } else {
        Err(AuthError::Refused("bad_basic"))
    }
}

async fn check_bearer(store: &dyn SecretStore, r: &SecretRef, c: &Credentials<'_>) -> Check {
    let versions = store.resolve(r).await?;
    let offered = authorization(c.headers, "bearer").ok_or(AuthError::Missing("missing_bearer"))?;
    if matches_any(offered, &versions) {
        Ok("bearer")
    } else {
        Err(AuthError::Refused("bad_bearer"))
    }
}

/// Runs every configured method once against what the store returns.
async fn run_checks(
    endpoint: &Endpoint,
    store: &dyn SecretStore,
    c: &Credentials<'_>,
) -> Vec<Check> {
    let a = &endpoint.auth;
    let mut results = Vec::with_capacity(a.method_count());
    if let Some(r) = &a.token {
        results.push(check_token(store, r, c).await);
    }
    if let Some(r) = &a.hmac {
        results.push(check_hmac(store, r, c).await);
    }
    if let Some(b) = &a.basic {
        results.push(check_basic(store, &b.username, &b.password, c).await);
    }
    if let Some(r) = &a.bearer {
        results.push(check_bearer(store, r, c).await);
    }
    results
}

fn decide(require: Require, results: Vec<Check>) -> Result<&'static str, AuthError> {
    // A store failure always wins: we cannot tell good from bad credentials.
    if let Some(Err(e @ AuthError::Secret(_))) = results
        .iter()
        .find(|r| matches!(r, Err(AuthError::Secret(_))))
    {
        return Err(e.clone());
    }
    match require {
        Require::All => {
            let mut passed = None;
            for r in results {
                passed.get_or_insert(r?);
            }
            passed.ok_or(AuthError::Missing("no_method"))
        }
        Require::Any => {
            // The reason logged is the most telling one: a credential that
            // was offered and refused, before one that was not offered.
            let mut refused = None;
            let mut missing = None;
            for r in results {
                match r {
                    Ok(m) => return Ok(m),
                    Err(e @ AuthError::Refused(_)) => {
                        refused.get_or_insert(e);
                    }
                    Err(e) => {
                        missing.get_or_insert(e);
                    }
                }
            }
            Err(refused
                .or(missing)
                .unwrap_or(AuthError::Missing("no_method")))
        }
    }
}

/// Checks a request against its endpoint. If credentials are refused, the
/// secrets are read once more bypassing caches (they may have just been
/// rotated; the store rate-limits this) before the refusal stands.
pub async fn authenticate(
    endpoint: &Endpoint,
    store: &dyn SecretStore,
    c: Credentials<'_>,
    body: Bytes,
) -> Result<Authenticated, AuthError> {
    let mut verdict = decide(endpoint.auth.require, run_checks(endpoint, store, &c).await);
    if matches!(verdict, Err(AuthError::Refused(_))) {
        let mut ids: Vec<&str> = endpoint
            .auth
            .secret_refs()
            .iter()
            .map(|r| r.secret.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut refreshed = false;
        for id in ids {
            if store.refetch(id).await.is_ok() {
                refreshed = true;
            }
        }
        if refreshed {
            verdict = decide(endpoint.auth.require, run_checks(endpoint, store, &c).await);
        }
    }
    verdict.map(|method| Authenticated {
        endpoint: endpoint.name.clone(),
        kind: endpoint.kind,
        body,
        method,
    })
}

/// The same cost as checking a token and a signature, against a key nobody
/// holds: spent on unknown endpoints so their answer takes as long as a
/// refusal.
pub fn equivalent_work(c: &Credentials<'_>) {
    let key = Secret::new("jira-relay-unknown-endpoint");
    let _ = ct_eq_str(c.token.unwrap_or(""), key.expose());
    let _ = hmac_matches(&key, c.body, &[0u8; 32]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{BasicAuth, EndpointAuth, Stage};
    use crate::secrets::local::LocalSecretStore;
    use http::HeaderValue;

    fn store() -> LocalSecretStore {
        LocalSecretStore::with_env([
            (
                "RELAY_SECRET_WH".to_owned(),
                r#"{"token":"tok-new","hmac":"key-new"}"#.to_owned(),
            ),
            (
                "RELAY_SECRET_WH__PREVIOUS".to_owned(),
                r#"{"token":"tok-old","hmac":"key-old"}"#.to_owned(),
            ),
            (
                "RELAY_SECRET_SN".to_owned(),
                r#"{"user":"relay","pass":"pw"}"#.to_owned(),
            ),
        ])
    }

    fn endpoint(auth: EndpointAuth) -> Endpoint {
        Endpoint {
            name: "e".into(),
            kind: SourceKind::Jira,
            stage: Stage::Test,
            auth,
        }
    }

    fn sign(key: &str, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn run(
        ep: &Endpoint,
        token: Option<&str>,
        headers: HeaderMap,
        body: &'static [u8],
    ) -> Result<&'static str, AuthError> {
        let s = store();
        let c = Credentials {
            token,
            headers: &headers,
            body,
        };
        authenticate(ep, &s, c, Bytes::from_static(body))
            .await
            .map(|a| a.method())
    }

    fn token_ep() -> Endpoint {
        endpoint(EndpointAuth {
            token: Some(SecretRef::parse("wh#token").unwrap()),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn token_current_and_previous() {
        let ep = token_ep();
        assert_eq!(
            run(&ep, Some("tok-new"), HeaderMap::new(), b"{}").await,
            Ok("token")
        );
        assert_eq!(
            run(&ep, Some("tok-old"), HeaderMap::new(), b"{}").await,
            Ok("token")
        );
        assert_eq!(
            run(&ep, Some("tok-older"), HeaderMap::new(), b"{}").await,
            Err(AuthError::Refused("bad_token"))
        );
        assert_eq!(
            run(&ep, None, HeaderMap::new(), b"{}").await,
            Err(AuthError::Missing("missing_token"))
        );
    }

    #[tokio::test]
    async fn hmac_signatures() {
        let ep = endpoint(EndpointAuth {
            hmac: Some(SecretRef::parse("wh#hmac").unwrap()),
            ..Default::default()
        });
        let body: &'static [u8] = br#"{"a":1}"#;
        for (key, expected) in [
            ("key-new", Ok("hmac")),
            ("key-old", Ok("hmac")),
            ("key-x", Err(AuthError::Refused("bad_signature"))),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                "x-hub-signature",
                HeaderValue::from_str(&sign(key, body)).unwrap(),
            );
            assert_eq!(run(&ep, None, h, body).await, expected, "{key}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature", HeaderValue::from_static("sha1=abcd"));
        assert_eq!(
            run(&ep, None, h, body).await,
            Err(AuthError::Refused("malformed_signature"))
        );
        assert_eq!(
            run(&ep, None, HeaderMap::new(), body).await,
            Err(AuthError::Missing("missing_signature"))
        );
    }

    #[tokio::test]
    async fn all_versus_any() {
        let mut auth = EndpointAuth {
            token: Some(SecretRef::parse("wh#token").unwrap()),
            hmac: Some(SecretRef::parse("wh#hmac").unwrap()),
            ..Default::default()
        };
        let body: &'static [u8] = b"{}";
        let ep = endpoint(auth.clone());
        assert_eq!(
            run(&ep, Some("tok-new"), HeaderMap::new(), body).await,
            Err(AuthError::Missing("missing_signature"))
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature",
            HeaderValue::from_str(&sign("key-new", body)).unwrap(),
        );
        assert_eq!(run(&ep, Some("tok-new"), h, body).await, Ok("token"));
        auth.require = Require::Any;
        let ep = endpoint(auth);
        assert_eq!(
            run(&ep, Some("tok-new"), HeaderMap::new(), body).await,
            Ok("token")
        );
        // Any: a refused signature is the reason, not the token nobody sent.
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature",
            HeaderValue::from_str(&sign("key-x", body)).unwrap(),
        );
        assert_eq!(
            run(&ep, None, h, body).await,
            Err(AuthError::Refused("bad_signature"))
        );
        assert_eq!(
            run(&ep, None, HeaderMap::new(), body).await,
            Err(AuthError::Missing("missing_token"))
        );
    }

    #[tokio::test]
    async fn basic_and_bearer() {
        let ep = endpoint(EndpointAuth {
            basic: Some(BasicAuth {
                username: SecretRef::parse("sn#user").unwrap(),
                password: SecretRef::parse("sn#pass").unwrap(),
            }),
            ..Default::default()
        });
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic cmVsYXk6cHc="),
        ); // relay:pw
        assert_eq!(run(&ep, None, h, b"{}").await, Ok("basic"));
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic cmVsYXk6eA=="),
        ); // relay:x
        assert_eq!(
            run(&ep, None, h, b"{}").await,
            Err(AuthError::Refused("bad_basic"))
        );

        let ep = endpoint(EndpointAuth {
            bearer: Some(SecretRef::parse("wh#token").unwrap()),
            ..Default::default()
        });
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer tok-old"));
        assert_eq!(run(&ep, None, h, b"{}").await, Ok("bearer"));
    }

    #[tokio::test]
    async fn missing_secret_is_a_store_error_not_a_refusal() {
        let ep = endpoint(EndpointAuth {
            token: Some(SecretRef::parse("absent#token").unwrap()),
            ..Default::default()
        });
        let err = run(&ep, Some("x"), HeaderMap::new(), b"{}")
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "secret_missing");
    }

    #[test]
    fn token_from_query() {
        assert_eq!(
            Credentials::token_from_query(Some("a=1&token=x%2By")).as_deref(),
            Some("x+y")
        );
        assert_eq!(Credentials::token_from_query(Some("a=1")), None);
        assert_eq!(Credentials::token_from_query(None), None);
    }
}
