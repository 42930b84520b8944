//! Four ServiceNow task tables, each paired with its own Jira project, in
//! one config (`examples/servicenow-tables.yaml`), both ways: a record born
//! in ServiceNow becomes an issue in its table's project and gets the key
//! back in *its* table; a Jira status change lands in the table's own state
//! model; a ServiceNow state change moves the issue; an issue born in Jira
//! becomes a record of its project's table.

use crate::worker_flow::{Relay, JIRA_EMAIL, JIRA_TOKEN};
use relay_tests::text;
use serde_json::{json, Value};

/// (table, Jira project, number prefix, the state a Jira issue "in
/// progress" gives, a state that moves the issue, the status it reaches)
const PAIRS: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("change_request", "CHG", "CHG", "-1", "3", "Closed"),
    ("problem", "PRB", "PRB", "104", "106", "Resolved"),
    ("sc_req_item", "REQ", "RITM", "2", "3", "Closed"),
    ("sc_task", "FUL", "SCTASK", "2", "7", "Closed"),
];

#[tokio::test]
async fn each_table_pairs_with_its_own_project_both_ways() {
    // given the four-table example
    let Some(r) = Relay::start("servicenow-tables").await else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    for (n, &(table, project, prefix, progress, moves, reached)) in PAIRS.iter().enumerate() {
        // when a record is opened in ServiceNow
        let rec = r
            .sn_create(
                table,
                json!({"short_description": format!("{table} from ServiceNow")}),
            )
            .await;
        let (sys_id, number) = (
            text(&rec["sys_id"]).to_owned(),
            text(&rec["number"]).to_owned(),
        );
        assert!(number.starts_with(prefix), "{number}");
        let base = json!({"sys_id": sys_id, "number": number,
            "short_description": format!("{table} from ServiceNow"), "description": "",
            "state": rec["state"], "comments": "", "work_notes": "",
            "sys_updated_by": "beth.anglin", "changes": []});
        let event = |what: &str, extra: Value, at: u32| {
            let mut e = base.clone();
            e["event"] = json!(format!("{table}.{what}"));
            e["sys_updated_on"] = json!(format!("2026-12-04 1{n}:{at:02}:00"));
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        assert_eq!(r.post_sn(&event("created", json!({}), 0)).await, 202);
        assert_eq!(r.pump().await, 0);
        // then it is an issue in the table's project, and the record has its key
        assert!(r.dead_letters().await.is_empty(), "{table}");
        let issue = r
            .jira
            .issues()
            .into_iter()
            .find(|i| i.fields.get("customfield_10050") == Some(&json!(number)))
            .unwrap_or_else(|| panic!("no issue for {number}"));
        assert!(
            issue.key.starts_with(&format!("{project}-")),
            "{}",
            issue.key
        );
        let stored = r.sn.find(table, "sys_id", &sys_id).unwrap();
        assert_eq!(
            text(&stored["correlation_id"]),
            issue.key,
            "pair_back into {table}"
        );

        // when the issue moves to a status of category "indeterminate" in Jira
        let status = json!({"name": "In Progress", "id": "3",
            "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"}});
        let updated = json!({"webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_generic",
            "user": {"accountId": "712020:agent", "displayName": "Ann Agent"},
            "issue": {"id": issue.id.to_string(), "key": issue.key, "fields": {"summary": "x", "status": status}},
            "changelog": {"id": format!("8{n}"), "items": [{"field": "status", "fieldId": "status",
                "from": "10000", "fromString": "To Do", "to": "3", "toString": "In Progress"}]}});
        assert_eq!(r.post("jira", &updated, &format!("t-{n}")).await, 202);
        assert_eq!(r.pump().await, 0);
        // then the record is in the table's own "in progress" state
        assert!(r.dead_letters().await.is_empty(), "{table}");
        let stored = r.sn.find(table, "sys_id", &sys_id).unwrap();
        assert_eq!(text(&stored["state"]), progress, "{table} state");

        // when ServiceNow moves the record on
        let changed = event(
            "updated",
            json!({"state": moves, "changes": [{"field": "state", "from": progress, "to": moves}]}),
            10,
        );
        assert_eq!(r.post_sn(&changed).await, 202);
        assert_eq!(r.pump().await, 0);
        // then the issue follows (a transition of its workflow)
        assert!(r.dead_letters().await.is_empty(), "{table}");
        let now = r.jira.issue(&issue.key).unwrap();
        assert_eq!(now.fields["status"]["name"], json!(reached), "{table}");

        // when an issue is created in the project in Jira
        let key = r.jira.seed_issue(
            project,
            json!({"summary": format!("{project} from Jira"), "issuetype": {"name": "Task"}}),
        );
        let id = r.jira.issue(&key).unwrap().id;
        let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
            "user": {"accountId": "712020:agent", "displayName": "Ann Agent"},
            "issue": {"id": id.to_string(), "key": key,
                "fields": {"summary": format!("{project} from Jira"), "description": null}}});
        assert_eq!(r.post("jira", &created, &format!("c-{n}")).await, 202);
        assert_eq!(r.pump().await, 0);
        // then it is a record of the project's table, paired both ways
        assert!(r.dead_letters().await.is_empty(), "{table}");
        let rec =
            r.sn.find(table, "correlation_id", &key)
                .unwrap_or_else(|| panic!("no {table} record for {key}"));
        assert!(text(&rec["number"]).starts_with(prefix));
        let paired = r.jira.issue(&key).unwrap();
        assert_eq!(paired.fields["customfield_10050"], rec["number"], "{table}");
    }
    // and nothing went to a table it does not belong to
    assert!(r.sn.records("incident").is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
}
