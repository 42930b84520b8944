//! The ServiceNow side (`infra/servicenow/`), tested through the relay: Node
//! runs the business rule's payload-building part (`relay-payload.js`) over
//! fake GlideRecords (`test/build-payloads.js`) for one incident's life —
//! insert, state change, comment, attachment, resolve, the integration user's
//! own change — and every payload it would send goes through ingress → moto
//! SQS → the worker with the shipped `servicenow-to-jira` example into the
//! Jira contract server. The attachment is a real one in the ServiceNow
//! sandbox, downloaded by the worker from the URL the script built.

use crate::worker_flow::Relay;
use relay_tests::servicenow_server::{DEFAULT_PASSWORD, DEFAULT_USER};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const NUMBER: &str = "INC0010042";
const LOG: &[u8] = b"09:41:07 vpn-gw-2 tunnel reset (DPD timeout)\n";

fn infra() -> PathBuf {
    relay_tests::repo_path("infra/servicenow")
}

/// `node --version`, or `None` after a loud skip (a failure under `CI=true`).
fn node() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into()),
        _ => {
            relay_tests::missing(
                "Node.js (`node` on PATH)",
                "install Node to run infra/servicenow/test/build-payloads.js",
            );
            None
        }
    }
}

/// Runs the payload builder with `env`; returns its scenarios by name.
fn build_payloads(env: &[(&str, String)]) -> Vec<(String, bool, Value)> {
    run_builder("build-payloads.js", env)
}

/// Runs `infra/servicenow/test/<script>` with `env`; returns its scenarios.
fn run_builder(script: &str, env: &[(&str, String)]) -> Vec<(String, bool, Value)> {
    let out = Command::new("node")
        .arg(infra().join("test").join(script))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).expect("the builder prints JSON");
    all.as_array()
        .expect("a JSON array")
        .iter()
        .map(|s| {
            (
                s["scenario"].as_str().expect("scenario").to_owned(),
                s["send"].as_bool().expect("send"),
                s["payload"].clone(),
            )
        })
        .collect()
}

/// `relay-payload.js` runs inside ServiceNow (Rhino, ES5): no ES2015+ syntax
/// outside comments.
#[test]
fn servicenow_script_is_es5() {
    // given relay-payload.js without its block comments
    let src = std::fs::read_to_string(infra().join("relay-payload.js")).unwrap();
    let mut code = String::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find("/*") {
        code.push_str(&rest[..at]);
        rest = rest[at..]
            .find("*/")
            .map_or("", |end| &rest[at + end + 2..]);
    }
    code.push_str(rest);
    // when each line is scanned
    for (n, line) in code.lines().enumerate() {
        let line = line.split(" // ").next().unwrap_or_default();
        let line = if line.trim_start().starts_with("//") {
            ""
        } else {
            line
        };
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .collect();
        for bad in ["let", "const", "class", "async", "await"] {
            // then no ES2015 keyword
            assert!(
                !words.contains(&bad),
                "relay-payload.js:{}: `{bad}` is not ES5: {line}",
                n + 1
            );
        }
        // and no ES2015 syntax
        for bad in ["=>", "`", "...", "?.", "??"] {
            assert!(
                !line.contains(bad),
                "relay-payload.js:{}: `{bad}` is not ES5: {line}",
                n + 1
            );
        }
    }
    // and it exports for Node
    assert!(src.contains("if (typeof module !== 'undefined')"));
}

