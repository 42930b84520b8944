//! A soak scenario (test support): Jira webhooks for many issues — creates,
//! summary updates, comments, status changes, attachments — in Jira Cloud
//! shapes, what the ServiceNow side must hold once all of them are applied
//! with the shipped `examples/jira-to-servicenow.yaml`, and the check that
//! counts what is lost, duplicated, out of order or wrong. Used by the soak
//! tests of `relay serve` and of the SQS + worker path.
//!
//! [`scenario`] gives each issue's webhooks in Jira's order. With
//! [`scenario_with`] and [`SoakOptions`] the deliveries can also arrive the
//! way Jira's retries make them arrive: an issue's create after its first
//! update or comment (the create got a 503 and is re-posted later), and
//! deliveries posted a second time at the end with the same
//! `X-Atlassian-Webhook-Identifier`. What ServiceNow must hold is the same
//! either way (the final state), so [`check`] applies unchanged.

use crate::faults::Rates;
use crate::jira_server::JiraServer;
use crate::servicenow_server::ServiceNowServer;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const USER: &str = "712020:soak-user";
pub const STATUSES: &[(&str, &str)] = &[
    ("In Progress", "2"),
    ("Done", "6"),
    ("Reopened", "1"),
    ("In Progress", "2"),
    ("Closed", "7"),
];

/// A status as Jira's webhooks carry it: name, id and category (Jira
/// Server's built-in ids; Cloud's To Do and Done ids).
fn status_json(name: &str) -> Value {
    let (id, category) = match name {
        "To Do" => ("10000", "new"),
        "Reopened" => ("4", "new"),
        "In Progress" => ("3", "indeterminate"),
        "Closed" => ("6", "done"),
        _ => ("10001", "done"),
    };
    json!({"name": name, "id": id, "statusCategory": {"key": category}})
}

/// One webhook of the plan.
#[derive(Clone, Debug)]
pub enum Ev {
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

/// `webhooks` events over `issues` issues; each issue starts with its
/// create. Deterministic for a seed.
pub fn plan(issues: usize, webhooks: usize, seed: u64) -> Vec<Vec<Ev>> {
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

pub fn key(i: usize) -> String {
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
pub struct Expected {
    pub summary: String,
    pub state: Option<&'static str>,
    pub comments: Vec<String>,
    pub files: Vec<String>,
}

/// The payloads of one issue (Jira Cloud shapes), with what they lead to.
pub fn payloads(i: usize, events: &[Ev], jira: &JiraServer) -> (Vec<Value>, Expected) {
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
                "status": status_json(status)}})
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
                let content = format!("file {i}.{a}\n").into_bytes();
                let size = content.len();
                let url = jira.add_file(&name, "text/plain", content);
                exp.files.push(name.clone());
                json!({"timestamp": ts, "webhookEvent": "attachment_created",
                    "issue": issue(&exp.summary, status),
                    "attachment": {"id": format!("{}", 2_000_000 + i * 1000 + *a as usize),
                        "filename": name, "author": user, "size": size,
                        "mimeType": "text/plain", "content": url,
                        "created": "2026-11-23T10:00:00.000+0000"}})
            }
        };
        out.push(body);
    }
    (out, exp)
}

/// The whole scenario: every issue's webhooks in order, and what ServiceNow
/// must hold for each issue afterwards.
pub fn scenario(
    issues: usize,
    webhooks: usize,
    seed: u64,
    jira: &JiraServer,
) -> (Vec<Vec<Value>>, Vec<Expected>) {
    plan(issues, webhooks, seed)
        .iter()
        .enumerate()
        .map(|(i, events)| payloads(i, events, jira))
        .unzip()
}

/// Posting like Jira: the deliveries accepted so far and the re-posts it
/// took, shared by the tasks that post.
#[derive(Debug, Default)]
pub struct Sender {
    pub accepted: AtomicUsize,
    pub reposts: AtomicUsize,
}

