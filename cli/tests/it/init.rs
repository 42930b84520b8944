//! `relay init` as a new user runs it: flags in, a config and a secrets
//! skeleton out; the config loads, passes `relay check --live` against the
//! sandboxes, and `relay serve` on it takes a record round trip both ways
//! (a Jira-born issue becomes an incident and the pairing is written back;
//! a ServiceNow-born incident becomes an issue and the pairing is written
//! back). Refusals: existing files kept without --force, a bad project key.

use crate::common::{free_port, relay, Serve};
use sandbox::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The value under `section:` / `key:` in the written secrets file.
fn secret(text: &str, section: &str, key: &str) -> String {
    let start = text.find(&format!("  {section}:\n")).expect(section);
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .expect(key)
        .to_owned()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn init(dir: &Path, jira: &str, sn: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "init",
        "--jira-url",
        jira,
        "--servicenow-url",
        sn,
        "--project",
        "SUP",
        "--correlation-field",
        "customfield_10050",
        "--jira-integration-account",
        "712020:relay-integration",
        "--direction",
        "both",
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend(extra);
    relay(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_config_that_validates_checks_live_and_round_trips_both_ways() {
    let jira = JiraServer::start().await;
    let sn = ServiceNowServer::start().await;
    jira.add_project("SUP", "Support");
    jira.add_custom_field("customfield_10050", "ServiceNow Number");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = init(dir.path(), &jira.base_url(), &sn.base_url(), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("relay.yaml") && out.contains("chmod 600"),
        "{out}"
    );
    let config = dir.path().join("relay.yaml");
    let secrets = dir.path().join("secrets.yaml");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secrets).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "secrets file mode {mode:o}");
    }
    let yaml = std::fs::read_to_string(&config).unwrap();
    assert!(
        yaml.starts_with("# jira-relay: Jira SUP <-> ServiceNow incident, both ways."),
        "{yaml}"
    );
    assert!(!yaml.contains("${"), "no unfilled placeholder: {yaml}");

    // Again without --force: refused, nothing replaced.
    let (ok, _, err) = init(dir.path(), &jira.base_url(), &sn.base_url(), &[]);
    assert!(!ok && err.contains("exists; pass --force"), "{err}");
    let (ok, _, err) = relay(&[
        "init",
        "--jira-url",
        &jira.base_url(),
        "--servicenow-url",
        &sn.base_url(),
        "--project",
        "sup-1",
        "--direction",
        "both",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("is not a Jira project key"), "{err}");
    // No terminal and a missing answer: the flag is named.
    let (ok, _, err) = relay(&["init", "--out", dir.path().to_str().unwrap()]);
    assert!(!ok && err.contains("pass --jira-url"), "{err}");

    // The operator fills in the credentials.
    let skeleton = std::fs::read_to_string(&secrets).unwrap();
    assert_eq!(skeleton.matches(": CHANGE-ME-").count(), 3, "{skeleton}");
    let filled = skeleton
        .replace("CHANGE-ME-integration-user@example.com", DEFAULT_EMAIL)
        .replace("CHANGE-ME-api-token", DEFAULT_API_TOKEN)
        .replace("CHANGE-ME-password", DEFAULT_PASSWORD);
    std::fs::write(&secrets, &filled).unwrap();

    let (ok, out, err) = relay(&["validate", config.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = relay(&[
        "check",
        "--live",
        config.to_str().unwrap(),
        "--secrets",
        secrets.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "relay check --live on the written config:\n{out}\n{err}"
    );

    // relay serve on it: a round trip each way.
    let port = free_port();
    let mut serve = Serve::spawn_logged(
        dir.path(),
        port,
        &["--console", "off", "--workers", "2"],
        "info",
    );
    serve.ready().await;
    let client = reqwest::Client::new();
    let token = secret(&filled, "relay/webhook", "token");
    let sender = secret(&filled, "relay/servicenow-sender", "password");

    // Jira-born.
    let key = jira.seed_issue(
        "SUP",
        json!({"summary": "Printer on fire", "issuetype": {"name": "Incident"}, "priority": {"name": "High"}}),
    );
    let id = jira.issue(&key).unwrap().id;
    let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "timestamp": 1764842400000u64, "user": {"accountId": "712020:agent", "displayName": "Ann Agent"},
        "issue": {"id": id, "key": key, "fields": {"summary": "Printer on fire", "priority": {"name": "High"}}}});
    let status = client
        .post(format!("{}/webhooks/jira?token={token}", serve.base))
        .header("X-Atlassian-Webhook-Identifier", "init-1")
        .header("content-type", "application/json")
        .body(created.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let number = until("the incident", || {
        sn.find("incident", "correlation_id", &key)
            .map(|i| text(&i["number"]).to_owned())
    })
    .await;
    until("the pairing written back into the issue", || {
        let i = jira.issue(&key)?;
        (text(&i.fields["customfield_10050"]) == number).then_some(())
    })
    .await;

    // ServiceNow-born.
    let sys_id = sn.seed(
        "incident",
        json!({"short_description": "VPN drops every hour", "priority": "2", "state": "1"}),
    );
    let inc = sn.find("incident", "sys_id", &sys_id).unwrap();
    let born = text(&inc["number"]).to_owned();
    let event = json!({"event": "incident.created", "sys_id": sys_id, "number": born,
        "short_description": "VPN drops every hour", "description": "", "priority": "2",
        "state": "1", "sys_updated_by": "beth.anglin", "sys_updated_on": "2026-12-04 10:00:00"});
    let status = client
        .post(format!("{}/webhooks/servicenow", serve.base))
        .basic_auth("relay-sender", Some(&sender))
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let new_key = until("the Jira issue", || {
        jira.issues()
            .into_iter()
            .find(|i| text(&i.fields["customfield_10050"]) == born)
            .map(|i| i.key)
    })
    .await;
    until("the pairing written back into the incident", || {
        let i = sn.find("incident", "sys_id", &sys_id)?;
        (text(&i["correlation_id"]) == new_key).then_some(())
    })
    .await;
    assert_eq!(jira.issues().len(), 2, "one issue each way, nothing twice");
    assert_eq!(sn.records("incident").len(), 2);
    assert!(jira.violations().is_empty(), "{:?}", jira.violations());
    let log = serve.stop().await;
    assert_eq!(log.matches("\"outcome\":\"applied\"").count(), 2, "{log}");
    for s in [DEFAULT_PASSWORD, DEFAULT_API_TOKEN, &token, &sender] {
        assert!(!log.contains(s), "a secret in the log");
    }
}

#[test]
fn init_writes_one_way_configs_that_validate() {
    for (direction, kept, dropped) in [
        ("jira-to-servicenow", "create incident", "create issue"),
        ("servicenow-to-jira", "create issue", "create incident"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (ok, out, err) = relay(&[
            "init",
            "--jira-url",
            "https://example.atlassian.net",
            "--servicenow-url",
            "https://example.service-now.com",
            "--project",
            "OPS",
            "--direction",
            direction,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert!(ok, "{out}{err}");
        let config = dir.path().join("relay.yaml");
        let yaml = std::fs::read_to_string(&config).unwrap();
        assert!(
            yaml.contains(&format!("- name: {kept}\n")),
            "{direction}: {yaml}"
        );
        assert!(
            !yaml.contains(&format!("- name: {dropped}\n")),
            "{direction}: {yaml}"
        );
        assert!(yaml.contains("OPS"), "{yaml}");
        let (ok, out, err) = relay(&["validate", config.to_str().unwrap()]);
        assert!(ok, "{direction}: {out}{err}");
    }
}

/// Drives `relay init` on a pseudo-terminal (Python's `pty`, which every
/// machine of the test command has): each question is answered as typed.
const PTY_DRIVER: &str = r#"
import os, pty, sys, time
binary, out = sys.argv[1], sys.argv[2]
# Each prompt whole, up to its ": ": a prompt reaches the pty in pieces,
# and an answer typed after its first piece lands inside it. (Also, what
# follows the last answer may be lost when the child exits and the pty
# closes.)
answers = [("Jira site URL (https://\u2026atlassian.net): ", "https://example.atlassian.net"),
           ("ServiceNow instance URL (https://\u2026service-now.com): ", "https://example.service-now.com"),
           ("Jira project key: ", "ops"),
           ("servicenow-to-jira [both]: ", "servicenow-to-jira"),
           ("[customfield_10050]: ", "")]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "init", "--out", out])
buf = b""
def read_until(text):
    global buf
    end = time.time() + 20
    while text.encode() not in buf:
        if time.time() > end:
            sys.exit("no prompt %r in %r" % (text, buf))
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            sys.exit("closed before %r: %r" % (text, buf))
        buf += chunk
for prompt, answer in answers:
    read_until(prompt)
    os.write(fd, (answer + "\n").encode())
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    buf += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(buf.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn init_asks_on_a_terminal() {
    let python = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok()
    });
    let Some(python) = python else {
        assert!(
            std::env::var("CI").is_err(),
            "python3 is needed to drive relay init on a pseudo-terminal"
        );
        eprintln!("SKIPPED: no python3 on this machine; the interactive relay init is NOT tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python)
        .args([
            "-c",
            PTY_DRIVER,
            crate::common::BIN,
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{transcript}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        transcript.contains("Direction: both, jira-to-servicenow or servicenow-to-jira [both]"),
        "{transcript}"
    );
    assert!(
        transcript.contains("[customfield_10050]"),
        "the default is offered: {transcript}"
    );
    let config = dir.path().join("relay.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    assert!(
        yaml.starts_with("# jira-relay: Jira OPS <-> ServiceNow incident, ServiceNow -> Jira."),
        "{yaml}"
    );
    assert!(yaml.contains("https://example.service-now.com") && yaml.contains("customfield_10050"));
    assert!(
        !yaml.contains("- name: create incident\n"),
        "one way only: {yaml}"
    );
    let (ok, out, err) = relay(&["validate", config.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(dir.path().join("secrets.yaml").exists());
}

/// `--discover` with credentials: the correlation field is named as Jira
/// shows it and found on the live site under its id there; the project and
/// issue type are checked, and the written config passes the live check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_discover_finds_the_field_by_name_on_the_live_site() {
    let jira = JiraServer::start().await;
    let sn = ServiceNowServer::start().await;
    jira.add_project("SUP", "Support");
    jira.add_custom_field("customfield_10777", "ServiceNow Number");
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("existing-secrets.yaml");
    std::fs::write(
        &secrets,
        format!(
            "secrets:\n  relay/jira: {{ email: {DEFAULT_EMAIL}, api_token: {DEFAULT_API_TOKEN} }}\n  relay/servicenow: {{ username: {}, password: {DEFAULT_PASSWORD} }}\n",
            sandbox::servicenow_server::DEFAULT_USER
        ),
    )
    .unwrap();
    crate::common::chmod(&secrets, 0o600);
    let (jira_url, sn_url) = (jira.base_url(), sn.base_url());
    let out_dir = dir.path().join("out");
    let args = |field: &str| {
        vec![
            "init".to_owned(),
            "--jira-url".into(),
            jira_url.clone(),
            "--servicenow-url".into(),
            sn_url.clone(),
            "--project".into(),
            "SUP".into(),
            "--correlation-field".into(),
            field.into(),
            "--direction".into(),
            "both".into(),
            "--discover".into(),
            "--secrets".into(),
            secrets.to_str().unwrap().into(),
            "--out".into(),
            out_dir.to_str().unwrap().into(),
            "--force".into(),
        ]
    };
    let run = |field: &str| {
        let a = args(field);
        relay(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // when the field is given by its name
    let (ok, out, err) = run("servicenow number");
    // then its id on this site is written, and the live check passes
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("correlation field: customfield_10777 (ServiceNow Number)"),
        "{err}"
    );
    let yaml = std::fs::read_to_string(out_dir.join("relay.yaml")).unwrap();
    assert!(yaml.contains("customfield_10777"), "{yaml}");
    assert!(!yaml.contains("customfield_10050"), "{yaml}");
    assert!(out.contains("live check passed"), "{out}");
    assert!(
        !out_dir.join("secrets.yaml").exists(),
        "with --discover the existing secrets file is used, no skeleton written"
    );
    // when the name is one the site does not have
    let (ok, _, err) = run("Incident Number");
    // then it says so and lists the custom fields there are
    assert!(!ok);
    assert!(
        err.contains("no field `Incident Number`")
            && err.contains("customfield_10777 (ServiceNow Number)"),
        "{err}"
    );
}
