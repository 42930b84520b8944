//! Atlassian OAuth 2.0 authorization code grant (3LO) with rotating refresh
//! tokens: auth kind `oauth_3lo`.
//!
//! `relay jira oauth login` runs the consent flow once and stores the first
//! refresh token in the connection's secret (next to `client_id` and
//! `client_secret`). From then on every access token comes from
//! `POST {token_url}` with `grant_type=refresh_token`, and every answer
//! carries a *new* refresh token: the one just used stops working. So:
//!
//! - The access token is cached until 60 s before it expires (half its life
//!   for short-lived tokens).
//! - **The rotated refresh token is written back to the secret store
//!   ([`SecretStore::put`]) before the new access token is used.** If the
//!   write fails, the new refresh token is kept in memory, the call is handed
//!   back to the queue (`oauth_token_not_saved`) and the write is tried again
//!   first thing on the next call; the access token is not used until the
//!   refresh token is safe, so a crash never strands the only valid token in
//!   a dead process.
//!
//! ## Concurrent refreshes
//!
//! - **Within a process**: one refresher per connection. The whole
//!   read-secret → refresh → write-back sequence runs under an async mutex,
//!   so a burst of calls after expiry makes exactly one refresh and the
//!   others wait for (and reuse) its access token.
//! - **Across processes** (concurrent Lambda instances, each with its own
//!   cache): the refresh token is always read past the caches
//!   ([`SecretStore::fetch_latest`], one store read per refresh, about once
//!   an hour per process), so a worker never starts from a token it cached
//!   before another worker rotated it. Two workers may still read the same
//!   token at the same moment; the first to
//!   refresh wins and the second gets `invalid_grant` (400 or 403). The loser
//!   then re-reads the secret bypassing every cache
//!   ([`SecretStore::fetch_latest`]; if it still holds the refused token, once
//!   more after 500 ms, the time the winner may need to store its rotation):
//!   if it holds a different token, the winner has written its rotation, and
//!   the loser retries **once** with it. If that is refused too and the store
//!   holds yet another token, workers are still racing: the call goes back to
//!   the queue (`oauth_refresh_contended`), not to the dead letters. The write itself is a compare-and-swap against the version that
//!   was read (strict for the local file within a process, best-effort for
//!   Secrets Manager: see [`crate::secrets::aws::AwsSecretStore`]); a conflict
//!   after a *successful* refresh means another writer stored a token
//!   concurrently (an operator's new login, or a token endpoint with a reuse
//!   grace period) — both are valid, ours was just issued, so it is written
//!   unconditionally and a warning logged.
//! - **Consent gone**: if the re-read token is the very one that was refused,
//!   no newer token exists anywhere: the
//!   consent expired (Atlassian drops refresh tokens after a period of
//!   inactivity) or was revoked. That is
//!   [`CallError::Permanent`] with reason `oauth_consent_required: …`, so the
//!   event dead-letters once with that reason (and the operator's dead-letter
//!   alarm fires) instead of every event retrying into a storm of refused
//!   refreshes. The refused token is remembered: while the store still holds
//!   it, later events dead-letter at once without asking the token endpoint
//!   again (one store read each), and a new login is picked up by the next
//!   event. Each occurrence counts the `OAuthConsentRequired` metric, which
//!   the template alarms on. The fix is `relay jira oauth login`, then a
//!   redrive.

