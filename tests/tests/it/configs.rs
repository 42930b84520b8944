//! The configurations shipped in the repository load and validate.

use relay_tests::repo_path as repo;
use shared::config::{Config, SourceKind};

/// `RELAY_*` variables the template sets on the functions (`NAME: value` lines).
fn template_variables() -> Vec<String> {
    let text = std::fs::read_to_string(repo("template.yaml")).unwrap();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let name = l.split(':').next()?;
            (name.starts_with("RELAY_")
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn deployed_config_loads_with_the_template_environment() {
    // given the deployed config and the variables the template sets
    let path = repo("config/relay.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let set = template_variables();
    // Every `${NAME}` the deployed config uses is set by the template.
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    // then every variable it uses is set by the template
    let used: Vec<&str> = code
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split('}').next())
        .collect();
    for name in &used {
        assert!(
            set.iter().any(|s| s == name),
            "config/relay.yaml uses ${{{name}}}, which template.yaml does not set"
        );
    }
    // when it loads with the template's environment
    let env = |name: &str| match name {
        "RELAY_PAYLOAD_LIMIT_BYTES" => Some("250000".to_owned()),
        "RELAY_STAGE" => Some("prod".to_owned()),
        "RELAY_SERVICENOW_URL" => Some("https://example.service-now.com".to_owned()),
        "RELAY_JIRA_URL" => Some("https://example.atlassian.net".to_owned()),
        "RELAY_JIRA_INTEGRATION_ACCOUNT_ID" => Some("557058:relay-integration".to_owned()),
        "RELAY_SERVICENOW_INTEGRATION_USER" => Some("relay.integration".to_owned()),
        n if n.ends_with("_SECRET_ARN") => Some(format!(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jira-relay/prod/{}-AbCdEf",
            n.to_lowercase()
        )),
        _ => None,
    };
    let config = Config::from_yaml(&text, &path, env).unwrap_or_else(|e| panic!("{e}"));
    // then
    let jira = config.endpoint("jira").unwrap();
    assert_eq!(jira.kind, SourceKind::Jira);
    assert!(jira
        .auth
        .token
        .as_ref()
        .unwrap()
        .secret
        .starts_with("arn:aws:secretsmanager:"));
    assert_eq!(
        config.endpoint("servicenow").unwrap().kind,
        SourceKind::Servicenow
    );
    assert_eq!(config.connections.len(), 2);
    assert!(config.rules.len() >= 10);
    assert_eq!(config.limits.max_body_bytes, 250_000);

    // Without the template's environment the error names the variable and line.
    // when it loads without it
    let err = Config::from_yaml(&text, &path, |_| None)
        .unwrap_err()
        .to_string();
    // then the error names the variable and line
    assert!(err.contains("RELAY_PAYLOAD_LIMIT_BYTES"), "{err}");
    assert!(err.contains("config/relay.yaml:"), "{err}");
}

#[test]
fn local_example_config_loads() {
    // given the local example config
    // when it is loaded
    let config = Config::load(repo("examples/relay.local.yaml")).unwrap_or_else(|e| panic!("{e}"));
    // then
    assert_eq!(config.endpoints.len(), 2);
}

#[tokio::test]
async fn example_secrets_file_serves_the_example_config() {
    use shared::secrets::{LocalSecretStore, SecretStore};
    use std::os::unix::fs::PermissionsExt;
    // given the example secrets file (mode 600)
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.yaml");
    std::fs::copy(repo("examples/secrets.example.yaml"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = LocalSecretStore::open_with_env(&file, []).unwrap();
    // when the example config's secrets are resolved from it
    let config = Config::load(repo("examples/relay.local.yaml")).unwrap();
    // then each resolves
    for ep in &config.endpoints {
        for r in ep.auth.secret_refs() {
            store
                .resolve(r)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", ep.name));
        }
    }
}

/// The worker parses a payload through its endpoint's projection (only what
/// the rules can read is built). For every shipped config, every endpoint and
/// every real payload of its kind, the plan from the projected payload is the
/// plan from the whole one.
#[test]
fn every_shipped_config_plans_the_projected_payload_as_the_whole() {
    use relay_tests::fixture_files;
    // given the shipped configs and the real payloads
    let Some(jira) = fixture_files("jira-webhooks") else {
        return;
    };
    let Some(sn) = fixture_files("servicenow") else {
        return;
    };
    let mut jira_bodies: Vec<serde_json::Value> = jira
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    // The comment, worklog and attachment events also as `jira:issue_updated`
    // with a `changelog`, so that `changed:` conditions read something.
    for v in jira_bodies.clone() {
        let mut v = v;
        v["webhookEvent"] = "jira:issue_updated".into();
        if v.get("changelog").is_none() {
            v["changelog"] = serde_json::json!({"items": [
                {"field": "status", "fieldId": "status", "fromString": "Open", "toString": "Done"},
                {"field": "priority", "fromString": "Low", "toString": "High"}]});
        }
        jira_bodies.push(v);
    }
    let mut sn_bodies = Vec::new();
    for (_, b) in &sn {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        let records = match &v["result"] {
            serde_json::Value::Array(a) => a.clone(),
            serde_json::Value::Object(_) => vec![v["result"].clone()],
            _ => Vec::new(),
        };
        for r in records.into_iter().filter(|r| r.is_object()) {
            for event in [
                "incident.created",
                "incident.updated",
                "incident.commented",
                "incident.attachment",
            ] {
                let mut r = r.clone();
                r["event"] = event.into();
                r["comment"] = "a work note".into();
                r["attachment"] = serde_json::json!({"sys_id": "a1", "file_name": "x.log", "download_url": "https://x/a1"});
                sn_bodies.push(r);
            }
        }
    }
    assert!(jira_bodies.len() >= 36 && sn_bodies.len() >= 8);
    let mut files: Vec<_> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml") && !p.ends_with("secrets.example.yaml")
        })
        .collect();
    files.push(repo("config/relay.yaml"));
    let env = |name: &str| {
        Some(match name {
            n if n.ends_with("_URL") => "https://example.invalid".to_owned(),
            n if n.ends_with("_BYTES") => "250000".to_owned(),
            "RELAY_STAGE" => "prod".to_owned(),
            n if n.ends_with("_ARN") => {
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbCdEf".to_owned()
            }
            _ => "x".to_owned(),
        })
    };
    let mut planned = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let config = Config::from_yaml(&text, file, env).unwrap_or_else(|e| panic!("{e}"));
        for ep in &config.endpoints {
            let bodies = match ep.kind {
                SourceKind::Jira => &jira_bodies,
                SourceKind::Servicenow => &sn_bodies,
            };
            for whole in bodies {
                // when it is planned from the whole payload and from the projected one
                let text = whole.to_string();
                let projected = shared::rules::engine::parse_for(&config, &ep.name, &text).unwrap();
                let a = shared::rules::plan(&config, &ep.name, whole).unwrap();
                let b = shared::rules::plan(&config, &ep.name, &projected).unwrap();
                // then the plans are the same
                assert_eq!(a, b, "{} / {}: {text}", file.display(), ep.name);
                planned += 1;
                // and the projection did leave something out of real Jira payloads
                if ep.kind == SourceKind::Jira && whole.get("issue").is_some() {
                    assert!(
                        projected.to_string().len() < text.len(),
                        "{}",
                        file.display()
                    );
                }
            }
        }
    }
    assert!(planned > 200, "{planned}");
}
