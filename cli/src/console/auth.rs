//! Who may use the console: one admin credential from the secrets file
//! (`relay/console`: `username`, default `admin`, and `password`), a session
//! cookie after the login form, a CSRF token per session checked on every
//! form that changes something, and HTTP Basic with the same credential for
//! scrapers (`/metrics`).
//!
//! Cookies are `HttpOnly; SameSite=Strict`; the login form is protected by a
//! double-submit token (cookie + field). A failed login waits half a second
//! and answers 401.

use axum::http::{header, HeaderMap};
use shared::secrets::{Secret, SecretRef, SecretStore};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "relay_console";
pub const LOGIN_COOKIE: &str = "relay_console_login";
/// Sessions end after this long without a request.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);

/// The admin credential (the password never leaves this type but through
/// [`Credential::matches`]).
pub struct Credential {
    pub username: String,
    password: Secret,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Credential {
    /// Reads `<secret>#password` (and `#username`, default `admin`).
    /// `Ok(None)`: no such secret or no password in it — the console is off.
    pub async fn load(store: &dyn SecretStore, secret: &str) -> Result<Option<Self>, String> {
        let v = match store.fetch(secret).await {
            Ok(v) => v,
            Err(shared::secrets::SecretError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let password = match v.resolve(&SecretRef::new(secret, Some("password"))) {
            Ok(r) if !r.current.expose().is_empty() => r.current,
            _ => return Ok(None),
        };
        let username = v
            .resolve(&SecretRef::new(secret, Some("username")))
            .map(|r| r.current.expose().to_owned())
            .unwrap_or_else(|_| "admin".to_owned());
        Ok(Some(Self { username, password }))
    }

    #[cfg(test)]
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    pub fn matches(&self, username: &str, password: &str) -> bool {
        let u = self.username.as_bytes().ct_eq(username.as_bytes());
        let p = self.password.expose().as_bytes().ct_eq(password.as_bytes());
        bool::from(u & p)
    }
}

struct Session {
    csrf: String,
    seen: Instant,
}

/// Logged-in sessions, in memory (a restart logs everyone out).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// A new session: (cookie value, CSRF token).
    pub fn open(&self) -> (String, String) {
        let id = shared::support::random::hex(32);
        let csrf = shared::support::random::hex(32);
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, s| s.seen.elapsed() < IDLE);
        m.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                seen: Instant::now(),
            },
        );
        (id, csrf)
    }

    /// The CSRF token of the session the request carries, if it is live.
    pub fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.get_mut(&id)?;
        if s.seen.elapsed() >= IDLE {
            m.remove(&id);
            return None;
        }
        s.seen = Instant::now();
        Some(s.csrf.clone())
    }

    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether two tokens are equal (constant time) and not empty.
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `Authorization: Basic …` with the admin credential.
pub fn basic_ok(headers: &HeaderMap, cred: &Credential) -> bool {
    use base64::Engine;
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(v.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&raw);
    match text.split_once(':') {
        Some((u, p)) => cred.matches(u, p),
        None => false,
    }
}

/// `Set-Cookie` for a session cookie (or its removal).
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_sessions_and_tokens() {
        let c = Credential::new("admin", "s3cret-pass");
        assert!(c.matches("admin", "s3cret-pass"));
        assert!(!c.matches("admin", "s3cret-pas"));
        assert!(!c.matches("root", "s3cret-pass"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let s = Sessions::default();
        let (id, csrf) = s.open();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("other=1; {SESSION_COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(s.csrf_of(&h).as_deref(), Some(csrf.as_str()));
        s.close(&h);
        assert_eq!(s.csrf_of(&h), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("", ""));
        assert!(!same_token("abc", "abd"));
        use base64::Engine;
        let mut b = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("admin:s3cret-pass");
        b.insert(
            header::AUTHORIZATION,
            format!("Basic {enc}").parse().unwrap(),
        );
        assert!(basic_ok(&b, &c));
        let enc = base64::engine::general_purpose::STANDARD.encode("admin:wrong");
        b.insert(
            header::AUTHORIZATION,
            format!("Basic {enc}").parse().unwrap(),
        );
        assert!(!basic_ok(&b, &c));
    }
}
