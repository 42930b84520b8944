//! The configurations shipped in the repository load and validate.

use shared::config::{Config, SourceKind};
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn deployed_config_loads_with_the_template_environment() {
    let path = repo("config/relay.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let env = |name: &str| match name {
        "RELAY_WEBHOOK_SECRET_ARN" => Some(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jira-relay/prod/webhook-AbCdEf"
                .to_owned(),
        ),
        "RELAY_PAYLOAD_LIMIT_BYTES" => Some("250000".to_owned()),
        "RELAY_STAGE" => Some("prod".to_owned()),
        _ => None,
    };
    let config = Config::from_yaml(&text, &path, env).unwrap_or_else(|e| panic!("{e}"));
    let jira = config.endpoint("jira").unwrap();
    assert_eq!(jira.kind, SourceKind::Jira);
    assert!(jira
        .auth
        .token
        .as_ref()
        .unwrap()
        .secret
        .starts_with("arn:aws:secretsmanager:"));
    assert_eq!(config.limits.max_body_bytes, 250_000);

    // Without the template's environment the error names the variable and line.
    let err = Config::from_yaml(&text, &path, |_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("RELAY_PAYLOAD_LIMIT_BYTES"), "{err}");
    assert!(err.contains("config/relay.yaml:"), "{err}");
}

#[test]
fn local_example_config_loads() {
    let config = Config::load(repo("examples/relay.local.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.endpoints.len(), 2);
}

#[tokio::test]
async fn example_secrets_file_serves_the_example_config() {
    use shared::secrets::{LocalSecretStore, SecretStore};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.yaml");
    std::fs::copy(repo("examples/secrets.example.yaml"), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = LocalSecretStore::open_with_env(&file, []).unwrap();
    let config = Config::load(repo("examples/relay.local.yaml")).unwrap();
    for ep in &config.endpoints {
        for r in ep.auth.secret_refs() {
            store
                .resolve(r)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", ep.name));
        }
    }
}