impl Sender {
    /// Posts `delivery` like Jira: `post` sends it once and gives the
    /// status (0: no answer, the connection refused or cut); after a 5xx or
    /// no answer it is posted again 250 ms later, after a 429 (a rate limit)
    /// a second later (the least `Retry-After`), until accepted (202).
    /// Not accepted within 120 s, or any other answer, fails the test.
    pub async fn deliver<F, Fut>(&self, delivery: &str, mut post: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = u16>,
    {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match post().await {
                202 => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                0 | 500..=599 => {
                    self.reposts.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        Instant::now() < deadline,
                        "{delivery}: not accepted within 120 s"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                429 => {
                    self.reposts.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        Instant::now() < deadline,
                        "{delivery}: not accepted within 120 s"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => panic!("{delivery}: refused with {other}"),
            }
        }
    }

    /// Waits until `n` deliveries were accepted; fails after `limit`
    /// ("posting stalled").
    pub async fn wait_until(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        while self.accepted.load(Ordering::Relaxed) < n {
            assert!(start.elapsed() < limit, "posting stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn reposts(&self) -> usize {
        self.reposts.load(Ordering::Relaxed)
    }
}

/// Options of [`scenario_with`]. `SoakOptions::default()` injects nothing:
/// the deliveries are exactly [`scenario`]'s, in the same order.
#[derive(Debug, Clone, Default)]
pub struct SoakOptions {
    /// Fraction (`0.0..=1.0`) of the issues (among those with an update or
    /// a comment) whose create is delivered only after their first update
    /// or comment: everything up to and including that event comes first,
    /// then the create (Jira re-posting a create that got a 503), then the
    /// rest.
    pub out_of_order: f64,
    /// Fraction (`0.0..=1.0`) of all deliveries that are posted a second
    /// time after every issue's deliveries, with the same identifier (a
    /// late retry by Jira): [`Scenario::late`].
    pub late_retry: f64,
    /// Seed of these choices (the plan keeps its own seed).
    pub seed: u64,
}

/// One webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The issue (index; its key is [`key`]).
    pub issue: usize,
    /// The event's index in the issue's plan (the create is 0).
    pub event: usize,
    /// The `X-Atlassian-Webhook-Identifier` to send: `soak-{issue}-{event}`,
    /// the same on every post of this delivery (the existing soak tests use
    /// the same scheme).
    pub id: String,
    /// The JSON body.
    pub body: Value,
}

/// What [`scenario_with`] injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// Issues whose create comes after their first update or comment.
    pub out_of_order_issues: usize,
    /// Deliveries posted twice (the length of [`Scenario::late`]).
    pub late_retries: usize,
}

/// A soak scenario with its deliveries.
#[derive(Debug)]
pub struct Scenario {
    /// Per issue, the deliveries in the order to post them (one after the
    /// other per issue; issues in parallel).
    pub issues: Vec<Vec<Delivery>>,
    /// Deliveries to post again once every one in `issues` was accepted
    /// (same identifier and body).
    pub late: Vec<Delivery>,
    /// What ServiceNow must hold per issue in the end ([`check`]).
    pub expected: Vec<Expected>,
    pub injected: Injected,
}

/// Per issue, each delivery's identifier and body, in posting order.
pub fn bodies(issues: Vec<Vec<Delivery>>) -> Vec<Vec<(String, Value)>> {
    issues
        .into_iter()
        .map(|d| d.into_iter().map(|d| (d.id, d.body)).collect())
        .collect()
}

/// [`scenario`] as deliveries, with the re-orderings and late retries of
/// `options`. Deterministic for the seeds.
pub fn scenario_with(
    issues: usize,
    webhooks: usize,
    seed: u64,
    jira: &JiraServer,
    options: &SoakOptions,
) -> Scenario {
    let plans = plan(issues, webhooks, seed);
    let mut rng = XorShift(options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut draw = move || (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    let mut out = Scenario {
        issues: Vec::with_capacity(issues),
        late: Vec::new(),
        expected: Vec::with_capacity(issues),
        injected: Injected::default(),
    };
    for (i, events) in plans.iter().enumerate() {
        let (bodies, exp) = payloads(i, events, jira);
        let mut list: Vec<Delivery> = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| Delivery {
                issue: i,
                event: n,
                id: format!("soak-{i}-{n}"),
                body,
            })
            .collect();
        let first = events
            .iter()
            .position(|e| matches!(e, Ev::Update(_) | Ev::Comment(_)));
        if let Some(k) = first.filter(|_| options.out_of_order > 0.0) {
            if draw() < options.out_of_order {
                // [create, e1 .. ek, rest] -> [e1 .. ek, create, rest]
                list[..=k].rotate_left(1);
                out.injected.out_of_order_issues += 1;
            }
        }
        out.issues.push(list);
        out.expected.push(exp);
    }
    if options.late_retry > 0.0 {
        for d in out.issues.iter().flatten() {
            if draw() < options.late_retry {
                out.late.push(d.clone());
            }
        }
    }
    out.injected.late_retries = out.late.len();
    out
}

/// The soak's fault rates: 20 % 503, 10 % 429 with `Retry-After: 1`, 2 %
/// answered after 3 s (beyond the soaks' 2 s call timeout).
pub fn rates() -> Rates {
    Rates {
        server_error: 0.20,
        rate_limited: 0.10,
        timeout: 0.02,
        timeout_ms: 3000,
        ..Rates::default()
    }
}

#[derive(Default, Debug)]
pub struct Figures {
    pub lost: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    pub wrong_fields: usize,
    pub problems: Vec<String>,
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

pub fn check(sn: &ServiceNowServer, expected: &[Expected]) -> Figures {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicenow_server::{DEFAULT_PASSWORD, DEFAULT_USER};

    /// Applies one delivery to ServiceNow the way a correct relay would:
    /// the incident is found by correlation id or created by whatever
    /// event comes first; a create never overwrites a newer summary.
    /// `dedupe` holds the identifiers applied so far (`None`: no dedupe).
    async fn apply(
        sn: &ServiceNowServer,
        jira_base: &str,
        d: &Delivery,
        dedupe: Option<&mut Vec<String>>,
    ) {
        if let Some(seen) = dedupe {
            if seen.contains(&d.id) {
                return;
            }
            seen.push(d.id.clone());
        }
        let c = reqwest::Client::new();
        let base = sn.base_url();
        let b = &d.body;
        let k = b["issue"]["key"].as_str().unwrap().to_string();
        let summary = b["issue"]["fields"]["summary"].as_str().unwrap();
        let sys_id = match sn.find("incident", "correlation_id", &k) {
            Some(r) => r["sys_id"].as_str().unwrap().to_string(),
            None => {
                let r: Value = c
                    .post(format!("{base}/api/now/table/incident"))
                    .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                    .json(&json!({"correlation_id": k,
                        "short_description": format!("[{k}] {summary}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                r["result"]["sys_id"].as_str().unwrap().to_string()
            }
        };
        let mut patch = serde_json::Map::new();
        match b["webhookEvent"].as_str().unwrap() {
            "jira:issue_updated" => {
                let item = &b["changelog"]["items"][0];
                let to = item["toString"].as_str().unwrap();
                if item["field"] == "summary" {
                    patch.insert("short_description".into(), json!(format!("[{k}] {to}")));
                } else {
                    let state = STATUSES.iter().find(|(n, _)| *n == to).unwrap().1;
                    patch.insert("state".into(), json!(state));
                }
            }
            "comment_created" => {
                let text = b["comment"]["body"].as_str().unwrap();
                patch.insert(
                    "comments".into(),
                    json!(format!("Soak User (Jira): {text}")),
                );
            }
            "attachment_created" => {
                let a = &b["attachment"];
                let url = a["content"].as_str().unwrap();
                assert!(url.starts_with(jira_base));
                let r = c
                    .post(format!("{base}/api/now/attachment/file"))
                    .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                    .query(&[
                        ("table_name", "incident"),
                        ("table_sys_id", sys_id.as_str()),
                        ("file_name", a["filename"].as_str().unwrap()),
                    ])
                    .header("Content-Type", "text/plain")
                    .body("x")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
            _ => {}
        }
        if !patch.is_empty() {
            let r = c
                .patch(format!("{base}/api/now/table/incident/{sys_id}"))
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .json(&patch)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }

    fn is_create(d: &Delivery) -> bool {
        d.body["webhookEvent"] == "jira:issue_created"
    }

    #[tokio::test]
    async fn default_options_change_nothing() {
        let (j1, j2) = (JiraServer::start().await, JiraServer::start().await);
        let (bodies, expected) = scenario(20, 120, 9, &j1);
        let s = scenario_with(20, 120, 9, &j2, &SoakOptions::default());
        assert_eq!(s.injected, Injected::default());
        assert!(s.late.is_empty());
        assert_eq!(s.expected.len(), expected.len());
        for (i, (want, got)) in bodies.iter().zip(&s.issues).enumerate() {
            assert_eq!(want.len(), got.len());
            for (n, (w, g)) in want.iter().zip(got).enumerate() {
                assert_eq!((g.issue, g.event), (i, n));
                assert_eq!(g.id, format!("soak-{i}-{n}"));
                assert_eq!(
                    w.to_string().replace(&j1.base_url(), "JIRA"),
                    g.body.to_string().replace(&j2.base_url(), "JIRA")
                );
            }
        }
    }

    #[tokio::test]
    async fn late_creates_and_late_retries_are_checked_as_final_state() {
        let jira = JiraServer::start().await;
        let options = SoakOptions {
            out_of_order: 0.5,
            late_retry: 0.15,
            seed: 4,
        };
        let s = scenario_with(12, 80, 21, &jira, &options);
        assert!(s.injected.out_of_order_issues > 0, "{:?}", s.injected);
        assert!(s.injected.late_retries > 0, "{:?}", s.injected);
        assert_eq!(s.injected.late_retries, s.late.len());
        let mut moved = 0;
        for list in &s.issues {
            let at = list.iter().position(is_create).unwrap();
            assert_eq!(list[at].event, 0);
            if at > 0 {
                moved += 1;
                // Up to the first update or comment came before the create.
                let kinds: Vec<&str> = list[..at]
                    .iter()
                    .map(|d| d.body["webhookEvent"].as_str().unwrap())
                    .collect();
                let last = *kinds.last().unwrap();
                assert!(
                    last == "comment_created"
                        || list[at - 1].body["changelog"]["items"][0]["field"] == "summary",
                    "{kinds:?}"
                );
                assert!(list[..at - 1]
                    .iter()
                    .all(|d| d.body["webhookEvent"] != "comment_created"
                        && d.body["changelog"]["items"][0]["field"] != "summary"));
            }
            let mut events: Vec<usize> = list.iter().map(|d| d.event).collect();
            events.sort_unstable();
            assert_eq!(events, (0..list.len()).collect::<Vec<_>>());
        }
        assert_eq!(moved, s.injected.out_of_order_issues);
        for d in &s.late {
            assert!(s.issues[d.issue].contains(d));
        }
        // Same seeds, same deliveries.
        let again = scenario_with(12, 80, 21, &jira, &options);
        assert_eq!(again.injected, s.injected);

        // A relay that dedupes on the identifier and handles a late create
        // gets a clean check.
        let sn = ServiceNowServer::start().await;
        let mut seen = Vec::new();
        for d in s.issues.iter().flatten().chain(&s.late) {
            apply(&sn, &jira.base_url(), d, Some(&mut seen)).await;
        }
        let f = check(&sn, &s.expected);
        assert_eq!(
            (f.lost, f.duplicates, f.out_of_order, f.wrong_fields),
            (0, 0, 0, 0),
            "{:?}",
            f.problems
        );
        // One that applies the late retries again duplicates what they carry.
        let sn = ServiceNowServer::start().await;
        for d in s.issues.iter().flatten().chain(&s.late) {
            apply(&sn, &jira.base_url(), d, None).await;
        }
        let f = check(&sn, &s.expected);
        let repeated = s
            .late
            .iter()
            .filter(|d| {
                matches!(
                    d.body["webhookEvent"].as_str(),
                    Some("comment_created" | "attachment_created")
                )
            })
            .count();
        assert_eq!(f.duplicates, repeated, "{:?}", f.problems);
        assert_eq!(f.lost, 0, "{:?}", f.problems);
        // One that skips events for an issue it has not created yet loses
        // them, and the check counts them.
        let sn = ServiceNowServer::start().await;
        let mut lost_events = 0;
        for d in s.issues.iter().flatten() {
            let exists = sn
                .find("incident", "correlation_id", &key(d.issue))
                .is_some();
            if is_create(d) || exists {
                apply(&sn, &jira.base_url(), d, None).await;
            } else if matches!(
                d.body["webhookEvent"].as_str(),
                Some("comment_created" | "attachment_created")
            ) {
                lost_events += 1;
            }
        }
        let f = check(&sn, &s.expected);
        assert!(lost_events > 0);
        assert_eq!(f.lost, lost_events, "{:?}", f.problems);
    }
}
