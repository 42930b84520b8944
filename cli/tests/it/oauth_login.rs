//! `relay jira oauth login` end to end against the Jira sandbox's
//! Atlassian-like token endpoint: the binary prints the authorize URL, the
//! test plays the browser (the sandbox's consent hands out a code, then the
//! redirect to the callback), and the refresh token lands in the secrets file.

use crate::common::BIN;
use sandbox::jira_server::{JiraServer, CLOUD_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use std::io::BufRead;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_the_refresh_token_and_prints_the_cloud_id() {
    let jira = JiraServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = include_str!("../configs/oauth-3lo.yaml")
        .replace("{BASE}", &jira.base_url())
        .replace("{CLOUD_ID}", CLOUD_ID);
    let config_path = dir.path().join("relay.yaml");
    std::fs::write(&config_path, config).unwrap();
    let secrets = dir.path().join("secrets.yaml");
    std::fs::write(
        &secrets,
        format!("secrets:\n  relay/webhook: {{ token: t }}\n  relay/jira: {{ client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET} }}\n"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut child = Command::new(BIN)
        .args([
            "jira",
            "oauth",
            "login",
            "--connection",
            "jira",
            "--config",
            config_path.to_str().unwrap(),
            "--secrets",
            secrets.to_str().unwrap(),
            "--port",
            "0",
            "--no-browser",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read until the authorize URL shows up; keep the rest for later.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("/authorize?") {
                let _ = url_tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let authorize = tokio::task::spawn_blocking(move || {
        url_rx.recv_timeout(std::time::Duration::from_secs(60))
    })
    .await
    .unwrap()
    .expect("the authorize URL is printed");
    let authorize = reqwest::Url::parse(&authorize).unwrap();
    assert!(authorize
        .as_str()
        .starts_with(&format!("{}/authorize?", jira.base_url())));
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], DEFAULT_CLIENT_ID);
    assert_eq!(q["audience"], "api.atlassian.com");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["scope"], "read:jira-work offline_access");
    let redirect = &q["redirect_uri"];
    assert!(redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"));

    // The browser: consent gives a code, then the redirect.
    let code = jira.issue_auth_code(DEFAULT_CLIENT_ID, redirect);
    let http = reqwest::Client::new();
    let forged = http
        .get(redirect)
        .query(&[("code", code.as_str()), ("state", "not-the-state")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 400, "a foreign state is refused");
    let ok = http
        .get(redirect)
        .query(&[("code", code.as_str()), ("state", q["state"].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let out = reader.join().unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("Cloud id: {CLOUD_ID}")), "{out}");
    assert!(
        out.contains(&format!(
            "base_url is already {}/ex/jira/{CLOUD_ID}",
            jira.base_url()
        )),
        "{out}"
    );
    let valid = jira.valid_refresh_tokens();
    assert_eq!(valid.len(), 1);
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(text.contains(&valid[0]), "the refresh token is stored");
    assert!(text.contains(DEFAULT_CLIENT_SECRET), "the client is kept");
    assert!(!out.contains(&valid[0]), "the token is not printed");
}
