//! The operator console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which the test command installs), driven over
//! WebDriver: log in, see the demo's four deliveries, filter by the issue
//! key, open the conversation, watch a delivery fail live (ServiceNow
//! answers 400), find it in dead letters, fix the target, redrive from the
//! page and see it applied; the dry-run box and the queue page too. A
//! screenshot of each view is saved under `target/tmp/console/`.
//!
//! Without chromium/chromedriver the test says so loudly and passes, except
//! under `CI=true`, where it fails.

use super::console::{post_demo_event, write_setup, CONSOLE_PASSWORD};
use crate::common::{free_port, repo, Serve};
use fantoccini::{Client, Locator};
use sandbox::faults::{Fault, Match};
use sandbox::jira_server::JiraServer;
use sandbox::servicenow_server::ServiceNowServer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port of 127.0.0.1, and a browser session in it.
async fn browser(profile: &Path) -> (Driver, Client) {
    let port = free_port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            // This machine's network is closed: no background connections.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display())]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
    (driver, client)
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// Waits (up to `limit`) until `check` holds on the page as it is now.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The element, once the page has it (a click's navigation may still be on its way).
async fn element(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

async fn click(c: &Client, css: &str) {
    element(c, css).await.click().await.unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = element(c, css).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

fn browser_present() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_console_in_chromium() {
    if !browser_present() {
        let msg = format!(
            "SKIPPED: the console browser test needs {CHROMIUM} and {CHROMEDRIVER} \
             (apt-get install chromium chromium-driver; the test command installs them)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("\n{}\n{msg}\n{}\n", "!".repeat(78), "!".repeat(78));
        return;
    }
    // given: the demo's set-up (ServiceNow and Jira sandboxes) and relay serve with its console
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    jira.set_contract_check(false);
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &sn, true);
    let config = std::fs::read_to_string(dir.path().join("relay.yaml"))
        .unwrap()
        .replace("https://example.atlassian.net", &jira.base_url());
    std::fs::write(dir.path().join("relay.yaml"), config).unwrap();
    let console = format!("127.0.0.1:{}", free_port());
    let mut serve = Serve::spawn_with(
        dir.path(),
        free_port(),
        &[
            "--workers",
            "2",
            "--max-receives",
            "3",
            "--console",
            &console,
        ],
    );
    serve.ready().await;
    let base = format!("http://{console}");
    // The demo's four webhooks (the attachment's file lives in the Jira sandbox).
    for (i, f) in [
        "1-issue-created.json",
        "2-status-in-progress.json",
        "3-comment-created.json",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            post_demo_event(&serve.base, f, &format!("b-{i}")).await,
            202
        );
    }
    let log = std::fs::read(repo().join("examples/demo/vpn-client.log")).unwrap();
    let file_url = jira.add_file("vpn-client.log", "text/plain", log.clone());
    let mut attach: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/demo/4-attachment-created.json")).unwrap(),
    )
    .unwrap();
    attach["attachment"]["content"] = file_url.into();
    attach["attachment"]["size"] = log.len().into();
    let status = reqwest::Client::new()
        .post(format!(
            "{}/webhooks/jira?token=console-test-token",
            serve.base
        ))
        .header("content-type", "application/json")
        .header("x-atlassian-webhook-identifier", "b-3")
        .body(attach.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;

    // when: the operator logs in
    c.goto(&format!("{base}/feed")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    shot(&c, "login").await;
    type_into(&c, "#login-password", CONSOLE_PASSWORD).await;
    click(&c, "#login-submit").await;
    element(&c, "#feed-table").await;
    // then: the feed shows the demo's four deliveries, applied
    eventually(
        "four applied deliveries",
        Duration::from_secs(30),
        || async {
            c.refresh().await.unwrap();
            let outcomes = texts(&c, "#feed-table tbody tr td:nth-child(6)").await;
            outcomes.len() == 4 && outcomes.iter().all(|o| o == "applied")
        },
    )
    .await;
    shot(&c, "feed").await;

    // when: filtered by the issue key
    type_into(&c, "#filter-key", "DEMO-1").await;
    click(&c, "#filter-submit").await;
    // then: the four rows of DEMO-1, and the filter is in the address
    eventually("the filtered feed", Duration::from_secs(10), || async {
        c.current_url()
            .await
            .unwrap()
            .query()
            .unwrap_or("")
            .contains("key=DEMO-1")
    })
    .await;
    let keys = texts(&c, "#feed-table tbody tr td:nth-child(5)").await;
    assert_eq!(keys, vec!["DEMO-1"; 4]);
    shot(&c, "feed-filtered").await;

    // when: the conversation of the pair is opened
    click(&c, "#feed-table tbody tr td:nth-child(5) a.conv-link").await;
    // then: both records with links into their systems, every event in order
    let pair = element(&c, "#pair").await.text().await.unwrap();
    assert!(
        pair.contains("DEMO-1") && pair.contains("INC0010001"),
        "{pair}"
    );
    let links: Vec<String> = {
        let mut v = Vec::new();
        for a in c
            .find_all(Locator::Css("#pair a.record-link"))
            .await
            .unwrap()
        {
            v.push(a.attr("href").await.unwrap().unwrap_or_default());
        }
        v
    };
    assert!(
        links
            .iter()
            .any(|l| l == &format!("{}/browse/DEMO-1", jira.base_url())),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l.starts_with(&sn.base_url()) && l.ends_with("INC0010001")),
        "{links:?}"
    );
    let stored = element(&c, "#stored-pairs").await.text().await.unwrap();
    assert!(
        stored.contains("servicenow: correlation_id = DEMO-1 → INC0010001"),
        "{stored}"
    );
    let events = texts(&c, "#conversation tbody tr td:nth-child(4)").await;
    assert_eq!(
        events,
        [
            "jira:issue_created",
            "jira:issue_updated",
            "comment_created",
            "attachment_created"
        ]
    );
    shot(&c, "conversation").await;

    // when: ServiceNow starts refusing updates, with the feed open (no reload)
    click(&c, "#nav-feed").await;
    element(&c, "#feed-table").await;
    let before = texts(&c, "#feed-table tbody tr").await.len();
    sn.faults().push(
        Match::method_path(http::Method::PATCH, "/api/now/table/incident/"),
        Fault::status(400),
        1000,
    );
    let mut comment: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/demo/3-comment-created.json")).unwrap(),
    )
    .unwrap();
    comment["comment"]["id"] = "10077".into();
    comment["comment"]["body"] = "Second trace: same failure at 20 minutes.".into();
    let status = reqwest::Client::new()
        .post(format!(
            "{}/webhooks/jira?token=console-test-token",
            serve.base
        ))
        .header("content-type", "application/json")
        .header("x-atlassian-webhook-identifier", "b-4")
        .body(comment.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    // then: the failed delivery appears in the open feed by itself
    eventually(
        "the dead delivery in the live feed",
        Duration::from_secs(30),
        || async {
            let outcomes = texts(&c, "#feed-table tbody tr td:nth-child(6)").await;
            outcomes.len() > before && outcomes[0] == "dead"
        },
    )
    .await;
    shot(&c, "feed-live-failure").await;

    // and: it is in dead letters with its reason
    click(&c, "#nav-dead").await;
    element(&c, "#dead-table").await;
    let reasons = texts(&c, "#dead-table tbody tr td:nth-child(6)").await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("target_rejected"), "{reasons:?}");
    shot(&c, "dead-letters").await;

    // when: the target is fixed and the dead letter redriven from the page
    sn.faults().clear();
    click(&c, "#dead-table .redrive-one").await;
    // then: the page says so, and the delivery is applied
    let result = element(&c, "#redrive-result").await.text().await.unwrap();
    assert!(result.starts_with("Redriven:"), "{result}");
    shot(&c, "dead-letters-redriven").await;
    c.goto(&format!("{base}/feed?key=DEMO-1")).await.unwrap();
    eventually(
        "the redriven comment applied",
        Duration::from_secs(30),
        || async {
            c.refresh().await.unwrap();
            texts(&c, "#feed-table tbody tr td:nth-child(6)")
                .await
                .first()
                .map(String::as_str)
                == Some("applied")
        },
    )
    .await;
    let inc = sn.find("incident", "correlation_id", "DEMO-1").unwrap();
    let sys_id = inc["sys_id"].as_str().unwrap().to_owned();
    assert!(sn
        .journal("incident", &sys_id)
        .iter()
        .any(|j| j.value.contains("Second trace")));
    // The delivery page shows the calls of the applied attempt.
    click(&c, "#feed-table tbody tr td:first-child a").await;
    element(&c, "#calls").await;
    let calls = texts(&c, "#calls tbody tr td:nth-child(4)").await;
    assert!(calls.iter().any(|s| s == "200"), "{calls:?}");
    shot(&c, "delivery").await;

    // The queue page and the dry-run box.
    click(&c, "#nav-queue").await;
    let health = element(&c, "#health").await.text().await.unwrap();
    assert_eq!(health, "healthy");
    shot(&c, "queue").await;
    click(&c, "#nav-config").await;
    type_into(
        &c,
        "#dry-run-payload",
        &std::fs::read_to_string(repo().join("examples/demo/1-issue-created.json")).unwrap(),
    )
    .await;
    click(&c, "#dry-run-submit").await;
    let plan = element(&c, "#dry-run-output").await.text().await.unwrap();
    assert!(plan.contains("\"connection\": \"servicenow\""), "{plan}");
    shot(&c, "config-dry-run").await;

    // On a phone's width the feed still reads.
    c.set_window_size(390, 844).await.unwrap();
    click(&c, "#nav-feed").await;
    shot(&c, "feed-phone").await;
    let _ = c.close().await;
    serve.stop().await;
}
