//! The operator console of `relay serve` over HTTP: who is let in and who
//! is refused, `/metrics` against the one metric list, `/health` when the
//! queue cannot be written, and the console being off without a credential.
//! (The browser test drives the same pages in Chromium: `console_browser`.)

use crate::common::{free_port, repo, ConsoleSession, Serve};
use sandbox::jira_server::{DEFAULT_API_TOKEN as JIRA_TOKEN, DEFAULT_EMAIL as JIRA_EMAIL};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use shared::support::metrics::{prometheus_name, Unit, GAUGES, METRICS};
use std::path::Path;
use std::time::{Duration, Instant};

pub const CONSOLE_PASSWORD: &str = "console-test-password";

/// `relay.yaml` (the Jira → ServiceNow example on `sn`) and a secrets file,
/// with the console credential when `console` is set.
pub fn write_setup(dir: &Path, sn: &ServiceNowServer, console: bool) {
    let config = std::fs::read_to_string(repo().join("examples/jira-to-servicenow.yaml"))
        .unwrap()
        .replace("https://example.service-now.com", &sn.base_url());
    std::fs::write(dir.join("relay.yaml"), config).unwrap();
    let console = if console {
        format!("  relay/console:\n    password: {CONSOLE_PASSWORD}\n")
    } else {
        String::new()
    };
    let secrets = format!(
        "secrets:\n{console}  relay/webhook:\n    token: console-test-token\n    hmac: console-test-hmac\n  relay/servicenow:\n    username: {DEFAULT_USER}\n    password: {DEFAULT_PASSWORD}\n  relay/jira:\n    email: {JIRA_EMAIL}\n    api_token: {JIRA_TOKEN}\n"
    );
    let path = dir.join("secrets.yaml");
    std::fs::write(&path, secrets).unwrap();
    crate::common::chmod(&path, 0o600);
}

