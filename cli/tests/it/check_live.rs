//! `relay check --live` against the sandboxes: the shipped two-way config
//! (`config/relay.yaml`) passes against a Jira site and a ServiceNow
//! instance set up as it expects; each planted mistake is found and printed
//! with its config line, and the exit code says so.

use crate::common::{chmod, relay, shipped};
use sandbox::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use std::path::{Path, PathBuf};

/// `config/relay.yaml` with its `${…}` filled in for the sandboxes.
fn secrets(dir: &Path) -> PathBuf {
    let path = dir.join("secrets.yaml");
    std::fs::write(
        &path,
        format!(
            "secrets:\n  relay/jira:\n    email: {DEFAULT_EMAIL}\n    api_token: {DEFAULT_API_TOKEN}\n  relay/servicenow:\n    username: {DEFAULT_USER}\n    password: {DEFAULT_PASSWORD}\n"
        ),
    )
    .unwrap();
    chmod(&path, 0o600);
    path
}

/// 1-based line of the first line containing `needle` (after `after`).
fn line_of(text: &str, needle: &str, after: &str) -> usize {
    let start = text.find(after).expect(after);
    let offset = start + text[start..].find(needle).expect(needle);
    text[..offset].matches('\n').count() + 1
}

/// The stderr line for the problem at `line`, which must mention `what`.
fn reported(err: &str, config: &Path, line: usize, what: &str) {
    let prefix = format!("{}:{line}", config.display());
    assert!(
        err.lines().any(|l| (l.starts_with(&format!("{prefix}:"))
            || l.starts_with(&format!("{prefix} ")))
            && l.contains(what)),
        "no problem at line {line} mentioning `{what}`:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_passes_and_each_planted_mistake_is_found_with_its_line() {
    let jira = JiraServer::start().await;
    let sn = ServiceNowServer::start().await;
    jira.add_project("SUP", "Support");
    jira.add_custom_field("customfield_10050", "ServiceNow Number");
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets(dir.path());
    let good = shipped(&jira.base_url(), &sn.base_url());
    let config = dir.path().join("relay.yaml");
    std::fs::write(&config, &good).unwrap();
    let args = [
        "check",
        "--live",
        config.to_str().unwrap(),
        "--secrets",
        secrets.to_str().unwrap(),
    ];

    let (ok, out, err) = relay(&args);
    assert!(ok, "the shipped config should pass:\n{out}\n{err}");
    assert!(out.contains("live check passed"), "{out}");
    assert!(out.contains("read jira (Jira"), "{out}");
    assert!(out.contains("read servicenow (ServiceNow"), "{out}");
    assert!(jira.violations().is_empty(), "{:?}", jira.violations());

    // Plant one mistake of each kind.
    let bad = good
        .replacen("\"2\": Start Progress", "\"2\": Start Progres", 1)
        .replacen(
            "      fields.labels: { value: [servicenow] }",
            "      fields.labels: { value: [servicenow] }\n      fields.customfield_10099: { value: from ServiceNow }",
            1,
        )
        .replacen(
            "close_code: { value: Solved (Permanently) }",
            "close_code: { value: Solved Permanently }",
            1,
        )
        .replacen("correlation_display: { value: jira-relay }", "correlation_displya: { value: jira-relay }", 1)
        .replacen("new: \"1\", indeterminate", "new: \"9\", indeterminate", 1);
    assert_ne!(bad, good);
    std::fs::write(&config, &bad).unwrap();
    jira.deny_permission("SUP", "CREATE_ISSUES");

    let (ok, out, err) = relay(&args);
    assert!(!ok, "planted mistakes must fail the check:\n{out}\n{err}");
    reported(
        &err,
        &config,
        line_of(&bad, "Start Progres,", "transition.name:"),
        "no workflow of SUP offers a transition named `Start Progres`",
    );
    reported(
        &err,
        &config,
        line_of(&bad, "fields.customfield_10099", ""),
        "has no field with id `customfield_10099`",
    );
    reported(
        &err,
        &config,
        line_of(&bad, "Solved Permanently", ""),
        "`Solved Permanently` is not a choice of incident.close_code",
    );
    reported(
        &err,
        &config,
        line_of(&bad, "new: \"9\"", ""),
        "`9` is not a choice of incident.state",
    );
    reported(
        &err,
        &config,
        line_of(&bad, "correlation_displya", ""),
        "has no column `correlation_displya`",
    );
    assert!(err.contains("did you mean correlation_display?"), "{err}");
    reported(
        &err,
        &config,
        line_of(&bad, "- name: create issue", ""),
        "lacks the Jira permission CREATE_ISSUES in project SUP",
    );
    assert!(err.contains("live check found 6 problem(s)"), "{err}");

    // A project the site does not have.
    let missing = good.replacen(
        "fields.project.key: { value: SUP }",
        "fields.project.key: { value: SUPP }",
        1,
    );
    std::fs::write(&config, &missing).unwrap();
    let (ok, _, err) = relay(&args);
    assert!(!ok);
    reported(
        &err,
        &config,
        line_of(&missing, "value: SUPP", ""),
        "Jira project `SUPP` does not exist",
    );
    assert!(
        err.contains("SUP (Support)"),
        "the fix lists the projects there are: {err}"
    );

    // The same config by names: the fields and the project as people
    // see them pass; a field name the site does not have is found.
    let names = good
        .replace("customfield_10050", "ServiceNow Number")
        .replacen(
            "fields.project.key: { value: SUP }",
            "fields.project.name: { value: Support }",
            1,
        );
    std::fs::write(&config, &names).unwrap();
    jira.configure_site(|s| s.denied.clear());
    let (ok, out, err) = relay(&args);
    assert!(ok, "names the site has should pass:\n{out}\n{err}");
    let bad_names = names
        .replacen(
            "      fields.labels: { value: [servicenow] }",
            "      fields.labels: { value: [servicenow] }\n      fields.Customer Impact: { value: High }",
            1,
        )
        .replacen("fields.project.name: { value: Support }", "fields.project.name: { value: Suport }", 1);
    std::fs::write(&config, &bad_names).unwrap();
    let (ok, _, err) = relay(&args);
    assert!(!ok);
    reported(
        &err,
        &config,
        line_of(&bad_names, "fields.Customer Impact", ""),
        "has no field named `Customer Impact`",
    );
    assert!(
        err.contains("customfield_10050 (ServiceNow Number)"),
        "the fix lists the custom fields: {err}"
    );
    reported(
        &err,
        &config,
        line_of(&bad_names, "value: Suport", ""),
        "no project named `Suport`",
    );

    // Credentials the system refuses: said, not a pass.
    sn.set_basic("someone", "else");
    std::fs::write(&config, &good).unwrap();
    let (ok, _, err) = relay(&args);
    assert!(!ok);
    assert!(err.contains("cannot read connection `servicenow`"), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains(DEFAULT_PASSWORD), "{err}");
}

/// The identity examples: the groups `group_member` rules name, the
/// products `user` rules give and the global ADMINISTER they need are
/// checked on the site; each planted mistake is found with its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_groups_products_and_the_admin_permission_are_checked() {
    for (example, groups, dc) in [
        (
            "servicenow-users-to-jira",
            [
                "jira-software-users",
                "jira-servicemanagement-users",
                "jira-admins",
            ],
            false,
        ),
        (
            "servicenow-users-to-jira-datacenter",
            [
                "jira-software-users",
                "jira-servicedesk-users",
                "jira-administrators",
            ],
            true,
        ),
    ] {
        let jira = JiraServer::start().await;
        let sn = ServiceNowServer::start().await;
        jira.set_data_center(dc);
        jira.set_bearer("dc-pat");
        groups.iter().for_each(|g| jira.add_group(g));
        jira.add_group("jira-software-users-old");
        sn.allow_fields(
            "sys_user",
            &["u_jira_account_id", "u_jira_username", "locked_out"],
        );
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets.yaml");
        std::fs::write(
            &secrets,
            format!(
                "secrets:\n  relay/jira-admin:\n    email: {DEFAULT_EMAIL}\n    api_token: {DEFAULT_API_TOKEN}\n  relay/jira-dc:\n    pat: dc-pat\n  relay/servicenow:\n    username: {DEFAULT_USER}\n    password: {DEFAULT_PASSWORD}\n  relay/servicenow-sender:\n    username: s\n    password: p\n  relay/webhook:\n    token: t\n"
            ),
        )
        .unwrap();
        chmod(&secrets, 0o600);
        let good =
            std::fs::read_to_string(crate::common::repo().join(format!("examples/{example}.yaml")))
                .unwrap()
                .replace("https://example.atlassian.net", &jira.base_url())
                .replace("https://jira.example.com", &jira.base_url())
                .replace("https://example.service-now.com", &sn.base_url());
        let config = dir.path().join("relay.yaml");
        std::fs::write(&config, &good).unwrap();
        let args = [
            "check",
            "--live",
            config.to_str().unwrap(),
            "--secrets",
            secrets.to_str().unwrap(),
        ];
        let (ok, out, err) = relay(&args);
        assert!(ok, "{example} should pass:\n{out}\n{err}");
        assert!(jira.violations().is_empty(), "{:?}", jira.violations());

        // A group the site lacks (in a value table), a product it does not
        // sell, and an integration user who is no Jira administrator.
        let bad = good
            .replacen(
                "Software Engineering: jira-software-users",
                "Software Engineering: jira-software-user",
                1,
            )
            .replacen(
                "products: { value: [jira-software] }",
                "products: { value: [jira-softwear] }",
                1,
            );
        assert_ne!(bad, good);
        std::fs::write(&config, &bad).unwrap();
        jira.deny_permission("", "ADMINISTER");
        let (ok, out, err) = relay(&args);
        assert!(!ok, "{example}: planted mistakes must fail:\n{out}\n{err}");
        reported(
            &err,
            &config,
            line_of(&bad, "Software Engineering: jira-software-user\n", ""),
            "has no group `jira-software-user`",
        );
        assert!(
            err.contains("jira-software-users, jira-software-users-old"),
            "{example}: the fix lists the close groups: {err}"
        );
        reported(
            &err,
            &config,
            line_of(&bad, "jira-softwear", ""),
            "no product (application role) `jira-softwear`",
        );
        assert!(err.contains("jira-software (Jira Software)"), "{err}");
        reported(
            &err,
            &config,
            line_of(&bad, "- name: joiner account", ""),
            "lacks the global permission ADMINISTER",
        );
        assert!(
            err.contains("live check found 3 problem(s)"),
            "{example}: {err}"
        );
    }
}
