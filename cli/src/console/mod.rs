//! The operator console of `relay serve`: its own listener (default
//! `127.0.0.1:8081`, never the webhook port), the admin credential from the
//! secrets file, and these pages:
//!
//! - `/feed` — the message feed from the delivery journal, newest first,
//!   live, filtered by record, endpoint, event, outcome and time;
//!   `/delivery/{id}` — one attempt: envelope head, rules, calls, outcome.
//! - `/conversation/{key}` — every event about a record pair, both directions.
//! - `/dead` — dead letters: list, show, redrive one or all.
//! - `/queue` — queue depth and age, worker loops, connections, sweeps.
//! - `/config` — the loaded config and a dry-run box.
//! - `/metrics` (Prometheus; session or HTTP Basic) and `/health` (open).
//!
//! Every form that changes something carries the session's CSRF token.

pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod logs;
pub mod pages;
pub mod source;

use auth::{Credential, Sessions};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use shared::config::{Config, SourceKind};
use shared::journal::sqlite::FeedQuery;
use shared::outbound::connections::ConnectionKind;
use shared::support::prometheus::Registry;
use std::sync::Arc;

/// What the console reads and acts on.
pub struct Console {
    pub config: Arc<Config>,
    pub config_path: String,
    pub config_text: String,
    pub queues: Arc<dyn source::Queues>,
    /// The message feed (the delivery journal, or a stack's logs).
    pub feed: Option<Arc<dyn source::Deliveries>>,
    /// The link store, for the record pairs the conversation view shows.
    pub links: Option<shared::links::Links>,
    /// Why there is no feed, when `feed` is `None`.
    pub no_feed: String,
    /// `relay serve`'s registry; `None` where the metrics are CloudWatch's.
    pub registry: Option<Arc<Registry>>,
    pub stage: String,
    pub sweeps: crate::reconcile::SweepBoard,
    /// The webhook listener's refusals (`relay serve`); `None` for a stack.
    pub refusals: Option<crate::listener::Refusals>,
    pub credential: Credential,
    pub sessions: Sessions,
}

type St = State<Arc<Console>>;

pub fn router(c: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/feed") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/feed", get(feed))
        .route("/api/feed", get(api_feed))
        .route("/delivery/{id}", get(delivery))
        .route("/conversation/{key}", get(conversation))
        .route("/dead", get(dead_list))
        .route("/dead/{id}", get(dead_one))
        .route("/dead/redrive", post(redrive))
        .route("/queue", get(queue))
        .route("/config", get(config))
        .route("/config/dry-run", post(dry_run))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css", pages::CSS) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript", pages::JS) }),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(c)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        h.insert(k, header::HeaderValue::from_static(v));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    r
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The session's CSRF token, or the answer for a request without a session
/// (a page → the login form; an API call → 401).
fn session(c: &Console, headers: &HeaderMap, api: bool) -> Result<String, Box<Response>> {
    match c.sessions.csrf_of(headers) {
        Some(t) => Ok(t),
        None if api => Err(Box::new(
            (StatusCode::UNAUTHORIZED, "log in first\n").into_response(),
        )),
        None => Err(Box::new(Redirect::to("/login").into_response())),
    }
}

/// A form that changes something: a live session and its CSRF token, else 403.
fn checked(c: &Console, headers: &HeaderMap, token: &str) -> Result<String, Box<Response>> {
    let Some(t) = c.sessions.csrf_of(headers) else {
        return Err(Box::new(refused("no session")));
    };
    if auth::same_token(&t, token) {
        Ok(t)
    } else {
        Err(Box::new(refused("missing or wrong CSRF token")))
    }
}

fn refused(why: &str) -> Response {
    tracing::warn!(status = 403, reason = why, "console action refused");
    html(
        StatusCode::FORBIDDEN,
        pages::layout(
            "Refused",
            "",
            None,
            &format!(
                "<h1>403 — refused</h1><p>{}: reload the page and try again.</p>",
                pages::esc(why)
            ),
        ),
    )
}

