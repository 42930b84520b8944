//! The rules engine against real payloads and the shipped example configs.
//!
//! Every Jira webhook fixture in `../shared/fixtures/jira-webhooks` (or
//! `RELAY_FIXTURES_DIR`) is planned through every example with a Jira
//! endpoint; the plans are pinned by golden files under `tests/golden/`
//! (rewrite them with `UPDATE_GOLDEN=1` and review the diff). ServiceNow
//! events, which have no public fixtures, are small files of ours under
//! `tests/events/`. Malformed configs are checked for their line-numbered
//! messages.

use serde_json::Value;
use shared::config::{Config, ConfigError, SourceKind};
use shared::rules::plan::{Decision, RuleStatus};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fixtures directory, or `None` (with a loud skip) when it is missing;
/// under `CI=true` a missing directory fails the test.
fn fixtures(sub: &str) -> Option<Vec<(String, Value)>> {
    let base = std::env::var_os("RELAY_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/fixtures"));
    let dir = base.join(sub);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("fixtures missing at {} (CI=true)", dir.display());
        }
        eprintln!(
            "\n*** SKIPPED: fixtures missing at {} — set RELAY_FIXTURES_DIR ***\n",
            dir.display()
        );
        return None;
    };
    let mut out: Vec<(String, Value)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    Some(out)
}

const EXAMPLES: &[&str] = &[
    "jira-to-servicenow",
    "servicenow-to-jira",
    "jira-to-jira",
    "jira-to-http",
    "servicenow-tables",
    "servicenow-users-to-jira",
];

fn example(name: &str) -> Config {
    let path = repo().join(format!("examples/{name}.yaml"));
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Compares `actual` with the golden file, or writes it under UPDATE_GOLDEN=1.
fn golden(rel: &str, actual: &str) {
    let path = repo().join("shared/tests/golden").join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "golden file {} is missing; run with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the planned output:\n--- golden\n{expected}\n--- actual\n{actual}\n(UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn examples_are_valid_and_reference_the_schema() {
    for name in EXAMPLES {
        let c = example(name);
        assert!(!c.rules.is_empty(), "{name} has no rules");
        let text = std::fs::read_to_string(repo().join(format!("examples/{name}.yaml"))).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/relay-config.schema.json"),
            "{name} does not reference the schema"
        );
    }
}

/// The payload with its issue key moved to `project` (`MMTEST-12` → `CHG-12`).
fn as_project(payload: &Value, project: &str) -> Value {
    let mut p = payload.clone();
    if let Some(k) = p["issue"]["key"].as_str() {
        let n = k.rsplit('-').next().unwrap_or("1").to_owned();
        p["issue"]["key"] = Value::String(format!("{project}-{n}"));
    }
    p
}

#[test]
fn every_jira_fixture_plans_through_every_jira_example() {
    let Some(events) = fixtures("jira-webhooks") else {
        return;
    };
    for name in EXAMPLES {
        let config = example(name);
        for ep in config
            .endpoints
            .iter()
            .filter(|e| e.kind == SourceKind::Jira)
        {
            let mut matched = 0;
            for (fixture, payload) in &events {
                // The four-table example routes by project: its fixtures
                // are taken as issues of project CHG (change_request).
                let payload = &if *name == "servicenow-tables" {
                    as_project(payload, "CHG")
                } else {
                    payload.clone()
                };
                let plan = shared::rules::plan(&config, &ep.name, payload)
                    .unwrap_or_else(|e| panic!("{name} / {fixture}: {e}"));
                for r in &plan.rules {
                    // The one expected error: an attachment URL on another site.
                    let foreign = matches!(&r.status, RuleStatus::Error { message }
                        if message.starts_with("attachment_url_not_allowed: "));
                    assert!(
                        foreign || !matches!(r.status, RuleStatus::Error { .. }),
                        "{name} / {fixture}: rule `{}` failed: {:?}",
                        r.rule,
                        r.status
                    );
                }
                matched += usize::from(matches!(plan.decision, Decision::Matched { .. }));
                let json = serde_json::to_string_pretty(&plan).unwrap() + "\n";
                golden(&format!("{name}/{fixture}.json"), &json);
            }
            // An endpoint whose rules take only Jira's user events plans
            // every issue event as no rule (the goldens show it).
            let issue_rules = config
                .rules
                .iter()
                .any(|r| r.from == ep.name && !r.events.iter().all(|e| e.starts_with("user_")));
            assert!(
                matched > 0 || !issue_rules,
                "{name}: no fixture matched any rule"
            );
        }
    }
}

