//! User mapping with the shipped two-way config: a Jira assignee becomes
//! the incident's `assigned_to` (by the e-mail Jira shows, or by `pairs`
//! for the accounts Jira Cloud hides), a ServiceNow `assigned_to` becomes
//! the issue's assignee (by `sys_user.email` and Jira's user search, or
//! `pairs` read backwards); a person nobody knows is logged and left out,
//! and the event is applied all the same.

use crate::logcap::Captured;
use crate::two_way::shipped;
use crate::worker_flow::{Relay, JIRA_EMAIL, JIRA_TOKEN};
use relay_tests::text;
use serde_json::{json, Value};

#[tokio::test]
async fn people_follow_their_records_both_ways() {
    let (logs, _guard) = Captured::start("info");
    // given the shipped config with one hidden account listed under `pairs`
    let Some(r) = Relay::start_with_config("config/relay.yaml", |y, s| {
        shipped(y, s).replace(
            "  pairs: {}",
            "  pairs:\n    \"712020:carol\": carol.hidden",
        )
    })
    .await
    else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    // Jira: Ann shows her address, Carol and Dan hide theirs, Beth shows hers.
    r.jira
        .add_user("712020:ann", "Ann Agent", Some("ann@example.com"));
    r.jira.add_user("712020:carol", "Carol Hidden", None);
    r.jira.add_user("712020:dan", "Dan Nobody", None);
    r.jira.add_user(
        "712020:beth",
        "Beth Anglin",
        Some("beth.anglin@example.com"),
    );
    // ServiceNow: the same people as sys_user records (Dan is not there).
    let user = |name: &str, email: &str| {
        r.sn.seed(
            "sys_user",
            json!({"user_name": name, "email": email, "active": "true"}),
        )
    };
    let ann = user("ann.agent", "ann@example.com");
    let carol = user("carol.hidden", "carol@example.com");
    let beth = user("beth.anglin", "beth.anglin@example.com");

    // when an issue assigned to Ann is created in Jira (Cloud payloads carry
    // no e-mail address)
    let key = r.jira.seed_issue(
        "SUP",
        json!({"summary": "Mail bounces", "issuetype": {"name": "Incident"},
               "priority": {"name": "High"}}),
    );
    let id = r.jira.issue(&key).unwrap().id;
    let account = |a: &str, n: &str| json!({"accountId": a, "displayName": n, "active": true});
    let issue = |assignee: Value| {
        json!({"id": id, "key": key, "fields": {"summary": "Mail bounces",
            "priority": {"name": "High"}, "assignee": assignee}})
    };
    let who = account("712020:agent", "Ann Agent");
    let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": who, "issue": issue(account("712020:ann", "Ann Agent"))});
    assert_eq!(r.post("jira", &created, "u-1").await, 202);
    assert_eq!(r.pump().await, 0);
    // then the incident is Ann's
    assert!(r.dead_letters().await.is_empty());
    let assigned = || {
        let inc =
            r.sn.find("incident", "correlation_id", &key)
                .expect("incident");
        text(&inc["assigned_to"]).to_owned()
    };
    assert_eq!(assigned(), ann, "by the address Jira shows");

    // when it is reassigned to Carol, whose address Jira hides
    let assign = |to: Value, n: u32| {
        json!({"webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_assigned",
            "user": who, "issue": issue(to), "changelog": {"id": format!("9{n}"), "items": [
                {"field": "assignee", "fieldId": "assignee", "from": null, "to": "x"}]}})
    };
    assert_eq!(
        r.post(
            "jira",
            &assign(account("712020:carol", "Carol Hidden"), 1),
            "u-2"
        )
        .await,
        202
    );
    assert_eq!(r.pump().await, 0);
    // then `pairs` finds her
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(assigned(), carol, "by pairs");

    // when it is reassigned to Dan, whom nothing finds
    assert_eq!(
        r.post(
            "jira",
            &assign(account("712020:dan", "Dan Nobody"), 2),
            "u-3"
        )
        .await,
        202
    );
    assert_eq!(r.pump().await, 0);
    // then the update is applied without him, and the miss is logged with why
    assert!(
        r.dead_letters().await.is_empty(),
        "a miss is no dead letter"
    );
    assert_eq!(assigned(), carol, "left as it was");
    let miss = logs
        .lines()
        .into_iter()
        .find(|l| {
            l["message"].as_str() == Some("user not mapped: the field is left out of the write")
        })
        .expect("the miss is logged");
    assert_eq!(miss["user"], json!("712020:dan"));
    let tried = miss["tried"].as_str().unwrap();
    assert!(tried.contains("pairs: not listed"), "{tried}");
    assert!(
        tried.contains("does not show this account's address"),
        "{tried}"
    );

    // when ServiceNow opens incidents assigned to Beth and to Carol
    let mut keys = Vec::new();
    for (n, (who, short)) in [(&beth, "Disk full"), (&carol, "VPN slow")]
        .iter()
        .enumerate()
    {
        let inc = r
            .sn_create(
                "incident",
                json!({"short_description": short, "priority": "3", "state": "1", "assigned_to": who}),
            )
            .await;
        let event = json!({"event": "incident.created", "sys_id": inc["sys_id"], "number": inc["number"],
            "short_description": short, "description": "", "priority": "3", "state": "1",
            "assigned_to": who, "sys_updated_by": "beth.anglin",
            "sys_updated_on": format!("2026-12-04 10:0{n}:00")});
        assert_eq!(r.post_sn(&event).await, 202);
        assert_eq!(r.pump().await, 0);
        assert!(r.dead_letters().await.is_empty());
        keys.push(text(&inc["number"]).to_owned());
    }
    // then each issue is assigned to the person's Jira account
    let assignee_of = |number: &str| {
        r.jira
            .issues()
            .into_iter()
            .find(|i| i.fields.get("customfield_10050") == Some(&json!(number)))
            .map(|i| i.fields["assignee"]["accountId"].clone())
    };
    assert_eq!(
        assignee_of(&keys[0]),
        Some(json!("712020:beth")),
        "by sys_user.email and Jira's user search"
    );
    assert_eq!(
        assignee_of(&keys[1]),
        Some(json!("712020:carol")),
        "by pairs, backwards"
    );
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // and each person was looked up once: answers are cached
    let user_reads = r
        .jira
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/user"))
        .count();
    assert_eq!(user_reads, 2, "Ann's and Dan's accounts, once each");
}
