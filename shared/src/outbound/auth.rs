//! Outbound credentials: the `Authorization` header for one connection.
//!
//! Values are read from the secret store on each use (the store caches them;
//! see [`crate::secrets::cache::CachedSecretStore`]) and never kept in a form that
//! can be printed: the header value is marked sensitive, and errors name the
//! secret id and key, never the value.
//!
//! OAuth 2.0 client credentials: the access token is cached until 60 s
//! before it expires (or half its lifetime, for short-lived tokens). One
//! refresh at a time per connection (an async mutex), so a burst of calls
//! after expiry fetches one token, not one each. After a 401 from the target
//! the caller asks for a `fresh` header: the cached token is dropped and the
//! client secret re-read from the store, in case it was rotated.
//!
//! OAuth 2.0 authorization code (3LO, rotating refresh tokens): see
//! [`super::oauth3lo`].

use super::connector::{secret_error, Budget, CallError};
use crate::outbound::connections::{AuthKind, ConnectionAuth};
use crate::secrets::secret::{Secret, SecretRef};
use crate::secrets::store::SecretStore;
use base64::Engine as _;
use http::HeaderValue;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How the token endpoint wants its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRequest {
    /// `application/json` (Atlassian `auth.atlassian.com/oauth/token`).
    Json,
    /// `application/x-www-form-urlencoded` (ServiceNow `/oauth_token.do`, RFC 6749).
    Form,
}

struct Cached {
    token: Secret,
    expires: Instant,
}

/// Credentials of one connection.
pub struct Auth {
    config: ConnectionAuth,
    request: TokenRequest,
    token: Mutex<Option<Cached>>,
    issued: std::sync::atomic::AtomicU64,
    three_lo: Option<super::oauth3lo::Oauth3lo>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("kind", &self.config.kind)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: ConnectionAuth, request: TokenRequest) -> Self {
        let three_lo =
            (config.kind == AuthKind::Oauth3lo).then(|| super::oauth3lo::Oauth3lo::new(&config));
        Self {
            config,
            request,
            token: Mutex::new(None),
            issued: Default::default(),
            three_lo,
        }
    }

    /// How many OAuth access tokens this connection has fetched (client
    /// credentials, or refreshes for 3LO).
    pub fn tokens_fetched(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
            + self.three_lo.as_ref().map_or(0, |t| t.refreshes())
    }

    async fn value(
        &self,
        secrets: &dyn SecretStore,
        r: &Option<SecretRef>,
        fresh: bool,
    ) -> Result<Secret, CallError> {
        let r = r
            .as_ref()
            .ok_or_else(|| CallError::permanent("config_error: a credential is not configured"))?;
        let versions = if fresh {
            secrets.refetch(&r.secret).await
        } else {
            secrets.fetch(&r.secret).await
        }
        .map_err(secret_error)?;
        Ok(versions.resolve(r).map_err(secret_error)?.current)
    }

    /// The `Authorization` header value. `fresh`: re-read the secret (and
    /// drop a cached OAuth token) first.
    pub async fn header(
        &self,
        secrets: &dyn SecretStore,
        client: &reqwest::Client,
        fresh: bool,
        budget: &Budget,
    ) -> Result<HeaderValue, CallError> {
        let text = match self.config.kind {
            AuthKind::EmailToken | AuthKind::Basic => {
                let (user, pass) = if self.config.kind == AuthKind::EmailToken {
                    (&self.config.email, &self.config.token)
                } else {
                    (&self.config.username, &self.config.password)
                };
                let user = self.value(secrets, user, fresh).await?;
                let pass = self.value(secrets, pass, fresh).await?;
                let pair = format!("{}:{}", user.expose(), pass.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            AuthKind::Bearer => {
                let t = self.value(secrets, &self.config.token, fresh).await?;
                format!("Bearer {}", t.expose())
            }
            AuthKind::Oauth2 => {
                let t = self.oauth_token(secrets, client, fresh, budget).await?;
                format!("Bearer {}", t.expose())
            }
            AuthKind::Oauth3lo => {
                let three_lo = self.three_lo.as_ref().ok_or_else(|| {
                    CallError::permanent("config_error: oauth_3lo refresher missing")
                })?;
                let t = three_lo
                    .access_token(secrets, client, fresh, budget)
                    .await?;
                format!("Bearer {}", t.expose())
            }
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            CallError::permanent(
                "config_error: a credential holds characters not allowed in a header",
            )
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    async fn oauth_token(
        &self,
        secrets: &dyn SecretStore,
        client: &reqwest::Client,
        fresh: bool,
        budget: &Budget,
    ) -> Result<Secret, CallError> {
        let mut slot = self.token.lock().await;
        if fresh {
            *slot = None;
        }
        if let Some(c) = slot.as_ref() {
            if Instant::now() < c.expires {
                return Ok(c.token.clone());
            }
        }
        let id = self.value(secrets, &self.config.client_id, fresh).await?;
        let secret = self
            .value(secrets, &self.config.client_secret, fresh)
            .await?;
        let url = self
            .config
            .token_url
            .as_deref()
            .ok_or_else(|| CallError::permanent("config_error: oauth2 needs `token_url`"))?;
        let timeout = budget
            .call_timeout(Duration::from_secs(10), Duration::from_millis(500))
            .ok_or_else(|| CallError::retry("deadline: no time left to fetch an OAuth token"))?;
        let req = client.post(url).timeout(timeout);
        let req = match self.request {
            TokenRequest::Json => req.json(&serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": id.expose(),
                "client_secret": secret.expose(),
            })),
            TokenRequest::Form => {
                let body = form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", id.expose())
                    .append_pair("client_secret", secret.expose())
                    .finish();
                req.header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
            }
        };
        let resp = req
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                CallError::retry(format!(
                    "oauth_unreachable: {}",
                    super::connector::describe(&e)
                ))
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            // Never echo the body: some token endpoints repeat the request.
            return Err(CallError::retry(format!(
                "oauth_token_refused: the token endpoint answered {status}"
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let reply: TokenReply = resp.json().await.map_err(|_| {
            CallError::retry("oauth_bad_reply: the token endpoint's answer has no access_token")
        })?;
        let life = Duration::from_secs(reply.expires_in.unwrap_or(3600));
        let early = Duration::from_secs(60).min(life / 2);
        let token = Secret::new(reply.access_token);
        *slot = Some(Cached {
            token: token.clone(),
            expires: Instant::now() + life - early,
        });
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(token)
    }
}