#[test]
fn servicenow_events_plan_through_servicenow_to_jira() {
    let config = example("servicenow-to-jira");
    let dir = repo().join("shared/tests/events");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let payload: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let plan = shared::rules::plan(&config, "servicenow", &payload).unwrap();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        golden(
            &format!("servicenow-to-jira/{stem}.json"),
            &(serde_json::to_string_pretty(&plan).unwrap() + "\n"),
        );
    }
}

/// Identity events (`shared/tests/events-identity/`, shaped as the business
/// rule and Jira send them) through `servicenow-users-to-jira`: the planned
/// calls are golden files, and the main ones are spelled out here.
/// Every step of every rule of `plan`, as `line` writes it.
fn step_lines(
    plan: &shared::rules::plan::Plan,
    line: impl Fn(&shared::rules::plan::Step) -> String,
) -> Vec<String> {
    plan.rules.iter().flat_map(|r| &r.steps).map(line).collect()
}

/// Plans every event of `shared/tests/events-identity` through `example`
/// (golden files under `golden/<example>/`), by file stem.
fn identity_plans(
    example_name: &str,
) -> std::collections::BTreeMap<String, shared::rules::plan::Plan> {
    let config = example(example_name);
    let dir = repo().join("shared/tests/events-identity");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut plans = std::collections::BTreeMap::new();
    for p in names {
        let payload: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let endpoint = if stem.starts_with("jira-") {
            "jira"
        } else {
            "servicenow"
        };
        let plan = shared::rules::plan(&config, endpoint, &payload).unwrap();
        golden(
            &format!("{example_name}/{stem}.json"),
            &(serde_json::to_string_pretty(&plan).unwrap() + "\n"),
        );
        plans.insert(stem, plan);
    }
    plans
}

#[test]
fn identity_events_plan_through_servicenow_users_to_jira() {
    let plans = identity_plans("servicenow-users-to-jira");
    let steps = |n: &str| step_lines(&plans[n], |s| format!("{} {}", s.id, s.path));
    assert_eq!(
        steps("servicenow-user-created"),
        ["lookup /rest/api/3/user/search", "create /rest/api/3/user"]
    );
    assert!(plans["servicenow-user-created"].rules[0]
        .pair_back
        .is_some());
    assert_eq!(
        steps("servicenow-grmember-created"),
        [
            "lookup /rest/api/3/user/search",
            "member0 /rest/api/3/user/groups",
            "add0 /rest/api/3/group/user"
        ]
    );
    assert!(
        matches!(&plans["servicenow-grmember-unmapped"].rules[0].status,
        RuleStatus::Skipped { reason } if reason.contains("no Jira group"))
    );
    // The leaver: out of the three product groups, nothing else.
    let leaver = steps("servicenow-user-deactivated");
    assert_eq!(
        leaver.iter().filter(|s| s.starts_with("remove")).count(),
        3,
        "{leaver:?}"
    );
    assert!(leaver
        .iter()
        .all(|s| !s.contains("/rest/api/3/user ") && !s.ends_with("/rest/api/3/user")));
    assert!(matches!(
        plans["servicenow-user-echo"].decision,
        Decision::Filtered { .. }
    ));
    // An account removed in Jira: the paired sys_user is updated, not deleted.
    let removed = &plans["jira-user-deleted"].rules[0];
    assert_eq!(
        removed.steps.iter().map(|s| s.method).collect::<Vec<_>>(),
        [
            shared::rules::plan::Method::Get,
            shared::rules::plan::Method::Patch
        ]
    );
}