use super::connector::{Budget, CallError};
use crate::outbound::connections::ConnectionAuth;
use crate::secrets::secret::{Secret, SecretRef};
use crate::secrets::store::{SecretError, SecretStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a competing worker may take to store its rotated token.
const WRITE_GRACE: Duration = Duration::from_millis(500);

struct State {
    access: Option<(Secret, Instant)>,
    /// A rotated refresh token the store has not accepted yet.
    unsaved: Option<Secret>,
    /// The refresh token the token endpoint refused for good (consent gone).
    /// While the store still holds it, calls fail at once without asking
    /// the token endpoint again: one refused refresh per process, not one
    /// per event.
    refused: Option<Secret>,
}

/// The refresher of one connection.
pub struct Oauth3lo {
    client_id: Option<SecretRef>,
    client_secret: Option<SecretRef>,
    refresh_token: Option<SecretRef>,
    token_url: Option<String>,
    state: Mutex<State>,
    refreshes: AtomicU64,
}

/// What the token endpoint said.
enum Refused {
    /// `invalid_grant`: this refresh token is used up, expired or revoked.
    InvalidGrant,
    Other(CallError),
}

#[derive(serde::Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Oauth3lo {
    pub fn new(config: &ConnectionAuth) -> Self {
        Self {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            refresh_token: config.refresh_token.clone(),
            token_url: config.token_url.clone(),
            state: Mutex::new(State {
                access: None,
                unsaved: None,
                refused: None,
            }),
            refreshes: AtomicU64::new(0),
        }
    }

    /// Successful refreshes (access tokens obtained) by this process.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    fn refresh_ref(&self) -> Result<&SecretRef, CallError> {
        self.refresh_token
            .as_ref()
            .ok_or_else(|| CallError::permanent("config_error: oauth_3lo needs `refresh_token`"))
    }

    async fn value(
        secrets: &dyn SecretStore,
        r: &Option<SecretRef>,
        what: &str,
    ) -> Result<Secret, CallError> {
        let r = r.as_ref().ok_or_else(|| {
            CallError::permanent(format!("config_error: oauth_3lo needs `{what}`"))
        })?;
        let v = secrets
            .fetch(&r.secret)
            .await
            .map_err(super::connector::secret_error)?;
        Ok(v.resolve(r)
            .map_err(super::connector::secret_error)?
            .current)
    }

    /// Writes a rotated refresh token back: CAS against `version`, and on a
    /// conflict unconditionally (see the module doc).
    async fn save(
        &self,
        secrets: &dyn SecretStore,
        token: &Secret,
        version: Option<&str>,
    ) -> Result<(), SecretError> {
        let r = self
            .refresh_token
            .as_ref()
            .expect("checked before any refresh");
        let key = r.key.as_deref().unwrap_or("refresh_token");
        match secrets.put(&r.secret, key, token.expose(), version).await {
            Err(SecretError::Conflict { .. }) => {
                tracing::warn!(
                    secret_id = %r.secret,
                    "the refresh-token secret changed while refreshing; writing the just-issued token over it"
                );
                secrets
                    .put(&r.secret, key, token.expose(), None)
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// A valid access token: cached, or by refresh. `fresh`: the target
    /// refused the cached one (401); refresh anyway.
    pub async fn access_token(
        &self,
        secrets: &dyn SecretStore,
        client: &reqwest::Client,
        fresh: bool,
        budget: &Budget,
    ) -> Result<Secret, CallError> {
        let mut st = self.state.lock().await;
        let rref = self.refresh_ref()?.clone();
        if let Some(pending) = st.unsaved.clone() {
            self.save(secrets, &pending, None)
                .await
                .map_err(not_saved)?;
            st.unsaved = None;
        }
        if fresh {
            st.access = None;
        }
        if let Some((token, until)) = &st.access {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let id = Self::value(secrets, &self.client_id, "client_id").await?;
        let secret = Self::value(secrets, &self.client_secret, "client_secret").await?;
        // The refresh token is read past every cache: a cached one may have
        // been used up by another worker already (one read per refresh).
        let versions = secrets
            .fetch_latest(&rref.secret)
            .await
            .map_err(super::connector::secret_error)?;
        let mut used = versions
            .resolve(&rref)
            .map_err(super::connector::secret_error)?
            .current;
        let mut version = versions.version.clone();
        if st.refused.as_ref() == Some(&used) {
            return Err(consent_required(&rref));
        }
        st.refused = None;
        let mut attempt = 0;
        let reply = loop {
            match self.exchange(client, &id, &secret, &used, budget).await {
                Ok(r) => break r,
                Err(Refused::Other(e)) => return Err(e),
                Err(Refused::InvalidGrant) => {}
            }
            // Another process may have rotated it a moment ago: re-read.
            let (newer, newer_version) = self.latest(secrets, &rref, &used, budget).await?;
            if newer == used {
                st.refused = Some(used);
                return Err(consent_required(&rref));
            }
            if attempt == 1 {
                return Err(CallError::retry(
                    "oauth_refresh_contended: the refresh token was rotated by other workers twice while this one refreshed; trying again later",
                ));
            }
            tracing::info!(
                secret_id = %rref.secret,
                "refresh token was rotated by another worker; retrying once with the stored one"
            );
            attempt += 1;
            used = newer;
            version = newer_version;
        };
        if let Some(rotated) = reply.refresh_token.filter(|t| t != used.expose()) {
            let rotated = Secret::new(rotated);
            if let Err(e) = self.save(secrets, &rotated, version.as_deref()).await {
                st.unsaved = Some(rotated);
                return Err(not_saved(e));
            }
        }
        let life = Duration::from_secs(reply.expires_in.unwrap_or(3600));
        let early = Duration::from_secs(60).min(life / 2);
        let token = Secret::new(reply.access_token);
        st.access = Some((token.clone(), Instant::now() + life - early));
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// The stored refresh token, bypassing caches. A worker that just won a
    /// refresh writes its new token a moment (one store round trip) after
    /// the token endpoint answered; if the store still holds the refused
    /// token, look once more after [`WRITE_GRACE`] before concluding that
    /// no newer token exists.
    async fn latest(
        &self,
        secrets: &dyn SecretStore,
        rref: &SecretRef,
        refused: &Secret,
        budget: &Budget,
    ) -> Result<(Secret, Option<String>), CallError> {
        let mut waited = false;
        loop {
            let v = secrets
                .fetch_latest(&rref.secret)
                .await
                .map_err(super::connector::secret_error)?;
            let t = v
                .resolve(rref)
                .map_err(super::connector::secret_error)?
                .current;
            if t != *refused || waited || budget.remaining() < WRITE_GRACE * 2 {
                return Ok((t, v.version.clone()));
            }
            tokio::time::sleep(WRITE_GRACE).await;
            waited = true;
        }
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        id: &Secret,
        secret: &Secret,
        refresh: &Secret,
        budget: &Budget,
    ) -> Result<TokenReply, Refused> {
        let url = self.token_url.as_deref().ok_or_else(|| {
            Refused::Other(CallError::permanent(
                "config_error: oauth_3lo needs `token_url`",
            ))
        })?;
        let timeout = budget
            .call_timeout(Duration::from_secs(10), Duration::from_millis(500))
            .ok_or_else(|| {
                Refused::Other(CallError::retry(
                    "deadline: no time left to refresh an OAuth token",
                ))
            })?;
        let resp = client
            .post(url)
            .timeout(timeout)
            .header(http::header::ACCEPT, "application/json")
            .json(&serde_json::json!({
                "grant_type": "refresh_token",
                "client_id": id.expose(),
                "client_secret": secret.expose(),
                "refresh_token": refresh.expose(),
            }))
            .send()
            .await
            .map_err(|e| {
                Refused::Other(CallError::retry(format!(
                    "oauth_unreachable: {}",
                    super::connector::describe(&e)
                )))
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = resp.bytes().await.unwrap_or_default();
            if is_invalid_grant(status, &body) {
                return Err(Refused::InvalidGrant);
            }
            // Never echo the body: some token endpoints repeat the request.
            return Err(Refused::Other(CallError::retry(format!(
                "oauth_token_refused: the token endpoint answered {status}"
            ))));
        }
        resp.json().await.map_err(|_| {
            Refused::Other(CallError::retry(
                "oauth_bad_reply: the token endpoint's answer has no access_token",
            ))
        })
    }
}

/// Atlassian answers a used, expired or revoked refresh token with 403 (and
/// RFC 6749 servers with 400) and `{"error":"invalid_grant"}`.
pub fn is_invalid_grant(status: u16, body: &[u8]) -> bool {
    (status == 400 || status == 403)
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .is_some_and(|e| e == "invalid_grant")
}

fn consent_required(r: &SecretRef) -> CallError {
    // The template's alarm on this metric names the fix; the dead letter
    // carries the same reason.
    crate::support::metrics::count("OAuthConsentRequired", &[]);
    tracing::error!(
        secret_id = %r.secret,
        reason = "oauth_consent_required",
        "Jira OAuth consent expired or was revoked: run `relay jira oauth login`"
    );
    CallError::permanent(format!(
        "oauth_consent_required: the refresh token in secret `{}` was refused (invalid_grant) and no newer one is stored; the consent expired or was revoked: run `relay jira oauth login` for this connection, then redrive the dead letters",
        r.secret
    ))
}

fn not_saved(e: SecretError) -> CallError {
    CallError::retry(format!(
        "oauth_token_not_saved: the rotated refresh token could not be written back ({}: {e}); it is kept in memory and written first on the next attempt",
        e.reason()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_is_400_or_403_with_that_error() {
        let body =
            br#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#;
        assert!(is_invalid_grant(403, body));
        assert!(is_invalid_grant(400, body));
        assert!(!is_invalid_grant(401, body));
        assert!(!is_invalid_grant(403, br#"{"error":"access_denied"}"#));
        assert!(!is_invalid_grant(403, b"forbidden"));
    }
}
