//! Jira Service Management comment visibility, both ways, with the shipped
//! config: a ServiceNow work note becomes an internal JSM comment (never
//! mailed to the customer), an additional comment a public one; a JSM
//! internal comment becomes a work note, a public one an additional comment.
//! The real Cloud `comment_created` fixture (which carries `jsdPublic`) is
//! the Jira side's shape.

use crate::two_way::shipped;
use crate::worker_flow::{Relay, JIRA_EMAIL, JIRA_TOKEN};
use relay_tests::{jira_fixture, text};
use serde_json::{json, Value};

#[tokio::test]
async fn work_notes_stay_internal_and_comments_reach_the_customer() {
    // given the shipped config and a JSM project
    let Some(r) = Relay::start_with_config("config/relay.yaml", shipped).await else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    r.jira.make_service_desk("SUP");
    let inc = r
        .sn_create(
            "incident",
            json!({"short_description": "Cannot print", "priority": "3", "state": "1"}),
        )
        .await;
    let (sys_id, number) = (
        text(&inc["sys_id"]).to_owned(),
        text(&inc["number"]).to_owned(),
    );
    let base = json!({"sys_id": sys_id, "number": number, "short_description": "Cannot print",
        "description": "", "priority": "3", "state": "1", "sys_updated_by": "beth.anglin",
        "comments": "", "work_notes": "", "changes": []});
    let event = |name: &str, extra: Value, at: &str| {
        let mut e = base.clone();
        e["event"] = json!(name);
        e["sys_updated_on"] = json!(at);
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    assert_eq!(
        r.post_sn(&event("incident.created", json!({}), "2026-12-04 10:00:00"))
            .await,
        202
    );
    assert_eq!(r.pump().await, 0);
    let key = r.jira.issues()[0].key.clone();

    // when the agent adds a work note, then a comment for the caller
    let note = "Caller is a VIP; printer driver is corrupt";
    let comment = "We are reinstalling your printer driver";
    for (n, extra) in [json!({"work_notes": note}), json!({"comments": comment})]
        .into_iter()
        .enumerate()
    {
        let e = event(
            "incident.commented",
            extra,
            &format!("2026-12-04 10:1{n}:00"),
        );
        assert_eq!(r.post_sn(&e).await, 202);
        assert_eq!(r.pump().await, 0);
    }
    // then both are on the issue, the note internal, and only the comment
    // reached the customer's mailbox
    assert!(r.dead_letters().await.is_empty());
    let comments = r.jira.comments(&key).unwrap();
    assert_eq!(comments.len(), 2, "{comments:?}");
    let mail = r.jira.customer_mail();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].2.contains(comment), "{mail:?}");
    assert!(
        !mail.iter().any(|m| m.2.contains(note)),
        "a work note was mailed: {mail:?}"
    );
    let stored = r.jira.issue(&key).unwrap().comments;
    let internal: Vec<&Value> = stored
        .iter()
        .filter(|c| c["jsdPublic"] == json!(false))
        .collect();
    assert_eq!(internal.len(), 1, "{stored:?}");
    assert!(internal[0].to_string().contains(note));
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // when JSM sends an agent's internal comment, then a public reply
    // (the real Cloud comment_created shape, re-targeted at this issue)
    let Some(fixture) = jira_fixture("mattermost__comment-created_cloud.json") else {
        return;
    };
    let issue_id = r.jira.issue(&key).unwrap().id;
    let jsm = |id: &str, body: &str, public: bool| {
        let mut p = fixture.clone();
        p["issue"]["id"] = json!(issue_id.to_string());
        p["issue"]["key"] = json!(key);
        p["comment"]["id"] = json!(id);
        p["comment"]["body"] = json!(body);
        p["comment"]["jsdPublic"] = json!(public);
        p
    };
    assert_eq!(
        r.post(
            "jira",
            &jsm("70001", "Escalating to vendor", false),
            "jsm-1"
        )
        .await,
        202
    );
    assert_eq!(
        r.post(
            "jira",
            &jsm("70002", "A technician is on the way", true),
            "jsm-2"
        )
        .await,
        202
    );
    assert_eq!(r.pump().await, 0);
    // then the internal one is a work note, the public one a comment
    assert!(r.dead_letters().await.is_empty());
    let journal = r.sn.journal("incident", &sys_id);
    let entry = |needle: &str| {
        journal
            .iter()
            .find(|j| j.value.contains(needle))
            .unwrap_or_else(|| panic!("no journal entry with {needle}: {journal:?}"))
    };
    assert_eq!(entry("Escalating to vendor").field, "work_notes");
    assert_eq!(entry("A technician is on the way").field, "comments");
}
