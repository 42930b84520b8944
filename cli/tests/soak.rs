//! Fault-injection soak through `relay serve` (issue #6).
//!
//! Posts N Jira webhooks (creates, summary updates, comments, status changes,
//! attachments) over many issues to the real `relay serve` binary, the way
//! Jira does (in order per issue, many issues at once, re-posting the same
//! delivery on a 5xx or a refused connection), while:
//!
//! - the ServiceNow and Jira sandboxes answer 20 % of requests 503, 10 % 429
//!   with `Retry-After: 1`, and 2 % only after 3 s (the relay's call timeout
//!   is 2 s here, so those are real client-side timeouts);
//! - the relay is killed with SIGKILL at 40 % and restarted;
//! - the ServiceNow password is rotated at 60 % (secrets file rewritten, then
//!   the old password refused: one 401, the secret re-read, the call repeated);
//! - the queue database is locked by another process for 6 s at 75 % (longer
//!   than the queue's busy timeout: intake answers 503, worker loops fail to
//!   receive).
//!
//! Then it checks the ServiceNow side against what was sent: one incident per
//! issue, the last summary and state, every comment and attachment exactly
//! once and in Jira's order, and every event not applied in the dead letters
//! with its reason. It prints the figures.
//!
//! Size: `RELAY_SOAK_WEBHOOKS` (default 300 — enough to cross every fault),
//! `RELAY_SOAK_WORKERS` (worker loops, default 4), `RELAY_SOAK_VISIBILITY_SECS`
//! (default 10). The bench profile is the same test with a large N, e.g.
//! `RELAY_SOAK_WEBHOOKS=10000 RELAY_SOAK_WORKERS=16 RELAY_SOAK_VISIBILITY_SECS=30
//! cargo test -p relay --all-features --test soak -- --nocapture`.

mod common;

use common::{chmod, drained, free_port, relay, repo, Serve};
use sandbox::faults::Rates;
use sandbox::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "soak-test-token-41c9";
const ROTATED: &str = "snow-password-rotated";
const USER: &str = "712020:soak-user";
const STATUSES: &[(&str, &str)] = &[
    ("In Progress", "2"),
    ("Done", "6"),
    ("Reopened", "1"),
    ("In Progress", "2"),
    ("Closed", "7"),
];

