//! `relay jira oauth login`: the one-time consent flow of an Atlassian OAuth
//! 2.0 (3LO) app for a connection with auth kind `oauth_3lo`.
//!
//! 1. Prints the authorize URL (`https://auth.atlassian.com/authorize?
//!    audience=api.atlassian.com&client_id=…&scope=…&redirect_uri=…&state=…
//!    &response_type=code&prompt=consent`) with the connection's `scopes`
//!    (default `read:jira-work write:jira-work`) plus `offline_access`,
//!    always, since without it there is no refresh token. The browser is
//!    opened unless `--no-browser`.
//! 2. Listens on `127.0.0.1:PORT` (default 8765; the redirect URI
//!    `http://127.0.0.1:PORT/callback` must be registered in the app) for
//!    the redirect, and checks its `state` (a random value; a callback with
//!    another state is refused and the wait goes on). Gives up after 5 min.
//! 3. Exchanges the code at the connection's `token_url`.
//! 4. Finds the site's cloud id at
//!    `https://api.atlassian.com/oauth/token/accessible-resources`.
//! 5. Writes the refresh token into the connection's secret (the key named
//!    by `auth.refresh_token`) with [`SecretStore::put`]; `client_id` and
//!    `client_secret` must already be there. Prints the cloud id and the
//!    base URL for the config, `https://api.atlassian.com/ex/jira/<cloudid>`.
//!
//! For a local token endpoint (a loopback `http://` `token_url`, i.e. the
//! sandbox in tests), the authorize URL, the accessible-resources endpoint
//! and the API gateway are taken from the same host instead of Atlassian's.

use serde_json::Value;
use shared::config::Config;
use shared::outbound::connections::{AuthKind, ConnectionKind};
use shared::secrets::secret::SecretRef;
use shared::secrets::SecretStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const AUTHORIZE: &str = "https://auth.atlassian.com/authorize";
const RESOURCES: &str = "https://api.atlassian.com/oauth/token/accessible-resources";
const GATEWAY: &str = "https://api.atlassian.com/ex/jira";
const DEFAULT_SCOPES: &[&str] = &["read:jira-work", "write:jira-work"];
const WAIT: Duration = Duration::from_secs(300);

pub struct Login {
    pub connection: String,
    pub port: u16,
    pub open_browser: bool,
}

/// Where the Atlassian endpoints are: Atlassian's, or (loopback token URL)
/// the local server's.
struct Endpoints {
    authorize: String,
    resources: String,
    gateway: String,
}

fn endpoints(token_url: &str) -> Endpoints {
    let local = reqwest::Url::parse(token_url).ok().filter(|u| {
        u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
    });
    match local {
        Some(u) => {
            let origin = u.origin().ascii_serialization();
            Endpoints {
                authorize: format!("{origin}/authorize"),
                resources: format!("{origin}/oauth/token/accessible-resources"),
                gateway: format!("{origin}/ex/jira"),
            }
        }
        None => Endpoints {
            authorize: AUTHORIZE.to_owned(),
            resources: RESOURCES.to_owned(),
            gateway: GATEWAY.to_owned(),
        },
    }
}

async fn value(
    store: &dyn SecretStore,
    r: &Option<SecretRef>,
    what: &str,
) -> Result<String, String> {
    let r = r
        .as_ref()
        .ok_or_else(|| format!("the connection's auth has no `{what}`"))?;
    let v = store
        .fetch(&r.secret)
        .await
        .and_then(|v| v.resolve(r))
        .map_err(|e| format!("{e} (store `{what}` there before logging in)"))?;
    Ok(v.current.expose().to_owned())
}