#[test]
fn key_plans_say_what_they_should() {
    let Some(events) = fixtures("jira-webhooks") else {
        return;
    };
    let get = |n: &str| &events.iter().find(|(f, _)| f == n).unwrap().1;
    let config = example("jira-to-servicenow");

    // Create: idempotent lookup by correlation_id, then POST with the key.
    let plan =
        shared::rules::plan(&config, "jira", get("mattermost__jira-issue-created_cloud")).unwrap();
    let steps = &plan.rules[0].steps;
    assert_eq!(steps[0].path, "/api/now/table/incident");
    assert_eq!(steps[0].query[0].1, "correlation_id=KT-22");
    assert_eq!(steps[1].path, "/api/now/table/incident");
    let body = serde_json::to_value(&steps[1].body).unwrap();
    assert_eq!(body["json"]["correlation_id"], "KT-22");

    // Resolve: status → state 6 and close code, PATCH by the found sys_id.
    let plan = shared::rules::plan(
        &config,
        "jira",
        get("mattermost__jira-issue-updated-status_cloud"),
    )
    .unwrap();
    let Decision::Matched { rules } = &plan.decision else {
        panic!("{plan:?}")
    };
    assert!(
        rules.contains(&"status to state".to_owned())
            && rules.contains(&"resolve incident".to_owned()),
        "{rules:?}"
    );
    let resolve = plan
        .rules
        .iter()
        .find(|r| r.rule == "resolve incident")
        .unwrap();
    assert_eq!(
        resolve.steps[1].path,
        "/api/now/table/incident/{{lookup.sys_id}}"
    );
    let body = serde_json::to_value(&resolve.steps[1].body).unwrap();
    assert_eq!(body["json"]["close_code"], "Solved (Permanently)");

    // Attachments are fetched only from the `download_from` site: the
    // example's site is not the fixture's, so the rule is an error (the
    // worker dead-letters the event with this reason)...
    let attachment = get("zulip__attachment-created_cloud");
    let plan = shared::rules::plan(&config, "jira", attachment).unwrap();
    assert!(
        matches!(&plan.rules[0].status, RuleStatus::Error { message } if message.starts_with("attachment_url_not_allowed: ") && message.contains("not under https://example.atlassian.net")),
        "{plan:?}"
    );
    // ...and with the fixture's site configured it is planned.
    let text = std::fs::read_to_string(repo().join("examples/jira-to-servicenow.yaml"))
        .unwrap()
        .replace(
            "https://example.atlassian.net",
            "https://f20171170.atlassian.net",
        );
    let site = Config::from_yaml(&text, "site.yaml", |_| None).unwrap();
    let plan = shared::rules::plan(&site, "jira", attachment).unwrap();
    // With `size` mapped: the same name and size already on the record
    // means this file was uploaded before (a redelivery); not again.
    let seen = &plan.rules[0].steps[1];
    assert_eq!(seen.path, "/api/now/attachment");
    assert!(
        seen.query[0]
            .1
            .starts_with("table_sys_id={{lookup.sys_id}}^file_name=screenshot.png^size_bytes="),
        "{seen:?}"
    );
    let attach = &plan.rules[0].steps[2];
    assert_eq!(attach.path, "/api/now/attachment/file");
    assert_eq!(
        attach.run_if,
        shared::rules::plan::RunIf::NotFound("seen".into())
    );
    let body = serde_json::to_value(&attach.body).unwrap();
    assert_eq!(body["via"], "jira-site");
    assert_eq!(
        body["url"],
        "https://f20171170.atlassian.net/secure/attachment/10000/screenshot.png"
    );

    // A move re-keys the incident: found by the old key, PATCHed to the new.
    let plan = shared::rules::plan(
        &config,
        "jira",
        get("jira-to-matrix__jira-issue-updated-moved"),
    )
    .unwrap();
    assert_eq!(plan.rules[0].rule, "re-key moved issue");
    assert_eq!(plan.rules[0].steps[0].query[0].1, "correlation_id=TCP-2");
    let body = serde_json::to_value(&plan.rules[0].steps[1].body).unwrap();
    assert_eq!(body["json"]["correlation_id"], "INDEV-130");

    // Server comment without an issue object: no key in the event, so the
    // rule is skipped (waiting would not make the key appear).
    let plan =
        shared::rules::plan(&config, "jira", get("mattermost__comment-created_server")).unwrap();
    assert!(!plan.rules.is_empty());
    assert!(
        plan.rules
            .iter()
            .all(|r| matches!(r.status, RuleStatus::Skipped { .. })),
        "{plan:?}"
    );
}