#[tokio::test]
async fn servicenow_script_payloads_become_one_jira_issue() {
    // given an incident and its attachment in the ServiceNow sandbox
    if node().is_none() {
        return;
    }
    let Some(r) = Relay::start("servicenow-to-jira").await else {
        return;
    };
    // The incident and its attachment exist in the ServiceNow sandbox, so the
    // worker can download the file from the URL the script builds.
    let incident = r.sn.seed(
        "incident",
        json!({"number": NUMBER, "short_description": "VPN drops every 10 minutes"}),
    );
    let upload: Value = reqwest::Client::new()
        .post(format!("{}/api/now/attachment/file", r.sn.base_url()))
        .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
        .query(&[
            ("table_name", "incident"),
            ("table_sys_id", incident.as_str()),
            ("file_name", "vpn-gw.log"),
        ])
        .header("content-type", "text/plain")
        .body(LOG)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let attachment = upload["result"]["sys_id"].as_str().unwrap().to_owned();

    // when the script builds its payloads
    let scenarios = build_payloads(&[
        ("RELAY_SN_INSTANCE", r.sn.base_url()),
        ("RELAY_SN_INCIDENT_SYS_ID", incident.clone()),
        ("RELAY_SN_ATTACHMENT_SYS_ID", attachment.clone()),
        ("RELAY_SN_ATTACHMENT_NAME", "vpn-gw.log".into()),
        ("RELAY_SN_ATTACHMENT_TYPE", "text/plain".into()),
        ("RELAY_SN_ATTACHMENT_SIZE", LOG.len().to_string()),
        ("RELAY_SN_INTEGRATION_USER", DEFAULT_USER.into()),
    ]);
    // then the scenarios, in order
    let names: Vec<&str> = scenarios.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "insert",
            "update state 1 -> 2",
            "comment added",
            "attachment",
            "resolve state 2 -> 6 with close_code",
            "update by the integration user (echo)",
            "update of an unwatched field",
        ]
    );
    let by_name = |n: &str| &scenarios.iter().find(|s| s.0 == n).unwrap().2;

    // and what each one holds
    // What the script builds.
    let created = by_name("insert");
    assert_eq!(created["event"], "incident.created");
    assert_eq!(created["sys_id"], incident.as_str());
    assert_eq!(created["changes"], json!([]));
    let started = by_name("update state 1 -> 2");
    assert_eq!(started["event"], "incident.updated");
    assert_eq!(started["changes"][0]["field"], "state");
    assert_eq!(
        (&started["changes"][0]["from"], &started["changes"][0]["to"]),
        (&json!("1"), &json!("2"))
    );
    let commented = by_name("comment added");
    assert_eq!(commented["event"], "incident.commented");
    assert_eq!(
        commented["comments"],
        "The VPN concentrator was restarted.\nPlease tell us if it happens again.",
        "the journal entry without its header line"
    );
    let attached = by_name("attachment");
    assert_eq!(attached["event"], "incident.attachment");
    assert_eq!(attached["sys_id"], incident.as_str());
    assert_eq!(
        attached["attachment"],
        json!({
            "sys_id": attachment,
            "file_name": "vpn-gw.log",
            "content_type": "text/plain",
            "size_bytes": LOG.len(),
            "download_url": format!("{}/api/now/attachment/{attachment}/file", r.sn.base_url()),
        })
    );
    let resolved = by_name("resolve state 2 -> 6 with close_code");
    assert_eq!(resolved["state"], "6");
    assert_eq!(resolved["close_code"], "Solved (Permanently)");
    assert!(resolved["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["field"] == "state" && c["from"] == "2" && c["to"] == "6"));

    // The echo guard and the nothing-changed case send nothing.
    let echo = scenarios.iter().find(|s| s.0.contains("(echo)")).unwrap();
    assert!(!echo.1, "the integration user's change must be skipped");
    assert_eq!(echo.2["sys_updated_by"], DEFAULT_USER);
    let idle = scenarios
        .iter()
        .find(|s| s.0.contains("unwatched"))
        .unwrap();
    assert_eq!((idle.1, &idle.2), (false, &Value::Null));

    // when
    // Everything the business rule would send goes through the relay.
    let sent: Vec<&Value> = scenarios.iter().filter(|s| s.1).map(|s| &s.2).collect();
    assert_eq!(sent.len(), 5);
    for payload in &sent {
        assert_eq!(r.post_sn(payload).await, 202, "{payload}");
    }
    // then
    assert_eq!(r.pump().await, 0, "no failed rounds");
    assert_eq!(r.dead_letters().await, Vec::<(String, String)>::new());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");

    // and one Jira issue holds it all
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1, "one issue for the incident");
    let issue = &issues[0];
    assert_eq!(issue.fields["customfield_10050"], NUMBER);
    assert_eq!(issue.fields["summary"], "VPN drops every 10 minutes");
    assert_eq!(issue.fields["priority"]["name"], "High");
    assert_eq!(issue.fields["description"]["type"], "doc");
    assert!(issue.fields["description"]
        .to_string()
        .contains("Affects the whole sales team."));
    assert_eq!(
        issue.properties["jira-relay"],
        json!({"key": NUMBER, "sys_id": incident})
    );
    // The comment, as ADF.
    assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);
    let body = &issue.comments[0]["body"];
    assert_eq!(body["type"], "doc");
    let text = body.to_string();
    assert!(
        text.contains("fred.luddy (ServiceNow INC0010042)"),
        "{text}"
    );
    assert!(
        text.contains("The VPN concentrator was restarted."),
        "{text}"
    );
    assert!(!text.contains("Additional comments"), "{text}");
    // In Progress on the way, Resolved with a resolution at the end.
    let transitions: Vec<Value> = r
        .jira
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST" && q.path.ends_with("/transitions"))
        .filter_map(|q| q.json)
        .collect();
    assert_eq!(transitions.len(), 2, "{transitions:?}");
    assert_eq!(transitions[0]["transition"]["id"], "21", "Start Progress");
    assert_eq!(issue.status, "Resolved");
    assert_eq!(issue.fields["resolution"]["name"], "Done");
    // The attachment, downloaded from ServiceNow.
    assert_eq!(issue.attachments.len(), 1);
    let file = &issue.attachments[0];
    assert_eq!(
        (
            file.filename.as_str(),
            file.mime.as_str(),
            file.bytes.as_slice()
        ),
        ("vpn-gw.log", "text/plain", LOG)
    );
    assert!(r
        .sn
        .requests()
        .iter()
        .any(|q| q.method == "GET" && q.path == format!("/api/now/attachment/{attachment}/file")));
}

