//! A soak scenario (test support): Jira webhooks for many issues — creates,
//! summary updates, comments, status changes, attachments — in Jira Cloud
//! shapes, what the ServiceNow side must hold once all of them are applied
//! with the shipped `examples/jira-to-servicenow.yaml`, and the check that
//! counts what is lost, duplicated, out of order or wrong. Used by the soak
//! tests of `relay serve` and of the SQS + worker path.

use crate::faults::Rates;
use crate::jira_server::JiraServer;
use crate::servicenow_server::ServiceNowServer;
use serde_json::{json, Value};

const USER: &str = "712020:soak-user";
pub const STATUSES: &[(&str, &str)] = &[
    ("In Progress", "2"),
    ("Done", "6"),
    ("Reopened", "1"),
    ("In Progress", "2"),
    ("Closed", "7"),
];

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