async fn login_form(State(c): St, headers: HeaderMap) -> Response {
    if c.sessions.csrf_of(&headers).is_some() {
        return Redirect::to("/feed").into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let token = shared::support::random::hex(16);
    let mut r = html(status, pages::login(error, &token));
    if let Ok(v) = auth::set_cookie(auth::LOGIN_COOKIE, &token, Some(600)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(State(c): St, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let expected = auth::cookie(&headers, auth::LOGIN_COOKIE).unwrap_or_default();
    if !auth::same_token(&expected, &f.csrf) {
        return refused("the login form expired (CSRF token)");
    }
    if !c.credential.matches(&f.username, &f.password) {
        tracing::warn!(
            status = 401,
            reason = "bad_credentials",
            "console login refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return login_page(StatusCode::UNAUTHORIZED, Some("Wrong user or password."));
    }
    let (id, _) = c.sessions.open();
    tracing::info!(user = %f.username, "console login");
    let mut r = Redirect::to("/feed").into_response();
    for v in [
        auth::set_cookie(auth::SESSION_COOKIE, &id, None),
        auth::set_cookie(auth::LOGIN_COOKIE, "", Some(0)),
    ] {
        if let Ok(v) = v.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(c): St, headers: HeaderMap, Form(f): Form<TokenForm>) -> Response {
    if let Err(r) = checked(&c, &headers, &f.csrf) {
        return *r;
    }
    c.sessions.close(&headers);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = auth::set_cookie(auth::SESSION_COOKIE, "", Some(0)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize, Default)]
struct FeedParams {
    #[serde(default)]
    key: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    after: Option<i64>,
}

/// `2026-12-05T10:30` (a `datetime-local` field, read as UTC) to ms.
fn local_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let with_secs = if s.len() == 16 {
        format!("{s}:00")
    } else {
        s.to_owned()
    };
    format!("{with_secs}Z")
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

impl FeedParams {
    fn query(&self, limit: usize) -> FeedQuery {
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        FeedQuery {
            key: opt(&self.key),
            endpoint: opt(&self.endpoint),
            event: opt(&self.event),
            outcome: opt(&self.outcome),
            since_ms: local_ms(&self.since),
            until_ms: local_ms(&self.until),
            after_id: self.after,
            limit,
        }
    }
}

async fn feed(State(c): St, headers: HeaderMap, Query(p): Query<FeedParams>) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let (rows, choices, note) = match &c.feed {
        Some(j) => {
            let rows = j.feed(p.query(200)).await;
            let choices = j.choices().await;
            match rows {
                Ok(r) => {
                    let note = format!(
                        "{} shown (at most 200); new rows appear as they happen.",
                        r.len()
                    );
                    (r, choices, note)
                }
                Err(e) => (Vec::new(), choices, e),
            }
        }
        None => (Vec::new(), Default::default(), c.no_feed.clone()),
    };
    let f = pages::FeedFilters {
        key: p.key,
        endpoint: p.endpoint,
        event: p.event,
        outcome: p.outcome,
        since: p.since,
        until: p.until,
    };
    html(
        StatusCode::OK,
        pages::feed(&rows, &f, &choices, &csrf, &note),
    )
}

async fn api_feed(State(c): St, headers: HeaderMap, Query(p): Query<FeedParams>) -> Response {
    if let Err(r) = session(&c, &headers, true) {
        return *r;
    }
    let Some(j) = &c.feed else {
        return axum::Json(Vec::<shared::journal::Delivery>::new()).into_response();
    };
    match j.feed(p.query(200)).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

fn not_found(csrf: &str, what: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::layout(
            "Not found",
            "",
            Some(csrf),
            &format!("<h1>Not found</h1><p>{}</p>", pages::esc(what)),
        ),
    )
}

async fn delivery(State(c): St, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let found = match &c.feed {
        Some(j) => j.get(id).await.ok().flatten(),
        None => None,
    };
    match found {
        Some(d) => {
            let still_dead =
                d.dead_lettered && matches!(c.queues.dead_get(&d.message_id).await, Ok(Some(_)));
            html(StatusCode::OK, pages::delivery(&d, still_dead, &csrf))
        }
        None => not_found(&csrf, &format!("No delivery {id} in the journal.")),
    }
}

/// Where a record can be opened: a Jira key under the first Jira
/// connection's site, a ServiceNow number through the instance's search.
fn record_url(config: &Config, key: &str) -> Option<String> {
    let looks_jira = key.split_once('-').is_some_and(|(p, n)| {
        !p.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty()
    });
    let kind = if looks_jira {
        ConnectionKind::Jira
    } else {
        ConnectionKind::Servicenow
    };
    let base = &config.connections.iter().find(|c| c.kind == kind)?.base_url;
    Some(if looks_jira {
        format!("{base}/browse/{}", pages::enc(key))
    } else {
        format!(
            "{base}/text_search_exact_match.do?sysparm_search={}",
            pages::enc(key)
        )
    })
}

async fn conversation(State(c): St, headers: HeaderMap, Path(key): Path<String>) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let Some(j) = &c.feed else {
        return not_found(&csrf, &c.no_feed);
    };
    let (keys, rows) = match j.conversation(key.clone()).await {
        Ok(v) => v,
        Err(e) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::layout("Journal", "feed", Some(&csrf), &pages::esc(&e)),
            )
        }
    };
    let records: Vec<(String, Option<String>)> = keys
        .into_iter()
        .map(|k| {
            let url = record_url(&c.config, &k);
            (k, url)
        })
        .collect();
    let pairs = match &c.links {
        Some(l) => stored_pairs(&c.config, l, &records).await,
        None => vec!["No link store is read here (relay console --aws: --links-table).".to_owned()],
    };
    let config = c.config.clone();
    let kinds = move |endpoint: &str| -> &'static str {
        match config
            .endpoints
            .iter()
            .find(|e| e.name == endpoint)
            .map(|e| e.kind)
        {
            Some(SourceKind::Jira) => "from Jira",
            Some(SourceKind::Servicenow) => "from ServiceNow",
            None => "",
        }
    };
    html(
        StatusCode::OK,
        pages::conversation(&key, &records, &pairs, &rows, &kinds, &csrf),
    )
}

