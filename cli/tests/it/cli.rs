//! The `relay` binary end to end: exit codes, the shipped schema, dry-run output.

use crate::common::repo;
use std::path::PathBuf;
use std::process::Command;

fn relay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn shipped_schema_equals_relay_schema() {
    let (code, out, _) = relay(&["schema"]);
    assert_eq!(code, 0);
    let shipped = std::fs::read_to_string(repo().join("schema/relay-config.schema.json")).unwrap();
    assert!(
        shipped == out,
        "schema/relay-config.schema.json is stale; regenerate it with `cargo run -p relay -- schema > schema/relay-config.schema.json`"
    );
}

#[test]
fn validate_accepts_examples_and_rejects_with_lines() {
    for ex in [
        "jira-to-servicenow",
        "servicenow-to-jira",
        "jira-to-jira",
        "jira-to-http",
        "servicenow-users-to-jira",
    ] {
        let (code, out, err) = relay(&["validate", &format!("examples/{ex}.yaml")]);
        assert_eq!(code, 0, "{ex}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
    }
    let dir = tempfile_dir();
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(repo().join("examples/jira-to-http.yaml"))
        .unwrap()
        .replace(
            "    to: hook\n    action: delete",
            "    to: hoook\n    action: delete",
        );
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = relay(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yaml:29:") && err.contains("rules[0].to: no connection is named `hoook`"),
        "{err}"
    );
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("relay-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn dry_run_prints_the_plan() {
    let (code, out, err) = relay(&[
        "dry-run",
        "--config",
        "examples/servicenow-to-jira.yaml",
        "shared/tests/events/servicenow-incident-commented.json",
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["decision"]["outcome"], "matched");
    // lookup, the look-before-repeat check, the comment.
    assert_eq!(plan["rules"][0]["steps"][1]["id"], "seen");
    assert_eq!(plan["rules"][0]["steps"][1]["check"], true);
    assert_eq!(
        plan["rules"][0]["steps"][2]["path"],
        "/rest/api/3/issue/{{lookup.key}}/comment"
    );
    assert_eq!(
        plan["rules"][0]["steps"][2]["body"]["json"]["body"]["type"],
        "doc"
    );

    let (code, _, err) = relay(&[
        "dry-run",
        "--config",
        "examples/jira-to-http.yaml",
        "--endpoint",
        "nope",
        "shared/tests/events/servicenow-echo.json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no endpoint is named `nope`"), "{err}");
}