#[test]
fn whitelist_drops_the_integration_users_echo() {
    let config = example("servicenow-to-jira");
    let p: Value = serde_json::from_slice(
        &std::fs::read(repo().join("shared/tests/events/servicenow-echo.json")).unwrap(),
    )
    .unwrap();
    let plan = shared::rules::plan(&config, "servicenow", &p).unwrap();
    assert!(
        matches!(plan.decision, Decision::Filtered { .. }),
        "{plan:?}"
    );
}

#[test]
fn adf_fixtures_convert_readably() {
    let Some(docs) = fixtures("adf") else { return };
    for (name, doc) in docs {
        let text = shared::rules::adf::to_text(&doc);
        let wiki = shared::rules::adf::to_wiki(&doc);
        assert!(!text.trim().is_empty() && !wiki.trim().is_empty(), "{name}");
        golden(&format!("adf/{name}.txt"), &(text + "\n"));
        golden(&format!("adf/{name}.wiki"), &(wiki + "\n"));
    }
}

fn problems(yaml: &str) -> Vec<shared::config::Problem> {
    match Config::from_yaml(yaml, "bad.yaml", |_| None) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn identity_events_plan_through_the_data_center_example() {
    let plans = identity_plans("servicenow-users-to-jira-datacenter");
    let steps = |n: &str| step_lines(&plans[n], |s| format!("{} {:?} {}", s.id, s.method, s.path));
    // A joiner: looked up (inactive users too), created by username,
    // reactivated only if a search shows the account inactive.
    assert_eq!(
        steps("servicenow-user-created"),
        [
            "lookup Get /rest/api/2/user/search",
            "create Post /rest/api/2/user",
            "state Get /rest/api/2/user/search",
            "activate Put /rest/api/2/user"
        ]
    );
    let joiner = &plans["servicenow-user-created"].rules[0].steps;
    assert!(joiner[0]
        .query
        .contains(&("includeInactive".into(), "true".into())));
    let shared::rules::plan::Body::Json { json: create } = &joiner[1].body else {
        panic!("{:?}", joiner[1].body)
    };
    assert!(create["name"].is_string() && create.get("accountId").is_none());
    assert!(create["applicationKeys"].is_array() && create.get("products").is_none());
    // A leaver: deactivated if active, never created.
    assert_eq!(
        steps("servicenow-user-deactivated"),
        [
            "lookup Get /rest/api/2/user/search",
            "state Get /rest/api/2/user/search",
            "activate Put /rest/api/2/user"
        ]
    );
    let leaver = &plans["servicenow-user-deactivated"].rules[0].steps;
    assert_eq!(leaver[0].on_empty, Some(shared::rules::plan::OnEmpty::Skip));
    assert_eq!(
        leaver[2].body,
        shared::rules::plan::Body::Json {
            json: serde_json::json!({"active": false})
        }
    );
    // Membership by username.
    assert_eq!(
        steps("servicenow-grmember-created"),
        [
            "lookup Get /rest/api/2/user/search",
            "member0 Get /rest/api/2/user",
            "add0 Post /rest/api/2/group/user"
        ]
    );
    let add = &plans["servicenow-grmember-created"].rules[0].steps[2];
    assert_eq!(
        add.body,
        shared::rules::plan::Body::Json {
            json: serde_json::json!({"name": "{{lookup.id}}"})
        }
    );
}

#[test]
fn cloud_identity_rules_refuse_data_center_fields() {
    let yaml =
        std::fs::read_to_string(repo().join("examples/servicenow-users-to-jira.yaml")).unwrap();
    let from = "      products: { value: [jira-software] }\n";
    assert!(yaml.contains(from));
    let yaml = yaml.replacen(from, &format!("{from}      active: {{ value: true }}\n"), 1);
    let p = problems(&yaml);
    let hit = p
        .iter()
        .find(|p| p.field == "rules[0].map.active")
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(hit.message.contains("org_admin"), "{hit:?}");
    assert!(hit.message.contains("organization admin API"), "{hit:?}");
}

/// A valid config the problem cases below change one line of.
const BASE: &str = include_str!("configs/base.yaml");

#[test]
fn base_config_is_valid() {
    Config::from_yaml(BASE, "ok.yaml", |_| None).unwrap();
}

#[test]
fn malformed_configs_name_line_field_and_fix() {
    let cases: &[(&str, &str, &str, u64, &str)] = &[
        ("    to: snow", "    to: snowflake", "rules[0].to", 19, "no connection is named `snowflake`"),
        ("    from: jira", "    from: jra", "rules[0].from", 18, "no endpoint is named `jra`"),
        ("      short_description: issue.fields.summary", "      short_description: issue..summary", "rules[0].map.short_description", 23, "bad path"),
        ("      short_description: issue.fields.summary", "      short_description: \"{{ issue.key | shout }}\"", "rules[0].map.short_description", 23, "unknown filter `shout`"),
        ("      short_description: issue.fields.summary", "      impact: { path: issue.fields.priority.name, table: { High: 1 }, required: true }", "rules[0].map.impact", 23, "without `default`"),
        ("      password: relay/snow#password", "      password: 'relay snow#password'", "connections[0].auth.password", 15, "secret reference"),
        ("      password: relay/snow#password\n", "", "connections[0].auth.password", 13, "needs `password`"),
        ("    base_url: https://example.service-now.com", "    base_url: http://example.service-now.com", "connections[0].base_url", 11, "not https"),
        ("    action: create", "    action: smash", "rules[0].action", 20, "unknown variant"),
        ("    action: create", "    action: attach", "rules[0].download_from", 20, "needs `download_from`"),
        ("    correlate: { key: issue.key }\n", "", "rules[0].correlate", 20, "needs to find the target record"),
        ("      token: relay/webhook#token", "      token: relay/webhook#token\n    whitelist: \"user.accountId\"", "endpoints[0].whitelist", 8, "no operator"),
        ("    to: snow", "    to: snow\n    when: { conditions: [ { path: issue.key, matches: \"(\" } ] }", "rules[0].when.conditions[0]", 20, "bad regex"),
        ("    to: snow", "    to: snow\n    when: { conditions: [ { path: issue.key, equals: a, in: [b] } ] }", "rules[0].when.conditions[0]", 20, "exactly one of"),
        ("      short_description: issue.fields.summary", "      short_description: \"{{ item.toString }}\"", "rules[0].iterate", 17, "no `iterate`"),
    ];
    for (from, to, field, line, needle) in cases {
        assert!(BASE.contains(from), "case {field}: `{from}` not in BASE");
        let yaml = BASE.replacen(from, to, 1);
        let p = problems(&yaml);
        let hit = p
            .iter()
            .find(|p| p.field == *field)
            .unwrap_or_else(|| panic!("{field}: {p:?}"));
        assert!(hit.message.contains(needle), "{field}: {hit:?}");
        assert_eq!(hit.line, Some(*line), "{field}: {hit:?}");
        let rendered = Config::from_yaml(&yaml, "bad.yaml", |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            rendered.contains(&format!("bad.yaml:{line}:")),
            "{rendered}"
        );
    }
}

#[test]
fn duplicate_rule_names_are_reported() {
    let yaml = format!("{BASE}{}", &BASE[BASE.find("  - name: create").unwrap()..]);
    let p = problems(&yaml);
    assert!(
        p.iter()
            .any(|p| p.field == "rules[1].name" && p.message.contains("twice")),
        "{p:?}"
    );
}

/// Every key the examples use is declared in the JSON Schema (the schema is
/// written by hand, so this catches a field added to the config but not to
/// the schema, which editors would then flag as an error).
#[test]
fn schema_declares_every_key_the_examples_use() {
    let schema = shared::config::schema::config_schema();
    let props = |v: &Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let top = &schema["properties"];
    let sections = [
        ("endpoints", props(&top["endpoints"]["items"])),
        ("connections", props(&top["connections"]["items"])),
        ("rules", props(&top["rules"]["items"])),
    ];
    for name in EXAMPLES {
        let text = std::fs::read_to_string(repo().join(format!("examples/{name}.yaml"))).unwrap();
        let doc: Value = serde_saphyr::from_str(&text).unwrap();
        for key in doc.as_object().unwrap().keys() {
            assert!(
                top.get(key).is_some(),
                "{name}: top-level `{key}` not in the schema"
            );
        }
        for (section, allowed) in &sections {
            for item in doc[*section].as_array().into_iter().flatten() {
                for key in item.as_object().unwrap().keys() {
                    assert!(
                        allowed.contains(key),
                        "{name}: {section}[].{key} not in the schema"
                    );
                }
            }
        }
    }
}

#[test]
fn a_user_sweep_names_a_servicenow_connection_and_a_group_table_rule() {
    let yaml =
        std::fs::read_to_string(repo().join("examples/servicenow-users-to-jira.yaml")).unwrap();
    let config = Config::from_yaml(&yaml, "ok.yaml", |_| None).unwrap();
    let spec = &config.reconcile_users["servicenow"];
    assert_eq!((spec.rule.as_str(), spec.apply), ("group joined", false));
    for (from, to, needle) in [
        (
            "      rule: group joined\n",
            "      rule: group joind\n",
            "no rule is named `group joind`",
        ),
        (
            "      rule: group joined\n",
            "      rule: leaver\n",
            "maps no ServiceNow group to a Jira group",
        ),
        (
            "      rule: group joined\n",
            "      rule: joiner account\n",
            "is not a group_member rule",
        ),
        (
            "      connection: servicenow\n      rule:",
            "      connection: jira\n      rule:",
            "not a ServiceNow connection",
        ),
        ("      every: 1h\n", "      every: 0s\n", "more than zero"),
    ] {
        assert!(yaml.contains(from), "{from}");
        let p = problems(&yaml.replacen(from, to, 1));
        assert!(
            p.iter()
                .any(|p| p.field.starts_with("endpoints[0].reconcile_users")
                    && p.message.contains(needle)),
            "{needle}: {p:?}"
        );
    }
}

#[test]
fn org_admin_names_an_http_connection_of_a_cloud_jira_connection() {
    let yaml =
        std::fs::read_to_string(repo().join("examples/servicenow-users-to-jira.yaml")).unwrap();
    let from = "    api: v3\n    auth:\n      kind: email_token";
    assert!(yaml.contains(from));
    for (org, needle) in [
        ("servicenow", "is not an `http` connection"),
        ("nowhere", "no connection is named `nowhere`"),
    ] {
        let bad = yaml.replacen(
            from,
            &from.replace("api: v3\n", &format!("api: v3\n    org_admin: {org}\n")),
            1,
        );
        let p = problems(&bad);
        assert!(
            p.iter()
                .any(|p| p.field == "connections[0].org_admin" && p.message.contains(needle)),
            "{org}: {p:?}"
        );
    }
    let dc =
        std::fs::read_to_string(repo().join("examples/servicenow-users-to-jira-datacenter.yaml"))
            .unwrap();
    let bad = dc.replacen(
        "    api: v2\n",
        "    api: v2\n    org_admin: servicenow\n",
        1,
    );
    assert!(problems(&bad)
        .iter()
        .any(|p| p.field == "connections[0].org_admin" && p.message.contains("Jira Cloud")));
}