#[tokio::test]
async fn servicenow_user_script_payloads_provision_one_jira_account() {
    // given a ServiceNow user's life as the business rule sends it: a joiner
    // in Software Engineering, moved to the Service Desk, then deactivated
    if node().is_none() {
        return;
    }
    let Some(r) = Relay::start("servicenow-users-to-jira").await else {
        return;
    };
    r.jira.set_basic(
        crate::worker_flow::JIRA_EMAIL,
        crate::worker_flow::JIRA_TOKEN,
    );
    for g in [
        "jira-software-users",
        "jira-servicemanagement-users",
        "jira-admins",
    ] {
        r.jira.add_group(g);
    }
    r.sn.allow_fields("sys_user", &["u_jira_account_id", "locked_out"]);
    let user = r.sn.seed(
        "sys_user",
        json!({"user_name": "abel.tuter", "email": "abel.tuter@example.com", "name": "Abel Tuter", "active": "true"}),
    );
    let scenarios = run_builder(
        "build-user-payloads.js",
        &[
            ("RELAY_SN_USER_SYS_ID", user.clone()),
            ("RELAY_SN_INTEGRATION_USER", DEFAULT_USER.into()),
        ],
    );
    let names: Vec<&str> = scenarios.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "user inserted",
            "added to Software Engineering",
            "pairing written by the integration user (echo)",
            "removed from Software Engineering",
            "added to Service Desk",
            "update of an unwatched field",
            "deactivated",
        ]
    );
    let sent: Vec<&Value> = scenarios.iter().filter(|s| s.1).map(|s| &s.2).collect();
    assert_eq!(
        sent.len(),
        5,
        "the echo and the unwatched update are not sent"
    );
    // when every payload goes through the relay, one at a time as the
    // business rule sends them
    let mut after_move = Vec::new();
    for payload in &sent {
        assert_eq!(r.post_sn(payload).await, 202, "{payload}");
        assert_eq!(r.pump().await, 0, "no failed rounds");
        if payload["group"] == "Service Desk" {
            after_move = r
                .jira
                .group_members("jira-servicemanagement-users")
                .unwrap();
        }
    }
    // then one Jira account, moved to the Service Desk group, then out of every group
    assert_eq!(r.dead_letters().await, Vec::<(String, String)>::new());
    let accounts = r.jira.accounts();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0].1.as_deref(), Some("abel.tuter@example.com"));
    assert_eq!(after_move, [accounts[0].0.clone()]);
    for g in [
        "jira-software-users",
        "jira-servicemanagement-users",
        "jira-admins",
    ] {
        assert_eq!(
            r.jira.group_members(g).unwrap(),
            Vec::<String>::new(),
            "{g}"
        );
    }
    let paired = r.sn.find("sys_user", "sys_id", &user).unwrap();
    assert_eq!(paired["u_jira_account_id"], json!(accounts[0].0));
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
}