fn print(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the flow; returns the closing report.
pub async fn run(
    config: &Config,
    store: Arc<dyn SecretStore>,
    opts: &Login,
) -> Result<String, String> {
    let c = config
        .connection(&opts.connection)
        .ok_or_else(|| format!("the config has no connection `{}`", opts.connection))?;
    if c.kind != ConnectionKind::Jira || c.auth.kind != AuthKind::Oauth3lo {
        return Err(format!(
            "connection `{}` is not a jira connection with auth kind `oauth_3lo`",
            opts.connection
        ));
    }
    let token_url = c
        .auth
        .token_url
        .clone()
        .ok_or("the connection's auth has no `token_url`")?;
    let refresh_ref = c
        .auth
        .refresh_token
        .clone()
        .ok_or("the connection's auth has no `refresh_token`")?;
    let refresh_key = refresh_ref
        .key
        .clone()
        .ok_or("`refresh_token` must name a key (`secret-id#refresh_token`)")?;
    let client_id = value(&*store, &c.auth.client_id, "client_id").await?;
    let client_secret = value(&*store, &c.auth.client_secret, "client_secret").await?;
    let ends = endpoints(&token_url);

    let mut scopes: Vec<String> = match &c.auth.scopes {
        Some(s) => s.clone(),
        None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    if !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".to_owned());
    }

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let state = shared::support::random::hex(16);
    let mut authorize = reqwest::Url::parse(&ends.authorize).map_err(|e| e.to_string())?;
    authorize
        .query_pairs_mut()
        .append_pair("audience", "api.atlassian.com")
        .append_pair("client_id", &client_id)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("state", &state)
        .append_pair("response_type", "code")
        .append_pair("prompt", "consent");
    print("Open this URL in a browser, sign in and grant access:");
    print(authorize.as_str());
    print(&format!("Waiting for the redirect to {redirect_uri} …"));
    if opts.open_browser {
        open_browser(authorize.as_str());
    }

    let code = wait_for_code(listener, state).await?;

    let http = shared::outbound::rest::http_client();
    let reply = http
        .post(&token_url)
        .timeout(Duration::from_secs(30))
        .json(&serde_json::json!({
            "grant_type": "authorization_code",
            "client_id": client_id,
            "client_secret": client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
        }))
        .send()
        .await
        .map_err(|e| format!("the token endpoint could not be reached: {e}"))?;
    let status = reply.status();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let err = body["error"].as_str().unwrap_or("no error code");
        return Err(format!(
            "the token endpoint refused the authorization code ({status}, {err})"
        ));
    }
    let access = body["access_token"]
        .as_str()
        .ok_or("the token endpoint's answer has no access_token")?;
    let refresh = body["refresh_token"].as_str().ok_or(
        "the token endpoint's answer has no refresh_token (is `offline_access` enabled for the app?)",
    )?;

    let sites: Value = http
        .get(&ends.resources)
        .bearer_auth(access)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("accessible-resources could not be reached: {e}"))?
        .json()
        .await
        .map_err(|e| format!("accessible-resources answered no JSON: {e}"))?;
    let sites: Vec<(String, String)> = sites
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["id"].as_str()?.to_owned(), s["url"].as_str()?.to_owned())))
        .collect();

    // Store the refresh token before anything else can go wrong.
    store
        .put(&refresh_ref.secret, &refresh_key, refresh, None)
        .await
        .map_err(|e| format!("the refresh token could not be stored: {e}"))?;

    let mut report = format!(
        "Stored the refresh token in secret `{}` (key `{refresh_key}`).\n",
        refresh_ref.secret
    );
    // The site: the one the base URL names, else the only one.
    let chosen = sites
        .iter()
        .find(|(id, _)| c.base_url.ends_with(&format!("/ex/jira/{id}")))
        .or(if sites.len() == 1 {
            sites.first()
        } else {
            None
        });
    match chosen {
        Some((id, url)) => {
            let base = format!("{}/{id}", ends.gateway);
            report.push_str(&format!("Site: {url}\nCloud id: {id}\n"));
            if c.base_url == base {
                report.push_str(&format!("base_url is already {base}\n"));
            } else {
                report.push_str(&format!("Set the connection's base_url to: {base}\n"));
            }
        }
        None if sites.is_empty() => {
            report.push_str("The grant gives access to no site: check the app's scopes.\n");
        }
        None => {
            report.push_str("The grant covers several sites; set base_url to the one to use:\n");
            for (id, url) in &sites {
                report.push_str(&format!("  {url}: {}/{id}\n", ends.gateway));
            }
        }
    }
    Ok(report)
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Serves `/callback` until a request with the right `state` brings a code
/// (or an `error`), or the wait runs out.
async fn wait_for_code(listener: tokio::net::TcpListener, state: String) -> Result<String, String> {
    type Sender = tokio::sync::mpsc::Sender<Result<String, String>>;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, String>>(1);
    let expected = Arc::new(state);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
                let tx: Sender = tx.clone();
                let expected = expected.clone();
                async move {
                    if q.get("state").map(String::as_str) != Some(expected.as_str()) {
                        return (
                            http::StatusCode::BAD_REQUEST,
                            "This callback does not belong to the running login (state mismatch).",
                        );
                    }
                    if let Some(e) = q.get("error") {
                        let _ = tx.send(Err(format!("consent was not given: {e}"))).await;
                        return (
                            http::StatusCode::OK,
                            "Consent was not given. You can close this tab.",
                        );
                    }
                    match q.get("code") {
                        Some(code) => {
                            let _ = tx.send(Ok(code.clone())).await;
                            (
                                http::StatusCode::OK,
                                "jira-relay is connected. You can close this tab.",
                            )
                        }
                        None => (http::StatusCode::BAD_REQUEST, "No code in the callback."),
                    }
                }
            },
        ),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let got = tokio::time::timeout(WAIT, rx.recv()).await;
    // Let the browser get its answer before the listener goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    match got {
        Ok(Some(r)) => r,
        Ok(None) => Err("the callback listener stopped".to_owned()),
        Err(_) => Err(format!(
            "no redirect arrived within {} minutes",
            WAIT.as_secs() / 60
        )),
    }
}

/// The store the refresh token goes to: the local file (or `RELAY_SECRET_*`
/// variables, which are read-only), or Secrets Manager (feature `aws`).
pub async fn open_store(
    file: Option<&std::path::Path>,
    secrets_manager: bool,
) -> Result<Arc<dyn SecretStore>, String> {
    if secrets_manager {
        #[cfg(feature = "aws")]
        {
            let conf = shared::support::aws::defaults().load().await;
            return Ok(Arc::new(shared::secrets::AwsSecretStore::from_conf(&conf)));
        }
        #[cfg(not(feature = "aws"))]
        return Err("--secrets-manager needs a relay built with the `aws` feature".to_owned());
    }
    Ok(Arc::new(crate::serve::open_secrets(file)?))
}