/// The (connection, field) scopes the config's rules pair records under:
/// each rule's `correlate` (not a Jira key, which is the record itself) and
/// each `pair_back`.
fn pair_scopes(config: &Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &config.rules {
        let kind = config
            .connections
            .iter()
            .find(|c| c.name == r.to)
            .map(|c| c.kind);
        if let Some(c) = &r.correlate {
            let pairs = match kind {
                Some(ConnectionKind::Servicenow) => true,
                Some(ConnectionKind::Jira) => c.field != "key",
                _ => false,
            };
            if pairs {
                out.push((r.to.clone(), c.field.clone()));
            }
        }
        if let Some(pb) = &r.pair_back {
            out.push((pb.connection.clone(), pb.field.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What the link store holds for the pair's keys, one line each.
async fn stored_pairs(
    config: &Config,
    links: &shared::links::Links,
    records: &[(String, Option<String>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, _) in records {
        for (conn, field) in pair_scopes(config) {
            let scope = shared::links::store::Scope::new(&conn, &field, key);
            match links.record(&scope).await {
                Ok(Some(p)) => out.push(format!(
                    "{conn}: {field} = {key} → {}{}",
                    p.key.as_deref().unwrap_or("?"),
                    p.id.map(|i| format!(" (id {i})")).unwrap_or_default()
                )),
                Ok(None) => {}
                Err(e) => out.push(format!(
                    "{conn}: {field} = {key}: the link store cannot be read: {e}"
                )),
            }
        }
    }
    if out.is_empty() {
        out.push("The link store holds no pairing for these records.".into());
    }
    out
}

#[derive(Deserialize, Default)]
struct DeadParams {
    #[serde(default)]
    result: String,
}

async fn dead_list(State(c): St, headers: HeaderMap, Query(p): Query<DeadParams>) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match c.queues.dead_list(500).await {
        Ok(list) => html(StatusCode::OK, pages::dead_list(&list, &p.result, &csrf)),
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::layout(
                "Dead letters",
                "dead",
                Some(&csrf),
                &format!(
                    "<p class=\"error\">The dead-letter table cannot be read: {}</p>",
                    pages::esc(&e)
                ),
            ),
        ),
    }
}

async fn dead_one(State(c): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match c.queues.dead_get(&id).await {
        Ok(Some(d)) => html(StatusCode::OK, pages::dead_one(&d, &csrf)),
        Ok(None) => not_found(&csrf, &format!("No dead letter {id} (redriven already?).")),
        Err(e) => not_found(&csrf, &e),
    }
}

#[derive(Deserialize)]
struct RedriveForm {
    #[serde(default)]
    csrf: String,
    id: Option<String>,
}

async fn redrive(State(c): St, headers: HeaderMap, Form(f): Form<RedriveForm>) -> Response {
    if let Err(r) = checked(&c, &headers, &f.csrf) {
        return *r;
    }
    let id = f.id.filter(|i| !i.is_empty());
    let result = match c.queues.redrive(id.as_deref()).await {
        Ok(n) => {
            tracing::info!(
                redriven = n,
                id = id.as_deref().unwrap_or("all"),
                "console redrive"
            );
            match (&id, n) {
                (Some(i), 1) => format!("Redriven: {i} is back in the queue."),
                (Some(i), _) => format!("{i} is not in the dead-letter table (redriven already?)."),
                (None, n) => format!("Redriven: {n} message(s) are back in the queue."),
            }
        }
        Err(e) => format!("Redrive failed: {e}"),
    };
    Redirect::to(&format!("/dead?result={}", pages::enc(&result))).into_response()
}

async fn queue(State(c): St, headers: HeaderMap) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let stats = c.queues.stats().await;
    let health = c.queues.health().await;
    let connections = c.feed.as_ref().map(|f| f.connections()).unwrap_or_default();
    let sweeps = c.sweeps.list();
    let journal = match &c.feed {
        Some(f) => f.describe().await,
        None => c.no_feed.clone(),
    };
    let v = pages::QueueView {
        queue: c.queues.describe(),
        stats: stats.as_ref().map_err(String::as_str),
        health,
        workers: c.queues.workers(),
        connections: &connections,
        sweeps: &sweeps,
        journal,
        refusals: c.refusals.as_ref().map(|r| r.list()),
    };
    html(StatusCode::OK, pages::queue(&v, &csrf))
}

async fn config(State(c): St, headers: HeaderMap) -> Response {
    let csrf = match session(&c, &headers, false) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    config_page(&c, &csrf, "", "", None)
}

fn config_page(
    c: &Console,
    csrf: &str,
    payload: &str,
    endpoint: &str,
    out: Option<&Result<String, String>>,
) -> Response {
    let endpoints: Vec<String> = c.config.endpoints.iter().map(|e| e.name.clone()).collect();
    html(
        StatusCode::OK,
        pages::config(
            &c.config_path,
            &c.config_text,
            &endpoints,
            payload,
            endpoint,
            out,
            csrf,
        ),
    )
}

#[derive(Deserialize)]
struct DryRunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    payload: String,
}

async fn dry_run(State(c): St, headers: HeaderMap, Form(f): Form<DryRunForm>) -> Response {
    let csrf = match checked(&c, &headers, &f.csrf) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let out = serde_json::from_str::<serde_json::Value>(&f.payload)
        .map_err(|e| format!("the payload is not JSON: {e}"))
        .and_then(|p| crate::commands::dry_run::plan_text(&c.config, Some(f.endpoint.clone()), &p));
    config_page(&c, &csrf, &f.payload, &f.endpoint, Some(&out))
}

async fn metrics(State(c): St, headers: HeaderMap) -> Response {
    if c.sessions.csrf_of(&headers).is_none() && !auth::basic_ok(&headers, &c.credential) {
        tracing::warn!(
            status = 401,
            reason = "bad_credentials",
            "metrics scrape refused"
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"jira-relay\"")],
            "the admin credential is needed (session or HTTP Basic)\n",
        )
            .into_response();
    }
    let Some(r) = &c.registry else {
        return (
            StatusCode::NOT_FOUND,
            "the metrics of a deployed stack are CloudWatch's (the names of relay serve's /metrics)\n",
        )
            .into_response();
    };
    if let Ok(s) = c.queues.stats().await {
        r.set_gauge(&c.stage, "QueueDepth", (s.visible + s.delayed) as f64);
        r.set_gauge(&c.stage, "QueueInFlight", s.in_flight as f64);
        r.set_gauge(
            &c.stage,
            "QueueOldestAge",
            s.oldest_age.map(|a| a.as_secs_f64()).unwrap_or(0.0),
        );
        r.set_gauge(&c.stage, "DeadLetters", s.dead as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            shared::support::prometheus::CONTENT_TYPE,
        )],
        r.render(),
    )
        .into_response()
}

async fn health(State(c): St) -> Response {
    crate::serve::health_answer(c.queues.health().await)
}