/// The demo's first webhook (issue created) to the relay.
pub async fn post_demo_event(base: &str, file: &str, delivery: &str) -> u16 {
    let body = std::fs::read_to_string(repo().join("examples/demo").join(file)).unwrap();
    reqwest::Client::new()
        .post(format!("{base}/webhooks/jira?token=console-test-token"))
        .header("content-type", "application/json")
        .header("x-atlassian-webhook-identifier", delivery)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The console's `/metrics`, scraped with HTTP Basic and the admin credential.
pub async fn scrape(console_base: &str) -> String {
    reqwest::Client::new()
        .get(format!("{console_base}/metrics"))
        .basic_auth("admin", Some(CONSOLE_PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `check` every 100 ms until it holds; fails the test after `limit`.
pub(crate) async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_strangers_and_tells_the_truth() {
    // given: relay serve with the console on its own port
    let sn = ServiceNowServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &sn, true);
    let console_port = free_port();
    let console = format!("127.0.0.1:{console_port}");
    let mut serve = Serve::spawn_with(
        dir.path(),
        free_port(),
        &["--workers", "2", "--console", &console],
    );
    serve.ready().await;
    let base = format!("http://{console}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // when: a wrong password, no session, a scraper without or with a wrong credential
    // then: 401 (or the login form)
    assert_eq!(
        ConsoleSession::login(&base, "admin", "wrong").await.err(),
        Some(401)
    );
    assert_eq!(
        ConsoleSession::login(&base, "root", CONSOLE_PASSWORD)
            .await
            .err(),
        Some(401)
    );
    let feed = http.get(format!("{base}/feed")).send().await.unwrap();
    assert_eq!(feed.status(), 303);
    assert_eq!(feed.headers()["location"], "/login");
    let api = http.get(format!("{base}/api/feed")).send().await.unwrap();
    assert_eq!(api.status(), 401);
    let m = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 401);
    let m = http
        .get(format!("{base}/metrics"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 401);
    // A login form post without its token is refused too.
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", "admin"), ("password", CONSOLE_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // when: logged in, actions without the CSRF token or with another one
    let s = ConsoleSession::login(&base, "admin", CONSOLE_PASSWORD)
        .await
        .unwrap();
    // then: 403, and nothing happens
    assert_eq!(s.post("/dead/redrive", &[]).await.0, 403);
    assert_eq!(s.post("/dead/redrive", &[("csrf", "0000")]).await.0, 403);
    assert_eq!(s.post("/config/dry-run", &[("payload", "{}")]).await.0, 403);
    assert_eq!(s.post("/logout", &[]).await.0, 403);
    // A token from another session does not pass either.
    let other = ConsoleSession::login(&base, "admin", CONSOLE_PASSWORD)
        .await
        .unwrap();
    assert_ne!(other.csrf, s.csrf);
    assert_eq!(
        s.post("/dead/redrive", &[("csrf", other.csrf.as_str())])
            .await
            .0,
        403
    );
    // With the token it is done.
    let (status, loc) = s.post("/dead/redrive", &[("csrf", s.csrf.as_str())]).await;
    assert_eq!(
        (status, loc.as_str()),
        (
            303,
            "/dead?result=Redriven%3A+0+message%28s%29+are+back+in+the+queue."
        )
    );

    // The console is not on the webhook port.
    for path in ["/feed", "/login", "/metrics", "/dead", "/assets/console.js"] {
        let r = http
            .get(format!("{}{path}", serve.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} on the webhook port");
    }

    // when: webhooks are handled, ServiceNow refusing the first create once (429)
    sn.faults().push(
        sandbox::faults::Match::method_path(http::Method::POST, "/api/now/table/incident"),
        sandbox::faults::Fault::rate_limited(0),
        1,
    );
    assert_eq!(
        post_demo_event(&serve.base, "1-issue-created.json", "c-1").await,
        202
    );
    assert_eq!(
        post_demo_event(&serve.base, "3-comment-created.json", "c-2").await,
        202
    );
    until(
        "two deliveries in the feed",
        Duration::from_secs(20),
        async || s.get("/feed").await.1.matches("<tr data-id=").count() == 2,
    )
    .await;
    // then: /metrics lists every metric of the one list, with the counts
    let text = scrape(&base).await;
    for d in METRICS {
        let n = prometheus_name(d);
        let want = match d.unit {
            Unit::Count => format!("# TYPE {n}_total counter"),
            _ => format!("# TYPE {n} histogram"),
        };
        assert!(text.contains(&want), "{want} missing:\n{text}");
    }
    for d in GAUGES {
        assert!(
            text.contains(&format!("# TYPE {} gauge", prometheus_name(d))),
            "{} missing",
            d.name
        );
    }
    for line in [
        "relay_received_total{stage=\"local\"} 2",
        "relay_enqueued_total{stage=\"local\"} 2",
        "relay_applied_total{stage=\"local\",connection=\"servicenow\",action=\"create\"} 1",
        "relay_applied_total{stage=\"local\",connection=\"servicenow\",action=\"comment\"} 1",
        "relay_handler_latency_seconds_count{stage=\"local\",function=\"worker\"} 2",
        "relay_queue_depth{stage=\"local\"} 0",
        "relay_dead_letters{stage=\"local\"} 0",
        // The refusal cut the connection's adaptive concurrency limit.
        "relay_concurrency_cut_total{stage=\"local\",connection=\"servicenow\",reason=\"refused\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // A logged-in session may read /metrics too.
    assert_eq!(s.get("/metrics").await.0, 200);

    // when: the queue database cannot be written (another process holds its write lock)
    assert_eq!(s.get("/health").await.0, 200);
    let db = rusqlite::Connection::open(dir.path().join("data/queue.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // then: both ports' /health answer 503 with the reason
    for at in [base.as_str(), serve.base.as_str()] {
        let r = http.get(format!("{at}/health")).send().await.unwrap();
        assert_eq!(r.status(), 503, "{at}");
        let body = r.text().await.unwrap();
        assert!(body.contains("queue_unwritable"), "{body}");
    }
    assert!(s
        .get("/queue")
        .await
        .1
        .contains("unhealthy: queue_unwritable"));
    db.execute_batch("ROLLBACK").unwrap();
    let r = http
        .get(format!("{}/health", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_no_console() {
    // given: a secrets file without `relay/console`
    let sn = ServiceNowServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &sn, false);
    let console_port = free_port();
    // when
    let mut serve = Serve::spawn_logged(
        dir.path(),
        free_port(),
        &["--console", &format!("127.0.0.1:{console_port}")],
        "info",
    );
    serve.ready().await;
    // then: nothing listens there, and the banner says why
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{console_port}/login"))
        .send()
        .await;
    assert!(r.is_err(), "something answered on the console port: {r:?}");
    let output = serve.stop().await;
    assert!(
        output.contains("operator console off: no admin credential (add `relay/console: { password: … }` to the secrets file)"),
        "{output}"
    );
}

#[tokio::test]
async fn a_delete_past_the_cap_is_counted_on_metrics() {
    // given: relay serve with a Jira issue_deleted -> incident delete rule, at most
    // one delete a minute through the ServiceNow connection, and two paired incidents
    let sn = ServiceNowServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &sn, true);
    let file = dir.path().join("relay.yaml");
    let config = std::fs::read_to_string(&file).unwrap().replacen(
        "    table: incident\n",
        "    table: incident\n    deletes_per_minute: 1\n",
        1,
    );
    let config = format!(
        "{config}\n  - name: delete incident\n    from: jira\n    when:\n      events: [jira:issue_deleted]\n    to: servicenow\n    action: delete\n    correlate: {{ key: issue.key }}\n"
    );
    std::fs::write(&file, config).unwrap();
    for key in ["SUP-801", "SUP-802"] {
        sn.seed(
            "incident",
            serde_json::json!({"short_description": key, "correlation_id": key}),
        );
    }
    let console = format!("127.0.0.1:{}", free_port());
    let mut serve = Serve::spawn_with(
        dir.path(),
        free_port(),
        &["--workers", "1", "--console", &console],
    );
    serve.ready().await;
    // when: both issues are deleted in Jira within the minute
    for (i, key) in ["SUP-801", "SUP-802"].iter().enumerate() {
        let body = serde_json::json!({"webhookEvent": "jira:issue_deleted", "timestamp": 1765004400000u64 + i as u64,
            "user": {"accountId": "5b10a2844c20165700ede21g"},
            "issue": {"id": format!("{}", 20801 + i), "key": key, "fields": {"summary": "gone"}}});
        let status = reqwest::Client::new()
            .post(format!(
                "{}/webhooks/jira?token=console-test-token",
                serve.base
            ))
            .header("x-atlassian-webhook-identifier", format!("del-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
    }
    // then: one incident is deleted, the other is not; the cap is counted and
    // the refused event is a dead letter
    let base = format!("http://{console}");
    let line = "relay_delete_cap_reached_total{stage=\"local\",connection=\"servicenow\"} 1";
    until(
        "the cap counted and one dead letter",
        Duration::from_secs(20),
        async || {
            let text = scrape(&base).await;
            text.contains(line) && text.contains("relay_dead_letters{stage=\"local\"} 1")
        },
    )
    .await;
    assert_eq!(sn.records("incident").len(), 1);
    let s = ConsoleSession::login(&base, "admin", CONSOLE_PASSWORD)
        .await
        .unwrap();
    let (status, page) = s.get("/dead").await;
    assert_eq!(status, 200);
    assert!(page.contains("delete_cap_reached"), "{page}");
}
