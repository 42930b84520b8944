//! `relay jira webhook register|list|delete` against the Jira sandbox's
//! admin webhook API, as an operator runs it.

use crate::common::{relay, repo};
use sandbox::jira_server::JiraServer;

const TOKEN: &str = "wh-token-8c21f0";
const HMAC: &str = "wh-hmac-3e9a77";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_list_and_delete_the_admin_webhook() {
    let jira = JiraServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo().join("examples/jira-to-servicenow.yaml"))
        .unwrap()
        .replace("https://example.atlassian.net", &jira.base_url());
    let config_path = dir.path().join("relay.yaml");
    std::fs::write(&config_path, config).unwrap();
    let secrets = dir.path().join("secrets.yaml");
    std::fs::write(
        &secrets,
        format!("secrets:\n  relay/webhook:\n    token: {TOKEN}\n    hmac: {HMAC}\n  relay/jira:\n    email: relay@example.com\n    api_token: jira-api-token\n"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let common = [
        "--config",
        config_path.to_str().unwrap(),
        "--secrets",
        secrets.to_str().unwrap(),
        "--connection",
        "jira-site",
    ];
    let mut args = vec!["jira", "webhook", "register"];
    args.extend(common);
    args.extend([
        "--public-url",
        "https://relay.example.com/prod",
        "--jql",
        "project = SUP",
    ]);
    let (ok, out, err) = relay(&args);
    assert!(ok, "{err}");
    assert!(
        out.contains("https://relay.example.com/prod/webhooks/jira?token=<relay/webhook#token>"),
        "{out}"
    );
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN) && !out.contains(HMAC));

    // What Jira holds: the real URL with the token, the HMAC key as secret.
    let hooks = jira.admin_webhooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["url"],
        format!("https://relay.example.com/prod/webhooks/jira?token={TOKEN}")
    );
    assert_eq!(hooks[0]["secretSet"], true);
    assert_eq!(
        hooks[0]["filters"]["issue-related-events-section"],
        "project = SUP"
    );
    let events: Vec<&str> = hooks[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for e in [
        "jira:issue_created",
        "jira:issue_updated",
        "comment_created",
        "attachment_created",
    ] {
        assert!(events.contains(&e), "{events:?}");
    }

    let mut args = vec!["jira", "webhook", "list"];
    args.extend(common);
    let (ok, out, _) = relay(&args);
    assert!(ok);
    assert!(
        out.starts_with("1  jira-relay jira  ") && out.contains("1 webhook(s)"),
        "{out}"
    );
    assert!(!out.contains(TOKEN), "{out}");

    let mut args = vec!["jira", "webhook", "delete", "1"];
    args.extend(common);
    let (ok, out, err) = relay(&args);
    assert!(ok, "{err}");
    assert_eq!(out, "deleted webhook 1\n");
    assert!(jira.admin_webhooks().is_empty());

    // A bad id and an unknown connection are clear errors.
    let mut args = vec!["jira", "webhook", "delete", "7"];
    args.extend(common);
    let (ok, _, err) = relay(&args);
    assert!(!ok && err.contains("Jira answered 404"), "{err}");
    let (ok, _, err) = relay(&[
        "jira",
        "webhook",
        "list",
        "--config",
        config_path.to_str().unwrap(),
        "--secrets",
        secrets.to_str().unwrap(),
        "--connection",
        "servicenow",
    ]);
    assert!(!ok && err.contains("not a jira connection"), "{err}");
}