/// One webhook of the plan.
#[derive(Clone, Debug)]
enum Ev {
    Create,
    /// The summary becomes `soak issue {i} v{n}`.
    Update(u32),
    Comment(u32),
    /// Index into [`STATUSES`] (from the previous one).
    Status(usize),
    Attach(u32),
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `webhooks` events over `issues` issues; each issue starts with its create.
fn plan(issues: usize, webhooks: usize, seed: u64) -> Vec<Vec<Ev>> {
    let mut rng = XorShift(seed | 1);
    let mut out: Vec<Vec<Ev>> = (0..issues).map(|_| vec![Ev::Create]).collect();
    let mut counters = vec![(0u32, 0u32, 0usize, 0u32); issues];
    for n in issues..webhooks {
        let i = n % issues;
        let c = &mut counters[i];
        let ev = match rng.next() % 100 {
            0..=34 => {
                c.0 += 1;
                Ev::Update(c.0)
            }
            35..=64 => {
                c.1 += 1;
                Ev::Comment(c.1)
            }
            65..=84 if c.2 < STATUSES.len() => {
                c.2 += 1;
                Ev::Status(c.2 - 1)
            }
            _ => {
                c.3 += 1;
                Ev::Attach(c.3)
            }
        };
        out[i].push(ev);
    }
    out
}

fn key(i: usize) -> String {
    format!("SOAK-{}", i + 1)
}

fn summary(i: usize, version: u32) -> String {
    format!("soak issue {i} v{version}")
}

fn comment_text(i: usize, n: u32) -> String {
    format!("Soak User (Jira): soak comment {i}.{n}")
}

fn file_name(i: usize, n: u32) -> String {
    format!("soak-{i}-{n}.txt")
}

/// What ServiceNow must hold for one issue once everything is applied.
#[derive(Default, Debug)]
struct Expected {
    summary: String,
    state: Option<&'static str>,
    comments: Vec<String>,
    files: Vec<String>,
}

/// The payloads of one issue (Jira Cloud shapes), with what they lead to.
fn payloads(i: usize, events: &[Ev], jira: &JiraServer) -> (Vec<Value>, Expected) {
    let user = json!({"accountId": USER, "displayName": "Soak User", "active": true});
    let id = format!("{}", 70000 + i);
    let mut version = 0;
    let mut status = "To Do";
    let mut exp = Expected {
        summary: summary(i, 0),
        ..Expected::default()
    };
    let mut out = Vec::new();
    for (n, ev) in events.iter().enumerate() {
        let ts = 1_763_900_000_000u64 + n as u64;
        let issue = |summary: &str, status: &str| {
            json!({"id": id, "key": key(i), "fields": {
                "summary": summary, "priority": {"name": "Medium"},
                "status": {"name": status}}})
        };
        let body = match ev {
            Ev::Create => json!({"timestamp": ts, "webhookEvent": "jira:issue_created",
                "issue_event_type_name": "issue_created", "user": user,
                "issue": issue(&summary(i, 0), status)}),
            Ev::Update(v) => {
                let from = summary(i, version);
                version = *v;
                exp.summary = summary(i, version);
                json!({"timestamp": ts, "webhookEvent": "jira:issue_updated",
                    "issue_event_type_name": "issue_updated", "user": user,
                    "issue": issue(&exp.summary, status),
                    "changelog": {"id": format!("{}", 800000 + n), "items": [{"field": "summary",
                        "fieldtype": "jira", "fieldId": "summary",
                        "fromString": from, "toString": exp.summary}]}})
            }
            Ev::Status(s) => {
                let (to, state) = STATUSES[*s];
                let from = status;
                status = to;
                exp.state = Some(state);
                json!({"timestamp": ts, "webhookEvent": "jira:issue_updated",
                    "issue_event_type_name": "issue_generic", "user": user,
                    "issue": issue(&exp.summary, status),
                    "changelog": {"id": format!("{}", 900000 + n), "items": [{"field": "status",
                        "fieldtype": "jira", "fieldId": "status",
                        "fromString": from, "toString": to}]}})
            }
            Ev::Comment(c) => {
                exp.comments.push(comment_text(i, *c));
                json!({"timestamp": ts, "webhookEvent": "comment_created", "user": user,
                    "issue": issue(&exp.summary, status),
                    "comment": {"id": format!("{}", 1_000_000 + i * 1000 + *c as usize),
                        "author": user, "updateAuthor": user,
                        "body": format!("soak comment {i}.{c}"),
                        "created": "2026-11-23T10:00:00.000+0000"}})
            }
            Ev::Attach(a) => {
                let name = file_name(i, *a);
                let url =
                    jira.add_file(&name, "text/plain", format!("file {i}.{a}\n").into_bytes());
                exp.files.push(name.clone());
                json!({"timestamp": ts, "webhookEvent": "attachment_created",
                    "issue": issue(&exp.summary, status),
                    "attachment": {"id": format!("{}", 2_000_000 + i * 1000 + *a as usize),
                        "filename": name, "author": user, "size": 12,
                        "mimeType": "text/plain", "content": url,
                        "created": "2026-11-23T10:00:00.000+0000"}})
            }
        };
        out.push(body);
    }
    (out, exp)
}

fn write_secrets(dir: &Path, sn_password: &str) {
    let text = format!(
        "secrets:\n  relay/webhook:\n    token: {TOKEN}\n    hmac: unused-hmac\n  relay/servicenow:\n    username: {DEFAULT_USER}\n    password: {sn_password}\n  relay/jira:\n    email: {DEFAULT_EMAIL}\n    api_token: {DEFAULT_API_TOKEN}\n"
    );
    // Atomically, as an operator's tooling would: never a half-written file.
    let tmp = dir.join("secrets.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    chmod(&tmp, 0o600);
    std::fs::rename(&tmp, dir.join("secrets.yaml")).unwrap();
}

fn setup(sn: &ServiceNowServer, jira: &JiraServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo().join("examples/jira-to-servicenow.yaml"))
        .unwrap()
        .replace("https://example.service-now.com", &sn.base_url())
        .replace("https://example.atlassian.net", &jira.base_url());
    std::fs::write(dir.path().join("relay.yaml"), config).unwrap();
    write_secrets(dir.path(), DEFAULT_PASSWORD);
    dir
}

/// Counters the posting tasks share.
#[derive(Default)]
struct Sent {
    accepted: AtomicUsize,
    reposts: AtomicUsize,
}

/// Posts like Jira: the same delivery again after a 5xx or a refused
/// connection, until accepted. Any other answer fails the test.
async fn deliver(client: &reqwest::Client, base: &str, body: &Value, delivery: &str, sent: &Sent) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client
            .post(format!("{base}/webhooks/jira?token={TOKEN}"))
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", delivery)
            .timeout(Duration::from_secs(15))
            .body(body.to_string())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        match status {
            202 => {
                sent.accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            0 | 500..=599 => {
                sent.reposts.fetch_add(1, Ordering::Relaxed);
                assert!(
                    Instant::now() < deadline,
                    "{delivery}: not accepted within 120 s"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("{delivery}: refused with {other}"),
        }
    }
}

async fn wait_until(sent: &Sent, n: usize, limit: Duration) {
    let start = Instant::now();
    while sent.accepted.load(Ordering::Relaxed) < n {
        assert!(start.elapsed() < limit, "posting stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The number of dead letters (`relay dlq list`), with the list.
fn dead_letters(data: &Path) -> (usize, String) {
    let (ok, out, err) = relay(&["dlq", "list", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    let n = out
        .lines()
        .last()
        .and_then(|l| l.strip_suffix(" dead letter(s)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `relay dlq list` output:\n{out}"));
    (n, out)
}

#[derive(Default, Debug)]
struct Figures {
    lost: usize,
    duplicates: usize,
    out_of_order: usize,
    wrong_fields: usize,
    problems: Vec<String>,
}

/// Compares `got` with `want`: missing, extra copies, and order of the
/// first occurrences.
fn compare(what: &str, key: &str, want: &[String], got: &[String], f: &mut Figures) {
    let mut firsts: Vec<&String> = Vec::new();
    for g in got {
        if firsts.contains(&g) {
            f.duplicates += 1;
            f.problems.push(format!("{key}: {what} `{g}` twice"));
        } else {
            firsts.push(g);
        }
    }
    for w in want {
        if !got.contains(w) {
            f.lost += 1;
            f.problems.push(format!("{key}: {what} `{w}` missing"));
        }
    }
    let present: Vec<&String> = want.iter().filter(|w| got.contains(w)).collect();
    let seen: Vec<&String> = firsts.into_iter().filter(|g| want.contains(g)).collect();
    if present != seen {
        f.out_of_order += 1;
        f.problems
            .push(format!("{key}: {what} out of order: {seen:?}"));
    }
}

fn check(sn: &ServiceNowServer, expected: &[Expected]) -> Figures {
    let mut f = Figures::default();
    let incidents = sn.records("incident");
    let attachments = sn.attachments();
    for (i, exp) in expected.iter().enumerate() {
        let k = key(i);
        let matching: Vec<_> = incidents
            .iter()
            .filter(|r| r["correlation_id"] == k.as_str())
            .collect();
        match matching.len() {
            0 => {
                f.lost += 1 + exp.comments.len() + exp.files.len();
                f.problems.push(format!("{k}: no incident"));
                continue;
            }
            1 => {}
            n => {
                f.duplicates += n - 1;
                f.problems.push(format!("{k}: {n} incidents"));
            }
        }
        let rec = matching[0];
        let want = format!("[{k}] {}", exp.summary);
        if rec["short_description"] != want.as_str() {
            f.wrong_fields += 1;
            f.problems.push(format!(
                "{k}: short_description {} instead of {want}",
                rec["short_description"]
            ));
        }
        if let Some(state) = exp.state {
            if rec["state"] != state {
                f.wrong_fields += 1;
                f.problems
                    .push(format!("{k}: state {} instead of {state}", rec["state"]));
            }
        }
        let sys_id = rec["sys_id"].as_str().unwrap();
        let comments: Vec<String> = sn
            .journal("incident", sys_id)
            .into_iter()
            .filter(|j| j.field == "comments")
            .map(|j| j.value)
            .collect();
        compare("comment", &k, &exp.comments, &comments, &mut f);
        let files: Vec<String> = attachments
            .iter()
            .filter(|a| a.table_sys_id == sys_id)
            .map(|a| a.file_name.clone())
            .collect();
        compare("attachment", &k, &exp.files, &files, &mut f);
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_under_faults_crash_rotation_and_queue_outage() {
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let webhooks = env("RELAY_SOAK_WEBHOOKS", 300) as usize;
    let workers = env("RELAY_SOAK_WORKERS", 4).to_string();
    let visibility = env("RELAY_SOAK_VISIBILITY_SECS", 10).to_string();
    let issues = (webhooks / 6).clamp(1, 2000);
    let started = Instant::now();
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    let dir = setup(&sn, &jira);
    let data = dir.path().join("data");
    let port = free_port();
    let args = [
        "--workers",
        &workers,
        "--visibility-timeout-secs",
        &visibility,
        "--call-timeout-secs",
        "2",
    ];
    let mut serve = Serve::spawn_with(dir.path(), port, &args);
    serve.ready().await;

    let plan = plan(issues, webhooks, 0x50a4);
    let mut bodies = Vec::new();
    let mut expected = Vec::new();
    for (i, events) in plan.iter().enumerate() {
        let (b, e) = payloads(i, events, &jira);
        bodies.push(b);
        expected.push(e);
    }
    let rates = Rates {
        server_error: 0.20,
        rate_limited: 0.10,
        timeout: 0.02,
        timeout_ms: 3000,
    };
    sn.faults().set_rates(rates.clone(), 7);
    jira.faults().set_rates(rates, 11);

    // Jira's side: every issue's webhooks in order, 64 issues at a time.
    let sent = Arc::new(Sent::default());
    let client = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, issue) in bodies.into_iter().enumerate() {
        let (client, base, sent, gate) = (
            client.clone(),
            serve.base.clone(),
            sent.clone(),
            gate.clone(),
        );
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            for (n, body) in issue.iter().enumerate() {
                deliver(&client, &base, body, &format!("soak-{i}-{n}"), &sent).await;
            }
        });
    }
    let limit = Duration::from_secs(120 + webhooks as u64 / 5);

    // 40 %: crash and restart.
    wait_until(&sent, webhooks * 4 / 10, limit).await;
    serve.signal("-KILL");
    serve.wait_exit(Duration::from_secs(5)).await;
    let crashed_at = sent.accepted.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut serve = Serve::spawn_with(dir.path(), port, &args);
    serve.ready().await;

    // 60 %: rotate the ServiceNow password (file first, then the server).
    wait_until(&sent, webhooks * 6 / 10, limit).await;
    write_secrets(dir.path(), ROTATED);
    sn.set_basic(DEFAULT_USER, ROTATED);

    // 75 %: another process holds the queue database's write lock for 6 s.
    wait_until(&sent, webhooks * 3 / 4, limit).await;
    let db = data.join("queue.db");
    let outage = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.execute_batch("ROLLBACK").unwrap();
    });

    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    outage.await.unwrap();
    let posted = started.elapsed();
    let stats = drained(&data, limit).await;
    let wall = started.elapsed();

    let (dead, dlq) = dead_letters(&data);
    let f = check(&sn, &expected);
    let injected = sn.faults().injected().len() + jira.faults().injected().len();
    let sn_requests = sn.requests().len();
    eprintln!(
        "soak: sent {webhooks} webhooks over {issues} issues ({} re-posted by the sender); \
         applied: {} issues checked; duplicates {}; lost {}; out of order {}; wrong fields {}; \
         dead-lettered {dead}; faults injected {injected} (ServiceNow saw {sn_requests} requests); \
         crash at {crashed_at} accepted; posting {:.1} s, wall {:.1} s; {}",
        sent.reposts.load(Ordering::Relaxed),
        expected.len(),
        f.duplicates,
        f.lost,
        f.out_of_order,
        f.wrong_fields,
        posted.as_secs_f64(),
        wall.as_secs_f64(),
        stats.trim()
    );
    for p in f.problems.iter().take(20) {
        eprintln!("  {p}");
    }
    assert_eq!(
        sent.accepted.load(Ordering::Relaxed),
        webhooks,
        "every webhook accepted"
    );
    // Anything not applied must be in the dead letters with its reason.
    assert!(
        f.lost <= dead,
        "{} events lost, only {dead} dead-lettered:\n{dlq}",
        f.lost
    );
    assert_eq!(dead, 0, "nothing should exhaust 10 receives here:\n{dlq}");
    assert_eq!(f.duplicates, 0, "{:?}", f.problems);
    assert_eq!(f.out_of_order, 0, "{:?}", f.problems);
    assert_eq!(f.wrong_fields, 0, "{:?}", f.problems);
    assert!(injected > webhooks / 10, "faults were injected: {injected}");

    serve.signal("-TERM");
    let status = serve.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
}
